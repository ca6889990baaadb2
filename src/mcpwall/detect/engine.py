"""The pattern engine every scanner shares: Hyperscan where available, pure ``re`` otherwise.

Both backends produce exactly the same matches, because the match model is defined by ``re``
alone and Hyperscan only narrows where ``re`` has to look:

* **The reference semantics.** For each rule and each scanned string, the matches are what
  ``rule.pattern.finditer(string)`` returns (leftmost-first, non-overlapping), filtered by the
  rule's group, validators, entropy floor and placeholder check. Scanning a whole message joins
  its strings with ``"\\n"`` into one buffer; because rules may not use anchors or look-around,
  a match inside one string is the same whether that string stands alone or sits in the buffer.
  A match that runs across a separator marks the strings it touches, which are then re-run alone.
* **The ``re`` backend** runs every rule over the whole buffer.
* **The Hyperscan backend** scans the buffer in overlapping windows (UTF-8, SINGLEMATCH, patterns
  rendered from the ``re`` parse tree; see :mod:`mcpwall.detect.syntax`) and learns which rules
  occur in which windows. Every match is at most ``MAX_WIDTH`` long and the windows overlap by
  more than that plus one character of context, so every match lies inside a window that
  reported its rule. ``re`` then runs only inside those windows, with an ``endpos`` margin of the
  rule's longest match, which makes every decision it takes there identical to a full scan.
  Rules tagged ``dense`` (shapes that occur in nearly every window, like phone numbers) are
  narrowed further, to where a match can start given every match end a second database reports.

A third database holds the rules rendered for serialised JSON (:meth:`Engine.json_found`), which
:mod:`mcpwall.detect.locate` uses to find the few strings of a large message worth scanning.

Hyperscan reports end offsets and no start, and its match order carries no promise; this design
needs neither. Scans are synchronous and an engine holds one Hyperscan scratch space: scan from
one thread at a time (the gateway's event loop). Normalisation (:mod:`mcpwall.detect.normalize`)
happens inside the scan: the Hyperscan database carries one extra pattern for "characters that
need normalising", so clean text is checked for free, and only strings that need it are
normalised and scanned again.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Literal

from mcpwall.detect.normalize import Normalized, normalize, special_ranges
from mcpwall.detect.rules import Rule, RuleError
from mcpwall.detect.syntax import MAX_WIDTH, pcre_class
from mcpwall.detect.validators import VALIDATORS, placeholder, shannon_entropy

_hs: Any
try:
    import hyperscan as _hs
except ImportError:  # pragma: no cover - depends on the platform
    _hs = None

log = logging.getLogger("mcpwall.detect")

Backend = Literal["auto", "hyperscan", "re"]
SEPARATOR = "\n"
DEFAULT_WINDOW = 65536
PEM_LIMIT = 16384
DENSE = "dense"  # rule tag: the rule matches often in ordinary text (numbers, dates)
MAX_ENDS = 8192  # exact match ends taken from one window before settling for the whole window


def hyperscan_available() -> bool:
    return _hs is not None


@dataclass(frozen=True, slots=True)
class RawMatch:
    """One confirmed match, in the coordinates of the normalised text it was found in."""

    rule: Rule
    index: int  # which of the scanned texts
    start: int
    end: int


@dataclass(slots=True)
class EngineScan:
    """Matches, plus what normalisation did to the strings that needed it."""

    originals: Sequence[str]
    changed: dict[int, Normalized]  # only strings that normalisation changed or reported on
    matches: list[RawMatch]
    truncated: bool = False

    def norm(self, index: int) -> Normalized:
        found = self.changed.get(index)
        return found if found is not None else Normalized(self.originals[index], len(self.originals[index]))


class Engine:
    """A compiled rule set. Build it once (at config load) and scan with it many times."""

    def __init__(self, rules: Sequence[Rule], backend: Backend = "auto", *, window: int = DEFAULT_WINDOW,
                 max_matches: int = 10_000) -> None:
        self.rules = tuple(rules)
        self.max_matches = max_matches
        widest = max((r.pattern.max_width for r in self.rules), default=1)
        self.overlap = widest + 2  # the longest match plus a character of context on each side
        self.window = max(window, 4 * self.overlap)
        if backend == "hyperscan" and _hs is None:
            raise RuleError("the hyperscan backend was requested but the hyperscan package is not installed")
        self.backend: Literal["hyperscan", "re"] = "hyperscan" if backend != "re" and _hs is not None else "re"
        self._db: Any = _compile_hyperscan(self.rules) if self.backend == "hyperscan" else None
        self._dense: list[int] = []
        self._ends_db: Any = None
        if self.backend == "hyperscan":
            self._dense = [i for i, r in enumerate(self.rules) if DENSE in r.tags and _exact(r.pattern.pcre)]
            if self._dense:
                self._ends_db = _compile_set([self.rules[i].pattern.pcre for i in self._dense],
                                             [self.rules[i].id for i in self._dense], every_end=True)
        self._dense_ids = frozenset(self._dense)
        self._json_db: Any = _compile_json_prefilter(self.rules) if self.backend == "hyperscan" else None

    @property
    def json_key_ids(self) -> frozenset[int]:
        """The ids :meth:`json_found` reports for (possibly) credential-named keys."""
        return frozenset({len(self.rules) + 1, len(self.rules) + 2})

    def json_found(self, data: bytes | memoryview) -> set[int]:
        """Which patterns of the JSON prefilter occur in ``data`` (serialised JSON, or a piece of it).

        The prefilter holds every rule's JSON-escaped rendering (a superset: word boundaries
        dropped, escapes allowed wherever the text could hold a quote, backslash or control
        character) as id = the rule's index, "needs normalising" as ``len(rules)``, and a key
        named like a credential as one of :attr:`json_key_ids`. A string
        inside ``data`` that can hold a match of a rule always makes its rule reported; a piece
        cut at string delimiters reports what its own strings can hold. Only the Hyperscan
        backend can answer."""
        if self._json_db is None:
            raise RuleError("the JSON prefilter needs the hyperscan backend")
        found: set[int] = set()

        def on_match(rule_id: int, _start: int, _end: int, _flags: int, _ctx: Any) -> None:
            found.add(rule_id)

        self._json_db.scan(data, match_event_handler=on_match)
        return found

    def json_clean(self, data: bytes, *, keys: bool = False) -> bool:
        """True when no string inside the serialised JSON ``data`` can hold a match.

        ``data`` is the message as ``orjson.dumps`` writes it; see :meth:`json_found`. With
        ``keys``, a field named like a credential also counts as a possible match. The fallback
        backend cannot tell and always says no."""
        if self._json_db is None:
            return False
        found = self.json_found(data)
        return not (found if keys else found - self.json_key_ids)

    # -- scanning ------------------------------------------------------------------------

    def scan(self, texts: Sequence[str]) -> EngineScan:
        changed: dict[int, Normalized] = {}
        if self.backend == "hyperscan":
            joined, starts = _join(texts)
            hits, special = self._windows(joined)
            if special:
                for index in _touched(starts, texts, special):
                    result = normalize(texts[index])
                    if result.changed or result.text != texts[index]:
                        changed[index] = result
            if changed:
                current = [changed[i].text if i in changed else t for i, t in enumerate(texts)]
                joined, starts = _join(current)
                hits, _ = self._windows(joined)
            else:
                current = list(texts)
        else:
            for index, text in enumerate(texts):
                result = normalize(text)
                if result.changed or result.text != text:
                    changed[index] = result
            current = [changed[i].text if i in changed else t for i, t in enumerate(texts)]
            joined, starts = _join(current)
            hits = None
        matches, truncated = self._confirm(current, joined, starts, hits)
        return EngineScan(texts, changed, matches, truncated)

    def _windows(self, joined: str) -> tuple[dict[int, list[tuple[int, int]]], list[tuple[int, int]] | None]:
        """Which rules occur in which windows, and which windows need normalising.

        ``special`` is None when nothing needs normalising, and covers everything when the text
        cannot even be encoded (lone surrogates). Rules tagged ``dense`` get narrower spans
        where they occur: see :meth:`_dense_spans`."""
        hits: dict[int, list[tuple[int, int]]] = {}
        special: list[tuple[int, int]] = []
        special_id = len(self.rules)
        found: set[int] = set()
        fine: dict[int, list[tuple[int, int]]] = {}

        def on_match(rule_id: int, _start: int, _end: int, _flags: int, _ctx: Any) -> None:
            found.add(rule_id)

        size = len(joined)
        stride = self.window - self.overlap
        begin = 0
        while True:
            end = min(size, begin + self.window)
            try:
                data = joined[begin:end].encode("utf-8")
            except UnicodeEncodeError:
                return {}, [(0, size)]
            found.clear()
            self._db.scan(data, match_event_handler=on_match)
            dense = found & self._dense_ids
            if dense:
                found -= dense
                self._dense_spans(joined, begin, end, data, dense, fine)
            for rule_id in found:
                spans = special if rule_id == special_id else hits.setdefault(rule_id, [])
                if spans and spans[-1][1] >= begin:
                    spans[-1] = (spans[-1][0], end)
                else:
                    spans.append((begin, end))
            if end >= size:
                break
            begin += stride
        for rule_id, spans in fine.items():
            hits[rule_id] = _merged(spans)
        return hits, special or None

    def _dense_spans(self, joined: str, begin: int, end: int, data: bytes, rules: set[int],
                     fine: dict[int, list[tuple[int, int]]]) -> None:
        """Where in the window ``joined[begin:end]`` matches of the dense ``rules`` can start.

        Number-shaped rules occur in nearly every window of ordinary text, and ``re`` searching
        a whole window for them is the slow part of a scan. A second database reports every
        match end of those rules; a match of a rule ending at ``e`` starts in
        ``[e - max_width, e - min_width]``, so ``re`` only needs to look there. Every real match
        lies in some window with context on both sides (the windows overlap by more than the
        longest match), so every one of them is covered. Too many ends, or offsets that cannot
        be mapped, fall back to the whole window."""
        ends: list[int] = []  # (dense index << 32) | end offset: one sort orders by rule, then offset
        add = ends.append

        def on_end(index: int, _start: int, offset: int, _flags: int, _ctx: Any) -> bool:
            add(index << 32 | offset)
            return len(ends) >= MAX_ENDS

        try:
            self._ends_db.scan(data, match_event_handler=on_end)
            packed = sorted(set(ends))
            positions = _char_offsets(joined[begin:end], data, sorted({p & 0xFFFFFFFF for p in packed}))
        except (_hs.ScanTerminated, UnicodeDecodeError):
            for rule_id in rules:
                fine.setdefault(rule_id, []).append((begin, end))
            return
        current = -1
        spans: list[tuple[int, int]] = []
        widest = narrowest = 0
        for item in packed:
            rule_id = self._dense[item >> 32]
            if rule_id != current:
                current = rule_id
                spans = fine.setdefault(rule_id, [])
                widest, narrowest = self.rules[rule_id].pattern.max_width, self.rules[rule_id].pattern.min_width - 1
            stop = begin + positions[item & 0xFFFFFFFF]
            low, high = stop - widest, stop - narrowest
            if spans and spans[-1][0] <= low <= spans[-1][1]:
                if high > spans[-1][1]:
                    spans[-1] = (spans[-1][0], high)
            else:  # a new span, or one from the previous window's overlap: _merged sorts them out
                spans.append((low if low > begin else begin, high))

    def _confirm(self, texts: list[str], joined: str, starts: list[int],
                 hits: dict[int, list[tuple[int, int]]] | None) -> tuple[list[RawMatch], bool]:
        out: list[RawMatch] = []
        size = len(joined)
        ends = [s + len(t) for s, t in zip(starts, texts, strict=True)]
        for rule_index, rule in enumerate(self.rules):
            intervals = [(0, size)] if hits is None else hits.get(rule_index)
            if not intervals:
                continue
            pattern = rule.pattern.compiled
            margin = rule.pattern.max_width + 1
            found: list[tuple[int, Any, int]] = []  # (text index, match, offset of the text in the match's string)
            dirty: set[int] = set()
            pos = 0
            for low, high in intervals:
                pos = max(pos, low)
                while pos < high:
                    match = pattern.search(joined, pos, min(size, high + margin))
                    if match is None or match.start() >= high:
                        break
                    start, end = match.span()
                    index = bisect_right(starts, start) - 1
                    if end > ends[index]:
                        last = bisect_right(starts, end - 1) - 1
                        dirty.update(range(index, last + 1))
                    else:
                        found.append((index, match, starts[index]))
                    pos = end
            if dirty:
                found = [f for f in found if f[0] not in dirty]
                for index in sorted(dirty):
                    found.extend((index, m, 0) for m in pattern.finditer(texts[index]))
            for index, match, offset in found:
                raw = _accept(rule, texts[index], index, match, offset)
                if raw is not None:
                    out.append(raw)
                    if len(out) >= self.max_matches:
                        return _ordered(out), True
        return _ordered(out), False


def _accept(rule: Rule, text: str, index: int, match: Any, offset: int) -> RawMatch | None:
    """Apply the rule's group, validators, entropy floor, placeholder check and extension."""
    start, end = match.span() if rule.group is None else match.span(rule.group)
    if start < 0 or end <= start:
        return None  # the group did not take part in the match
    start -= offset
    end -= offset
    value = text[start:end]
    for name in rule.validators:
        if not VALIDATORS[name](value):
            return None
    if rule.min_entropy is not None and shannon_entropy(value) < rule.min_entropy:
        return None
    if rule.placeholders and placeholder(value):
        return None
    if rule.extend == "pem":
        end = _pem_end(text, end)
    return RawMatch(rule, index, start, end)


