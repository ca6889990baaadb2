"""Compile JSON Schemas from untrusted upstreams safely, and describe violations safely.

A tool's ``inputSchema`` is written by the upstream, so compiling it is itself an attack
surface: remote ``$ref`` (SSRF and a dependency on someone else's server), huge or deeply
nested documents, combinatorial ``anyOf``/``oneOf`` trees, and regular expressions built to
backtrack. :func:`compile_schema` checks the document's size and shape first, refuses every
reference it cannot resolve inside the document itself, and bounds regex backtracking.

:func:`describe` turns a validation error into ``{path, keyword, message}`` without quoting
the offending value, so refusals and audit records never echo what the caller sent (which may
be a secret).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import orjson

COMPOSITION_KEYWORDS = ("anyOf", "oneOf", "allOf")


@dataclass(frozen=True, slots=True)
class SchemaLimits:
    max_bytes: int = 256 * 1024
    max_depth: int = 64
    max_nodes: int = 20_000
    max_branches: int = 512  # all anyOf/oneOf/allOf entries together
    max_refs: int = 1_000
    max_pattern_chars: int = 2_000
    regex_backtrack_limit: int = 100_000


class SchemaRejected(Exception):
    """A schema that is unsafe or impossible to compile. ``message`` is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def refuse_retrieval(uri: str) -> Any:
    """A ``$ref`` retriever that never fetches: schemas must be self-contained."""
    raise SchemaRejected(f"schema references an external document ({uri[:200]})")


def check_bounds(schema: Any, limits: SchemaLimits) -> None:
    """Raise :class:`SchemaRejected` when the document is too large or too complex."""
    if not isinstance(schema, dict | bool):
        raise SchemaRejected("schema must be an object or a boolean")
    if len(orjson.dumps(schema)) > limits.max_bytes:
        raise SchemaRejected(f"schema is larger than {limits.max_bytes} bytes")
    nodes = branches = refs = 0
    stack: list[tuple[Any, int]] = [(schema, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limits.max_depth:
            raise SchemaRejected(f"schema is nested deeper than {limits.max_depth} levels")
        nodes += 1
        if nodes > limits.max_nodes:
            raise SchemaRejected(f"schema has more than {limits.max_nodes} nodes")
        if isinstance(node, dict):
            for keyword in COMPOSITION_KEYWORDS:
                value = node.get(keyword)
                if isinstance(value, list):
                    branches += len(value)
            if isinstance(node.get("$ref"), str) or isinstance(node.get("$dynamicRef"), str):
                refs += 1
            pattern = node.get("pattern")
            if isinstance(pattern, str) and len(pattern) > limits.max_pattern_chars:
                raise SchemaRejected("schema has an over-long pattern")
            pattern_properties = node.get("patternProperties")
            if isinstance(pattern_properties, dict) and any(
                    len(key) > limits.max_pattern_chars for key in pattern_properties):
                raise SchemaRejected("schema has an over-long pattern")
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    if branches > limits.max_branches:
        raise SchemaRejected(f"schema has more than {limits.max_branches} anyOf/oneOf/allOf branches")
    if refs > limits.max_refs:
        raise SchemaRejected(f"schema has more than {limits.max_refs} references")


def compile_schema(schema: Any, limits: SchemaLimits | None = None, *,
                   validate_formats: bool = False) -> jsonschema_rs.Validator:
    """A compiled validator for ``schema`` (draft from ``$schema``, 2020-12 by default)."""
    limits = limits or SchemaLimits()
    check_bounds(schema, limits)
    options = jsonschema_rs.FancyRegexOptions(backtrack_limit=limits.regex_backtrack_limit,
                                              size_limit=1 << 20, dfa_size_limit=1 << 20)
    try:
        return jsonschema_rs.validator_for(schema, retriever=refuse_retrieval,
                                           validate_formats=validate_formats, pattern_options=options)
    except SchemaRejected:
        raise
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "not present in a registry" in first:
            raise SchemaRejected("schema references a document outside itself; "
                                 "external $ref is never followed") from None
        raise SchemaRejected(f"schema cannot be compiled: {first[:200]}") from None


def pointer(parts: list[str | int], prefix: str = "") -> str:
    """An RFC 6901 JSON pointer for ``parts`` under ``prefix``."""
    escaped = (str(p).replace("~", "~0").replace("/", "~1") for p in parts)
    return prefix + "".join("/" + p for p in escaped)


def describe(error: jsonschema_rs.ValidationError, prefix: str = "") -> dict[str, Any]:
    """``{path, keyword, message}`` for one violation, never quoting the offending value."""
    kind = error.kind
    keyword = kind.name
    facts = kind.as_dict()
    out: dict[str, Any] = {"path": pointer(error.instance_path, prefix), "keyword": keyword}
    limit = facts.get("limit")
    messages: dict[str, Callable[[], str]] = {
        "type": lambda: "expected " + " or ".join(facts.get("types", [])),
        "required": lambda: f"missing required property {facts.get('property')!r}",
        "additionalProperties": lambda: "unexpected properties: " + ", ".join(facts.get("unexpected", [])),
        "unevaluatedProperties": lambda: "unexpected properties: " + ", ".join(facts.get("unexpected", [])),
        "enum": lambda: "not one of the allowed values",
        "const": lambda: "not the required constant value",
        "minimum": lambda: f"must be at least {limit}",
        "maximum": lambda: f"must be at most {limit}",
        "exclusiveMinimum": lambda: f"must be greater than {limit}",
        "exclusiveMaximum": lambda: f"must be less than {limit}",
        "minLength": lambda: f"must be at least {limit} characters long",
        "maxLength": lambda: f"must be at most {limit} characters long",
        "minItems": lambda: f"must have at least {limit} items",
        "maxItems": lambda: f"must have at most {limit} items",
        "minProperties": lambda: f"must have at least {limit} properties",
        "maxProperties": lambda: f"must have at most {limit} properties",
        "pattern": lambda: f"does not match the pattern {facts.get('pattern')!r}",
        "format": lambda: f"is not a valid {facts.get('format')}",
        "multipleOf": lambda: f"must be a multiple of {facts.get('multiple_of')}",
        "uniqueItems": lambda: "items must be unique",
        "anyOf": lambda: "does not match any of the allowed forms",
        "oneOf": lambda: ("matches more than one of the exclusive forms"
                          if type(kind).__name__ == "OneOfMultipleValid"
                          else "does not match any of the allowed forms"),
        "not": lambda: "matches a form that is not allowed",
        "falseSchema": lambda: "no value is allowed here",
        "contains": lambda: "no item has the required form",
        "backtrackLimitExceeded": lambda: "could not be checked against the pattern",
    }
    make = messages.get(keyword)
    out["message"] = make() if make is not None else f"violates {keyword}"
    if keyword == "required":
        out["property"] = facts.get("property")
    return out
