"""MCP messages the scanner sends and the parsing of what comes back. No network code.

Builders produce the harmless requests the probes use (``initialize``, ``server/discover``,
``tools/list``, ``ping``) in both protocol eras, with the headers each era expects. Parsers
read a response body as plain JSON or as a server-sent event stream; they accept any bytes and
never raise, because the bytes come from the server under test.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from mcpwall import __version__
from mcpwall.protocol.versions import (
    LATEST_LEGACY,
    LATEST_MODERN,
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
    META_PROTOCOL_VERSION,
)

CLIENT_INFO = {"name": "mcpwall-scan", "version": __version__}
ACCEPT = "application/json, text/event-stream"
_ids = itertools.count(1)


def next_id() -> int:
    return next(_ids)


def legacy_headers(version: str | None = None, session: str | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": ACCEPT}
    if version:
        headers["MCP-Protocol-Version"] = version
    if session:
        headers["Mcp-Session-Id"] = session
    return headers


def modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": ACCEPT,
               "MCP-Protocol-Version": LATEST_MODERN, "Mcp-Method": method}
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


def modern_meta() -> dict[str, Any]:
    return {META_PROTOCOL_VERSION: LATEST_MODERN, META_CLIENT_CAPABILITIES: {}, META_CLIENT_INFO: CLIENT_INFO}


def initialize(version: str = LATEST_LEGACY) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": next_id(), "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": CLIENT_INFO}}


def initialized() -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "notifications/initialized"}


def discover() -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": next_id(), "method": "server/discover", "params": {"_meta": modern_meta()}}


def tools_list(*, modern: bool, cursor: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"_meta": modern_meta()} if modern else {}
    if cursor is not None:
        params["cursor"] = cursor
    return {"jsonrpc": "2.0", "id": next_id(), "method": "tools/list", "params": params}


def ping() -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": next_id(), "method": "ping"}


def encode(payload: Any) -> bytes:
    return orjson.dumps(payload)


# --- parsing ----------------------------------------------------------------------------------

def parse_sse(data: bytes | str) -> list[str]:
    """The ``data`` payloads of the events in an event stream (per the SSE grammar, leniently)."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    events: list[str] = []
    buffer: list[str] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if raw == "":
            if buffer:
                events.append("\n".join(buffer))
                buffer = []
            continue
        if raw.startswith(":"):
            continue
        name, _, value = raw.partition(":")
        if name == "data":
            buffer.append(value[1:] if value.startswith(" ") else value)
    if buffer:
        events.append("\n".join(buffer))
    return events


def parse_body(content_type: str, body: bytes) -> list[Any]:
    """JSON-RPC messages in a response body; an empty list when there are none or it is garbage."""
    if not body:
        return []
    if content_type.startswith("text/event-stream"):
        out: list[Any] = []
        for payload in parse_sse(body):
            try:
                out.append(orjson.loads(payload))
            except orjson.JSONDecodeError:
                continue
        return out
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    return value if isinstance(value, list) else [value]
