"""The schema guard: arguments checked against the tool's inputSchema before routing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mcpwall.errors import INVALID_PARAMS
from mcpwall.gateway.call import ANONYMOUS, Call
from mcpwall.gateway.events import EventBus
from mcpwall.guards.schema import SchemaGuard, SchemaSettings
from mcpwall.pipeline.guard import GuardEnv
from mcpwall.pipeline.verdict import PASS, Reject

pytestmark = pytest.mark.anyio

SEARCH = {
    "name": "search",
    "inputSchema": {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": 100},
            "limit": {"type": "integer", "minimum": 1, "maximum": 50},
            "order": {"enum": ["asc", "desc"]},
            "filters": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}},
                                                   "required": ["field"]}},
        },
        "required": ["query"],
        "additionalProperties": False,
    },
}


def guard(**settings: Any) -> SchemaGuard:
    return SchemaGuard(SchemaSettings(**settings), GuardEnv(events=EventBus(), config_dir=Path(".")))


def call(arguments: Any, definition: dict[str, Any] | None = SEARCH, method: str = "tools/call",
         omit: bool = False) -> Call:
    params: dict[str, Any] = {"name": "srv__search"}
    if not omit:
        params["arguments"] = arguments
    c = Call(message={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, principal=ANONYMOUS,
             era="modern", protocol_version="2026-07-28", transport="http")
    c.server, c.target, c.definition = "srv", "search", definition
    return c


async def test_valid_arguments_pass() -> None:
    assert await guard().on_request(call({"query": "mcp", "limit": 5, "order": "asc",
                                          "filters": [{"field": "a"}]})) is PASS


@pytest.mark.parametrize(("arguments", "path", "keyword"), [
    ({"query": "x", "limit": 500}, "/arguments/limit", "maximum"),
    ({"query": "x", "limit": "5"}, "/arguments/limit", "type"),
    ({"query": "x", "order": "sideways"}, "/arguments/order", "enum"),
    ({"query": ""}, "/arguments/query", "minLength"),
    ({"query": "x" * 101}, "/arguments/query", "maxLength"),
    ({}, "/arguments", "required"),
    ({"query": "x", "extra": True}, "/arguments", "additionalProperties"),
    ({"query": "x", "filters": [{"field": "a"}, {}]}, "/arguments/filters/1", "required"),
    ([1, 2], "/arguments", "type"),
])
async def test_violations_are_invalid_params_naming_the_path(arguments: Any, path: str, keyword: str) -> None:
    verdict = await guard().on_request(call(arguments))
    assert isinstance(verdict, Reject)
    assert verdict.code == INVALID_PARAMS
    assert not verdict.as_tool_error
    assert verdict.data is not None
    assert (verdict.data["path"], verdict.data["keyword"]) == (path, keyword)


async def test_missing_arguments_are_validated_as_an_empty_object() -> None:
    verdict = await guard().on_request(call(None, omit=True))
    assert isinstance(verdict, Reject) and verdict.data is not None and verdict.data["keyword"] == "required"


async def test_refusals_never_echo_the_rejected_value() -> None:
    secret = "AKIAIOSFODNN7EXAMPLE-secret"
    verdict = await guard().on_request(call({"query": "x", "order": secret, "limit": secret}))
    assert isinstance(verdict, Reject)
    assert secret not in verdict.reason
    assert secret not in str(verdict.data)
    assert len(verdict.data["errors"]) == 2  # type: ignore[index]


async def test_error_count_is_capped() -> None:
    many = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(30)}}
    verdict = await guard(max_errors=3).on_request(call({f"p{i}": "x" for i in range(30)},
                                                        {"name": "search", "inputSchema": many}))
    assert isinstance(verdict, Reject) and verdict.data is not None and len(verdict.data["errors"]) == 3


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"$ref": "https://evil.example/schema.json"}}},
    {"type": "object", "anyOf": [{"type": "object"}] * 1000},
    None,
])
async def test_unusable_schemas_refuse_the_call_by_default(schema: Any) -> None:
    definition = {"name": "search", "inputSchema": schema} if schema is not None else {"name": "search"}
    verdict = await guard().on_request(call({"a": 1}, definition))
    assert isinstance(verdict, Reject) and verdict.as_tool_error
    assert await guard(on_unusable_schema="pass").on_request(call({"a": 1}, definition)) is PASS


async def test_formats_are_hints_unless_enabled() -> None:
    definition = {"name": "f", "inputSchema": {"type": "object", "properties": {"u": {"type": "string",
                                                                                     "format": "email"}}}}
    assert await guard().on_request(call({"u": "not an email"}, definition)) is PASS
    assert isinstance(await guard(validate_formats=True).on_request(call({"u": "not an email"}, definition)), Reject)


async def test_schemas_compile_once_per_content() -> None:
    g = guard()
    first = g.compiled("srv", "search", SEARCH["inputSchema"])
    assert g.compiled("srv", "search", SEARCH["inputSchema"]) is first
    copy = {**SEARCH["inputSchema"]}  # same content, new object: found by hash
    assert g.compiled("other", "search", copy) is first


async def test_calls_without_a_definition_are_left_to_the_router() -> None:
    assert await guard().on_request(call({"x": 1}, None)) is PASS


async def test_prompt_arguments_are_checked() -> None:
    prompt = {"name": "greet", "arguments": [{"name": "who", "required": True}, {"name": "tone"}]}
    assert await guard().on_request(call({"who": "ann"}, prompt, method="prompts/get")) is PASS
    missing = await guard().on_request(call({"tone": "warm"}, prompt, method="prompts/get"))
    assert isinstance(missing, Reject) and missing.data is not None and missing.data["keyword"] == "required"
    wrong = await guard().on_request(call({"who": 3}, prompt, method="prompts/get"))
    assert isinstance(wrong, Reject) and wrong.data is not None and wrong.data["path"] == "/arguments/who"
