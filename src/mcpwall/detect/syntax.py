"""The portable regular-expression subset every detection rule is written in.

Rules are written in Python ``re`` syntax and parsed once with the standard library's own parser.
The parse tree is checked against a subset that both engines evaluate identically, then rendered
to the PCRE dialect Hyperscan reads. Rendering from the tree, rather than handing Hyperscan the
source text, means the two engines can never disagree about what an escape or a class means.

The subset:

* literals, classes, ``.``, alternation, groups, greedy and lazy repetition — ASCII only;
* ``\\b`` and ``\\B`` are the only assertions: no ``^``/``$``/``\\A``/``\\Z`` (a scan joins many
  strings into one buffer, and these would change meaning there), no look-around, no
  back-references, no inline flags, no atomic groups or possessive repeats;
* every repetition is bounded and the longest possible match is at most :data:`MAX_WIDTH`
  characters, so a match can be confirmed from a bounded window around a prefilter hit;
* a pattern must not match the empty string.

Both engines run with ASCII semantics (``re.ASCII``; Hyperscan UTF-8 mode without UCP): ``\\w``,
``\\d``, ``\\s`` and ``\\b`` are ASCII, case-insensitivity folds ASCII letters only, and any
non-ASCII character is a non-word character that ``.`` and negated classes match.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any

_parser: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")

MAX_WIDTH = 2048
"""Longest match (in characters) a rule may produce."""

_MAX_CODEPOINT = 0x10FFFF
_SURROGATES = (0xD800, 0xDFFF)  # never present in scanned text (the normaliser replaces them)

# Above these bounds the Hyperscan rendering leaves the repetition open (a superset; see _render_item).
_LOOSE_LIMIT = 255
_LOOSE_SPAN = 48
_LOOSE_LOW = 32
_WIDE_LOOSE_LIMIT = 16
_NEGATED_CATEGORIES = frozenset({_c.CATEGORY_NOT_DIGIT, _c.CATEGORY_NOT_SPACE, _c.CATEGORY_NOT_WORD})

# Characters JSON text never carries raw inside a string, and their escapes.
_JSON_ESCAPED = (*range(0x20), 0x22, 0x5C)

_DIGIT = ((0x30, 0x39),)
_SPACE = ((0x09, 0x0D), (0x20, 0x20))
_WORD = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))


class PatternError(ValueError):
    """A rule pattern outside the portable subset, or not a valid pattern at all."""


@dataclass(frozen=True, slots=True)
class Portable:
    """A pattern both engines can run: the compiled ``re`` object and its PCRE rendering.

    ``pcre`` matches exactly what ``compiled`` matches, except that very wide bounded repetitions
    are left open-ended there: a superset, which is safe for a prefilter that ``re`` confirms."""

    source: str
    compiled: re.Pattern[str]
    pcre: str
    ignore_case: bool
    min_width: int
    max_width: int
    group_names: tuple[str, ...]
    json_pcre: str = ""

    """``json_pcre`` matches (a superset of) the same text after JSON string escaping, with word
    boundaries dropped: run over a serialised message it says whether any string in it could
    match, without walking the message."""


def compile_portable(source: str, *, ignore_case: bool = False) -> Portable:
    """Parse, check and render ``source``. Raises :class:`PatternError` with a readable reason."""
    if not isinstance(source, str) or not source:
        raise PatternError("the pattern is empty")
    if not source.isascii():
        raise PatternError("patterns must be ASCII; write other characters as \\uXXXX escapes")
    flags = re.ASCII | (re.IGNORECASE if ignore_case else 0)
    try:
        tree = _parser.parse(source, flags)
        compiled = re.compile(source, flags)
    except re.error as exc:
        raise PatternError(f"invalid pattern: {exc}") from None
    if tree.state.flags & ~flags:
        raise PatternError("inline flags are not supported; use the rule's ignore_case setting")
    pcre = _render(list(tree.data), ignore_case)
    low, high = tree.getwidth()
    if low == 0:
        raise PatternError("the pattern can match the empty string")
    if high > MAX_WIDTH:
        raise PatternError(f"the longest match would exceed {MAX_WIDTH} characters; bound every repetition")
    names = tuple(sorted(compiled.groupindex, key=compiled.groupindex.__getitem__))
    json_pcre = _render(list(tree.data), ignore_case, json=True)
    return Portable(source, compiled, pcre, ignore_case, low, high, names, json_pcre)


def _render(items: list[tuple[Any, Any]], fold: bool, json: bool = False) -> str:
    return "".join(_render_item(op, arg, fold, json) for op, arg in items)


def _render_item(op: Any, arg: Any, fold: bool, json: bool) -> str:
    # Case-insensitivity is spelled out ([Kk]) instead of using Hyperscan's caseless flag: the
    # result is the same under ASCII folding and compiles some thirty times faster.
    if op is _c.LITERAL:
        if fold and chr(arg).isalpha() and arg < 0x80:
            return _render_class([(op, arg)], fold, json)
        return _json_alternatives(_char(arg), [arg]) if json and arg in _JSON_ESCAPED else _char(arg)
    if op is _c.NOT_LITERAL:
        return _render_class([(_c.NEGATE, None), (_c.LITERAL, arg)], fold, json)
    if op is _c.ANY:
        return _json_alternatives("[^\\n]", [c for c in _JSON_ESCAPED if c != 0x0A]) if json else "[^\\n]"
    if op is _c.IN:
        return _render_class(arg, fold, json)
    if op is _c.BRANCH:
        return "(?:" + "|".join(_render(list(alt), fold, json) for alt in arg[1]) + ")"
    if op is _c.SUBPATTERN:
        _group, add_flags, del_flags, body = arg
        if add_flags or del_flags:
            raise PatternError("inline flags are not supported; use the rule's ignore_case setting")
        return "(?:" + _render(list(body), fold, json) + ")"
    if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
        low, high, body = arg
        if high is _c.MAXREPEAT or high >= _c.MAXREPEAT:
            raise PatternError("unbounded repetition (*, + or {n,}); give every repetition an upper bound")
        inner = "(?:" + _render(list(body), fold, json) + ")"
        if json and high > 1 and "\\x5c" in inner:
            # Counted repetitions of escape alternatives are what makes the JSON rendering slow to
            # compile; an open repetition is a superset and costs nothing.
            return f"{inner}{{{min(low, _LOOSE_LOW)},}}"
        if high > _LOOSE_LIMIT or high - low > _LOOSE_SPAN or (high > _WIDE_LOOSE_LIMIT and _is_wide(list(body))):
            # Exact large bounds over classes that span all of Unicode explode Hyperscan's
            # automata (minutes to compile). An open repetition with a small lower bound matches
            # a superset, which is all a prefilter needs: re confirms every hit exactly.
            return f"{inner}{{{min(low, _LOOSE_LOW)},}}"
        return inner + (f"{{{low}}}" if low == high else f"{{{low},{high}}}")
    if op is _c.AT:
        if json and arg in (_c.AT_BOUNDARY, _c.AT_NON_BOUNDARY):
            return ""  # an escape like \\n puts a word character where the text had none
        if arg is _c.AT_BOUNDARY:
            return "\\b"
        if arg is _c.AT_NON_BOUNDARY:
            return "\\B"
        raise PatternError("anchors (^, $, \\A, \\Z) are not supported; use \\b")
    if op is _c.CATEGORY:
        return _render_class([(op, arg)], fold, json)
    if op in (_c.ASSERT, _c.ASSERT_NOT):
        raise PatternError("look-around assertions are not supported")
    if op in (_c.GROUPREF, _c.GROUPREF_EXISTS):
        raise PatternError("back-references are not supported")
    raise PatternError(f"unsupported construct {op}")


def _is_wide(items: list[tuple[Any, Any]]) -> bool:
    """Can this sub-pattern match a non-ASCII character (a negated class, ``.``, …)?"""
    return any(_item_is_wide(op, arg) for op, arg in items)


def _item_is_wide(op: Any, arg: Any) -> bool:
    if op in (_c.ANY, _c.NOT_LITERAL):
        return True
    if op is _c.LITERAL:
        return bool(arg > 0x7F)
    if op is _c.IN:
        return any(member is _c.NEGATE or (member is _c.RANGE and value[1] > 0x7F)
                   or (member is _c.CATEGORY and value in _NEGATED_CATEGORIES) for member, value in arg)
    if op is _c.CATEGORY:
        return arg in _NEGATED_CATEGORIES
    if op is _c.BRANCH:
        return any(_is_wide(list(alt)) for alt in arg[1])
    if op is _c.SUBPATTERN:
        return _is_wide(list(arg[3]))
    if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
        return _is_wide(list(arg[2]))
    return False


def _render_class(items: list[tuple[Any, Any]], fold: bool = False, json: bool = False) -> str:
    negate = False
    ranges: list[tuple[int, int]] = []
    for op, arg in items:
        if op is _c.NEGATE:
            negate = True
        elif op is _c.LITERAL:
            ranges.append((arg, arg))
        elif op is _c.RANGE:
            ranges.append((arg[0], arg[1]))
        elif op is _c.CATEGORY:
            ranges.extend(_category(arg))
        else:
            raise PatternError(f"unsupported class member {op}")
    if fold:
        ranges.extend(_other_case(ranges))
    klass = pcre_class(ranges, negate=negate)
    if not json:
        return klass
    escaped = [c for c in _JSON_ESCAPED if any(lo <= c <= hi for lo, hi in ranges) != negate]
    return _json_alternatives(klass, escaped) if escaped else klass


def _json_alternatives(raw: str, codes: list[int]) -> str:
    """``raw`` or a JSON escape that may stand for one of ``codes`` (a small superset)."""
    options = [raw]
    if any(code < 0x20 for code in codes):
        options += ["\\x5c[bfnrt]", "\\x5cu00[01][0-9A-Fa-f]"]
    if 0x22 in codes:
        options.append("\\x5c\\x22")
    if 0x5C in codes:
        options.append("\\x5c\\x5c")
    return "(?:" + "|".join(options) + ")"


def _other_case(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in ranges:
        for first, last, shift in ((0x41, 0x5A, 0x20), (0x61, 0x7A, -0x20)):
            a, b = max(lo, first), min(hi, last)
            if a <= b:
                out.append((a + shift, b + shift))
    return out


def pcre_class(ranges: list[tuple[int, int]], *, negate: bool = False) -> str:
    """A PCRE character class for code point ranges (surrogates left out)."""
    merged = _without_surrogates(_merge(ranges))
    if not merged:
        raise PatternError("empty character class")
    body = "".join(_class_char(lo) if lo == hi else _class_char(lo) + "-" + _class_char(hi) for lo, hi in merged)
    return "[" + ("^" if negate else "") + body + "]"


def _category(category: Any) -> list[tuple[int, int]]:
    table = {
        _c.CATEGORY_DIGIT: (_DIGIT, False), _c.CATEGORY_NOT_DIGIT: (_DIGIT, True),
        _c.CATEGORY_SPACE: (_SPACE, False), _c.CATEGORY_NOT_SPACE: (_SPACE, True),
        _c.CATEGORY_WORD: (_WORD, False), _c.CATEGORY_NOT_WORD: (_WORD, True),
    }
    if category not in table:
        raise PatternError(f"unsupported class {category}")
    ranges, complement = table[category]
    return _complement(list(ranges)) if complement else list(ranges)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _complement(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in _merge(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= _MAX_CODEPOINT:
        out.append((nxt, _MAX_CODEPOINT))
    return out


def _without_surrogates(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    low, high = _SURROGATES
    out: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if hi < low or lo > high:
            out.append((lo, hi))
            continue
        if lo < low:
            out.append((lo, low - 1))
        if hi > high:
            out.append((high + 1, hi))
    return out


def _char(code: int) -> str:
    if chr(code).isalnum() and code < 0x80:
        return chr(code)
    return _hex(code)


def _class_char(code: int) -> str:
    return chr(code) if chr(code).isalnum() and code < 0x80 else _hex(code)


def _hex(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x80 else f"\\x{{{code:x}}}"
