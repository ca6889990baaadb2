"""Which strings of a large message can hold a match, found in its serialised bytes.

A structured tool result can carry tens of thousands of small strings, and visiting them one by
one in Python costs far more than matching them. For such messages the scanner serialises the
message once with orjson (deterministic: the same objects give the same bytes) and this module
works on those bytes, so the cost grows with the number of hits rather than the number of
strings:

* **Suspect tokens** (:func:`suspects`). In orjson's output a ``"`` byte after an even run of
  backslashes always delimits a string token: quotes inside strings are escaped. A match lies
  inside one string's content, and a credential-named key match (``…token":``) inside one key
  plus the two bytes after it, so cutting the buffer at delimiters never cuts one in two, and
  each piece can be checked alone with the engine's JSON prefilter. The buffer is checked in
  chunks; a chunk that reports something is split at a delimiter near its middle (found by a
  tiny Hyperscan pattern, forwards or over the reversed bytes) and its pieces are checked again,
  until every reporting piece is a single token. The prefilter is a superset of the rules, so
  every string that holds a match is among the suspects.
* **Back to the value** (:func:`strings_at`). A suspect is the byte offset of a closing quote.
  The path to it is found by descending the Python value: the byte span of a container's
  children comes from serialising slices of it (``orjson.dumps(items[a:b])`` is exactly the
  bytes from child ``a`` to child ``b``, brackets aside), narrowed by interpolation search, so a
  level costs a few serialisations at C speed rather than a Python loop over its children. Every
  string found is checked against the bytes it was located at.

Only strings the walker (:mod:`mcpwall.detect.walker`) would visit are returned. Values the walk
treats in a way serialisation does not mirror (subclasses of ``str``, ``dict``, ``list``) raise
:class:`Unsupported`; :func:`suspects` returns None when narrowing would not pay (suspects all
over the message, say). Either way the caller walks the message instead, with identical results.
"""

from __future__ import annotations

import contextlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from mcpwall.detect.engine import Engine
from mcpwall.detect.walker import Path, binary_keys

_hs: Any
try:
    import hyperscan as _hs
except ImportError:  # pragma: no cover - the serialised path needs the hyperscan backend
    _hs = None

VALUE = 1  # a rule or "needs normalising" reported: the string's content is suspect
KEY = 2  # a credential-named key reported: the string stored under it is suspect
CHUNK = 32768  # bytes checked per prefilter call before any splitting
# Narrowing a suspect down and mapping it back costs some tens of microseconds; walking costs a
# fraction of a microsecond per string. Past about one suspect per 4 KiB (or when over half the
# chunks report something) the walk is the cheaper way, and gives the same answer.
BYTES_PER_SUSPECT = 4096
MIN_SUSPECTS = 16
DENSE_CHUNKS = 8  # with at least this many chunks, half of them reporting means "dense"
CHECKS_PER_SUSPECT = 64
NARROW_PASSES = 4  # bytes narrowing may scan, in passes over the whole message


class Unsupported(Exception):
    """The message holds something the byte mapping does not mirror; walk it instead."""


class _Budget(Exception):
    pass


def suspects(engine: Engine, data: bytes, *, keys: bool, max_suspects: int | None = None,
             chunk: int | None = None) -> dict[int, int] | None:
    """Closing-quote offsets of the tokens in ``data`` that may hold a match, with VALUE/KEY flags.

    ``data`` is ``orjson.dumps(message)``. An empty result means no string can match. None
    means narrowing would not pay (suspects all over the message, more than ``max_suspects`` —
    by default one per :data:`BYTES_PER_SUSPECT` — or too much rescanning): the caller should
    walk the message then."""
    if not data:
        return {}
    if max_suspects is None:
        max_suspects = MIN_SUSPECTS + len(data) // BYTES_PER_SUSPECT
    search = _Search(engine, data, keys, max_suspects)
    try:
        search.run(chunk or CHUNK)
    except _Budget:
        return None
    return search.found


