"""Hypothesis strategies for hostile JSON-RPC traffic, shared by the front and upstream fuzz tests.

Messages look like JSON-RPC 2.0 / MCP but put wrong types into any field: ids that are huge,
fractional, null, boolean or structured; methods that are not strings; params that are not
objects, nest deeper than the gateway's limit, or carry malformed ``_meta``. The tool, prompt
and resource names are those of the bundled demo upstream (``python -m mcpwall.demo.server``).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
ids = st.one_of(st.integers(min_value=-(2**63), max_value=2**64 - 1), st.text(max_size=30),
                st.sampled_from([0, -1, 2**53 + 1, 2**63, 2**64 - 1, "", "mcpwall-s1", None, True, 1.5, 10**30]),
                json_values)
METHODS = ["initialize", "ping", "tools/list", "tools/call", "prompts/list", "prompts/get", "resources/list",
           "resources/read", "resources/templates/list", "resources/subscribe", "resources/unsubscribe",
           "completion/complete", "logging/setLevel", "server/discover", "notifications/initialized",
           "notifications/cancelled", "notifications/roots/list_changed", "notifications/progress",
           "sampling/createMessage", "nope/nope", "", "tools/call/", "TOOLS/CALL"]
TOOL_NAMES = ["demo__echo", "demo__add", "demo__read_file", "demo__nope", "echo", "demo__", "__echo", "demo____echo"]
metas = st.one_of(st.just(META), st.just({}), json_values,
                  st.fixed_dictionaries({}, optional={
                      "io.modelcontextprotocol/protocolVersion": st.one_of(
                          st.sampled_from([MODERN, "2025-11-25", "2025-03-26", "1999-01-01"]), json_values),
                      "io.modelcontextprotocol/clientCapabilities": st.one_of(st.just({}), json_values),
                      "io.modelcontextprotocol/logLevel": json_values,
                      "progressToken": st.one_of(st.text(max_size=10), json_values)}))


def _deep(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = {"a": value} if i % 2 else [value]
    return value


method_params: dict[str, st.SearchStrategy[Any]] = {
    "tools/call": st.fixed_dictionaries({}, optional={
        "name": st.one_of(st.sampled_from(TOOL_NAMES), json_values),
        "arguments": st.one_of(st.fixed_dictionaries({"text": st.text(max_size=30)}),
                               st.fixed_dictionaries({"a": json_scalars, "b": json_scalars}), json_values)}),
    "prompts/get": st.fixed_dictionaries({}, optional={
        "name": st.one_of(st.sampled_from(["demo__summarize", "summarize", "demo__nope"]), json_values),
        "arguments": st.one_of(st.fixed_dictionaries({"topic": st.text(max_size=10)}), json_values)}),
    "resources/read": st.fixed_dictionaries({}, optional={
        "uri": st.one_of(st.sampled_from(["demo://readme", "demo://nope", "file:///etc/passwd", ""]), json_values)}),
    "resources/subscribe": st.fixed_dictionaries({}, optional={"uri": st.one_of(st.just("demo://readme"),
                                                                                json_values)}),
    "completion/complete": st.fixed_dictionaries({}, optional={
        "ref": st.one_of(st.fixed_dictionaries({"type": st.sampled_from(["ref/prompt", "ref/resource", "x"]),
                                                "name": st.one_of(st.just("demo__summarize"), json_values),
                                                "uri": st.one_of(st.just("demo://readme"), json_values)}),
                         json_values),
        "argument": json_values}),
    "tools/list": st.fixed_dictionaries({}, optional={
        "cursor": st.one_of(st.text(max_size=40), st.sampled_from(["e30.AAAAAAAAAAAAAAAAAAAAAA", "a.b", "."]),
                            json_values)}),
    "initialize": st.fixed_dictionaries({}, optional={
        "protocolVersion": st.one_of(st.sampled_from(["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05",
                                                      MODERN]), json_values),
        "capabilities": st.one_of(st.just({}), json_values), "clientInfo": json_values}),
    "logging/setLevel": st.fixed_dictionaries({"level": json_values}),
    "notifications/cancelled": st.fixed_dictionaries({"requestId": st.one_of(ids, json_values)},
                                                     optional={"reason": json_values}),
}


@st.composite
def params_for(draw: st.DrawFn, method: Any) -> Any:
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(json_values)  # wrong type (or any dict)
    if choice == 1:
        return {"a": _deep(draw(st.integers(40, 120)))}
    known = method_params.get(method) if isinstance(method, str) else None
    params = dict(draw(known if known is not None else st.dictionaries(st.text(max_size=8), json_values, max_size=3)))
    meta_choice = draw(st.integers(0, 3))
    if meta_choice < 2:
        params["_meta"] = draw(metas) if meta_choice else META
    return params


@st.composite
def messages(draw: st.DrawFn) -> Any:
    """A JSON-RPC-looking message with wrong types sprinkled into any field."""
    method = draw(st.one_of(st.sampled_from(METHODS), st.text(max_size=20), json_values))
    message: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        message["jsonrpc"] = "2.0"
    elif draw(st.booleans()):
        message["jsonrpc"] = draw(st.one_of(st.sampled_from(["1.0", 2.0, "2.0 ", None]), json_values))
    shape = draw(st.sampled_from(["request", "request", "request", "notification", "response", "error"]))
    if shape != "notification":
        message["id"] = draw(ids) if draw(st.integers(0, 3)) == 0 else draw(st.integers(-5, 10**6))
    if shape in ("request", "notification"):
        message["method"] = method
        if draw(st.integers(0, 5)):
            message["params"] = draw(params_for(method))
    elif shape == "response":
        message["result"] = draw(st.one_of(st.just({}), json_values))
    else:
        message["error"] = draw(st.one_of(st.fixed_dictionaries({"code": st.integers(), "message": st.text()}),
                                          json_values))
    if draw(st.integers(0, 15)) == 0:  # both a request and a response
        message["result"] = {}
    return message




@st.composite
def notification(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed client notification whose params are fuzzed (cancellations with odd ids)."""
    method = draw(st.sampled_from(["notifications/cancelled", "notifications/cancelled", "notifications/initialized",
                                   "notifications/roots/list_changed", "notifications/progress"]))
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if draw(st.integers(0, 5)):
        message["params"] = draw(params_for(method))
    return message