def _pem_end(text: str, end: int) -> int:
    marker = text.find("-----END", end, end + PEM_LIMIT)
    if marker >= 0:
        close = text.find("-----", marker + 8, marker + 80)
        return close + 5 if close >= 0 else min(len(text), marker + 8)
    # No END line (a truncated key): cover the body that follows.
    limit = min(len(text), end + PEM_LIMIT)
    while end < limit and (text[end].isalnum() or text[end] in "+/=:-\\ \t\r\n"):
        end += 1
    return end


def _ordered(matches: list[RawMatch]) -> list[RawMatch]:
    return sorted(matches, key=lambda m: (m.index, m.start, m.end, m.rule.id))


def _join(texts: Sequence[str]) -> tuple[str, list[int]]:
    starts = list(accumulate(map(len, texts), lambda total, size: total + size + len(SEPARATOR), initial=0))
    starts.pop()
    return SEPARATOR.join(texts), starts


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for low, high in sorted(spans):
        if out and low <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return out


def _char_offsets(text: str, data: bytes, offsets: list[int]) -> dict[int, int]:
    """Character offsets in ``text`` of the byte ``offsets`` (sorted) of its UTF-8 ``data``."""
    if len(data) == len(text):
        return {offset: offset for offset in offsets}
    out: dict[int, int] = {}
    chars = previous = 0
    for offset in offsets:
        chars += len(data[previous:offset].decode("utf-8"))
        out[offset] = chars
        previous = offset
    return out


