"""JSON-RPC framing: shape checks, limits, and property tests over arbitrary input."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpwall.errors import INVALID_REQUEST, PARSE_ERROR, McpwallError, ProtocolError, TooLarge
from mcpwall.protocol import jsonrpc

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)


@pytest.mark.parametrize(("message", "kind"), [
    ({"jsonrpc": "2.0", "id": 1, "method": "ping"}, "request"),
    ({"jsonrpc": "2.0", "id": "a", "method": "tools/list", "params": {}}, "request"),
    ({"jsonrpc": "2.0", "method": "notifications/initialized"}, "notification"),
    ({"jsonrpc": "2.0", "id": 1, "result": {}}, "response"),
    ({"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "x"}}, "error"),
])
def test_classify_valid(message: dict[str, Any], kind: str) -> None:
    assert jsonrpc.classify(message) == kind


@pytest.mark.parametrize("message", [
    [],
    {"id": 1, "method": "ping"},
    {"jsonrpc": "1.0", "id": 1, "method": "ping"},
    {"jsonrpc": "2.0", "id": None, "method": "ping"},
    {"jsonrpc": "2.0", "id": True, "method": "ping"},
    {"jsonrpc": "2.0", "id": 1.5, "method": "ping"},
    {"jsonrpc": "2.0", "id": 1, "method": ""},
    {"jsonrpc": "2.0", "id": 1, "method": "x", "params": [1]},
    {"jsonrpc": "2.0", "id": 1, "method": "x", "result": {}},
    {"jsonrpc": "2.0", "id": 1},
    {"jsonrpc": "2.0", "id": 1, "result": {}, "error": {"code": 1, "message": "x"}},
    {"jsonrpc": "2.0", "id": 1, "error": {"code": "1", "message": "x"}},
    {"jsonrpc": "2.0", "id": 1, "result": []},
    {"jsonrpc": "2.0", "method": "x", "params": "y"},
])
def test_classify_rejects_bad_shapes(message: Any) -> None:
    with pytest.raises(ProtocolError) as err:
        jsonrpc.classify(message)
    assert err.value.code == INVALID_REQUEST


def test_decode_limits() -> None:
    limits = jsonrpc.Limits(max_bytes=100, max_depth=3)
    with pytest.raises(TooLarge):
        jsonrpc.decode(b"[" + b"1," * 60 + b"1]", limits)
    with pytest.raises(ProtocolError) as deep:
        jsonrpc.decode(b"[[[[1]]]]", limits)
    assert deep.value.code == INVALID_REQUEST
    assert jsonrpc.decode(b"[[[1]]]", limits) == [[[1]]]
    with pytest.raises(McpwallError) as bad:
        jsonrpc.decode(b"{nope", limits)
    assert bad.value.code == PARSE_ERROR


def test_deep_nesting_does_not_exhaust_the_stack() -> None:
    data = b"[" * 5000 + b"]" * 5000
    with pytest.raises(ProtocolError):
        jsonrpc.decode(data, jsonrpc.Limits(max_bytes=1 << 20, max_depth=64))


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_decode_never_raises_anything_but_protocol_errors(data: bytes) -> None:
    try:
        value = jsonrpc.decode(data)
    except McpwallError as exc:
        assert exc.code in (PARSE_ERROR, INVALID_REQUEST)
        return
    try:
        jsonrpc.classify(value)
    except ProtocolError as exc:
        assert exc.code == INVALID_REQUEST


@settings(max_examples=300)
@given(json_values)
def test_depth_matches_a_recursive_definition(value: Any) -> None:
    def depth(v: Any) -> int:
        if isinstance(v, dict):
            return 1 + max((depth(c) for c in v.values()), default=0)
        if isinstance(v, list):
            return 1 + max((depth(c) for c in v), default=0)
        return 0

    assert jsonrpc.nesting_depth(value, 10_000) == depth(value)


@settings(max_examples=200)
@given(st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=10)), st.text(min_size=1, max_size=20),
       json_values)
def test_encode_decode_round_trip(rid: Any, method: str, params: Any) -> None:
    message = jsonrpc.request(rid, method, params if isinstance(params, dict) else None)
    assert jsonrpc.decode(jsonrpc.encode(message), jsonrpc.Limits(max_depth=1000)) == message
    assert jsonrpc.classify(orjson.loads(jsonrpc.encode(message))) == "request"
