"""The portable pattern subset: what is accepted, and how it renders for Hyperscan."""

from __future__ import annotations

import re

import pytest

from mcpwall.detect.syntax import MAX_WIDTH, PatternError, compile_portable


@pytest.mark.parametrize(("pattern", "reason"), [
    ("a+", "unbounded"), ("a*", "unbounded"), ("a{2,}", "unbounded"),
    ("^abc", "anchors"), ("abc$", "anchors"), (r"\Aabc", "anchors"),
    ("a(?=b)", "look-around"), ("(?<!a)b", "look-around"),
    (r"(a)\1", "back-references"), ("(?i)abc", "inline flags"), ("(?i:abc)", "inline flags"),
    ("a?", "empty string"), ("é", "ASCII"), ("(", "invalid pattern"),
    (f"a{{{MAX_WIDTH + 1}}}", "exceed"),
])
def test_rejected(pattern: str, reason: str) -> None:
    with pytest.raises(PatternError, match=reason):
        compile_portable(pattern)


def test_rendering_spells_out_classes_and_case() -> None:
    portable = compile_portable(r"\bab[c-e]\d\s\S.x{2,3}", ignore_case=True)
    assert portable.pcre.startswith(r"\b[Aa][Bb][C-Ec-e][0-9][\x09-\x0d\x20]")
    assert portable.pcre.endswith(r"[^\n](?:[Xx]){2,3}")
    assert portable.compiled.flags & re.ASCII and portable.compiled.flags & re.IGNORECASE
    assert (portable.min_width, portable.max_width) == (9, 10)


def test_wide_repeats_are_left_open_for_the_prefilter() -> None:
    portable = compile_portable(r"key=[^\s]{8,200}")
    assert portable.pcre.endswith("{8,}")
    assert portable.max_width == 204  # the exact bound still rules the re side


def test_named_groups_are_kept_for_re() -> None:
    assert compile_portable(r"(?P<secret>[a-z]{4})-x").group_names == ("secret",)
