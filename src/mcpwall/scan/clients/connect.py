"""``--connect``: start (or reach) each configured server, list its tools, and analyse them.

Starting a configured stdio server runs code on this machine, so nothing starts without consent:
the caller's ``confirm`` callback is shown the exact command line (secret-looking values hidden,
environment variable names listed) and must return ``True``. Identical configurations found in
several clients are started once. Remote servers are reached with the headers their config
gives (``${VAR}`` / ``${env:VAR}`` references are expanded from this environment; client-only
inputs such as ``${input:…}`` cannot be and are reported).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mcpwall.scan.clients.audit import fingerprint, redact_args
from mcpwall.scan.clients.model import ServerEntry
from mcpwall.scan.clients.stdio import StdioClient, StdioResult
from mcpwall.scan.http import Prober
from mcpwall.scan.mcp_http import HttpMcpClient
from mcpwall.scan.model import Finding
from mcpwall.scan.tools import analyse_tools, cross_server

Confirm = Callable[[ServerEntry, str], bool]
_VAR = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)\}|\$\{input:[^}]*\}")


class Unresolvable(ValueError):
    pass


def expand(value: str, env: Mapping[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            raise Unresolvable("needs a value only the client can prompt for (${input:…})")
        return env.get(name, "")

    return _VAR.sub(sub, value)


def display_command(entry: ServerEntry) -> str:
    line = shlex.join([entry.command or "", *redact_args(entry.args)])
    hidden = sum(1 for a, b in zip(entry.args, redact_args(entry.args), strict=True) if a != b)
    extra = []
    if hidden:
        extra.append(f"{hidden} secret-looking value(s) hidden")
    if entry.env:
        extra.append("env: " + ", ".join(sorted(entry.env)))
    if entry.cwd:
        extra.append(f"cwd: {entry.cwd}")
    return line + (f"   ({'; '.join(extra)})" if extra else "")


async def _connect_stdio(entry: ServerEntry, env: Mapping[str, str], timeout: float) -> StdioResult:
    try:
        child_env = {k: expand(v, env) for k, v in entry.env.items()}
        args = [expand(a, env) for a in entry.args]
    except Unresolvable as exc:
        return StdioResult(error=str(exc))
    return await StdioClient(entry.command or "", args, env=child_env, cwd=entry.cwd, timeout=timeout).run()


async def _connect_http(entry: ServerEntry, env: Mapping[str, str], timeout: float) -> StdioResult:
    result = StdioResult()
    try:
        headers = {k: expand(v, env) for k, v in entry.headers.items()}
        url = expand(entry.url or "", env)
    except Unresolvable as exc:
        result.error = str(exc)
        return result
    async with Prober(credentials=headers, timeout=timeout, max_requests=40) as prober:
        client = HttpMcpClient(prober, url, auth=True, label=entry.name)
        view = await client.open()
        if view.era is None:
            result.error = view.error or "not an MCP endpoint"
            return result
        result.era = view.era
        result.server_name = view.server_name
        result.tools = await client.list_tools()
        if result.tools is None:
            result.error = view.error or "tools/list failed"
        await client.close()
    return result


async def connect_all(entries: Sequence[ServerEntry], confirm: Confirm, *, timeout: float = 20.0,
                      include_disabled: bool = False, env: Mapping[str, str] | None = None) -> list[Finding]:
    """Connect to each entry (with consent) and fill in ``tools``; returns cross-server findings."""
    env = os.environ if env is None else env
    done: dict[str, StdioResult] = {}
    listed: list[tuple[ServerEntry, list[dict[str, Any]]]] = []
    for entry in entries:
        if entry.disabled and not include_disabled:
            entry.connect_error = "disabled in the client; not started"
            continue
        fp = fingerprint(entry)
        if fp not in done:
            shown = display_command(entry) if entry.command else f"{entry.transport} {entry.url}"
            if not confirm(entry, shown):
                entry.connect_error = "not started (no consent)"
                continue
            done[fp] = await (_connect_stdio(entry, env, timeout) if entry.command
                              else _connect_http(entry, env, timeout))
        result = done[fp]
        entry.server_name = result.server_name
        if result.tools is None:
            entry.connect_error = result.error or "no tool list"
            continue
        entry.tools = analyse_tools(result.tools, server=entry.name, location=entry.config_path)
        entry.findings.extend(f for t in entry.tools for f in t.findings)
        listed.append((entry, result.tools))
    # Shadowing and collisions matter between servers that one client loads together.
    by_client: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for entry, tools in listed:
        by_client.setdefault(entry.client, {})[entry.name] = tools
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for client, servers in sorted(by_client.items()):
        if len(servers) < 2:
            continue
        for finding in cross_server(servers, location=next(e.config_path for e, _ in listed if e.client == client)):
            key = (finding.rule, finding.detail)
            if key not in seen:
                seen.add(key)
                finding.subject = f"{client}: {finding.subject}"
                findings.append(finding)
    return findings
