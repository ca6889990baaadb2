"""A fast dual-era MCP upstream for the benchmark, over Streamable HTTP or stdio.

The point is that the gateway, not the upstream, is what a benchmark measures: this server
parses each request with httptools on uvloop, answers synchronously from pre-encoded result
bytes (only the JSON-RPC id is spliced in), and does the minimum the protocol asks of it:

* modern (2026-07-28): every request carries ``_meta`` protocol version and client
  capabilities; ``MCP-Protocol-Version``/``Mcp-Method``/``Mcp-Name`` are checked against the
  body (400/-32020); ``server/discover`` is served; unknown methods get 404/-32601.
* legacy (≤2025-11-25): ``initialize`` mints an ``Mcp-Session-Id``; later requests need it
  (400 when absent, 404 when unknown); ``DELETE`` ends a session; ``GET`` is 405.

``/mcp`` answers with ``application/json``, ``/mcp-sse`` with a one-event ``text/event-stream``
(chunked), ``/static`` with a canned response without parsing the body (for the load
generator's own ceiling), ``/healthz`` with 200. Tools: ``small``/``medium``/``large`` (200 B,
64 KiB, 1 MiB of text), ``echo``, and fillers up to the catalogue size, which is 500 unless
the URL says ``?tools=N`` (the tools/call scenarios use a typical 24, so that a proxy that
re-reads the catalogue per call is not punished for the size of the list scenario's).

Run: ``python -m bench.upstream --port 0`` (prints ``{"port": N}`` once listening) or
``python -m bench.upstream --stdio``. Not a general MCP server: no resources, prompts,
subscriptions or server→client requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
from typing import Any

import httptools
import orjson

from bench import aio
from bench.payloads import (
    LEGACY_VERSIONS,
    LIST_TOOLS,
    MODERN_VERSION,
    SERVER_INFO,
    SIZES,
    all_tools,
    call_result,
)

META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CAPS = "io.modelcontextprotocol/clientCapabilities"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"
MAX_SESSIONS = 200_000  # bounded so a runaway benchmark cannot exhaust memory
MAX_BODY = 8 * 1024 * 1024

CAPABILITIES = {"tools": {"listChanged": False}}


def _encode_results(era: str, tools: int) -> dict[str, bytes]:
    """Pre-encoded ``result`` values by key, for one era and catalogue size."""
    modern = era == "modern"
    extra: dict[str, Any] = {"resultType": "complete", "_meta": {META_SERVER_INFO: SERVER_INFO}} if modern else {}
    out: dict[str, bytes] = {}
    for tool in SIZES:
        out[f"call:{tool}"] = orjson.dumps({**call_result(tool), **extra})
    list_extra = {"ttlMs": 0, "cacheScope": "public"} if modern else {}
    out["tools/list"] = orjson.dumps({"tools": all_tools(tools), **extra, **list_extra})
    for method, key in (("prompts/list", "prompts"), ("resources/list", "resources"),
                        ("resources/templates/list", "resourceTemplates")):
        out[method] = orjson.dumps({key: [], **extra, **list_extra})
    out["ping"] = orjson.dumps({**extra})
    out["completion/complete"] = orjson.dumps({"completion": {"values": []}, **extra})
    out["server/discover"] = orjson.dumps({
        "resultType": "complete", "supportedVersions": [MODERN_VERSION, *LEGACY_VERSIONS],
        "capabilities": CAPABILITIES, "serverInfo": SERVER_INFO,
        "_meta": {META_SERVER_INFO: SERVER_INFO}, "ttlMs": 0, "cacheScope": "public",
    })
    return out


_RESULTS: dict[tuple[str, int], dict[str, bytes]] = {}
MAX_TOOLS = 5000


def results(era: str, tools: int) -> dict[str, bytes]:
    key = (era, tools)
    if key not in _RESULTS:
        _RESULTS[key] = _encode_results(era, tools)
    return _RESULTS[key]


def catalogue_size(url: bytes) -> int:
    """``?tools=N`` in the request URL, else 500; clamped to [core tools, MAX_TOOLS]."""
    _, _, query = url.partition(b"?")
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == b"tools" and value.isdigit():
            return max(1, min(MAX_TOOLS, int(value)))
    return LIST_TOOLS
STATIC_BODY = b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}'


class Reply:
    """What to send back: HTTP status, a JSON-RPC message body (or none) and extra headers."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes | None = None, headers: tuple[tuple[bytes, bytes], ...] = ()):
        self.status = status
        self.body = body
        self.headers = headers


def _result(rid: Any, result: bytes) -> bytes:
    return b'{"jsonrpc":"2.0","id":' + orjson.dumps(rid) + b',"result":' + result + b"}"


