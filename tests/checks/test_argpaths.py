"""Argument paths and tool globs from the config (mcpwall.checks.argpaths)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mcpwall.checks.argpaths import select, split_path, strings, tool_matches

ARGS = {"path": "a", "opts": {"cwd": "b", "list": ["c", "d", 3]}, "jobs": [{"src": "e"}, {"src": 1}, {"x": "f"}],
        "a/b": {"c~d": "g"}}


def test_dotted_paths_and_wildcards() -> None:
    assert list(select(ARGS, "path")) == [("/arguments/path", "a")]
    assert list(select(ARGS, "opts.cwd")) == [("/arguments/opts/cwd", "b")]
    assert list(strings(ARGS, "jobs[*].src")) == [("/arguments/jobs/0/src", "e")]
    assert list(strings(ARGS, "jobs.*.src")) == [("/arguments/jobs/0/src", "e")]
    assert list(strings(ARGS, "opts.list")) == [("/arguments/opts/list/0", "c"), ("/arguments/opts/list/1", "d")]
    assert list(strings(ARGS, "opts.list.1")) == [("/arguments/opts/list/1", "d")]
    assert list(strings(ARGS, "a/b.c~d")) == [("/arguments/a~1b/c~0d", "g")]
    assert list(select(ARGS, "missing.deeper")) == []
    assert split_path("a[*].b") == ["a", "*", "b"]


def test_tool_globs_match_either_name() -> None:
    assert tool_matches("files__*", ("files__read", "read"))
    assert tool_matches("read", ("files__read", "read"))
    assert not tool_matches("git__*", ("files__read", None))


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                           max_leaves=15)


@given(json_values, st.text(alphabet="ab*.[]0", max_size=12))
def test_select_is_total_and_points_at_what_it_returns(arguments: Any, path: str) -> None:
    document = {"root": arguments}
    for pointer, value in select(document, path):
        node: Any = document
        for token in pointer.split("/")[2:]:
            token = token.replace("~1", "/").replace("~0", "~")
            node = node[int(token)] if isinstance(node, list) else node[token]
        assert node is value
