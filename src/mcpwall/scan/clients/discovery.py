"""Find client configuration files and turn their server entries into :class:`ServerEntry`.

Each client family stores servers a little differently (``mcpServers`` maps, VS Code's
``servers``, Zed's ``context_servers``, Continue's lists); the extractors here normalise them
to one shape and remember where each entry lives (``key_path``, and the line when it can be
found) so reports can point at it and ``--wrap`` can rewrite it. Files are untrusted input:
unreadable or malformed files become a :class:`ConfigFile` with ``error`` set, never an
exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from mcpwall.scan.clients import jsonc, paths
from mcpwall.scan.clients.model import ConfigFile, ServerEntry, Transport

MAX_CONFIG_BYTES = 8 * 1024 * 1024


def _as_str_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, (str, int, float))]
    if isinstance(value, str):
        return [value]
    return []


def _as_str_map(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items() if isinstance(v, (str, int, float, bool))}
    return {}


def _transport(entry: dict[str, Any], command: str | None, url: str | None) -> Transport:
    declared = str(entry.get("type") or entry.get("transport") or "").lower()
    if command:
        return "stdio"
    if declared == "sse" or (url or "").rstrip("/").endswith("/sse"):
        return "sse"
    return "http"


def normalise(name: str, entry: dict[str, Any], *, client: str, path: str, scope: str,
              key_path: tuple[str | int, ...]) -> ServerEntry | None:
    command: Any = entry.get("command")
    args = _as_str_list(entry.get("args"))
    env = _as_str_map(entry.get("env"))
    if isinstance(command, dict):  # Zed's older shape: "command": {"path", "args", "env"}
        args = _as_str_list(command.get("args")) or args
        env = _as_str_map(command.get("env")) or env
        command = command.get("path")
        key_path = (*key_path, "command")
    transport_block = entry.get("transport")
    if command is None and isinstance(transport_block, dict):  # Continue's config.json
        command = transport_block.get("command")
        args = _as_str_list(transport_block.get("args"))
        env = _as_str_map(transport_block.get("env"))
        key_path = (*key_path, "transport")
        url = transport_block.get("url")
    else:
        url = entry.get("url") or entry.get("serverUrl") or entry.get("httpUrl")
    if not isinstance(command, str) or not command.strip():
        command = None
    if not isinstance(url, str) or not url.strip():
        url = None
    if command is None and url is None:
        return None
    disabled = entry.get("disabled") is True or entry.get("enabled") is False
    return ServerEntry(
        name=name, client=client, config_path=path, scope=scope,
        transport=_transport(entry if not isinstance(transport_block, dict) else transport_block, command, url),
        command=command, args=args, env=env, url=url, headers=_as_str_map(entry.get("headers")),
        cwd=entry.get("cwd") if isinstance(entry.get("cwd"), str) else None, disabled=disabled,
        key_path=key_path, raw=entry)


KeyPath = tuple[str | int, ...]
Found = Iterator[tuple[str, dict[str, Any], KeyPath]]


def _map_entries(block: Any, base: KeyPath) -> Found:
    if isinstance(block, dict):
        for name, entry in block.items():
            if isinstance(entry, dict):
                yield str(name), entry, (*base, str(name))


def _list_entries(block: Any, base: KeyPath) -> Found:
    if isinstance(block, list):
        for i, entry in enumerate(block):
            if isinstance(entry, dict):
                name = entry.get("name")
                yield (str(name) if name else f"server-{i + 1}"), entry, (*base, i)


def entries(kind: str, doc: Any) -> Found:
    if not isinstance(doc, dict):
        return
    if kind == paths.MCP_SERVERS:
        yield from _map_entries(doc.get("mcpServers"), ("mcpServers",))
    elif kind == paths.CLAUDE_CODE:
        yield from _map_entries(doc.get("mcpServers"), ("mcpServers",))
        projects = doc.get("projects")
        if isinstance(projects, dict):
            for directory, project in projects.items():
                if isinstance(project, dict):
                    for name, entry, key in _map_entries(project.get("mcpServers"),
                                                         ("projects", str(directory), "mcpServers")):
                        yield f"{name} ({directory})", entry, key
    elif kind in (paths.VSCODE, paths.YAML_SERVERS):
        yield from _map_entries(doc.get("servers"), ("servers",))
    elif kind == paths.VSCODE_SETTINGS:
        mcp = doc.get("mcp")
        if isinstance(mcp, dict):
            yield from _map_entries(mcp.get("servers"), ("mcp", "servers"))
    elif kind == paths.ZED:
        yield from _map_entries(doc.get("context_servers"), ("context_servers",))
    elif kind == paths.CONTINUE_YAML:
        block = doc.get("mcpServers")
        yield from (_list_entries(block, ("mcpServers",)) if isinstance(block, list)
                    else _map_entries(block, ("mcpServers",)))
    elif kind == paths.CONTINUE_JSON:
        experimental = doc.get("experimental")
        if isinstance(experimental, dict):
            yield from _list_entries(experimental.get("modelContextProtocolServers"),
                                     ("experimental", "modelContextProtocolServers"))


def _line_of(text: str, name: str) -> int | None:
    """The line where an entry's name appears as a key (good enough to point a reader at it)."""
    for pattern in (rf'"{re.escape(name)}"\s*:', rf"name:\s*['\"]?{re.escape(name)}['\"]?\s*$",
                    rf"^\s*{re.escape(name)}\s*:"):
        match = re.search(pattern, text, re.MULTILINE)
        if match:
            return text.count("\n", 0, match.start()) + 1
    return None