def _error(rid: Any, code: int, message: str, data: Any = None) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return orjson.dumps({"jsonrpc": "2.0", "id": rid, "error": err})


class Mcp:
    """Protocol logic shared by the HTTP and stdio fronts. Answers synchronously."""

    def __init__(self, tools: int = LIST_TOOLS) -> None:
        self.sessions: set[str] = set()
        self.tools = tools  # catalogue size of the request being answered

    def dispatch(self, era: str, rid: Any, method: str, params: dict[str, Any]) -> tuple[int, bytes]:
        """(HTTP status for modern errors, message) for one request of a known era."""
        table = results(era, self.tools)
        if method == "tools/call":
            name = params.get("name")
            key = f"call:{name}"
            if key in table:
                return 200, _result(rid, table[key])
            if name == "echo":
                args = params.get("arguments") or {}
                body: dict[str, Any] = {"content": [{"type": "text", "text": str(args.get("message", ""))}],
                                        "isError": False}
                if era == "modern":
                    body["resultType"] = "complete"
                return 200, _result(rid, orjson.dumps(body))
            return 200, _error(rid, -32602, f"Unknown tool: {name}")
        cached = table.get(method)
        if cached is not None and (method != "server/discover" or era == "modern"):
            return 200, _result(rid, cached)
        if method == "logging/setLevel" and era == "legacy":
            return 200, _result(rid, b"{}")
        return 404, _error(rid, -32601, f"Method not found: {method}")

    def initialize(self, rid: Any, params: dict[str, Any]) -> bytes:
        requested = params.get("protocolVersion")
        version = requested if requested in LEGACY_VERSIONS else LEGACY_VERSIONS[0]
        return _result(rid, orjson.dumps({"protocolVersion": version, "capabilities": CAPABILITIES,
                                          "serverInfo": SERVER_INFO}))

    def http(self, method: bytes, headers: dict[bytes, bytes], body: bytes) -> Reply:
        if method == b"DELETE":
            sid = headers.get(b"mcp-session-id", b"").decode("latin-1")
            if sid in self.sessions:
                self.sessions.discard(sid)
                return Reply(200)
            return Reply(404)
        if method != b"POST":
            return Reply(405, headers=((b"allow", b"POST, DELETE"),))
        try:
            msg = orjson.loads(body)
        except orjson.JSONDecodeError:
            return Reply(400, _error(None, -32700, "Parse error"))
        if not isinstance(msg, dict):
            return Reply(400, _error(None, -32600, "Invalid request"))
        method_name = msg.get("method")
        if not isinstance(method_name, str):
            return Reply(202)  # a response to a server request: nothing to do
        rid = msg.get("id")
        params = msg.get("params") or {}
        meta = params.get("_meta") if isinstance(params, dict) else None
        version = meta.get(META_VERSION) if isinstance(meta, dict) else None
        if version is not None:
            return self._modern_http(rid, method_name, params, meta or {}, version, headers)
        return self._legacy_http(rid, method_name, params, headers)

    def _modern_http(self, rid: Any, method: str, params: dict[str, Any], meta: dict[str, Any],
                     version: Any, headers: dict[bytes, bytes]) -> Reply:
        if version != MODERN_VERSION:
            return Reply(400, _error(rid, -32022, "Unsupported protocol version",
                                     {"supported": [MODERN_VERSION], "requested": version}))
        if META_CAPS not in meta:
            return Reply(400, _error(rid, -32602, "Missing client capabilities"))
        if headers.get(b"mcp-protocol-version", b"").decode("latin-1") != version:
            return Reply(400, _error(rid, -32020, "MCP-Protocol-Version header does not match the body"))
        if rid is None:
            return Reply(202)
        if headers.get(b"mcp-method", b"").decode("latin-1") != method:
            return Reply(400, _error(rid, -32020, "Mcp-Method header does not match the body"))
        if method == "tools/call" and headers.get(b"mcp-name", b"").decode("utf-8", "replace") != params.get("name"):
            return Reply(400, _error(rid, -32020, "Mcp-Name header does not match the body"))
        status, body = self.dispatch("modern", rid, method, params)
        return Reply(status, body)

    def _legacy_http(self, rid: Any, method: str, params: dict[str, Any], headers: dict[bytes, bytes]) -> Reply:
        if method == "initialize":
            if len(self.sessions) >= MAX_SESSIONS:
                return Reply(503, _error(rid, -32603, "Too many sessions"))
            sid = secrets.token_hex(16)
            self.sessions.add(sid)
            return Reply(200, self.initialize(rid, params), ((b"mcp-session-id", sid.encode()),))
        sid_raw = headers.get(b"mcp-session-id")
        if sid_raw is None:
            return Reply(400, _error(rid, -32600, "Missing Mcp-Session-Id"))
        if sid_raw.decode("latin-1") not in self.sessions:
            return Reply(404, _error(rid, -32001, "Session not found"))
        if rid is None:
            return Reply(202)
        _, body = self.dispatch("legacy", rid, method, params)
        return Reply(200, body)

    def stdio(self, line: bytes) -> bytes | None:
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError:
            return _error(None, -32700, "Parse error")
        if not isinstance(msg, dict) or not isinstance(msg.get("method"), str):
            return None
        rid = msg.get("id")
        method = msg["method"]
        params = msg.get("params") or {}
        meta = params.get("_meta") if isinstance(params, dict) else None
        version = meta.get(META_VERSION) if isinstance(meta, dict) else None
        if rid is None:
            return None
        if version is not None:
            if version != MODERN_VERSION:
                return _error(rid, -32022, "Unsupported protocol version",
                              {"supported": [MODERN_VERSION], "requested": version})
            return self.dispatch("modern", rid, method, params)[1]
        if method == "initialize":
            return self.initialize(rid, params)
        if method == "server/discover":  # the stdio era probe
            return self.dispatch("modern", rid, method, params)[1]
        return self.dispatch("legacy", rid, method, params)[1]


