"""Text normalisation before matching: strip what a reader cannot see, reveal what was hidden.

Attackers hide instructions from the human reviewing a tool description or result while the
model still reads them: zero-width characters split trigger words, bidi controls reorder text,
Unicode tag characters (U+E0000 block) spell out whole invisible sentences, ANSI escapes hide
text in terminals, look-alike letters from other scripts dodge keyword rules. The normaliser

* removes zero-width and format characters, bidi controls, stray C0/C1 controls and ANSI escape
  sequences;
* decodes tag characters into the ASCII they encode, so the hidden sentence is matched like
  visible text;
* folds full-width ASCII and common Cyrillic/Greek look-alikes to ASCII (one character for one);
* replaces lone surrogates with U+FFFD, so the text is always valid UTF-8;

and reports what it found, with counts and the first position in the original string. Offsets in
the normalised text map back to the original with :meth:`Normalized.to_original`, so a finding
can point at (and a redaction can replace) exactly the original characters.

Text that is plain ASCII without control characters — nearly all traffic — is returned as is.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field

ZERO_WIDTH = "zero-width"
BIDI = "bidi-control"
TAG = "tag-characters"
VARIATION = "variation-selectors"
ANSI = "ansi-escape"
CONTROL = "control-characters"
SURROGATE = "lone-surrogate"
MIXED_SCRIPT = "mixed-script"

_ZERO_WIDTH_CHARS = ("\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200d\u2060-\u2064\u206a-\u206f"
                     "\u3164\ufeff\uffa0\ufff9-\ufffb")
_BIDI_CHARS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_SPECIAL = re.compile(
    "(?P<ansi>\x1b(?:\\[[0-?]{0,64}[ -/]{0,16}[@-~]|\\][^\x07\x1b]{0,4096}(?:\x07|\x1b\\\\)?|[@-Z\\\\-_])"
    "|\x9b[0-?]{0,64}[ -/]{0,16}[@-~])"
    f"|(?P<zw>[{_ZERO_WIDTH_CHARS}]+)"
    f"|(?P<bidi>[{_BIDI_CHARS}]+)"
    "|(?P<tag>[\U000e0000-\U000e007f]+)"
    "|(?P<vs>[\ufe00-\ufe0f\U000e0100-\U000e01ef]+)"
    "|(?P<ctl>[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]+)"
    "|(?P<sur>[\ud800-\udfff]+)"
)

_VS_RUN = re.compile("[\ufe00-\ufe0f]{2,}")

# One-for-one folds: full-width ASCII and Cyrillic/Greek letters that render like Latin ones.
_FOLD: dict[int, str] = {cp: chr(cp - 0xFEE0) for cp in range(0xFF01, 0xFF5F)}
_FOLD.update({ord(k): v for k, v in zip(
    "аеорсухіјѕԁһӏАВЕКМНОРСТХУЅІЈοαντιρεκΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdhlABEKMHOPCTXYSIJoavtipekABEZHIKMNOPTYX", strict=True)})
_FOLDABLE = re.compile("[" + "".join(chr(cp) for cp in sorted(_FOLD) if cp < 0xFF01) + "\uff01-\uff5e]")
# A Latin letter directly next to a Cyrillic or Greek one inside a word: a spoofing tell.
_MIXED = re.compile("[A-Za-z][\u0370-\u03ff\u0400-\u04ff]|[\u0370-\u03ff\u0400-\u04ff][A-Za-z]")

# Every character that makes normalisation do something, as code point ranges. One class is far
# cheaper to search for than the tokenising pattern above; the Hyperscan engine folds the same
# class into its own scan, so clean text costs nothing extra there.
_NEEDS_RANGES: list[tuple[int, int]] = sorted(
    [(0x00, 0x08), (0x0B, 0x0C), (0x0E, 0x1F), (0x7F, 0x9F), (0xAD, 0xAD), (0x34F, 0x34F), (0x61C, 0x61C),
     (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180E, 0x180E), (0x200B, 0x200F), (0x202A, 0x202E),
     (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFF01, 0xFF5E),
     (0xFFA0, 0xFFA0), (0xFFF9, 0xFFFB), (0xE0000, 0xE007F), (0xE0100, 0xE01EF)]
    + [(cp, cp) for cp in _FOLD if cp < 0xFF01])
_NEEDS = re.compile("[" + "".join(re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}"
                                  for lo, hi in _NEEDS_RANGES) + "\ud800-\udfff]")


def special_ranges() -> list[tuple[int, int]]:
    """Code points whose presence means a string must be normalised (surrogates aside)."""
    return list(_NEEDS_RANGES)


def needs_normalizing(text: str) -> bool:
    return _NEEDS.search(text) is not None


@dataclass(slots=True)
class Normalized:
    """Normalised text, what was hidden in it, and the way back to original offsets."""

    text: str
    original_length: int
    hidden: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (count, first original index)
    revealed: str = ""  # what tag characters spelled out
    _norm_starts: list[int] | None = None
    _orig_starts: list[int] | None = None

    @property
    def changed(self) -> bool:
        return bool(self.hidden) or self._norm_starts is not None

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map a span of the normalised text to the span of original characters it came from."""
        if self._norm_starts is None or self._orig_starts is None:
            return start, end
        first = self._map(start)
        last = self._map(end - 1) + 1 if end > start else first
        return first, last

    def _map(self, index: int) -> int:
        assert self._norm_starts is not None and self._orig_starts is not None
        seg = bisect_right(self._norm_starts, index) - 1
        return self._orig_starts[seg] + (index - self._norm_starts[seg])