def _touched(starts: list[int], texts: Sequence[str], spans: list[tuple[int, int]]) -> list[int]:
    indexes: set[int] = set()
    for low, high in spans:
        first = max(0, bisect_right(starts, low) - 1)
        last = bisect_right(starts, high) - 1
        indexes.update(i for i in range(first, last + 1) if starts[i] + len(texts[i]) >= low)
    return sorted(indexes)


def _compile_hyperscan(rules: Sequence[Rule]) -> Any:
    """One database for all rules plus the "needs normalising" class."""
    assert _hs is not None
    special = pcre_class(special_ranges())
    expressions = [r.pattern.pcre for r in rules] + [special]
    return _compile_set(expressions, [r.id for r in rules] + ["normalisation"])


def _compile_set(expressions: list[str], names: list[str], *, every_end: bool = False) -> Any:
    """Compile a prefilter database (UTF-8, one report per pattern and scan; with ``every_end``,
    a report for every offset where a match ends).

    Patterns Hyperscan finds too large to compile exactly (wide negated classes in UTF-8 mode
    grow quickly) are compiled in its prefilter mode, which may report extra hits but never
    misses one; ``re`` confirms every hit, so results do not change."""
    assert _hs is not None
    encoded = [e.encode() for e in expressions]
    once = 0 if every_end else _hs.HS_FLAG_SINGLEMATCH
    flags = [_hs.HS_FLAG_UTF8 | once | _hs.HS_FLAG_ALLOWEMPTY for _ in encoded]
    try:
        return _hs_database(encoded, flags)
    except _hs.error:
        pass
    for index, name in enumerate(names):
        try:
            _hs_database([encoded[index]], [flags[index]])
        except _hs.error:
            flags[index] |= _hs.HS_FLAG_PREFILTER
            try:
                _hs_database([encoded[index]], [flags[index]])
            except _hs.error as exc:
                raise RuleError(f"rule {name}: the pattern engine cannot compile it ({exc})") from None
    try:
        return _hs_database(encoded, flags)
    except _hs.error as exc:
        raise RuleError(f"the pattern engine cannot compile the rule set ({exc})") from None