def read_file(location: paths.Location) -> ConfigFile:
    path = location.path
    fmt = "yaml" if location.kind in (paths.CONTINUE_YAML, paths.YAML_SERVERS) else (
        "jsonc" if location.kind in (paths.VSCODE_SETTINGS, paths.ZED, paths.VSCODE) else "json")
    config = ConfigFile(client=location.client, path=str(path), scope=location.scope, format=fmt,  # type: ignore[arg-type]
                        kind=location.kind)
    try:
        if not path.is_file():
            return config
        config.exists = True
        if path.stat().st_size > MAX_CONFIG_BYTES:
            config.error = "file too large to be a client configuration"
            return config
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        config.error = f"unreadable: {exc.strerror or type(exc).__name__}"
        return config
    try:
        # Plain JSON is valid JSONC, and some clients accept comments in files documented as JSON.
        doc = yaml.safe_load(text) if fmt == "yaml" else jsonc.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        config.error = f"not valid {fmt.upper()}: {str(exc).splitlines()[0][:120]}"
        return config
    for name, entry, key_path in entries(location.kind, doc):
        server = normalise(name, entry, client=location.client, path=str(path), scope=location.scope,
                           key_path=key_path)
        if server is not None:
            server.line = _line_of(text, name.split(" (")[0])
            config.servers.append(server)
    return config


def discover(locs: list[paths.Location], extra: list[Path] | None = None) -> list[ConfigFile]:
    files = [read_file(loc) for loc in locs]
    for path in extra or []:
        files.append(read_explicit(path))
    return files


def read_explicit(path: Path) -> ConfigFile:
    """A file named with ``--config``: try every known shape and keep the first that yields servers."""
    kinds = ([paths.CONTINUE_YAML, paths.YAML_SERVERS] if path.suffix in (".yaml", ".yml") else
             [paths.MCP_SERVERS, paths.VSCODE, paths.VSCODE_SETTINGS, paths.ZED, paths.CLAUDE_CODE,
              paths.CONTINUE_JSON])
    first: ConfigFile | None = None
    for kind in kinds:
        config = read_file(paths.Location("Other", path, "explicit", kind))
        if first is None:
            first = config
        if config.servers or config.error:
            return config
    assert first is not None
    return first