def normalize(text: str, *, checked: bool = False) -> Normalized:
    """Normalise ``text``. ``checked`` says the caller already knows it needs normalising."""
    if not checked and not needs_normalizing(text):
        return Normalized(text, len(text))
    if _SPECIAL.search(text) is None:
        return _fold(Normalized(text, len(text)))
    return _fold(_strip(text))


def _strip(text: str) -> Normalized:
    pieces: list[str] = []
    hidden: dict[str, tuple[int, int]] = {}
    revealed: list[str] = []
    norm_starts, orig_starts = [0], [0]
    norm_len = 0
    last = 0
    for match in _SPECIAL.finditer(text):
        kind = match.lastgroup
        start, end = match.span()
        if start > last:
            pieces.append(text[last:start])
            norm_len += start - last
        last = end
        run = match.group()
        if kind == "tag":
            _note(hidden, TAG, len(run), start)
            for offset, ch in enumerate(run):
                code = ord(ch) - 0xE0000
                if 0x20 <= code <= 0x7E:  # printable ASCII, one for one
                    pieces.append(chr(code))
                    revealed.append(chr(code))
                    norm_len += 1
                else:  # language and cancel tags carry no text: drop them
                    norm_starts.append(norm_len)
                    orig_starts.append(start + offset + 1)
            continue
        if kind == "sur":
            _note(hidden, SURROGATE, len(run), start)
            pieces.append("\ufffd" * len(run))
            norm_len += len(run)
            continue
        if kind == "vs":
            # A single selector after an emoji is ordinary text; runs of them (or the supplementary
            # selectors) are how bytes get smuggled behind one visible character.
            if len(run) > 1 or any(ord(ch) > 0xFFFF for ch in run):
                _note(hidden, VARIATION, len(run), start)
        elif kind == "ansi":
            _note(hidden, ANSI, 1, start)
        elif kind == "zw":
            _note(hidden, ZERO_WIDTH, len(run), start)
        elif kind == "bidi":
            _note(hidden, BIDI, len(run), start)
        elif kind == "ctl":
            _note(hidden, CONTROL, len(run), start)
        norm_starts.append(norm_len)
        orig_starts.append(end)
    if last < len(text):
        pieces.append(text[last:])
    result = Normalized("".join(pieces), len(text), hidden, "".join(revealed))
    if len(norm_starts) > 1:
        result._norm_starts, result._orig_starts = _compact(norm_starts, orig_starts)
    return result


def _fold(result: Normalized) -> Normalized:
    text = result.text
    if text.isascii() or _FOLDABLE.search(text) is None:
        return result
    mixed = _MIXED.search(text)
    if mixed is not None:
        first = result.to_original(mixed.start(), mixed.end())[0]
        count = sum(1 for _ in _MIXED.finditer(text))
        _note(result.hidden, MIXED_SCRIPT, count, first)
    result.text = text.translate(_FOLD)
    return result


def _note(hidden: dict[str, tuple[int, int]], kind: str, count: int, index: int) -> None:
    seen = hidden.get(kind)
    hidden[kind] = (count, index) if seen is None else (seen[0] + count, seen[1])


def _compact(norm_starts: list[int], orig_starts: list[int]) -> tuple[list[int], list[int]]:
    """Drop breakpoints that start no characters (several removals in a row)."""
    out_n: list[int] = []
    out_o: list[int] = []
    for n, o in zip(norm_starts, orig_starts, strict=True):
        if out_n and out_n[-1] == n:
            out_o[-1] = o
        else:
            out_n.append(n)
            out_o.append(o)
    return out_n, out_o


def strip_hidden(text: str, *, reveal_tags: bool = True) -> str:
    """``text`` without invisible characters and escape sequences, for showing it to a model.

    Unlike :func:`normalize` this keeps every visible character as it is (no look-alike folding).
    Tag characters become the ASCII they encode when ``reveal_tags`` is set (so the hidden text
    can be seen, and flagged), and disappear otherwise."""
    if not needs_normalizing(text):
        return text

    def replace(match: re.Match[str]) -> str:
        kind, run = match.lastgroup, match.group()
        if kind == "tag":
            return "".join(chr(ord(ch) - 0xE0000) for ch in run if 0x20 <= ord(ch) - 0xE0000 <= 0x7E) \
                if reveal_tags else ""
        if kind == "sur":
            return "\ufffd" * len(run)
        if kind == "vs" and len(run) == 1 and ord(run) <= 0xFFFF:
            return run  # an ordinary emoji presentation selector
        return ""

    # Removing characters can bring single selectors together; a run of them is a payload again.
    return _VS_RUN.sub(lambda m: m.group()[0], _SPECIAL.sub(replace, text))