def _exact(expression: str) -> bool:
    """Does the pattern compile without prefilter mode (so every real match end is reported)?"""
    assert _hs is not None
    try:
        _hs_database([expression.encode()], [_hs.HS_FLAG_UTF8 | _hs.HS_FLAG_ALLOWEMPTY])
    except _hs.error:
        return False
    return True


def _hs_database(expressions: list[bytes], flags: list[int]) -> Any:
    assert _hs is not None
    database = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    database.compile(expressions=expressions, ids=list(range(len(expressions))), elements=len(expressions),
                     flags=flags)
    return database


# Field names the scanner treats as credentials: a key ending in one of these (any case).
SENSITIVE_FIELD_WORDS: tuple[str, ...] = (
    "password", "passwd", "passphrase", "pwd", "secret", "token", "apikey", "api_key", "accesskey", "access_key",
    "privatekey", "private_key", "clientsecret", "client_secret", "credential", "credentials", "authorization",
    "cookie", "sessionid", "session_id")
# Python's case-insensitive matching also folds these non-ASCII letters onto i, k and s (the
# scanner's field regex is Unicode-aware). Spelling them into the key pattern makes it several
# times slower to scan, so any of them counts as a possible key on its own: they are rare.
_UNICODE_FOLDS = "\u0130\u0131\u017f\u212a"


