"""Read ``mcpwall.yaml``: YAML with line numbers, ``${ENV}`` interpolation, every error at once.

Problems are reported as ``file:line: path: message`` lines in one :class:`ConfigError`, so a
user fixes a config in one pass instead of one error per run. Claude-Desktop-style
``{"mcpServers": {...}}`` files named in ``servers_from`` (or given directly) are merged into
``servers``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from mcpwall.config.model import Config
from mcpwall.errors import ConfigError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
Path_ = tuple[str | int, ...]


class _Located:
    """Maps a config path (``("servers", "fs", "url")``) to the line it came from."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[Path_, int] = {}

    def walk(self, node: yaml.Node, path: Path_ = ()) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
                self.lines[(*path, name)] = key.start_mark.line + 1
                self.walk(value, (*path, name))
                self.lines[(*path, name)] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, (*path, index))

    def line_of(self, path: Path_) -> int:
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return 1

    def problem(self, path: Path_, message: str) -> str:
        dotted = ".".join(str(p) for p in path) or "(top)"
        return f"{self.source}:{self.line_of(path)}: {dotted}: {message}"


def _interpolate(value: Any, path: Path_, env: dict[str, str], loc: _Located, problems: list[str]) -> Any:
    if isinstance(value, str):
        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(loc.problem(path, f"environment variable {name} is not set (use ${{{name}:-default}})"))
            return ""
        return _ENV.sub(replace, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, (*path, k), env, loc, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*path, i), env, loc, problems) for i, v in enumerate(value)]
    return value


def load_text(text: str, source: str = "<config>", *, base_dir: Path | None = None,
              env: dict[str, str] | None = None) -> Config:
    """Validate config text. Raises :class:`ConfigError` listing every problem."""
    loc = _Located(source)
    problems: list[str] = []
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError([f"{source}:{line}: (top): invalid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if node is not None:
        loc.walk(node)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([loc.problem((), "the config must be a mapping")])
    raw = _interpolate(raw, (), dict(os.environ) if env is None else env, loc, problems)
    base = base_dir or Path.cwd()
    for index, extra in enumerate(raw.get("servers_from") or []):
        try:
            imported = load_mcp_servers_file(base / str(extra))
        except ConfigError as exc:
            problems.extend(f"{loc.problem(('servers_from', index), p)}" for p in exc.problems)
            continue
        servers = raw.setdefault("servers", {}) or {}
        raw["servers"] = servers
        for name, server in imported.items():
            servers.setdefault(name, server)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            path = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            message = error["msg"].removeprefix("Value error, ")
            problems.append(loc.problem(path, message))
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config


def load(path: str | Path, *, env: dict[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}:1: (top): cannot read the file: {exc.strerror}"]) from None
    if path.suffix == ".json":
        servers = load_mcp_servers_file(path)
        return load_text(yaml.safe_dump({"servers": servers}), str(path), base_dir=path.parent, env=env)
    return load_text(text, str(path), base_dir=path.parent, env=env)


def load_mcp_servers_file(path: Path) -> dict[str, Any]:
    """Read a Claude-Desktop-style ``{"mcpServers": {...}}`` file into ``servers`` entries."""
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError([f"cannot read {path.name}: {exc.strerror}"]) from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError([f"{path.name} is not valid JSON: {exc}"]) from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise ConfigError([f'{path.name} has no "mcpServers" object'])
    out: dict[str, Any] = {}
    for name, entry in servers.items():
        if not isinstance(entry, dict):
            raise ConfigError([f"mcpServers.{name} must be an object"])
        server: dict[str, Any] = {}
        for key in ("command", "args", "env", "cwd", "url", "headers"):
            if key in entry:
                server[key] = entry[key]
        kind = entry.get("type") or entry.get("transport")
        if kind in ("sse",):
            server["transport"] = "sse"
        elif kind in ("http", "streamable-http", "streamableHttp"):
            server["transport"] = "http"
        if entry.get("disabled") is True:
            server["enabled"] = False
        safe = re.sub(r"[^A-Za-z0-9_.-]", "-", str(name)).strip("-") or "server"
        out[safe] = server
    return out
