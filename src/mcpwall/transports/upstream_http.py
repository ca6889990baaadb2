"""An upstream MCP server reached over Streamable HTTP, in either era.

Requests go out on a pooled keep-alive aiohttp client (chosen by measurement over httpx, see
docs/performance.md) that carries only the gateway's own upstream credentials
(``servers.<name>.headers``) — never anything the MCP client sent. Responses may be
one JSON object or an SSE stream that carries progress, logs and (legacy) server→client
requests before the final response; those are routed to the originating call's sink, and
answers to server requests are POSTed back on the same session.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

import aiohttp

from mcpwall.errors import ProtocolError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from mcpwall.protocol import jsonrpc
from mcpwall.protocol.versions import LATEST_MODERN, META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION, NAMED_METHODS, Era
from mcpwall.transports.sse import SSEParser
from mcpwall.transports.upstream_base import (
    RequestOptions,
    Sink,
    UnsolicitedHandler,
    UpstreamSession,
    initialize_params,
    parse_discover,
    parse_initialize,
)

log = logging.getLogger("mcpwall.upstream.http")

ACCEPT = "application/json, text/event-stream"
# Long-lived event streams: no overall deadline, but a connection must be made in time.
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10.0, sock_read=None)
POST_TIMEOUT = 30.0  # a message that expects no JSON-RPC answer (notification, reply) must still be taken


class CheckedResolver(aiohttp.abc.AbstractResolver):
    """DNS resolution that refuses addresses the egress rules forbid, on every connection.

    Checking an upstream's URL once at start would leave DNS rebinding open: the name could
    resolve to an internal address later. Here every answer is checked before it is used."""

    def __init__(self, check: Callable[[str], None]) -> None:
        self._inner = aiohttp.DefaultResolver()
        self._check = check

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            self._check(result["host"])  # raises OSError: aiohttp reports a connection error
        return results

    async def close(self) -> None:
        await self._inner.close()


def make_client(headers: dict[str, str], connect_timeout: float, max_connections: int = 256,
                address_check: Callable[[str], None] | None = None) -> aiohttp.ClientSession:
    """The pooled client of one upstream: its own credentials, no cookies, no redirects followed,
    no compression asked for (bodies are counted against the size limit as they arrive), and
    every resolved address checked by ``address_check`` when given."""
    resolver = CheckedResolver(address_check) if address_check is not None else None
    return aiohttp.ClientSession(
        headers=headers,
        connector=aiohttp.TCPConnector(limit=max_connections, limit_per_host=max_connections, keepalive_timeout=60,
                                       resolver=resolver),
        timeout=aiohttp.ClientTimeout(total=None, connect=connect_timeout),
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("Accept-Encoding", "User-Agent"),
        auto_decompress=False,
    )


async def post_message(client: aiohttp.ClientSession, url: str, message: dict[str, Any], headers: dict[str, str],
                       limit: int, name: str) -> int:
    """POST one message that needs no answer of its own (a notification, a reply to the server, a
    cancellation) and return the HTTP status. Bounded in time and size: the client has no read
    timeout, and an upstream that never answers, or answers endlessly, must not hold it forever."""
    try:
        async with asyncio.timeout(POST_TIMEOUT), client.post(
                url, data=jsonrpc.encode(message), headers=headers, allow_redirects=False) as response:
            await read_limited(response, limit, name)
            return response.status
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable(f"upstream {name} is unreachable ({type(exc).__name__})") from None
    except TimeoutError:
        raise UpstreamTimeout(f"upstream {name} did not take a message within {POST_TIMEOUT:g}s") from None


async def read_limited(response: aiohttp.ClientResponse, limit: int, name: str) -> bytes:
    """The whole body, refusing more than ``limit`` bytes without buffering past it."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise UpstreamUnavailable(f"upstream {name} sent a response over the size limit")
        chunks.append(chunk)
    return b"".join(chunks)


def header_value(value: str) -> str:
    """Mirror a value into a header, base64-wrapping what is not header-safe (SEP-2243)."""
    if value.isascii() and value.isprintable() and value == value.strip() and not value.startswith("=?"):
        return value
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="


