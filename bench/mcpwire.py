"""MCP request bytes and response checks for the load generator, for both protocol eras.

Requests are built once per client as a body prefix and suffix around the JSON-RPC id, so
each request costs one join. Responses are checked cheaply: small ones are parsed fully,
large ones (which no error message ever is) by size, so that checking a 1 MiB result does
not make the load generator the bottleneck. No network code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from bench.payloads import LIST_TOOLS, MODERN_VERSION, SIZES

LEGACY_VERSION = "2025-11-25"
CLIENT_INFO = {"name": "mcpwall-bench", "version": "1.0.0"}
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
}
FULL_PARSE_LIMIT = 16 * 1024
# Operation name → (method, tool name or None, minimum bytes a good response body has).
OPS: dict[str, tuple[str, str | None, int]] = {
    "small": ("tools/call", "small", SIZES["small"]),
    "medium": ("tools/call", "medium", SIZES["medium"]),
    "large": ("tools/call", "large", SIZES["large"]),
    "echo": ("tools/call", "echo", 0),
    "list": ("tools/list", None, LIST_TOOLS * 100),
}


@dataclass(frozen=True, slots=True)
class Op:
    """One kind of request: method, params (without ``_meta``) and what a good answer looks like."""

    method: str
    params: dict[str, Any]
    min_bytes: int
    name: str | None

    @classmethod
    def named(cls, op: str, tool_prefix: str = "") -> Op:
        method, tool, min_bytes = OPS[op]
        if tool is None:
            return cls(method, {}, min_bytes, None)
        args = {"message": "hello from the benchmark"} if tool == "echo" else {"tag": "bench"}
        return cls(method, {"name": tool_prefix + tool, "arguments": args}, min_bytes, tool_prefix + tool)


def body_parts(op: Op, era: str) -> tuple[bytes, bytes]:
    """(prefix, suffix) such that ``prefix + id + suffix`` is the request body."""
    params = dict(op.params)
    if era == "modern":
        params["_meta"] = MODERN_META
    tail = orjson.dumps({"method": op.method, "params": params})
    return b'{"jsonrpc":"2.0","id":', b"," + tail[1:]


def era_headers(op: Op, era: str) -> dict[str, str]:
    """Headers a modern request must mirror from its body (legacy ones add the session's)."""
    if era != "modern":
        return {}
    headers = {"MCP-Protocol-Version": MODERN_VERSION, "Mcp-Method": op.method}
    if op.name is not None:
        headers["Mcp-Name"] = op.name
    return headers


def initialize_body(rid: int) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": "initialize", "params": {
        "protocolVersion": LEGACY_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}})


INITIALIZED_BODY = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'


def message_of(content_type: bytes, body: bytes) -> bytes:
    """The JSON-RPC response inside an HTTP body: the body itself, or the last SSE data event."""
    if not content_type.startswith(b"text/event-stream"):
        return body
    end = len(body)
    while end > 0:
        start = body.rfind(b"data:", 0, end)
        if start < 0:
            return b""
        line_end = body.find(b"\n", start)
        line_end = len(body) if line_end < 0 else line_end
        data = body[start + 5:line_end].strip()
        # A response carries an id and a result or an error; notifications and keep-alives do not.
        if data.startswith(b"{") and (b'"result"' in data[:64] or b'"error"' in data[:64] or len(data) > 4096):
            return data
        end = start
    return b""


def check(op: Op, rid: int, status: int, content_type: bytes, body: bytes, strict: bool = False) -> str | None:
    """None if the response is a good answer to request ``rid``, else a short error class."""
    if status != 200:
        return f"http_{status}"
    msg = message_of(content_type, body)
    if not msg:
        return "no_message"
    if len(msg) > FULL_PARSE_LIMIT and not strict:
        # Errors and refusals are small; a large body is the result if it has the expected size.
        return None if len(msg) >= op.min_bytes else "short_result"
    try:
        parsed = orjson.loads(msg)
    except orjson.JSONDecodeError:
        return "bad_json"
    if not isinstance(parsed, dict):
        return "bad_json"
    if "error" in parsed:
        err = parsed["error"]
        return f"rpc_{err.get('code')}" if isinstance(err, dict) else "rpc_error"
    result = parsed.get("result")
    if parsed.get("id") != rid or not isinstance(result, dict):
        return "bad_response"
    if result.get("isError"):
        return "tool_error"
    if op.method == "tools/list":
        tools = result.get("tools")
        if not isinstance(tools, list) or (strict and len(tools) < LIST_TOOLS):
            return "short_list"
    elif op.method == "tools/call" and strict and op.min_bytes:
        content = result.get("content") or [{}]
        if len(content[0].get("text", "")) < op.min_bytes:
            return "short_result"
    return None