def _sensitive_key_pcre() -> str:
    """A key ending in a credential word, as orjson writes it: the word, the quote, the colon.

    ``$`` in the scanner's field regex also matches before a final newline, hence the optional
    escaped newline."""
    words = []
    for word in SENSITIVE_FIELD_WORDS:
        parts = []
        for ch in word:
            if ch.isalpha():
                parts.append(pcre_class([(ord(ch), ord(ch)), (ord(ch.upper()), ord(ch.upper()))]))
            else:
                parts.append(ch)
        words.append("".join(parts))
    return "(?:" + "|".join(words) + ")(?:\\x5cn)?\\x22:"


# Control characters as JSON escapes, and DEL: orjson writes them escaped, so the raw class misses them.
_JSON_SPECIAL = r"\x5cu00(?:0[0-8BbCcEeFf]|1[0-9A-Fa-f]|7[Ff])|\x5c[bf]"


def _compile_json_prefilter(rules: Sequence[Rule]) -> Any:
    """Rules rendered for serialised JSON, then "needs normalising", then credential-named keys."""
    special = pcre_class(special_ranges()) + "|" + _JSON_SPECIAL
    folds = pcre_class([(ord(c), ord(c)) for c in _UNICODE_FOLDS])
    return _compile_set([r.pattern.json_pcre for r in rules] + [special, _sensitive_key_pcre(), folds],
                        [r.id for r in rules] + ["normalisation", "credential-named fields", "case folds"])


_ENGINES: dict[tuple[Any, ...], Engine] = {}


def shared_engine(rules: Sequence[Rule], backend: Backend = "auto") -> Engine:
    """An engine for ``rules``, shared by every guard configured with the same rule set."""
    key = (backend, *(r.fingerprint for r in rules))
    engine = _ENGINES.get(key)
    if engine is None:
        if len(_ENGINES) >= 64:
            _ENGINES.clear()
        engine = _ENGINES[key] = Engine(rules, backend)
    return engine


assert MAX_WIDTH < DEFAULT_WINDOW // 4