class HttpSession(UpstreamSession):
    def __init__(self, name: str, era: Era, url: str, client: aiohttp.ClientSession, *, limits: jsonrpc.Limits,
                 legacy_capabilities: dict[str, Any], on_unsolicited: UnsolicitedHandler | None = None) -> None:
        super().__init__(name, era, on_unsolicited=on_unsolicited)
        self.url = url
        self.client = client
        self.limits = limits
        self.legacy_capabilities = legacy_capabilities
        self.session_id: str | None = None
        self._listener: asyncio.Task[None] | None = None

    async def open(self, connect_timeout: float) -> None:
        if self.era == "legacy":
            result = await self.request("initialize", initialize_params(self.legacy_capabilities),
                                        RequestOptions(timeout=connect_timeout))
            self.handshake = parse_initialize(result)
            await self.notify("notifications/initialized")
            self._listener = asyncio.create_task(self._listen())
        else:
            meta = {META_PROTOCOL_VERSION: LATEST_MODERN, META_CLIENT_CAPABILITIES: {}}
            result = await self.request("server/discover", {"_meta": meta}, RequestOptions(timeout=connect_timeout))
            self.handshake = parse_discover(result)

    def _headers(self, method: str | None, params: dict[str, Any] | None, extra: dict[str, str]) -> dict[str, str]:
        headers = {"accept": ACCEPT, "content-type": "application/json"}
        if self.era == "modern":
            headers["mcp-protocol-version"] = self.handshake.protocol_version or LATEST_MODERN
            if method is not None:
                headers["mcp-method"] = method
                key = NAMED_METHODS.get(method)
                if key and params and isinstance(params.get(key), str):
                    headers["mcp-name"] = header_value(params[key])
        else:
            if self.session_id:
                headers["mcp-session-id"] = self.session_id
            if self.handshake.protocol_version:
                headers["mcp-protocol-version"] = self.handshake.protocol_version
        headers.update(extra)
        return headers

    async def request(self, method: str, params: dict[str, Any] | None, options: RequestOptions) -> dict[str, Any]:
        if self.closed:
            raise UpstreamUnavailable(f"upstream {self.name} session is closed")
        params, token = self.prepare_params(params, options)
        rid = self.next_id()
        body = jsonrpc.encode(jsonrpc.request(rid, method, params))
        headers = self._headers(method, params, options.headers)
        return await self.run_request(rid, options, token,
                                      lambda: self._exchange(rid, method, body, headers, options.sink))

    async def _exchange(self, rid: int, method: str, body: bytes, headers: dict[str, str],
                        sink: Sink | None) -> dict[str, Any]:
        try:
            async with self.client.post(self.url, data=body, headers=headers, allow_redirects=False) as response:
                if method == "initialize":
                    self.session_id = response.headers.get("mcp-session-id")
                ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if response.status == 404 and self.era == "legacy" and self.session_id:
                    self.closed = True
                    raise UpstreamUnavailable(f"upstream {self.name} ended the session")
                if ctype == "text/event-stream" and response.status < 300:
                    return await self._read_stream(rid, response, sink)
                data = await read_limited(response, self.limits.max_bytes, self.name)
                if response.status >= 500:
                    raise UpstreamUnavailable(f"upstream {self.name} answered HTTP {response.status}")
                return self._final(rid, data, response.status)
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"upstream {self.name} is unreachable ({type(exc).__name__})") from None

    def _final(self, rid: int, data: bytes, status: int) -> dict[str, Any]:
        try:
            message = jsonrpc.decode(data, self.limits) if data else None
        except ProtocolError:
            message = None
        if isinstance(message, dict) and "error" in message and isinstance(message["error"], dict):
            raise UpstreamError(message["error"])
        if status >= 400 or not isinstance(message, dict) or not isinstance(message.get("result"), dict):
            raise UpstreamUnavailable(f"upstream {self.name} answered HTTP {status} without a JSON-RPC result")
        result: dict[str, Any] = message["result"]
        return result

    async def _read_stream(self, rid: int, response: aiohttp.ClientResponse, sink: Sink | None) -> dict[str, Any]:
        parser = SSEParser(max_event_bytes=self.limits.max_bytes)
        async for chunk in response.content.iter_any():
            for event in parser.feed(chunk):
                if event.event != "message" or not event.data.strip():
                    continue
                try:
                    message = jsonrpc.decode(event.data, self.limits)
                    kind = jsonrpc.classify(message)
                except ProtocolError as exc:
                    log.warning("upstream %s: ignored a bad SSE message: %s", self.name, exc.message)
                    continue
                if kind in ("response", "error") and message.get("id") == rid:
                    if kind == "error":
                        raise UpstreamError(message["error"])
                    result: dict[str, Any] = message["result"]
                    return result
                if kind == "notification":
                    await self.route_notification(message, sink)
                elif kind == "request":
                    self.spawn(self.answer(message, sink))
        raise UpstreamUnavailable(f"upstream {self.name} closed the stream before answering")

    async def send_message(self, message: dict[str, Any]) -> None:
        headers = self._headers(message.get("method"), message.get("params"), {})
        status = await post_message(self.client, self.url, message, headers, self.limits.max_bytes, self.name)
        if status >= 400:
            log.warning("upstream %s refused a message with HTTP %s", self.name, status)

    async def cancel_upstream(self, rid: int, reason: str) -> None:
        # Modern HTTP: closing the stream is the cancellation. Legacy: say it explicitly.
        if self.era == "legacy":
            await self.send_cancel(rid, reason)  # bounded: the upstream may not be answering at all

    async def _listen(self) -> None:
        """Legacy standalone GET stream: unsolicited notifications and server requests."""
        headers = {"accept": "text/event-stream"}
        if self.session_id:
            headers["mcp-session-id"] = self.session_id
        if self.handshake.protocol_version:
            headers["mcp-protocol-version"] = self.handshake.protocol_version
        try:
            async with self.client.get(self.url, headers=headers, allow_redirects=False,
                                       timeout=STREAM_TIMEOUT) as response:
                if response.status != 200:
                    return
                parser = SSEParser(max_event_bytes=self.limits.max_bytes)
                async for chunk in response.content.iter_any():
                    for event in parser.feed(chunk):
                        await self.dispatch(event.data)
        except (aiohttp.ClientError, ProtocolError) as exc:
            log.debug("upstream %s: GET stream ended: %s", self.name, exc)

    async def aclose(self) -> None:
        if self.closed and self._listener is None:
            return
        self.closed = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(BaseException):
                await self._listener
            self._listener = None
        if self.era == "legacy" and self.session_id:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0), self.client.delete(
                        self.url, headers={"mcp-session-id": self.session_id}) as response:
                    await response.read()
