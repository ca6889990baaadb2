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
  chunks; a chunk that reports something is split at delimiters near its middle and its pieces
  are checked again, until every reporting piece is a single token. The prefilter is a superset
  of the rules, so every string that holds a match is among the suspects.
* **Back to the value** (:func:`strings_at`). A suspect is the byte offset of a closing quote.
  The path to it is found by descending the Python value: the byte span of a container's
  children comes from serialising slices of it (``orjson.dumps(items[a:b])`` is exactly the
  bytes from child ``a`` to child ``b``, brackets aside), narrowed by interpolation search, so a
  level costs a few serialisations at C speed rather than a Python loop over its children. Every
  string found is checked against the bytes it was located at.

Only strings the walker (:mod:`mcpwall.detect.walker`) would visit are returned. Values the walk
treats in a way serialisation does not mirror (subclasses of ``str``, ``dict``, ``list``) raise
:class:`Unsupported`; :func:`suspects` returns None when a message has too many suspects for
this to pay. Either way the caller walks the message instead, with identical results.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import orjson

from mcpwall.detect.engine import Engine
from mcpwall.detect.walker import Path, binary_keys

VALUE = 1  # a rule or "needs normalising" reported: the string's content is suspect
KEY = 2  # a credential-named key reported: the string stored under it is suspect
CHUNK = 32768  # bytes checked per prefilter call before any splitting
# Narrowing a suspect down and mapping it back costs some tens of microseconds; walking costs a
# fraction of a microsecond per string. Past about one suspect per 4 KiB (or when suspects are
# spread over a quarter of the chunks) the walk is the cheaper way, and gives the same answer.
BYTES_PER_SUSPECT = 4096
MIN_SUSPECTS = 16
DENSE_CHUNKS = 8  # with at least this many chunks, a quarter of them reporting means "dense"
CHECKS_PER_SUSPECT = 64

_QUOTE = b'"'
_BACKSLASH = 0x5C


class Unsupported(Exception):
    """The message holds something the byte mapping does not mirror; walk it instead."""


class _Budget(Exception):
    pass


def suspects(engine: Engine, data: bytes, *, keys: bool, max_suspects: int | None = None,
             chunk: int | None = None) -> dict[int, int] | None:
    """Closing-quote offsets of the tokens in ``data`` that may hold a match, with VALUE/KEY flags.

    ``data`` is ``orjson.dumps(message)``. An empty result means no string can match. None
    means suspects are too many (more than ``max_suspects``, by default one per
    :data:`BYTES_PER_SUSPECT`) for this to pay: the caller should walk the message."""
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
        self.max_checks = CHECKS_PER_SUSPECT * limit
        self.found: dict[int, int] = {}
        self.key_ids = engine.json_key_ids

    def flags(self, a: int, b: int) -> int:
        """What the prefilter reports for the piece from delimiter ``a`` to delimiter ``b``.

        Two bytes past ``b`` are included: a key's closing quote is followed by its colon."""
        self.checks += 1
        if self.checks > self.max_checks:
            raise _Budget
        found = self.engine.json_found(self.view[a:b + 2])
        flags = KEY if self.keys and not self.key_ids.isdisjoint(found) else 0
        return flags | VALUE if found - self.key_ids else flags

    def run(self, chunk: int) -> None:
        data, last = self.data, len(self.data) - 1
        pending: list[tuple[int, int, int]] = []
        chunks = 0
        start = 0
        while start < last:
            end = _next_delim(data, start + chunk, last) if start + chunk < last else -1
            end = last if end < 0 else end
            self.checks -= 1  # the first pass is the price of any scan, not of suspects
            flags = self.flags(start, end)
            if flags:
                pending.append((start, end, flags))
            chunks += 1
            start = end
        if chunks >= DENSE_CHUNKS and 4 * len(pending) > chunks:
            raise _Budget
        pending.reverse()  # narrow in document order
        while pending:
            self.narrow(pending)

    def narrow(self, pending: list[tuple[int, int, int]]) -> None:
        a, b, flags = pending.pop()
        data = self.data
        mid = (a + b) // 2
        before = _prev_delim(data, a + 1, mid + 1)
        after = _next_delim(data, max(mid, a + 1), b)
        if before < 0 and after < 0:
            self.leaf(b, flags)
            return
        cuts = [a, *sorted({c for c in (before, after) if c >= 0}), b]
        for low, high in reversed(list(pairwise(cuts))):
            piece = self.flags(low, high)
            if not piece:
                continue
            if (low, high) == (before, after) and before != after:
                self.leaf(high, piece)  # nothing lies between two adjacent delimiters
            else:
                pending.append((low, high, piece))

    def leaf(self, end: int, flags: int) -> None:
        if self.data[end] != 0x22:
            return  # the piece ends at the buffer's end, not at a token
        self.found[end] = self.found.get(end, 0) | flags
        if len(self.found) > self.limit:
            raise _Budget


def _is_delim(data: bytes, index: int) -> bool:
    back = index
    while back > 0 and data[back - 1] == _BACKSLASH:
        back -= 1
    return (index - back) % 2 == 0


def _next_delim(data: bytes, start: int, stop: int) -> int:
    """First delimiting quote in ``[start, stop)``, or -1."""
    index = data.find(_QUOTE, start, stop)
    while index >= 0 and not _is_delim(data, index):
        index = data.find(_QUOTE, index + 1, stop)
    return index


def _prev_delim(data: bytes, start: int, stop: int) -> int:
    """Last delimiting quote in ``[start, stop)``, or -1."""
    index = data.rfind(_QUOTE, start, stop)
    while index >= 0 and not _is_delim(data, index):
        index = data.rfind(_QUOTE, start, index)
    return index


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
    if orjson.dumps(text) != data[low:high]:
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

