"""Bounded schema compilation and safe error descriptions (mcpwall.checks.schemas)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpwall.checks.schemas import SchemaLimits, SchemaRejected, check_bounds, compile_schema, describe, pointer


@pytest.mark.parametrize("ref", ["https://example.com/schema.json", "http://169.254.169.254/latest",
                                 "other.json", "file:///etc/passwd"])
def test_external_refs_are_refused(ref: str) -> None:
    with pytest.raises(SchemaRejected):
        compile_schema({"type": "object", "properties": {"a": {"$ref": ref}}})


def test_local_refs_and_declared_drafts_compile() -> None:
    validator = compile_schema({"$defs": {"n": {"type": "integer"}}, "type": "object",
                                "properties": {"n": {"$ref": "#/$defs/n"}}})
    assert validator.is_valid({"n": 1}) and not validator.is_valid({"n": "x"})
    draft7 = compile_schema({"$schema": "http://json-schema.org/draft-07/schema#",
                             "definitions": {"s": {"type": "string"}},
                             "properties": {"s": {"$ref": "#/definitions/s"}}})
    assert not draft7.is_valid({"s": 1})


def nest(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


@pytest.mark.parametrize(("schema", "limits"), [
    (nest(40), SchemaLimits(max_depth=20)),
    ({"anyOf": [{"type": "string"}] * 20}, SchemaLimits(max_branches=10)),
    ({"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(100)}}, SchemaLimits(max_nodes=50)),
    ({"type": "string", "pattern": "a" * 100}, SchemaLimits(max_pattern_chars=50)),
    ({"description": "x" * 5000}, SchemaLimits(max_bytes=1024)),
    ({"properties": {"a": {"$ref": "#"}}, "$defs": {f"d{i}": {"$ref": "#"} for i in range(20)}},
     SchemaLimits(max_refs=10)),
])
def test_oversized_and_pathological_schemas_are_refused(schema: dict[str, Any], limits: SchemaLimits) -> None:
    with pytest.raises(SchemaRejected):
        compile_schema(schema, limits)


def test_non_schema_documents_are_refused() -> None:
    with pytest.raises(SchemaRejected):
        check_bounds(["not", "a", "schema"], SchemaLimits())
    with pytest.raises(SchemaRejected):
        compile_schema({"type": 12})
    with pytest.raises(SchemaRejected):
        compile_schema({"type": "string", "pattern": "("})


def test_catastrophic_patterns_do_not_hang() -> None:
    validator = compile_schema({"type": "string", "pattern": "^(a+)+$"})
    assert not validator.is_valid("a" * 5000 + "!")


def test_descriptions_name_the_path_and_never_quote_the_value() -> None:
    secret = "sk-live-DO-NOT-ECHO-1234567890"
    validator = compile_schema({"type": "object", "required": ["q"], "additionalProperties": False,
                                "properties": {"limit": {"type": "integer", "maximum": 10},
                                               "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
                                               "a/b": {"type": "integer"}}})
    errors = [describe(e, "/arguments") for e in validator.iter_errors(
        {"limit": 99, "tags": ["a", secret], "a/b": secret, "zzz": 1})]
    by_path = {(e["path"], e["keyword"]): e for e in errors}
    assert ("/arguments/limit", "maximum") in by_path
    assert ("/arguments/tags/1", "enum") in by_path
    assert ("/arguments/a~1b", "type") in by_path
    assert ("/arguments", "required") in by_path and by_path[("/arguments", "required")]["property"] == "q"
    assert ("/arguments", "additionalProperties") in by_path
    assert all(secret not in e["message"] for e in errors)


def test_pointer_escapes_per_rfc6901() -> None:
    assert pointer(["a/b", "c~d", 0], "/arguments") == "/arguments/a~1b/c~0d/0"


json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=10),
                           lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=5), children, max_size=4), max_leaves=20)


@given(json_values)
def test_compile_schema_raises_only_schema_rejected(document: Any) -> None:
    try:
        validator = compile_schema(document)
    except SchemaRejected:
        return
    validator.is_valid({})
