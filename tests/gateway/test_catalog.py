"""Catalog: namespacing, routing by name and URI, integrity-protected cursors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpwall.errors import INVALID_PARAMS, InvalidParams
from mcpwall.gateway.catalog import Catalog


def catalog() -> Catalog:
    cat = Catalog({"fs": True, "raw": False}, "__", secret=b"k" * 32)
    cat.remember("raw", "tools", [{"name": "search"}], replace=True)
    cat.remember("fs", "resourceTemplates", [{"uriTemplate": "file:///{path}"}], replace=True)
    cat.remember("raw", "resources", [{"uri": "mem://a"}], replace=True)
    return cat


def test_names_route_to_their_upstream() -> None:
    cat = catalog()
    assert cat.expose("fs", "read") == "fs__read"
    assert cat.expose("raw", "search") == "search"
    assert cat.resolve("tools", "fs__read") == ("fs", "read")
    assert cat.resolve("tools", "fs__a__b") == ("fs", "a__b")
    assert cat.resolve("tools", "search") == ("raw", "search")
    assert cat.resolve("tools", "unknown") is None
    assert cat.resolve("tools", "fs__") is None
    assert cat.expose_item("fs", "tools", {"name": "read", "x": 1}) == {"name": "fs__read", "x": 1}


def test_resources_route_by_uri_and_template() -> None:
    cat = catalog()
    assert cat.resource_owner("mem://a") == "raw"
    assert cat.resource_owner("file:///etc") == "fs"
    assert cat.resource_owner("other://x") is None


def test_cursor_round_trip_and_binding() -> None:
    cat = catalog()
    cursor = cat.mint_cursor("tools", "alice", {"fs": "up-2", "raw": None})
    assert cat.parse_cursor(cursor, "tools", "alice") == {"fs": "up-2", "raw": None}
    for kind, principal in (("prompts", "alice"), ("tools", "bob")):
        with pytest.raises(InvalidParams):
            cat.parse_cursor(cursor, kind, principal)
    other = Catalog({"fs": True, "raw": False}, "__", secret=b"x" * 32)
    with pytest.raises(InvalidParams):
        other.parse_cursor(cursor, "tools", "alice")


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=200), st.integers(), st.none()))
def test_forged_cursors_are_invalid_params(cursor: object) -> None:
    with pytest.raises(InvalidParams) as err:
        catalog().parse_cursor(cursor, "tools", "alice")
    assert err.value.code == INVALID_PARAMS


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=255))
def test_any_bit_flip_is_detected(position: int, value: int) -> None:
    cat = catalog()
    cursor = cat.mint_cursor("tools", "alice", {"fs": "p"})
    index = position % len(cursor)
    forged = cursor[:index] + chr(value % 94 + 33) + cursor[index + 1:]
    if forged == cursor:
        return
    with pytest.raises(InvalidParams):
        cat.parse_cursor(forged, "tools", "alice")


def test_template_matching_is_linear_on_hostile_pairs() -> None:
    # A regex with many adjacent variables backtracks exponentially on a failing URI; the
    # matcher does not (the suite's per-test timeout would catch a regression).
    cat = Catalog({"up": True}, "__", secret=b"k" * 32)
    template = "x" + "-".join(f"{{v{i}}}" for i in range(30)) + "/end"
    cat.remember("up", "resourceTemplates", [{"uriTemplate": template}], replace=True)
    assert cat.resource_owner("x" + "-" * 5000 + "!") is None
    assert cat.resource_owner("x" + "-".join("a" * 30) + "/end") == "up"


@pytest.mark.parametrize(("template", "uri", "matches"), [
    ("file:///{path}", "file:///etc", True),
    ("file:///{path}", "file:///a/b", False),
    ("file:///{+path}", "file:///a/b", True),
    ("test://template/{id}/data", "test://template/42/data", True),
    ("test://template/{id}/data", "test://template//data", False),
    ("mem://{a}-{b}", "mem://x-y", True),
    ("mem://{a}-{b}", "mem://x", False),
])
def test_template_semantics(template: str, uri: str, matches: bool) -> None:
    cat = Catalog({"up": True}, "__", secret=b"k" * 32)
    cat.remember("up", "resourceTemplates", [{"uriTemplate": template}], replace=True)
    assert (cat.resource_owner(uri) == "up") is matches
