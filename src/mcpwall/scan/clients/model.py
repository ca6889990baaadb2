"""Types for the attack-surface map of this machine's MCP clients.

A :class:`ConfigFile` is one client configuration that was looked for; each holds the
:class:`ServerEntry` items found in it. Entries keep the raw configuration (needed to propose a
rewrite) but ``to_dict`` never includes environment values, header values or secret-looking
arguments: reports show which variables are set, not what they contain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mcpwall.scan.model import Finding
from mcpwall.scan.tools import CAPABILITIES, ToolReport

Transport = Literal["stdio", "http", "sse"]


@dataclass(slots=True)
class ServerEntry:
    name: str
    client: str
    config_path: str
    scope: str  # user | project | managed | explicit
    transport: Transport
    command: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    disabled: bool = False
    key_path: tuple[str | int, ...] = ()  # where the entry lives in its file
    line: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    tools: list[ToolReport] | None = None
    connect_error: str | None = None
    server_name: str | None = None  # what the server called itself when connected

    @property
    def capabilities(self) -> list[str]:
        found = {c for t in (self.tools or []) for c in t.capabilities}
        return [c for c in CAPABILITIES if c in found]

    @property
    def label(self) -> str:
        return f"{self.client}: {self.name}"

    def command_line(self) -> list[str]:
        from mcpwall.scan.clients.audit import redact_args

        return [self.command or "", *redact_args(self.args)]

    def to_dict(self) -> dict[str, Any]:
        from mcpwall.scan.clients.audit import redact_args, redact_url

        return {
            "name": self.name,
            "client": self.client,
            "config_path": self.config_path,
            "line": self.line,
            "scope": self.scope,
            "transport": self.transport,
            "command": self.command,
            "args": redact_args(self.args),
            "env": sorted(self.env),
            "url": redact_url(self.url) if self.url else None,
            "headers": sorted(self.headers),
            "disabled": self.disabled,
            "capabilities": self.capabilities,
            "tools": [t.to_dict() for t in self.tools] if self.tools is not None else None,
            "connect_error": self.connect_error,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(slots=True)
class ConfigFile:
    client: str
    path: str
    scope: str
    format: Literal["json", "jsonc", "yaml"] = "json"
    kind: str = ""  # parser kind (see paths.py), so the file can be read again
    exists: bool = False
    error: str | None = None
    servers: list[ServerEntry] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"client": self.client, "path": self.path, "scope": self.scope, "exists": self.exists,
                "error": self.error, "servers": [s.name for s in self.servers]}


@dataclass(slots=True)
class ClientsReport:
    scanner: str
    started_at: str
    files: list[ConfigFile]
    findings: list[Finding] = field(default_factory=list)  # across servers and clients
    connected: bool = False

    @property
    def servers(self) -> list[ServerEntry]:
        return [s for f in self.files for s in f.servers]

    @property
    def all_findings(self) -> list[Finding]:
        return [*(f for s in self.servers for f in s.findings), *self.findings]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "mcpwall-clients-report",
            "version": 1,
            "scanner": self.scanner,
            "started_at": self.started_at,
            "connected": self.connected,
            "files": [f.to_dict() for f in self.files if f.exists],
            "servers": [s.to_dict() for s in self.servers],
            "findings": [f.to_dict() for f in self.findings],
        }
