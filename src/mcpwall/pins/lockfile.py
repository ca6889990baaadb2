"""Read and write ``mcpwall.lock``: the approved definitions, reviewable in git.

The file is YAML (JSON when its name ends in ``.json``), with everything in a fixed order —
servers, kinds and names sorted, definition keys sorted — so that the same approvals always
produce the same bytes and a review shows only what changed. It stores each full canonical
definition next to its hash, so ``mcpwall pins diff`` can show what changed without any other
record. Multi-line descriptions are written as literal blocks to keep diffs line-by-line.

Non-ASCII characters are written escaped (``"\\u200b"``): a zero-width or bidi character
hidden in a description must be visible to the person reviewing the lockfile.

On load every hash is recomputed; an entry whose definition was edited without its hash (or
the reverse) makes the whole file invalid rather than silently trusted.
"""

from __future__ import annotations

import json as jsonlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import yaml

from mcpwall.pins.canonical import FIELDS, Key, Pin, definition_hash

VERSION = 1
HEADER = (
    "# mcpwall.lock: approved MCP tool and prompt definitions, pinned by hash.\n"
    "# Review changes to this file like code. Update it with `mcpwall pins lock` or `mcpwall pins approve`.\n"
)


class LockfileError(Exception):
    """The lockfile cannot be read or does not verify. ``problems`` lists every issue."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        super().__init__(f"{path}: " + "; ".join(problems))
        self.path = str(path)
        self.problems = problems


class YamlDumper(yaml.SafeDumper):
    """Safe YAML with multi-line ASCII strings as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value and value.isascii() and value.replace("\n", "").isprintable():
        # Printable ASCII apart from the newlines: a literal block keeps line-by-line diffs.
        # PyYAML falls back to a quoted scalar on its own if the block form cannot round-trip.
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


YamlDumper.add_representer(str, _str)


def to_document(pins: Mapping[Key, Pin]) -> dict[str, Any]:
    servers: dict[str, dict[str, dict[str, Any]]] = {}
    for (server, kind, name), pin in sorted(pins.items()):
        kinds = servers.setdefault(server, {})
        kinds.setdefault(kind, {})[name] = {"hash": pin.hash, "definition": pin.definition}
    return {"version": VERSION, "servers": servers}


def dumps(pins: Mapping[Key, Pin], *, json: bool = False) -> str:
    document = to_document(pins)
    if json:
        return jsonlib.dumps(document, sort_keys=True, indent=2, ensure_ascii=True) + "\n"
    body = yaml.dump(document, Dumper=YamlDumper, sort_keys=True, allow_unicode=False,
                     default_flow_style=False, width=4096, indent=2)
    return HEADER + body


def loads(text: str, source: Path | str = "mcpwall.lock") -> dict[Key, Pin]:
    try:
        document = orjson.loads(text) if str(source).endswith(".json") else yaml.safe_load(text)
    except (yaml.YAMLError, orjson.JSONDecodeError) as exc:
        raise LockfileError(source, [f"not valid {'JSON' if str(source).endswith('.json') else 'YAML'}: {exc}"]) \
            from None
    if document is None:
        return {}
    problems: list[str] = []
    if not isinstance(document, dict) or document.get("version") != VERSION:
        raise LockfileError(source, [f"expected a mapping with version: {VERSION}"])
    servers = document.get("servers") or {}
    if not isinstance(servers, dict):
        raise LockfileError(source, ["'servers' must be a mapping"])
    pins: dict[Key, Pin] = {}
    for server, kinds in servers.items():
        if not isinstance(kinds, dict):
            problems.append(f"servers.{server}: must be a mapping of kinds")
            continue
        for kind, entries in kinds.items():
            if kind not in FIELDS or not isinstance(entries, dict):
                problems.append(f"servers.{server}.{kind}: unknown kind or not a mapping")
                continue
            for name, entry in entries.items():
                where = f"servers.{server}.{kind}.{name}"
                if not isinstance(entry, dict) or not isinstance(entry.get("definition"), dict) \
                        or not isinstance(entry.get("hash"), str):
                    problems.append(f"{where}: needs 'hash' and 'definition'")
                    continue
                definition = entry["definition"]
                try:
                    actual = definition_hash(definition)
                except TypeError:
                    problems.append(f"{where}: definition is not JSON data")
                    continue
                if actual != entry["hash"]:
                    problems.append(f"{where}: hash does not match the definition (edited by hand?)")
                    continue
                if definition.get("name") != name:
                    problems.append(f"{where}: definition name does not match its key")
                    continue
                pins[(str(server), str(kind), str(name))] = Pin(entry["hash"], definition)
    if problems:
        raise LockfileError(source, problems)
    return pins


def read(path: Path) -> dict[Key, Pin]:
    """The pins in ``path``; an absent file holds none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise LockfileError(path, [f"cannot read: {exc.strerror}"]) from None
    return loads(text, path)


def write(path: Path, pins: Mapping[Key, Pin]) -> None:
    """Replace ``path`` atomically (write a sibling, fsync, rename)."""
    text = dumps(pins, json=path.suffix == ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
