"""Reading a server's tool list the way an attacker would.

For each tool: poisoned or hidden-Unicode text (via the installed :class:`TextScanner`),
destructive tools that carry no annotations, and the attack surface its inputs open (URLs for
SSRF, paths for traversal, commands or code for execution), plus the capability classes it
implies (filesystem read/write, network egress, shell, secrets, database). Across servers: tool
name collisions and descriptions that refer to another server's tools (shadowing).

Heuristics only, on names, descriptions and input schemas; nothing here calls a tool.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mcpwall.scan.model import Finding, Severity
from mcpwall.scan.rules import TextScanner, text_scanner, visible

CAPABILITIES = ("filesystem-read", "filesystem-write", "network-egress", "shell", "secrets", "database")

_SPLIT = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

_DESTRUCTIVE = {"delete", "remove", "drop", "destroy", "truncate", "kill", "terminate", "wipe", "purge", "erase",
                "reset", "overwrite", "revoke", "rm", "rmdir", "uninstall", "shutdown", "format", "unlink", "clear"}
_WRITE = {"write", "create", "edit", "move", "rename", "delete", "remove", "mkdir", "upload", "save", "append",
          "patch", "update", "put", "copy", "unlink", "rm", "rmdir", "touch", "chmod"}
_READ = {"read", "list", "get", "search", "find", "open", "view", "cat", "tree", "glob", "grep", "head", "tail", "stat"}
_FS_NOUNS = {"file", "files", "dir", "directory", "directories", "folder", "path", "filesystem", "fs"}
_SHELL = {"exec", "execute", "shell", "bash", "sh", "zsh", "cmd", "command", "terminal", "subprocess", "spawn",
          "powershell", "script", "eval", "repl", "run"}
_NET = {"fetch", "http", "https", "request", "download", "browse", "navigate", "curl", "webhook", "url", "crawl",
        "scrape", "post", "email", "send", "upload", "ping", "api", "slack", "webpage"}
_SECRETS = {"secret", "secrets", "password", "passwords", "credential", "credentials", "token", "tokens", "apikey",
            "vault", "keychain", "env", "environment", "keyring"}
_DB = {"sql", "database", "db", "table", "postgres", "postgresql", "mysql", "sqlite", "mongo", "mongodb", "redis",
       "query"}

_URL_PROPS = {"url", "uri", "endpoint", "href", "link", "webhook", "host", "hostname", "domain", "baseurl", "callback"}
_PATH_PROPS = {"path", "file", "filename", "filepath", "dir", "directory", "folder", "root", "dest", "destination",
               "source", "src", "target"}
_CMD_PROPS = {"command", "cmd", "script", "shell", "code", "expression", "expr", "sql", "program", "eval", "args"}


def tokens(text: str) -> set[str]:
    return {t for t in _SPLIT.split(_CAMEL.sub(" ", text).lower()) if t}


def _properties(tool: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    schema = tool.get("inputSchema")
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties")
    if not isinstance(props, dict):
        return {}
    return {str(k): v if isinstance(v, dict) else {} for k, v in props.items()}


def _text_of(tool: Mapping[str, Any]) -> str:
    parts = [str(tool.get("name", "")), str(tool.get("title", "") or ""), str(tool.get("description", "") or "")]
    for name, prop in _properties(tool).items():
        parts.append(name)
        for key in ("description", "title"):
            if isinstance(prop.get(key), str):
                parts.append(prop[key])
    annotations = tool.get("annotations")
    if isinstance(annotations, dict) and isinstance(annotations.get("title"), str):
        parts.append(annotations["title"])
    return "\n".join(parts)


def capability_classes(tool: Mapping[str, Any]) -> list[str]:
    name_tokens = tokens(str(tool.get("name", "")))
    desc_tokens = tokens(str(tool.get("description", "") or ""))
    prop_tokens: set[str] = set()
    for prop in _properties(tool):
        prop_tokens |= tokens(prop)
    words = name_tokens | desc_tokens
    found: set[str] = set()
    fs_context = bool((name_tokens | prop_tokens) & _FS_NOUNS) or bool(desc_tokens & {"file", "files", "directory"})
    if fs_context and (name_tokens & _WRITE):
        found.add("filesystem-write")
    if fs_context and (name_tokens & _READ or not name_tokens & _WRITE):
        found.add("filesystem-read")
    if name_tokens & _SHELL or prop_tokens & {"command", "cmd", "script", "shell"}:
        found.add("shell")
    if name_tokens & _NET or prop_tokens & _URL_PROPS or (desc_tokens & {"http", "url", "webhook", "internet"}):
        found.add("network-egress")
    if name_tokens & _SECRETS or prop_tokens & {"password", "secret", "token", "apikey"}:
        found.add("secrets")
    if name_tokens & _DB or prop_tokens & {"sql"} or ("sql" in words):
        found.add("database")
    return [c for c in CAPABILITIES if c in found]


def is_destructive(tool: Mapping[str, Any]) -> bool:
    name_tokens = tokens(str(tool.get("name", "")))
    caps = capability_classes(tool)
    return bool(name_tokens & _DESTRUCTIVE) or "shell" in caps or "filesystem-write" in caps


def annotation_state(tool: Mapping[str, Any]) -> str:
    """``"destructive"``, ``"read-only"``, ``"non-destructive"`` or ``"none"`` as the tool declares."""
    annotations = tool.get("annotations")
    if not isinstance(annotations, dict):
        return "none"
    if annotations.get("readOnlyHint") is True:
        return "read-only"
    if annotations.get("destructiveHint") is True:
        return "destructive"
    if annotations.get("destructiveHint") is False:
        return "non-destructive"
    return "none"


def surfaces(tool: Mapping[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"url": [], "path": [], "command": []}
    for name, prop in _properties(tool).items():
        t = tokens(name)
        fmt = str(prop.get("format", ""))
        if t & _URL_PROPS or fmt in ("uri", "url", "iri", "uri-reference"):
            out["url"].append(name)
        elif t & _PATH_PROPS:
            out["path"].append(name)
        elif (t & _CMD_PROPS and "args" not in t) or name.lower() in ("command", "cmd", "script", "code", "sql"):
            out["command"].append(name)
    return {k: v for k, v in out.items() if v}


@dataclass(slots=True)
class ToolReport:
    name: str
    server: str
    capabilities: list[str]
    destructive: bool
    annotation: str
    surfaces: dict[str, list[str]]
    findings: list[Finding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "server": self.server, "capabilities": self.capabilities,
                "destructive": self.destructive, "annotation": self.annotation, "surfaces": self.surfaces,
                "findings": [f.to_dict() for f in self.findings]}


_SURFACE_TEXT: dict[str, tuple[str, Severity, str, str]] = {
    "url": ("tool-url-input", "low", "takes a URL (server-side request forgery surface)",
            "Allow only the hosts the tool needs (mcpwall's egress guard), and block private and metadata addresses."),
    "path": ("tool-path-input", "low", "takes a file path (path-traversal surface)",
             "Confine paths to an allowed root and reject '..' and absolute paths outside it."),
    "command": ("tool-command-input", "medium", "takes a command, code or query (execution surface)",
                "Prefer fixed operations over free-form commands; allowlist and require approval for the rest."),
}


def analyse_tool(tool: Mapping[str, Any], *, server: str = "", location: str = "",
                 scanner: TextScanner | None = None) -> ToolReport:
    scanner = scanner or text_scanner()
    name = str(tool.get("name", ""))
    subject = f"{server}/{name}" if server else name
    report = ToolReport(name=name, server=server, capabilities=capability_classes(tool),
                        destructive=is_destructive(tool), annotation=annotation_state(tool),
                        surfaces=surfaces(tool))
    matches = scanner.poisoning(_text_of(tool))
    for match in matches:
        hidden = match.category == "hidden_unicode"
        report.findings.append(Finding(
            rule="tool-hidden-unicode" if hidden else "tool-poisoning",
            severity=match.severity,
            title=("hidden or direction-changing characters in tool text" if hidden
                   else f"tool description looks poisoned ({match.rule})"),
            detail=f"{subject}: {match.excerpt}",
            fix=("Remove invisible characters from tool names and descriptions; mcpwall's poisoning guard strips "
                 "and flags them." if hidden else
                 "Review the description by hand; instructions to the model, concealment or references to secrets "
                 "do not belong in a tool description. Withhold the tool until it is fixed (mcpwall pins)."),
            subject=subject, location=location, evidence=[f"rule {match.rule}"]))
    if report.destructive and report.annotation in ("none", "non-destructive", "read-only"):
        claimed = report.annotation != "none"
        report.findings.append(Finding(
            rule="tool-destructive-unannotated",
            severity="medium" if claimed else "low",
            title=("tool that can change or delete things claims to be harmless" if claimed
                   else "destructive-looking tool without annotations"),
            detail=f"{subject}: {', '.join(report.capabilities) or 'destructive verb in name'}"
                   f"{'; declares ' + report.annotation if claimed else ''}",
            fix="Declare annotations (destructiveHint: true, readOnlyHint: false) so clients can ask before "
                "calling it, and require approval for it in mcpwall's policy.",
            subject=subject, location=location))
    for kind, props in report.surfaces.items():
        rule, severity, text, fix = _SURFACE_TEXT[kind]
        report.findings.append(Finding(rule=rule, severity=severity, title=f"tool {text}",
                                       detail=f"{subject}: input {', '.join(props)}", fix=fix,
                                       subject=subject, location=location))
    return report


def analyse_tools(tools: Iterable[Mapping[str, Any]], *, server: str = "", location: str = "",
                  scanner: TextScanner | None = None) -> list[ToolReport]:
    scanner = scanner or text_scanner()
    return [analyse_tool(t, server=server, location=location, scanner=scanner) for t in tools]


def cross_server(servers: Mapping[str, Iterable[Mapping[str, Any]]], *, location: str = "") -> list[Finding]:
    """Name collisions and cross-server references (shadowing) between several servers' tools."""
    names: dict[str, list[str]] = {}
    tools_by_server = {server: list(tools) for server, tools in servers.items()}
    for server, tools in tools_by_server.items():
        for tool in tools:
            names.setdefault(str(tool.get("name", "")), []).append(server)
    findings: list[Finding] = []
    for name, owners in sorted(names.items()):
        if len(set(owners)) > 1:
            findings.append(Finding(
                rule="tool-name-collision", severity="medium",
                title="the same tool name is offered by several servers",
                detail=f"{name}: {', '.join(sorted(set(owners)))}",
                fix="Namespace tools per server (mcpwall prefixes them as server__tool) so a model cannot be "
                    "steered to the wrong one.", subject=name, location=location))
    distinctive = {n for n in names if len(n) >= 4 and (("_" in n) or ("-" in n) or len(n) >= 8)}
    instruct = re.compile(r"\b(?:instead|before|after|always|never|whenever|must|do not|don't|rather than)\b", re.I)
    for server, tools in tools_by_server.items():
        for tool in tools:
            text = str(tool.get("description", "") or "")
            for other in distinctive:
                if server in names.get(other, []) or other == tool.get("name"):
                    continue
                if re.search(rf"(?<![A-Za-z0-9_]){re.escape(other)}(?![A-Za-z0-9_])", text):
                    strong = bool(instruct.search(text))
                    findings.append(Finding(
                        rule="tool-shadowing", severity="high" if strong else "medium",
                        title="a tool description refers to another server's tool",
                        detail=f"{server}/{tool.get('name')} mentions {other} "
                               f"({', '.join(sorted(set(names[other])))}): {visible(text, 120)}",
                        fix="A server has no business instructing the model about another server's tools; "
                            "remove the server or withhold the tool.",
                        subject=f"{server}/{tool.get('name')}", location=location))
    return findings
