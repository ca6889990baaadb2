"""The JSON Schema of ``mcpwall.yaml``, generated from the config model and committed for editors.

``python -m mcpwall.config.schema --write docs/config.schema.json`` regenerates the file;
``--check`` exits 1 when the committed file differs from what the model generates now (CI runs
it, so the schema can never drift from the code). Output is deterministic: sorted keys, fixed
indentation, one trailing newline. This module only renders the model; validation itself is the
loader's job.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from mcpwall.config.model import Config
from mcpwall.pipeline.registry import GUARDS, guard_class

DIALECT = "https://json-schema.org/draft/2020-12/schema"
TITLE = "mcpwall configuration (mcpwall.yaml)"

# Before-validators that turn human strings into numbers ("30s", "4MiB"): the file may hold either
# form, so the schema must accept both or editors would flag valid configs.
_STRING_FORMS = {
    "parse_duration": {
        "type": "string",
        "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$",
        "description": "A duration such as 500ms, 30s, 5m, 1h or 7d.",
    },
    "parse_size": {
        "type": "string",
        "pattern": r"^\s*\d+\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$",
        "description": "A size such as 4096, 64KiB or 4MiB.",
    },
}


class _ConfigSchema(GenerateJsonSchema):
    def function_before_schema(self, schema: core_schema.BeforeValidatorFunctionSchema) -> JsonSchemaValue:
        inner = super().function_before_schema(schema)
        if self.mode != "validation" or schema.get("json_schema_input_schema"):
            return inner
        function = schema.get("function", {}).get("function")
        string_form = _STRING_FORMS.get(getattr(function, "__name__", ""))
        if string_form is None:
            return inner
        return {"anyOf": [inner, dict(string_form)]}


# pydantic leaves constraints that follow a before-validator as its own names (``ge: 0``), which
# JSON Schema ignores; they are rewritten to the standard keywords on the numeric branch.
_BOUNDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
_NAME_MAPS = ("properties", "$defs", "patternProperties")


def _standard_bounds(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _standard_bounds(item)
        return
    if not isinstance(node, dict):
        return
    bounds = {_BOUNDS[key]: node.pop(key) for key in list(node) if key in _BOUNDS}
    if bounds:
        numeric = [b for b in node.get("anyOf", []) if b.get("type") in ("number", "integer")]
        for target in numeric or [node]:
            target.update(bounds)
    for key, value in node.items():
        if key in _NAME_MAPS and isinstance(value, dict):
            for child in value.values():  # keys here are names, not keywords
                _standard_bounds(child)
        else:
            _standard_bounds(value)


class IncompleteSchema(RuntimeError):
    """A registered guard cannot be imported, so its settings would be missing from the schema."""


def _require_all_guards() -> None:
    # The config model degrades an unimportable guard to "any value"; a schema generated then
    # would silently lose that guard's settings, so generation refuses instead.
    broken = []
    for name in GUARDS:
        try:
            guard_class(name)
        except Exception as exc:
            broken.append(f"{name} ({type(exc).__name__}: {exc})")
    if broken:
        raise IncompleteSchema("guards that cannot be loaded: " + "; ".join(broken))


def generate() -> dict[str, Any]:
    """The schema as a dict, with the dialect and a title on top."""
    _require_all_guards()
    schema = Config.model_json_schema(schema_generator=_ConfigSchema)
    guards = schema.get("$defs", {}).get("GuardsConfig", {}).get("properties", {})
    untyped = sorted(name for name, prop in guards.items() if {} in prop.get("anyOf", [prop]))
    if untyped:  # the model was built while these guards failed to import
        raise IncompleteSchema("guards without a settings schema: " + ", ".join(untyped))
    _standard_bounds(schema)
    schema["title"] = TITLE
    return {"$schema": DIALECT, **schema}


def render() -> str:
    return json.dumps(generate(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mcpwall.config.schema", description="Write or check the config JSON Schema."
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the schema to PATH")
    mode.add_argument("--check", action="store_true", help="exit 1 if PATH is not up to date")
    parser.add_argument("path", nargs="?", type=Path, help="schema file (omit to print to stdout)")
    args = parser.parse_args(argv)

    try:
        text = render()
    except IncompleteSchema as exc:
        print(f"cannot generate the config schema: {exc}", file=sys.stderr)
        return 2
    if not (args.write or args.check):
        sys.stdout.write(text)
        return 0
    if args.path is None:
        parser.error("--write and --check need a PATH")
    if args.write:
        args.path.parent.mkdir(parents=True, exist_ok=True)
        args.path.write_text(text, encoding="utf-8")
        return 0
    try:
        current = args.path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    if current != text:
        print(
            f"{args.path} is stale: regenerate it with "
            f"`python -m mcpwall.config.schema --write {args.path}` (make schema)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
