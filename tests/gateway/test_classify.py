"""Tool labels: inference from names, annotations and schemas; operator overrides."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpwall.gateway.classify import (
    CAPABILITY_LABELS,
    LABEL_PATTERN,
    ToolLabeler,
    check_label_list,
    infer_labels,
    resource_labels,
    tokens,
)


@pytest.mark.parametrize(("server", "tool", "expected"), [
    ("fs", "read_file", {"read", "private"}),
    ("filesystem", "read_text_file", {"read", "private"}),
    ("mail", "send_email", {"write", "egress"}),
    ("mail", "read_email", {"read", "private", "untrusted"}),
    ("github", "get_issue", {"read", "untrusted"}),
    ("github", "create_issue", {"write", "egress"}),
    ("fs", "delete_file", {"write", "destructive"}),
    ("vault", "read_secret", {"read", "private", "secret"}),
    ("iam", "list_roles", {"read"}),
    ("iam", "grant_role", {"write", "admin"}),
    ("slack", "post_message", {"write", "egress"}),
    ("everything", "echo", set()),
])
def test_names_infer_labels(server: str, tool: str, expected: set[str]) -> None:
    assert infer_labels(tool, server=server) == expected


def test_a_url_argument_makes_a_fetch_tool_egress_and_untrusted() -> None:
    definition = {"name": "get", "inputSchema": {"type": "object", "properties": {"url": {"type": "string"}}}}
    assert {"egress", "untrusted"} <= infer_labels("get", definition, server="x")


def test_tokens_split_camel_case_snake_case_and_plurals() -> None:
    assert tokens("readTextFiles") == ("read", "text", "file")
    assert tokens("HTTPRequest-send_emails") == ("http", "request", "send", "email")


def test_annotations_add_labels_but_never_remove_them() -> None:
    lying = {"annotations": {"readOnlyHint": True, "openWorldHint": False, "destructiveHint": False}}
    assert {"write", "destructive"} <= infer_labels("delete_file", lying, server="fs")
    assert {"write", "egress"} <= infer_labels("send_email", lying, server="mail")
    honest = {"annotations": {"readOnlyHint": False, "destructiveHint": True, "openWorldHint": True}}
    assert {"write", "destructive", "egress"} <= infer_labels("frobnicate", honest, server="x")


def test_open_world_read_only_tools_are_untrusted_sources() -> None:
    definition = {"annotations": {"readOnlyHint": True, "openWorldHint": True}}
    assert {"read", "egress", "untrusted"} <= infer_labels("lookup", definition, server="x")


def test_resource_labels_follow_the_uri_scheme() -> None:
    assert resource_labels("file:///home/a/notes.txt") == {"private"}
    assert resource_labels("https://example.com/page") == {"untrusted"}
    assert resource_labels("test://static") == set()


def test_overrides_replace_or_adjust_inferred_labels() -> None:
    labeler = ToolLabeler({"web__*": ["+private", "-egress"], "notes__save": ["egress"], "*__echo": ["+secret"]})
    fetched = labeler.tool(exposed="web__fetch", target="fetch", server="web", definition=None)
    assert fetched == {"read", "untrusted", "private"}
    assert labeler.tool(exposed="notes__save", target="save", server="notes", definition=None) == {"egress"}
    # ``secret`` implies ``private``.
    assert labeler.tool(exposed="x__echo", target="echo", server="x", definition=None) == {"secret", "private"}


def test_overrides_match_the_upstream_name_and_resource_uris() -> None:
    labeler = ToolLabeler({"lookup": ["untrusted"], "file:///srv/public/*": ["-private"]})
    assert labeler.tool(exposed="a__lookup", target="lookup", server="a", definition=None) == {"untrusted"}
    assert labeler.resource("file:///srv/public/readme") == frozenset()
    assert labeler.resource("file:///home/x") == {"private"}


def test_label_lists_are_validated() -> None:
    assert check_label_list(["egress", "+pii", "-private"]) == ["egress", "+pii", "-private"]
    with pytest.raises(ValueError, match="not a label"):
        check_label_list(["Bad Label"])


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                   max_size=4), max_leaves=20)


@given(name=st.text(max_size=80), server=st.text(max_size=30), definition=st.dictionaries(
    st.sampled_from(["annotations", "inputSchema", "name", "description"]), _json, max_size=4))
def test_inference_never_fails_on_untrusted_definitions(name: str, server: str, definition: dict[str, Any]) -> None:
    labels = infer_labels(name, definition, server=server)
    assert all(LABEL_PATTERN.match(label) for label in labels)
    assert labels <= CAPABILITY_LABELS | {"untrusted", "private", "secret"}


@given(uri=st.text(max_size=120))
def test_resource_labels_never_fail(uri: str) -> None:
    assert resource_labels(uri) <= {"untrusted", "private", "secret"}
