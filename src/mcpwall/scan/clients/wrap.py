"""``--wrap``: propose, and with ``--apply`` write, client configs that run stdio servers via mcpwall.

Each stdio entry ``command args…`` becomes ``mcpwall wrap -- command args…`` with its env, cwd
and every other field kept. Remote (HTTP) entries are left alone: they are put behind mcpwall by
configuring them as upstreams of a gateway, not by rewriting the client.

Writing is conservative. Only JSON files are rewritten (YAML would lose comments and layout;
JSONC files that contain comments would lose them too), and only after a timestamped backup
next to the original (``<file>.mcpwall-backup-YYYYmmddTHHMMSS``). The new content is written to a
temporary file and renamed over the original, so a crash never leaves half a config.
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcpwall.scan.clients import jsonc
from mcpwall.scan.clients.audit import DEFAULT_GATEWAYS, _is_mcpwall
from mcpwall.scan.clients.discovery import read_file
from mcpwall.scan.clients.model import ConfigFile, ServerEntry
from mcpwall.scan.clients.paths import Location

WRAP_COMMAND = "mcpwall"


@dataclass(slots=True)
class Proposal:
    path: str
    client: str
    wrapped: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    diff: str = ""
    new_text: str | None = None
    reason: str | None = None  # why it cannot be applied automatically
    backup: str | None = None
    applied: bool = False


def wrapped_entry(entry: ServerEntry) -> dict[str, Any]:
    new = copy.deepcopy(entry.raw)
    target: dict[str, Any] = new
    # Entries whose command lives in a nested block (Zed's {"command": {"path"...}}, Continue's
    # {"transport": {...}}) are rewritten in place in that block.
    nested = entry.key_path[-1] if entry.key_path and entry.key_path[-1] in ("command", "transport") else None
    if nested is not None and isinstance(new.get(nested), dict):
        target = new[nested]
        key = "path" if nested == "command" else "command"
    else:
        key = "command"
    target[key] = WRAP_COMMAND
    target["args"] = ["wrap", "--", entry.command or "", *entry.args]
    return new


def _set(doc: Any, path: Iterable[str | int], value: Any) -> None:
    keys = list(path)
    node = doc
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value


def _entry_path(entry: ServerEntry) -> tuple[str | int, ...]:
    path = entry.key_path
    if path and path[-1] in ("command", "transport"):
        return path[:-1]
    return path


def propose(config: ConfigFile) -> Proposal | None:
    if config.kind:
        # Work from the file as it is now, not as it was when the scan read it.
        config = read_file(Location(config.client, Path(config.path), config.scope, config.kind))
    todo = [s for s in config.servers if s.command and not _is_mcpwall(s, DEFAULT_GATEWAYS)]
    proposal = Proposal(path=config.path, client=config.client)
    proposal.skipped = [s.name for s in config.servers if s.command is None]
    if not todo:
        return None
    path = Path(config.path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        proposal.reason = f"unreadable: {exc.strerror}"
        return proposal
    if config.format == "yaml":
        proposal.reason = "YAML file: edit by hand (an automatic rewrite would lose comments and layout)"
        doc: Any = None
    elif jsonc.has_comments(text):
        proposal.reason = "file has comments that a rewrite would lose: edit by hand"
        doc = None
    else:
        doc = jsonc.loads(text)
    for entry in todo:
        new = wrapped_entry(entry)
        proposal.wrapped.append(entry.name)
        if doc is not None:
            _set(doc, _entry_path(entry), new)
    if doc is not None:
        indent = _indent_of(text)
        proposal.new_text = json.dumps(doc, indent=indent, ensure_ascii=False) + "\n"
        proposal.diff = "".join(difflib.unified_diff(
            text.splitlines(keepends=True), proposal.new_text.splitlines(keepends=True),
            fromfile=config.path, tofile=f"{config.path} (wrapped)"))
    else:
        snippets = {e.name: wrapped_entry(e) for e in todo}
        proposal.diff = "# replace these entries:\n" + json.dumps(snippets, indent=2, ensure_ascii=False) + "\n"
    return proposal


def _indent_of(text: str) -> int:
    for line in text.splitlines()[1:]:
        stripped = line.lstrip(" ")
        if stripped and len(line) != len(stripped):
            return len(line) - len(stripped)
    return 2


def apply(proposal: Proposal, *, now: dt.datetime | None = None) -> Proposal:
    if proposal.new_text is None:
        return proposal
    path = Path(proposal.path)
    stamp = (now or dt.datetime.now()).strftime("%Y%m%dT%H%M%S")
    backup = path.with_name(f"{path.name}.mcpwall-backup-{stamp}")
    n = 1
    while backup.exists():
        backup = path.with_name(f"{path.name}.mcpwall-backup-{stamp}-{n}")
        n += 1
    shutil.copy2(path, backup)
    proposal.backup = str(backup)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(proposal.new_text)
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    proposal.applied = True
    return proposal
