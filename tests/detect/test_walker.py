"""The JSON walker: every string with its path, binary payloads skipped, replacement by path."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from mcpwall.detect.walker import Collected, iter_strings, render_path, replace_at

RESULT = {
    "content": [
        {"type": "text", "text": "hello"},
        {"type": "image", "mimeType": "image/png", "data": "iVBORw0KGgo="},
        {"type": "resource", "resource": {"uri": "file:///a.txt", "text": "inside", "mimeType": "text/plain"}},
        {"type": "resource", "resource": {"uri": "file:///b.bin", "blob": "AAEC"}},
    ],
    "structuredContent": {"rows": [{"name": "x", "n": 1}], "we ird": "k"},
    "isError": False,
}


def test_paths_and_skipped_binaries() -> None:
    found = {render_path(p): s for p, s in iter_strings(RESULT)}
    assert found["$.content[0].text"] == "hello"
    assert found["$.content[2].resource.text"] == "inside"
    assert found['$.structuredContent["we ird"]'] == "k"
    assert "$.content[1].data" not in found and "$.content[3].resource.blob" not in found


def test_collected_matches_iter_strings() -> None:
    collected = Collected(RESULT, ("r",))
    assert [(collected.path(i), s) for i, s in enumerate(collected.strings)] == \
        [(("r", *p), s) for p, s in iter_strings(RESULT)]


def test_replace_at_copies_only_the_path() -> None:
    out = replace_at(RESULT, {("content", 0, "text"): "bye"})
    assert out["content"][0]["text"] == "bye" and RESULT["content"][0]["text"] == "hello"
    assert out["structuredContent"] is RESULT["structuredContent"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=40)


@given(json_values)
def test_walker_never_crashes_and_replacement_keeps_shape(value: Any) -> None:
    items = list(iter_strings(value))
    replaced = replace_at(value, {path: "X" for path, _ in items})
    assert [p for p, _ in iter_strings(replaced)] == [p for p, _ in items]
    orjson.dumps(replaced)
    collected = Collected(value)
    assert collected.strings == [s for _, s in items]
