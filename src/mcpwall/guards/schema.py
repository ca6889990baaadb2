"""The ``schema`` guard: ``tools/call`` arguments are validated before the upstream sees them.

Arguments are checked against the ``inputSchema`` of the definition the catalog holds for the
tool (``call.definition`` — the definition the client was shown and the ``pins`` guard
checked). Schemas are JSON Schema 2020-12 unless they declare another draft with ``$schema``.
Each schema is compiled once per (server, tool, schema hash) and kept in a bounded cache;
compilation refuses external ``$ref`` (nothing is ever fetched), oversized or deeply nested
documents, runaway ``anyOf``/``oneOf`` trees and over-long patterns, and bounds regex
backtracking (see :mod:`mcpwall.checks.schemas`).

A violation is answered as ``-32602`` with ``data.path`` naming the failing argument
(``/arguments/limit``), ``data.keyword`` and up to ``max_errors`` entries in ``data.errors``.
Messages never quote the rejected value. ``prompts/get`` arguments are checked against the
prompt's declared argument list (required names present, values are strings).
"""

from __future__ import annotations

from collections import OrderedDict
from itertools import islice
from typing import Any, Literal

import jsonschema_rs
from pydantic import Field

from mcpwall.checks.schemas import SchemaLimits, SchemaRejected, compile_schema, describe
from mcpwall.errors import INVALID_PARAMS
from mcpwall.gateway.call import Call
from mcpwall.pins.canonical import definition_hash
from mcpwall.pipeline.guard import Guard, GuardEnv, GuardSettings
from mcpwall.pipeline.verdict import PASS, Reject, Verdict

Compiled = jsonschema_rs.Validator | SchemaRejected


class SchemaSettings(GuardSettings):
    validate_formats: bool = Field(
        False, description="Also enforce 'format' (uri, email, date-time, …); JSON Schema treats it as a "
                           "hint by default.")
    on_unusable_schema: Literal["refuse", "pass"] = Field(
        "refuse", description="What to do with calls to a tool whose inputSchema is missing, unsafe or "
                              "cannot be compiled.")
    max_schema_bytes: int = Field(256 * 1024, ge=1024, description="Largest inputSchema compiled.")
    max_depth: int = Field(64, ge=4, le=1000, description="Deepest nesting accepted in a schema.")
    max_nodes: int = Field(20_000, ge=10, description="Most objects and arrays accepted in a schema.")
    max_branches: int = Field(512, ge=1, description="Most anyOf/oneOf/allOf entries in one schema.")
    max_errors: int = Field(10, ge=1, le=100, description="Violations reported in one refusal.")
    cache_size: int = Field(4096, ge=16, description="Compiled schemas kept in memory.")
    prompts: bool = Field(True, description="Check prompts/get arguments against the prompt's argument list.")


class SchemaGuard(Guard):
    name = "schema"
    Settings = SchemaSettings
    settings: SchemaSettings

    def __init__(self, settings: SchemaSettings, env: GuardEnv) -> None:
        super().__init__(settings, env)
        self.limits = SchemaLimits(max_bytes=settings.max_schema_bytes, max_depth=settings.max_depth,
                                   max_nodes=settings.max_nodes, max_branches=settings.max_branches)
        # (server, tool) -> (the schema object last seen, its compiled form): a call whose
        # catalog entry has not changed costs one identity check.
        self._by_tool: dict[tuple[str | None, str | None], tuple[Any, Compiled]] = {}
        self._by_hash: OrderedDict[str, Compiled] = OrderedDict()

    async def on_request(self, call: Call) -> Verdict:
        if call.direction != "client" or call.definition is None:
            return PASS
        if call.method == "tools/call":
            return self._check_tool(call, call.definition)
        if call.method == "prompts/get" and self.settings.prompts:
            return _check_prompt(call, call.definition)
        return PASS

    def _check_tool(self, call: Call, definition: dict[str, Any]) -> Verdict:
        tool = call.target or call.exposed_name or "?"
        compiled = self.compiled(call.server, call.target, definition.get("inputSchema"))
        if isinstance(compiled, SchemaRejected):
            if self.settings.on_unusable_schema == "pass":
                return PASS
            return Reject(f"the input schema of tool {tool!r} is unusable ({compiled.message})",
                          as_tool_error=True, findings=[{"rule": "schema.unusable", "tool": tool}])
        raw = call.params.get("arguments", {})
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            return _invalid(tool, [{"path": "/arguments", "keyword": "type", "message": "expected object"}])
        if compiled.is_valid(raw):
            return PASS
        errors = [describe(e, "/arguments") for e in islice(compiled.iter_errors(raw), self.settings.max_errors)]
        if not errors:  # is_valid and iter_errors disagreeing would be a library bug: fail closed
            errors = [{"path": "/arguments", "keyword": "unknown", "message": "arguments are invalid"}]
        return _invalid(tool, errors)

    def compiled(self, server: str | None, tool: str | None, schema: Any) -> Compiled:
        """The compiled validator (or the reason it cannot be had) for one tool's schema."""
        key = (server, tool)
        cached = self._by_tool.get(key)
        if cached is not None and cached[0] is schema:
            return cached[1]
        if schema is None:
            result: Compiled = SchemaRejected("the tool declares no inputSchema")
        else:
            result = self._compile_by_hash(schema)
        if len(self._by_tool) > self.settings.cache_size:
            self._by_tool.clear()
        self._by_tool[key] = (schema, result)
        return result

    def _compile_by_hash(self, schema: Any) -> Compiled:
        try:
            digest = definition_hash({"s": schema})
        except (TypeError, ValueError):
            digest = ""
        cached = self._by_hash.get(digest) if digest else None
        if cached is not None:
            self._by_hash.move_to_end(digest)
            return cached
        result: Compiled
        try:
            result = compile_schema(schema, self.limits, validate_formats=self.settings.validate_formats)
        except SchemaRejected as exc:
            result = exc
        if digest:
            self._by_hash[digest] = result
            if len(self._by_hash) > self.settings.cache_size:
                self._by_hash.popitem(last=False)
        return result


def _invalid(tool: str, errors: list[dict[str, Any]]) -> Reject:
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return Reject(f"Invalid arguments for tool {tool!r}: {first['path']}: {first['message']}{more}",
                  code=INVALID_PARAMS, as_tool_error=False,
                  data={"path": first["path"], "keyword": first["keyword"], "errors": errors},
                  findings=[{"rule": f"schema.{e['keyword']}", "path": e["path"]} for e in errors])


def _check_prompt(call: Call, definition: dict[str, Any]) -> Verdict:
    prompt = call.target or call.exposed_name or "?"
    raw = call.params.get("arguments", {})
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return _invalid(prompt, [{"path": "/arguments", "keyword": "type", "message": "expected object"}])
    errors: list[dict[str, Any]] = []
    declared = definition.get("arguments")
    for argument in declared if isinstance(declared, list) else []:
        if isinstance(argument, dict) and argument.get("required") is True and argument.get("name") not in raw:
            errors.append({"path": "/arguments", "keyword": "required", "property": argument.get("name"),
                           "message": f"missing required argument {argument.get('name')!r}"})
    for name, value in raw.items():
        if not isinstance(value, str):
            escaped = str(name).replace("~", "~0").replace("/", "~1")
            errors.append({"path": f"/arguments/{escaped}", "keyword": "type", "message": "expected string"})
    return _invalid(prompt, errors) if errors else PASS