_REASONS = {200: b"OK", 202: b"Accepted", 400: b"Bad Request", 404: b"Not Found",
            405: b"Method Not Allowed", 413: b"Payload Too Large", 503: b"Service Unavailable"}


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; requests are answered in order as they complete."""

    def __init__(self, mcp: Mcp) -> None:
        self.mcp = mcp
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.chunks: list[bytes] = []
        self.size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._send(400, b"", (), close=True)

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.chunks = []
        self.size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size <= MAX_BODY:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        path = self.url.split(b"?", 1)[0]
        method = self.parser.get_method()
        keep = self.parser.should_keep_alive()
        if self.size > MAX_BODY:
            self._send(413, b"", (), close=True)
        elif path == b"/static":
            self._send(200, STATIC_BODY, ((b"content-type", b"application/json"),), close=not keep)
        elif path == b"/healthz":
            self._send(200, b"ok", ((b"content-type", b"text/plain"),), close=not keep)
        elif path in (b"/mcp", b"/mcp-sse"):
            self.mcp.tools = catalogue_size(self.url)
            reply = self.mcp.http(method, self.headers, b"".join(self.chunks))
            self._reply(reply, sse=path == b"/mcp-sse", close=not keep)
        else:
            self._send(404, b"", (), close=not keep)

    def _reply(self, reply: Reply, sse: bool, close: bool) -> None:
        if reply.body is None:
            self._send(reply.status, b"", reply.headers, close)
        elif sse and reply.status == 200:
            event = b"event: message\ndata: " + reply.body + b"\n\n"
            head = self._head(200, ((b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                                    (b"transfer-encoding", b"chunked"), *reply.headers), None, close)
            assert self.transport is not None
            self.transport.writelines([head, b"%x\r\n" % len(event), event, b"\r\n0\r\n\r\n"])
            if close:
                self.transport.close()
        else:
            self._send(reply.status, reply.body, ((b"content-type", b"application/json"), *reply.headers), close)

    @staticmethod
    def _head(status: int, headers: tuple[tuple[bytes, bytes], ...], length: int | None, close: bool) -> bytes:
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Status"))]
        lines.extend(b"%s: %s\r\n" % (k, v) for k, v in headers)
        if length is not None:
            lines.append(b"content-length: %d\r\n" % length)
        if close:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def _send(self, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...], close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.writelines([self._head(status, headers, len(body), close), body])
        if close:
            self.transport.close()


async def serve_http(host: str, port: int) -> None:
    mcp = Mcp()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpConnection(mcp), host, port, backlog=2048)
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(orjson.dumps({"port": bound}).decode() + "\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def serve_stdio(tools: int) -> None:
    """Newline-delimited JSON-RPC on stdin/stdout, answered in order, synchronously."""
    mcp = Mcp(tools)
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        reply = mcp.stdio(line)
        if reply is not None:
            out.write(reply + b"\n")
            out.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stdio", action="store_true", help="serve newline-delimited JSON-RPC on stdin/stdout")
    parser.add_argument("--tools", type=int, default=LIST_TOOLS, help="stdio: catalogue size")
    args = parser.parse_args(argv)
    if args.stdio:
        serve_stdio(max(1, min(MAX_TOOLS, args.tools)))
        return
    with contextlib.suppress(KeyboardInterrupt):
        aio.run(serve_http(args.host, args.port))


if __name__ == "__main__":
    main()
