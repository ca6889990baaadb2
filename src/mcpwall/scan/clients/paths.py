"""Where each MCP client keeps its server configuration, per operating system.

Only documented locations. Everything is derived from the home directory (``HOME``, or
``USERPROFILE`` on Windows), ``APPDATA`` and ``XDG_CONFIG_HOME`` passed in by the caller, so tests
can point the whole search at a temporary tree. Project-scoped files are looked for under the
given project directory (the current one by default).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Parser kinds (see discovery.py): which key holds the servers and in what shape.
MCP_SERVERS = "mcpServers"  # {"mcpServers": {name: {...}}}
CLAUDE_CODE = "claude-code"  # ~/.claude.json: top-level mcpServers + projects.<dir>.mcpServers
VSCODE = "vscode"  # {"servers": {name: {...}}} (mcp.json)
VSCODE_SETTINGS = "vscode-settings"  # settings.json: {"mcp": {"servers": {...}}}
ZED = "zed"  # settings.json: {"context_servers": {name: {...}}}
CONTINUE_YAML = "continue-yaml"  # config.yaml or a block file: {"mcpServers": [{name, command, ...}]}
CONTINUE_JSON = "continue-json"  # config.json: {"experimental": {"modelContextProtocolServers": [...]}}
YAML_SERVERS = "yaml-servers"  # mcpwall.yaml and similar: {"servers": {name: {...}}}


@dataclass(frozen=True, slots=True)
class Location:
    client: str
    path: Path
    scope: str  # user | project | managed
    kind: str


def home_dir(env: Mapping[str, str], platform: str) -> Path:
    if platform == "win32" and env.get("USERPROFILE"):
        return Path(env["USERPROFILE"])
    if env.get("HOME"):
        return Path(env["HOME"])
    return Path.home()


def _appdata(home: Path, env: Mapping[str, str], platform: str) -> Path:
    if platform == "darwin":
        return home / "Library" / "Application Support"
    if platform == "win32":
        return Path(env["APPDATA"]) if env.get("APPDATA") else home / "AppData" / "Roaming"
    return Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"


def _continue_blocks(directory: Path, scope: str) -> list[Location]:
    if not directory.is_dir():
        return []
    out = []
    for path in sorted(directory.iterdir()):
        if path.suffix in (".yaml", ".yml"):
            out.append(Location("Continue", path, scope, CONTINUE_YAML))
        elif path.suffix == ".json":
            out.append(Location("Continue", path, scope, MCP_SERVERS))
    return out


def locations(*, env: Mapping[str, str] | None = None, platform: str | None = None,
              project: Path | None = None, include_managed: bool = True) -> list[Location]:
    env = os.environ if env is None else env
    platform = platform or sys.platform
    home = home_dir(env, platform)
    app = _appdata(home, env, platform)
    project = project if project is not None else Path.cwd()
    out: list[Location] = [
        Location("Claude Desktop", app / "Claude" / "claude_desktop_config.json", "user", MCP_SERVERS),
        Location("Claude Code", home / ".claude.json", "user", CLAUDE_CODE),
        Location("Cursor", home / ".cursor" / "mcp.json", "user", MCP_SERVERS),
    ]
    for product in ("Code", "Code - Insiders", "VSCodium"):
        out.append(Location("VS Code", app / product / "User" / "mcp.json", "user", VSCODE))
        out.append(Location("VS Code", app / product / "User" / "settings.json", "user", VSCODE_SETTINGS))
    out += [
        Location("Windsurf", home / ".codeium" / "windsurf" / "mcp_config.json", "user", MCP_SERVERS),
        Location("Gemini CLI", home / ".gemini" / "settings.json", "user", MCP_SERVERS),
    ]
    zed = (Path(env["APPDATA"]) / "Zed" if platform == "win32" and env.get("APPDATA")
           else (Path(env["XDG_CONFIG_HOME"]) / "zed" if platform == "linux" and env.get("XDG_CONFIG_HOME")
                 else home / ".config" / "zed"))
    out.append(Location("Zed", zed / "settings.json", "user", ZED))
    out += [
        Location("Continue", home / ".continue" / "config.yaml", "user", CONTINUE_YAML),
        Location("Continue", home / ".continue" / "config.json", "user", CONTINUE_JSON),
    ]
    out += _continue_blocks(home / ".continue" / "mcpServers", "user")
    out += [
        Location("Claude Code", project / ".mcp.json", "project", MCP_SERVERS),
        Location("Cursor", project / ".cursor" / "mcp.json", "project", MCP_SERVERS),
        Location("VS Code", project / ".vscode" / "mcp.json", "project", VSCODE),
        Location("Gemini CLI", project / ".gemini" / "settings.json", "project", MCP_SERVERS),
        Location("Zed", project / ".zed" / "settings.json", "project", ZED),
    ]
    out += _continue_blocks(project / ".continue" / "mcpServers", "project")
    if include_managed:
        managed = {"linux": Path("/etc/claude-code/managed-mcp.json"),
                   "darwin": Path("/Library/Application Support/ClaudeCode/managed-mcp.json"),
                   "win32": Path("C:/ProgramData/ClaudeCode/managed-mcp.json")}.get(platform)
        if managed is not None:
            out.append(Location("Claude Code", managed, "managed", MCP_SERVERS))
    # The same file can be reached twice (project == home); keep the first.
    seen: set[Path] = set()
    unique = []
    for loc in out:
        key = loc.path.resolve() if loc.path.exists() else loc.path
        if key in seen:
            continue
        seen.add(key)
        unique.append(loc)
    return unique
