"""Hidden-text normalisation: what is removed, decoded, folded and reported, and offset mapping."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mcpwall.detect import normalize as n

TAGS = "".join(chr(0xE0000 + ord(c)) for c in "hidden")


def test_plain_text_is_untouched() -> None:
    result = n.normalize("plain ASCII\ttext\n")
    assert result.text == "plain ASCII\ttext\n" and not result.hidden and not result.changed


def test_each_kind_is_reported_with_count_and_first_position() -> None:
    text = "a\u200bb\u202ec\x1b[31md\x1b[0m" + TAGS + "\ufe00\ufe01" + "\x07" + "e"
    result = n.normalize(text)
    assert result.text == "abcdhiddene"
    assert result.hidden[n.ZERO_WIDTH] == (1, 1)
    assert result.hidden[n.BIDI] == (1, 3)
    assert result.hidden[n.ANSI] == (2, 5)
    assert result.hidden[n.TAG][0] == 6 and result.revealed == "hidden"
    assert n.VARIATION in result.hidden and n.CONTROL in result.hidden


def test_single_emoji_selector_is_not_reported() -> None:
    assert n.VARIATION not in n.normalize("I \u2764\ufe0f this").hidden


def test_lookalikes_and_full_width_fold_to_ascii() -> None:
    result = n.normalize("\uff49\uff47\uff4e\uff4f\uff52\uff45 \u0440\u0430\u0443\u0440\u0430l")
    assert result.text == "ignore paypal"
    assert n.MIXED_SCRIPT in result.hidden


def test_lone_surrogates_become_replacement_characters() -> None:
    result = n.normalize("a\ud800b")
    assert result.text == "a\ufffdb" and n.SURROGATE in result.hidden
    result.text.encode("utf-8")


def test_offsets_map_back_to_original_characters() -> None:
    text = "x\u200by \x1b[1mkey" + TAGS + "z"
    result = n.normalize(text)
    start = result.text.index("key")
    s, e = result.to_original(start, start + 3)
    assert text[s:e] == "key"
    start = result.text.index("hidden")
    s, e = result.to_original(start, start + 6)
    assert text[s:e] == TAGS


def test_strip_hidden_keeps_visible_text_as_is() -> None:
    assert n.strip_hidden("\uff49\u200bx" + TAGS) == "\uff49xhidden"
    assert n.strip_hidden("a" + TAGS, reveal_tags=False) == "a"


@given(st.text(max_size=200))
def test_normalize_never_crashes_and_maps_every_span(text: str) -> None:
    result = n.normalize(text)
    result.text.encode("utf-8")  # always valid UTF-8
    for start in range(len(result.text)):
        s, e = result.to_original(start, start + 1)
        assert 0 <= s < e <= len(text)


@given(st.lists(st.sampled_from(["a", "é", "\u200b", "\u202e", "\x1b[0m", "\x1b]0;t\x07", chr(0xE0041),
                                 chr(0xE0001), "\ufe0f", "\x00", "\ud800", "\uff49", "\u0430", " "]), max_size=40))
def test_normalize_on_adversarial_mixtures(parts: list[str]) -> None:
    text = "".join(parts)
    result = n.normalize(text)
    stripped = n.normalize(n.strip_hidden(text))
    assert set(stripped.hidden) <= {n.MIXED_SCRIPT}
    for start in range(len(result.text)):
        s, e = result.to_original(start, start + 1)
        assert 0 <= s < e <= len(text)