class _Search:
    def __init__(self, engine: Engine, data: bytes, keys: bool, limit: int) -> None:
        self.engine = engine
        self.data = data
        self.view = memoryview(data)
        self.keys = keys
        self.limit = limit
        self.checks = 0
        self.scanned = 0
        self.backwards: bytes | None = None  # the message reversed, made when first needed
        self.max_checks = CHECKS_PER_SUSPECT * limit
        self.found: dict[int, int] = {}
        self.key_ids = engine.json_key_ids

    def flags(self, a: int, b: int) -> int:
        """What the prefilter reports for the piece from delimiter ``a`` to delimiter ``b``.

        Two bytes past ``b`` are included: a key's closing quote is followed by its colon."""
        self.checks += 1
        if self.checks > self.max_checks:
            raise _Budget
        self.spend(b - a)
        found = self.engine.json_found(self.view[a:b + 2])
        flags = KEY if self.keys and not self.key_ids.isdisjoint(found) else 0
        return flags | VALUE if found - self.key_ids else flags

    def run(self, chunk: int) -> None:
        pending: list[tuple[int, int, int]] = []
        chunks = 0
        singles: set[int] = set()
        for start, end, single in self.chunks(chunk):
            self.checks -= 1  # the first pass is the price of any scan, not of suspects
            self.scanned -= end - start
            flags = self.flags(start, end)
            chunks += 1
            if flags:
                pending.append((start, end, flags))
                if single:
                    singles.add(start)
        if not pending:
            return
        if chunks >= DENSE_CHUNKS and 2 * len(pending) > chunks:
            raise _Budget  # hits all over the message: the walk is no slower, and sure to be cheap
        pending.reverse()  # narrow in document order
        while pending:
            start, end, flags = pending[-1]
            if start in singles and _delimiter(self.view, start + 1, end) < 0:
                pending.pop()
                self.leaf(end, flags)  # one long token, confirmed: nothing to narrow
            else:
                self.narrow(pending)

    def chunks(self, size: int) -> Iterator[tuple[int, int, bool]]:
        """Pieces of about ``size`` bytes between delimiters, with "probably one long token" marks.

        A token much longer than a chunk (a big text block) gets a piece of its own, so a hit in
        it does not make the bytes around it be narrowed through, and the token is rescanned once
        at most."""
        data, last = self.data, len(self.data) - 1
        start = 0
        while start < last:
            target = start + size
            end = _delimiter(self.view, target, last) if target < last else -1
            end = last if end < 0 else end
            if end - target > size:  # a long stretch without delimiters crosses the target
                if self.backwards is None:
                    self.backwards = data[::-1]
                opening = _delimiter_before(data, self.backwards, start, target + 1)
                if opening > start:
                    yield start, opening, False
                    yield opening, end, True
                    start = end
                    continue
            yield start, end, False
            start = end

    def narrow(self, pending: list[tuple[int, int, int]]) -> None:
        a, b, flags = pending.pop()
        cut = self.split_point(a, b)
        if cut < 0:
            self.leaf(b, flags)
            return
        left, right = (a, cut), (cut, b)
        small, large = (left, right) if cut - a <= b - cut else (right, left)
        found = {small: self.flags(*small)}
        # When the smaller side is clean the report came from the larger one, which need not be
        # checked again. (A superset match across the cut could have caused it instead; then
        # the larger side only yields a suspect too many, which the engine clears.)
        found[large] = self.flags(*large) if found[small] else flags
        for low, high in (right, left):  # a stack: the left piece is narrowed first
            if found[(low, high)]:
                pending.append((low, high, found[(low, high)]))

    def split_point(self, a: int, b: int) -> int:
        """A delimiter strictly between delimiters ``a`` and ``b``, near the middle if possible; -1: none.

        First a delimiter at or above the middle; failing that the piece ends in a token that
        starts below the middle (a long string, perhaps), so the delimiter nearest below ``b`` is
        looked for, scanning the bytes backwards: splitting there isolates that token at once.
        The backward look covers the whole piece and is exact."""
        self.spend(b - a)
        cut = _delimiter(self.view, max(a + 1, (a + b) // 2), b)
        if cut >= 0:
            return cut
        if self.backwards is None:
            self.backwards = self.data[::-1]
        return _delimiter_before(self.data, self.backwards, a, b)

    def spend(self, size: int) -> None:
        """Narrowing rescans pieces; past a few passes over the message, walking it is cheaper."""
        self.scanned += size
        if self.scanned > NARROW_PASSES * len(self.data):
            raise _Budget

    def leaf(self, end: int, flags: int) -> None:
        if self.data[end] != 0x22:
            return  # the piece ends at the buffer's end, not at a token
        self.found[end] = self.found.get(end, 0) | flags
        if len(self.found) > self.limit:
            raise _Budget


# A delimiting quote: an even run of backslashes (maybe none) after something that is not one;
# and the same read backwards, for scanning the message reversed.
_DELIMITER = rb"[^\x5c](?:\x5c\x5c)*\x22"
_DELIMITER_REVERSED = rb"\x22(?:\x5c\x5c)*[^\x5c]"
_databases: dict[bytes, Any] = {}


def _first_end(expression: bytes, data: memoryview | bytes) -> int:
    """End offset of some match of ``expression`` in ``data`` (Hyperscan stops at its first report), or -1."""
    database = _databases.get(expression)
    if database is None:
        database = _databases[expression] = _hs.Database(mode=_hs.HS_MODE_BLOCK)
        database.compile(expressions=[expression], ids=[0], elements=1, flags=[0])
    found: list[int] = []

    def on_match(_id: int, _from: int, end: int, _flags: int, _ctx: Any) -> bool:
        found.append(end)
        return True

    with contextlib.suppress(_hs.ScanTerminated):  # stopping at the first report is the point
        database.scan(data, match_event_handler=on_match)
    return found[0] if found else -1


def _delimiter(view: memoryview, start: int, stop: int) -> int:
    """Some delimiting quote in ``[start, stop)``, or -1.

    The byte before ``start`` is read as context. A quote whose backslash run begins before
    ``start`` is not seen, so the answer is exact (-1 means there is none) when the byte before
    ``start`` is not a backslash, as after a delimiter or at the buffer's first byte. The look
    starts with a small window and widens it: a scan costs in proportion to its buffer even
    when it stops early, and a delimiter is usually a few bytes away."""
    low, window = start, 1024
    while low < stop:
        high = min(stop, low + window)
        end = _first_end(_DELIMITER, view[low - 1:high])
        if end >= 0:
            return low - 1 + end - 1
        if high >= stop:
            break
        # Go on from the start of any backslash run the window ends in, so its quote has context.
        piece = view[low:high].tobytes()
        run = len(piece) - len(piece.rstrip(b"\\"))
        if run < len(piece):
            low = high - run
        window *= 8
    return -1


def _delimiter_before(data: bytes, backwards: bytes, a: int, b: int) -> int:
    """Some delimiting quote strictly between ``a`` and ``b`` (usually the last), or -1 if none.

    ``backwards`` is ``data[::-1]``; ``data[a]`` must not be a backslash (a delimiter, or the
    first byte). A match read backwards ends just past the byte before the quote's backslash
    run; the quote is the first one after that byte."""
    size = len(data)
    b = min(b, size)
    if b <= a:
        return -1
    end = _first_end(_DELIMITER_REVERSED, memoryview(backwards)[size - b:size - a])
    if end < 0:
        return -1
    return data.find(b'"', b - end + 1, b)


# -- from byte offsets back to the value ------------------------------------------------------------

def strings_at(value: Any, data: bytes, suspect: dict[int, int]) -> list[tuple[Path, str]]:
    """The strings (with paths relative to ``value``) that the suspects in ``data`` point at.

    In document order, each once. Raises :class:`Unsupported` when the value holds something the
    serialisation does not mirror."""
    out: dict[int, tuple[Path, str]] = {}
    targets = sorted(suspect.items())
    if targets:
        _descend(value, data, 0, len(data), targets, (), out)
    return [out[end] for end in sorted(out)]


def _descend(node: Any, data: bytes, low: int, high: int, targets: list[tuple[int, int]], path: Path,
             out: dict[int, tuple[Path, str]]) -> None:
    """``node`` serialises to ``data[low:high]``; ``targets`` are sorted offsets inside it."""
    kind = type(node)
    if kind is str:
        if any(end == high - 1 and flags & VALUE for end, flags in targets):
            _keep(node, data, low, high, path, out)
        return
    if kind is list:
        _container(node, data, low, high, targets, path, out, None)
    elif kind is dict:
        _container(node, data, low, high, targets, path, out, list(node.items()))
    elif isinstance(node, (str, dict, list)):
        raise Unsupported  # the walker converts subclasses; their serialisation may differ
    # Anything else (numbers, tuples, …) is never visited by the walker.


def _keep(text: str, data: bytes, low: int, high: int, path: Path, out: dict[int, tuple[Path, str]]) -> None:
    if memoryview(data)[low:high] != orjson.dumps(text):
        raise Unsupported  # the byte mapping went wrong somewhere: never guess
    out[high - 1] = (path, text)


def _container(node: Any, data: bytes, low: int, high: int, targets: list[tuple[int, int]], path: Path,
               out: dict[int, tuple[Path, str]], items: list[tuple[Any, Any]] | None) -> None:
    if data[low] not in (0x5B, 0x7B) or data[high - 1] not in (0x5D, 0x7D):
        raise Unsupported
    size: Callable[[int, int], int]
    if items is None:
        def size(a: int, b: int) -> int:
            return len(orjson.dumps(node[a:b]))
    else:
        def size(a: int, b: int) -> int:
            return len(orjson.dumps(dict(items[a:b])))
    spans = _Spans(len(node), low, high, size)
    groups: dict[int, list[tuple[int, int]]] = {}
    for target in targets:
        offset = target[0]
        if low < offset < high - 1:
            groups.setdefault(spans.child(offset), []).append(target)
    skip = binary_keys(node) if items is not None and ("data" in node or "blob" in node) else frozenset()
    for index, group in groups.items():
        start, stop = spans.start(index), spans.start(index + 1) - 1  # stop: the comma or bracket after it
        if items is None:
            _descend(node[index], data, start, stop, group, (*path, index), out)
            continue
        key, child = items[index]
        if type(key) is not str or key in skip:
            continue  # the walker skips these too
        key_end = start + len(orjson.dumps(key))
        if any(offset == key_end - 1 and flags & KEY for offset, flags in group):
            if type(child) is str:
                _keep(child, data, key_end + 1, stop, (*path, key), out)
            elif isinstance(child, str):
                raise Unsupported
        inside = [t for t in group if t[0] > key_end]
        if inside:
            _descend(child, data, key_end + 1, stop, inside, (*path, key), out)


class _Spans:
    """Start offsets of a container's children, computed only where asked for.

    ``start(i)`` is where child ``i`` begins; ``start(n)`` is the offset just past the closing
    bracket, as if the bracket were one more comma. Serialising children ``a..b-1`` as a
    container gives ``start(b) - start(a) + 1`` bytes, which is how unknown starts are derived
    from known ones."""

    def __init__(self, count: int, low: int, high: int, size: Callable[[int, int], int]) -> None:
        self.size = size
        self.index = [0, count]
        self.offset = [low + 1, high]

    def start(self, index: int) -> int:
        position = bisect_left(self.index, index)
        if position < len(self.index) and self.index[position] == index:
            return self.offset[position]
        raise KeyError(index)  # pragma: no cover - child() makes both neighbours known

    def child(self, offset: int) -> int:
        """The child whose span (with its trailing comma) holds ``offset``."""
        position = bisect_right(self.offset, offset) - 1
        lo, hi = self.index[position], self.index[position + 1]
        s_lo, s_hi = self.offset[position], self.offset[position + 1]
        interpolate = True
        while hi - lo > 1:
            guess = lo + (offset - s_lo) * (hi - lo) // max(1, s_hi - s_lo) if interpolate else (lo + hi) // 2
            mid = min(hi - 1, max(lo + 1, guess))
            # Serialise the shorter side: the cost is the bytes between a known start and this one.
            s_mid = s_lo + self.size(lo, mid) - 1 if mid - lo <= hi - mid else s_hi - self.size(mid, hi) + 1
            at = bisect_left(self.index, mid)
            self.index.insert(at, mid)
            self.offset.insert(at, s_mid)
            before = hi - lo
            if s_mid <= offset:
                lo, s_lo = mid, s_mid
            else:
                hi, s_hi = mid, s_mid
            # Interpolation is near exact on uniform children; halve when it stops paying.
            interpolate = not interpolate or 4 * (hi - lo) < before
        return lo


def suspect_strings(engine: Engine, value: Any, data: bytes, *, keys: bool) -> list[tuple[Path, str]] | None:
    """:func:`suspects` then :func:`strings_at`; None when the caller should walk instead."""
    found = suspects(engine, data, keys=keys)
    if found is None:
        return None
    try:
        return strings_at(value, data, found)
    except Unsupported:
        return None