@st.composite
def legacy_request(draw: st.DrawFn) -> dict[str, Any]:
    """A plausible legacy request (the arguments may still be hostile)."""
    method = draw(st.sampled_from(["tools/call", "tools/list", "prompts/get", "resources/read", "ping",
                                   "completion/complete", "logging/setLevel", "resources/subscribe",
                                   "resources/unsubscribe", "prompts/list", "initialize"]))
    return {"jsonrpc": "2.0", "id": draw(st.one_of(st.integers(0, 10**6), st.text(max_size=8))),
            "method": method, "params": draw(method_params.get(method, st.just({})))}


@st.composite
def modern_request(draw: st.DrawFn) -> dict[str, Any]:
    """A valid-looking 2026-07-28 request, then up to two mutations of its id or ``_meta``."""
    method = draw(st.sampled_from(["tools/call", "tools/list", "prompts/get", "resources/read", "server/discover",
                                   "prompts/list", "ping", "initialize", "completion/complete"]))
    params = dict(draw(method_params.get(method, st.just({}))))
    params["_meta"] = dict(META)
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": draw(st.integers(0, 10**9)), "method": method, "params": params}
    for _ in range(draw(st.integers(0, 2))):
        target = draw(st.sampled_from(["meta", "id", "version"]))
        if target == "meta":
            params["_meta"][draw(st.sampled_from(list(META)))] = draw(json_values)
        elif target == "id":
            body["id"] = draw(ids)
        else:
            params["_meta"]["io.modelcontextprotocol/protocolVersion"] = draw(st.sampled_from(
                ["2025-11-25", "2027-01-01", MODERN]))
    return body


def dumps(value: Any) -> bytes:
    """Serialize with the stdlib encoder: it writes integers orjson refuses, as a hostile peer would."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
