"""The canonical form and hash of a tool or prompt definition.

Only the fields that tell a model what a tool is and does are pinned: ``name``, ``title``,
``description``, ``inputSchema``, ``outputSchema`` and ``annotations`` for tools; ``name``,
``title``, ``description`` and ``arguments`` for prompts. ``_meta``, icons and unknown fields
are left out so that harmless bookkeeping does not look like a rug pull. Absent and ``null``
fields are the same thing.

Canonical JSON: keys sorted at every level, no whitespace, UTF-8 (orjson's ``OPT_SORT_KEYS``
output). The hash is ``sha256:`` followed by the hex digest of those bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import orjson

Kind = Literal["tools", "prompts"]
Key = tuple[str, str, str]  # (server, kind, name) — name as the upstream knows it

FIELDS: dict[str, tuple[str, ...]] = {
    "tools": ("name", "title", "description", "inputSchema", "outputSchema", "annotations"),
    "prompts": ("name", "title", "description", "arguments"),
}


@dataclass(frozen=True, slots=True)
class Pin:
    hash: str
    definition: dict[str, Any]


def canonical_definition(kind: str, item: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """The pinned fields of ``item``; ``name`` replaces the (possibly namespaced) name."""
    out = {f: item[f] for f in FIELDS[kind] if item.get(f) is not None}
    if name is not None:
        out["name"] = name
    return out


def canonical_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def definition_hash(definition: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(definition)).hexdigest()


def make_pin(kind: str, item: dict[str, Any], name: str | None = None) -> Pin:
    definition = canonical_definition(kind, item, name)
    return Pin(definition_hash(definition), definition)
