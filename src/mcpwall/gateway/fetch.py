"""Fetch tool and prompt definitions straight from the upstreams, outside a running gateway.

Used by operator commands (``mcpwall pins lock|status|diff|approve``) that need to see what each
upstream offers right now. It opens each upstream exactly as the gateway would — same
transports, environment, credentials, era detection and timeouts — lists every page, and shuts
the upstreams down again. Names are the upstream's own, not namespaced.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mcpwall.config.model import Config
from mcpwall.errors import McpwallError
from mcpwall.gateway.events import EventBus
from mcpwall.gateway.upstream import INTERNAL_PRINCIPAL, Upstream
from mcpwall.protocol.jsonrpc import Limits
from mcpwall.protocol.versions import Era

KINDS = {"tools": "tools/list", "prompts": "prompts/list"}
MAX_PAGES = 1000


Definitions = dict[str, dict[str, list[dict[str, Any]]]]


async def fetch_definitions(config: Config, servers: list[str] | None = None) -> Definitions:
    """server → {"tools": [...], "prompts": [...]} for the named (default: all enabled) upstreams.

    Raises :class:`McpwallError` naming the upstream when one cannot be reached or listed."""
    names = [n for n, s in config.servers.items() if s.enabled and (servers is None or n in servers)]
    unknown = sorted(set(servers or []) - set(config.servers))
    if unknown:
        raise McpwallError(f"no such upstream in the config: {', '.join(unknown)}")
    limits = Limits(max_bytes=64 * 1024 * 1024)
    events = EventBus()
    upstreams = {name: Upstream(name, config.servers[name], limits=limits, events=events) for name in names}
    try:
        results = await asyncio.gather(*(_fetch_one(u) for u in upstreams.values()))
    finally:
        await asyncio.gather(*(u.aclose() for u in upstreams.values()), return_exceptions=True)
    return dict(zip(names, results, strict=True))


async def _fetch_one(upstream: Upstream) -> dict[str, list[dict[str, Any]]]:
    await upstream.start()
    if not upstream.ready:
        raise McpwallError(f"upstream {upstream.name} could not be reached")
    era: Era = "modern" if upstream.modern else "legacy"
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, method in KINDS.items():
        items: list[dict[str, Any]] = []
        if kind in upstream.handshake.capabilities:
            cursor: Any = None
            for _ in range(MAX_PAGES):
                params = {"cursor": cursor} if cursor is not None else {}
                try:
                    result, _ = await upstream.request(method, params, principal_key=INTERNAL_PRINCIPAL,
                                                       front_session=None, front_era=era, client_capabilities={})
                except McpwallError as exc:
                    raise McpwallError(f"upstream {upstream.name}: {method} failed: {exc.message}") from None
                page = result.get(kind)
                items.extend(i for i in page if isinstance(i, dict)) if isinstance(page, list) else None
                cursor = result.get("nextCursor")
                if not cursor:
                    break
        out[kind] = items
    return out
