"""The Streamable HTTP front: one endpoint serving both protocol eras (raw ASGI).

Per request: DNS-rebinding checks (Host, Origin), content negotiation (406/415), a body size
cap before parsing (413), JSON-RPC framing, era detection, authentication by the guard chain,
then either the modern checks (``MCP-Protocol-Version``/``Mcp-Method``/``Mcp-Name`` against the
body, ``_meta``) or the legacy session checks (``Mcp-Session-Id`` bound to the principal).

Responses start as plain JSON; the first notification or server→client request that must
travel before the answer switches the response to SSE. Closing a modern SSE response cancels
the call, as the 2026 transport says; a legacy disconnect does not.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.routing import BaseRoute, Router

from mcpwall.config.types import is_loopback
from mcpwall.errors import (
    INVALID_PARAMS,
    HeaderMismatch,
    McpwallError,
    ProtocolError,
    UnsupportedVersion,
    http_status_for,
    to_wire,
)
from mcpwall.gateway.call import ANONYMOUS, Call
from mcpwall.gateway.core import Gateway, Reply
from mcpwall.gateway.sessions import FrontSession, SessionPeer
from mcpwall.protocol import jsonrpc
from mcpwall.protocol.versions import (
    BATCH_VERSION,
    HTTP_DEFAULT_LEGACY,
    LEGACY_VERSIONS,
    META_CLIENT_CAPABILITIES,
    META_PROTOCOL_VERSION,
    MODERN_VERSIONS,
    NAMED_METHODS,
)
from mcpwall.transports.sse import KEEPALIVE, encode_event

log = logging.getLogger("mcpwall.http")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_PATH, MESSAGES_PATH = "/sse", "/messages"  # the deprecated HTTP+SSE transport, when enabled
BODY_TIMEOUT = 30.0  # seconds between body chunks before a request is abandoned
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]


class HttpError(Exception):
    """An HTTP-level refusal with an optional id-less JSON-RPC error body."""

    def __init__(self, status: int, message: str, code: int = -32600, headers: dict[str, str] | None = None,
                 data: Any = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers, self.data = status, message, code, headers or {}, data
        self.request_id: Any = None  # echoed when the refused message was a readable request

    def body(self) -> bytes:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return jsonrpc.encode(jsonrpc.error_response(self.request_id, error))


class HttpFront:
    def __init__(self, gateway: Gateway, extra_routes: list[BaseRoute] | None = None,
                 lifespan: bool = True) -> None:
        self.gateway = gateway
        self.config = gateway.config.listen
        self.path = self.config.path
        self.router = Router(routes=extra_routes or [])
        self.manage_lifespan = lifespan
        self._origins = {o.rstrip("/").lower() for o in self.config.allowed_origins}
        self._hosts = {h.lower() for h in self.config.allowed_hosts}
        bind = self.config.host.lower()
        self._hosts.add(bind)

    # -- ASGI entry ----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"].rstrip("/") or "/"
        try:
            self._check_host_and_origin(scope)
        except HttpError as exc:
            await _plain(send, exc.status, exc.body(), exc.headers)
            return
        if path == self.path:
            await self._mcp(scope, receive, send)
        elif self.config.legacy_sse and path in (SSE_PATH, MESSAGES_PATH):
            try:
                if path == SSE_PATH and scope["method"] == "GET":
                    await self._legacy_sse_stream(scope, receive, send)
                elif path == MESSAGES_PATH and scope["method"] == "POST":
                    await self._legacy_sse_message(scope, receive, send)
                else:
                    raise HttpError(405, "Method Not Allowed",
                                    headers={"allow": "GET" if path == SSE_PATH else "POST"})
            except HttpError as exc:
                await _plain(send, exc.status, exc.body(), exc.headers)
        elif path == "/healthz" and scope["method"] in ("GET", "HEAD"):
            ready = self.gateway.ready.is_set()
            await _plain(send, 200 if ready else 503, b'{"status":"ok"}' if ready else b'{"status":"starting"}')
        else:
            await self.router(scope, receive, send)  # type: ignore[arg-type]

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.manage_lifespan:
                        await self.gateway.start()
                except Exception:
                    log.exception("gateway failed to start")
                    await send({"type": "lifespan.startup.failed", "message": "gateway failed to start"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.manage_lifespan:
                    await self.gateway.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- DNS-rebinding protection --------------------------------------------------------

    def _check_host_and_origin(self, scope: Scope) -> None:
        headers = _headers(scope)
        host = headers.get("host")
        if host is not None and not self._host_allowed(host):
            raise HttpError(421, "Misdirected Request: Host not allowed")
        origin = headers.get("origin")
        if origin is not None and not self._origin_allowed(origin):
            raise HttpError(403, "Forbidden: Origin not allowed")

    def _host_allowed(self, host: str) -> bool:
        name = _host_name(host)
        return name is not None and (is_loopback(name) or name in self._hosts or host.lower() in self._hosts)

    def _origin_allowed(self, origin: str) -> bool:
        origin = origin.rstrip("/").lower()
        if origin in self._origins:
            return True
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and parts.hostname is not None and is_loopback(parts.hostname)

    # -- the MCP endpoint ----------------------------------------------------------------

    async def _mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        try:
            if method == "POST":
                await self._post(scope, receive, send)
            elif method == "GET":
                await self._get(scope, receive, send)
            elif method == "DELETE":
                await self._delete(scope, send)
            else:
                raise HttpError(405, "Method Not Allowed", headers={"allow": "GET, POST, DELETE"})
        except HttpError as exc:
            await _plain(send, exc.status, exc.body(), exc.headers)

    async def _base_call(self, scope: Scope, headers: dict[str, str], message: dict[str, Any], body: bytes) -> Call:
        client = scope.get("client")
        call = Call(message=message, principal=ANONYMOUS, era="legacy", protocol_version=HTTP_DEFAULT_LEGACY,
                    transport="http", source=client[0] if client else "", headers=headers,
                    transport_info={"scheme": scope.get("scheme", "http"), "client": tuple(client) if client else None,
                                    "body_sha256": hashlib.sha256(body).hexdigest(),
                                    "path": scope.get("path", ""), "http_method": scope.get("method", ""),
                                    "tls": scope.get("extensions", {}).get("tls")})
        reject = await self.gateway.chain.authenticate(call)
        if reject is not None:
            raise HttpError(reject.http_status or 401, reject.reason, code=reject.code, headers=reject.headers)
        if call.principal.anonymous and not self.gateway.config.security.allow_anonymous:
            raise HttpError(401, "Unauthorized: authentication required")
        return call

    async def _read_body(self, scope: Scope, receive: Receive, headers: dict[str, str]) -> bytes:
        limit = self.gateway.limits.max_bytes
        declared = headers.get("content-length")
        # str.isdigit() also accepts non-ASCII digits ("\xb2") that int() refuses, and int() refuses
        # strings over 4300 digits: check ASCII first and treat an absurdly long length as too large.
        if declared is not None and declared.isascii() and declared.isdigit() \
                and (len(declared) > 18 or int(declared) > limit):
            raise HttpError(413, f"Payload Too Large: the limit is {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                async with asyncio.timeout(BODY_TIMEOUT):  # a client may not trickle a body forever
                    message = await receive()
            except TimeoutError:
                raise HttpError(408, "Request Timeout: the body did not arrive in time") from None
            if message["type"] == "http.disconnect":
                raise HttpError(400, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise HttpError(413, f"Payload Too Large: the limit is {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _post(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise HttpError(415, "Unsupported Media Type: Content-Type must be application/json")
        accept = headers.get("accept", "").lower()
        wildcard = "*/*" in accept
        if not wildcard and not ("application/json" in accept and "text/event-stream" in accept):
            raise HttpError(406, "Not Acceptable: Accept must list application/json and text/event-stream")
        body = await self._read_body(scope, receive, headers)
        try:
            parsed = jsonrpc.decode(body, self.gateway.limits)
        except McpwallError as exc:
            raise HttpError(exc.http_status or 400, exc.message, code=exc.code) from None
        if isinstance(parsed, list):
            await self._batch(scope, receive, send, headers, parsed, body)
            return
        try:
            kind = jsonrpc.classify(parsed)
        except ProtocolError as exc:
            raise HttpError(400, exc.message, code=exc.code) from None
        try:
            call = await self._base_call(scope, headers, parsed, body)
            session = self._era_and_session(call, headers, kind)
        except HttpError as exc:
            if kind == "request":
                exc.request_id = parsed.get("id")
            raise
        if kind in ("response", "error"):
            if session is None or not session.resolve(parsed):
                log.debug("a client response matched no pending request")
            await _plain(send, 202, b"")
            return
        if kind == "notification":
            await self.gateway.client_notification(call, session)
            await _plain(send, 202, b"")
            return
        if call.method == "initialize" and call.era == "legacy":
            await self._initialize(call, send)
            return
        if call.method == "subscriptions/listen" and call.era == "modern":
            await self._listen(call, receive, send)
            return
        sse_ok = wildcard or "text/event-stream" in accept
        await self._respond(call, session, receive, send, sse_ok)

    async def _batch(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str],
                     messages: list[Any], body: bytes) -> None:
        """JSON-RPC batches: only inside a session that negotiated 2025-03-26."""
        session_id = headers.get("mcp-session-id")
        if not messages or session_id is None:
            raise HttpError(400, "Invalid Request: batches are only accepted under protocol 2025-03-26")
        probe = await self._base_call(scope, headers, {}, body)
        session = self.gateway.sessions.get(session_id, probe.principal.key)
        if session is None:
            raise HttpError(404, "Not Found: unknown session", code=-32001)
        if session.protocol_version != BATCH_VERSION:
            raise HttpError(400, "Invalid Request: batches are only accepted under protocol 2025-03-26")
        replies: list[dict[str, Any]] = []
        for item in messages:
            try:
                kind = jsonrpc.classify(item)
            except ProtocolError as exc:
                replies.append(jsonrpc.error_response(None, to_wire(exc)))
                continue
            call = Call(message=item, principal=probe.principal, era="legacy",
                        protocol_version=session.protocol_version, transport="http", session_id=session.id,
                        source=probe.source, headers=headers, transport_info=probe.transport_info,
                        client_capabilities=session.client_capabilities)
            if kind in ("response", "error"):
                session.resolve(item)
            elif kind == "notification":
                await self.gateway.client_notification(call, session)
            else:
                peer = SessionPeer(session, _push_to(session), legacy=True)
                reply = await self.gateway.handle(call, peer, session)
                replies.append(reply.message)
        if not replies:
            await _plain(send, 202, b"")
        else:
            await _plain(send, 200, jsonrpc.encode(replies))

    def _era_and_session(self, call: Call, headers: dict[str, str], kind: str) -> FrontSession | None:
        """Decide the era of this POST and find its legacy session. Raises HttpError."""
        session_id = headers.get("mcp-session-id")
        version_header = headers.get("mcp-protocol-version")
        params = call.params
        raw_meta = params.get("_meta")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        meta_version = meta.get(META_PROTOCOL_VERSION)
        modern_hint = (version_header is not None and version_header not in LEGACY_VERSIONS) or meta_version is not None
        if call.method == "initialize" and session_id is None and not modern_hint:
            call.era = "legacy"
            return None
        if session_id is not None:
            session = self.gateway.sessions.get(session_id, call.principal.key)
            if session is None:
                raise HttpError(404, "Not Found: unknown or expired session", code=-32001)
            if version_header is not None and version_header != session.protocol_version \
                    and version_header not in LEGACY_VERSIONS:
                raise HttpError(400, f"Bad Request: unsupported MCP-Protocol-Version {version_header}")
            call.era = "legacy"
            call.session_id = session.id
            call.protocol_version = session.protocol_version
            call.client_capabilities = session.client_capabilities
            return session
        if not modern_hint:
            if kind in ("request", "notification"):
                raise HttpError(400, "Bad Request: Mcp-Session-Id header is required (send initialize first, "
                                     "or use protocol 2026-07-28)")
            return None
        call.era = "modern"
        if kind != "request":
            return None
        self._check_modern(call, headers, version_header, meta_version, meta)
        return None

    def _check_modern(self, call: Call, headers: dict[str, str], version_header: str | None,
                      meta_version: Any, meta: dict[str, Any]) -> None:
        mismatch = HeaderMismatch("Header mismatch")
        if version_header is not None and meta_version is not None and version_header != meta_version:
            raise HttpError(400, "Header mismatch: MCP-Protocol-Version does not match the body", code=mismatch.code)
        version = meta_version if meta_version is not None else version_header
        if not isinstance(version, str) or version not in MODERN_VERSIONS:
            requested = version if isinstance(version, str) else None
            exc = UnsupportedVersion(f"Unsupported protocol version: {requested}",
                                     data={"supported": list(MODERN_VERSIONS), "requested": requested})
            raise HttpError(400, exc.message, code=exc.code, data=exc.data)
        if meta_version is None or META_CLIENT_CAPABILITIES not in meta \
                or not isinstance(meta.get(META_CLIENT_CAPABILITIES), dict):
            raise HttpError(400, "Invalid params: _meta must carry protocolVersion and clientCapabilities",
                            code=INVALID_PARAMS)
        if version_header != meta_version:
            raise HttpError(400, "Header mismatch: MCP-Protocol-Version does not match the body", code=mismatch.code)
        if headers.get("mcp-method") != call.method:
            raise HttpError(400, "Header mismatch: Mcp-Method does not match the body", code=mismatch.code)
        name_key = NAMED_METHODS.get(call.method)
        if name_key is not None:
            name_header = headers.get("mcp-name")
            body_value = call.params.get(name_key)
            if name_header is None or _header_decode(name_header) != body_value:
                raise HttpError(400, "Header mismatch: Mcp-Name does not match the body", code=mismatch.code)
        call.protocol_version = meta_version
        call.client_capabilities = meta[META_CLIENT_CAPABILITIES]

    async def _initialize(self, call: Call, send: Send) -> None:
        params = call.params
        caps = params.get("capabilities") if isinstance(params.get("capabilities"), dict) else {}
        info = params.get("clientInfo") if isinstance(params.get("clientInfo"), dict) else {}
        call.client_capabilities = caps or {}
        reply = await self.gateway.handle(call, _NoPeer())
        if "result" not in reply.message:
            await _send_reply(send, reply)
            return
        version = reply.message["result"].get("protocolVersion", LEGACY_VERSIONS[0])
        try:
            session = self.gateway.sessions.create(call.principal.key, version, caps or {}, info or {})
        except McpwallError as exc:
            await _send_reply(send, Reply(jsonrpc.error_response(call.request_id, to_wire(exc)), 503))
            return
        reply.headers["mcp-session-id"] = session.id
        await _send_reply(send, reply)

    async def _respond(self, call: Call, session: FrontSession | None, receive: Receive, send: Send,
                       sse_ok: bool) -> None:
        stream = _ResponseStream(send, sse_ok and self.config.response_mode != "json",
                                 self.config.response_mode == "sse", session)
        peer = SessionPeer(session, stream.emit, legacy=call.era == "legacy")
        call.notify = lambda method, params: stream.emit(jsonrpc.notification(method, params))
        if peer.can_ask:
            call.ask_client = lambda method, params: peer.ask(method, params, 300.0)
        task = asyncio.create_task(self.gateway.handle(call, peer, session))
        if session is not None:
            session.in_flight[call.request_id] = task
        watcher = asyncio.create_task(_wait_disconnect(receive)) if call.era == "modern" else None
        keepalive = self.config.sse_keepalive
        try:
            while True:
                waiters: set[asyncio.Future[Any]] = {task}
                if watcher is not None:
                    waiters.add(watcher)
                done, _ = await asyncio.wait(waiters, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED)
                if task in done:
                    break
                if watcher is not None and watcher in done:
                    task.cancel()  # modern: a closed stream is a cancellation
                    with contextlib.suppress(BaseException):
                        await task
                    return
                await stream.keepalive()
            reply = task.result()
            await stream.finish(reply, call)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
            if session is not None:
                session.in_flight.pop(call.request_id, None)

    async def _listen(self, call: Call, receive: Receive, send: Send) -> None:
        """Modern ``subscriptions/listen``: acknowledge, then relay matching notifications."""
        try:
            listener, ack = await self.gateway.listen(call)
        except McpwallError as exc:
            await _send_reply(send, Reply(jsonrpc.error_response(call.request_id, to_wire(exc)),
                                          http_status_for(exc, modern=True)))
            return
        try:
            await self._stream(listener.queue, receive, send, first=encode_event(jsonrpc.encode(ack)))
        finally:
            await self.gateway.unlisten(listener)

    async def _stream(self, queue: asyncio.Queue[dict[str, Any]], receive: Receive, send: Send, *,
                      first: bytes = b"", until: Callable[[], bool] = lambda: False,
                      unsent: Callable[[dict[str, Any]], None] | None = None) -> None:
        """An SSE response that relays ``queue`` until the client leaves (or ``until()``), with
        comment keep-alives when idle. A message taken as the client left goes to ``unsent``."""
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        if first:
            await send({"type": "http.response.body", "body": first, "more_body": True})
        watcher = asyncio.create_task(_wait_disconnect(receive))
        try:
            while not until():
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({getter, watcher}, timeout=self.config.sse_keepalive,
                                             return_when=asyncio.FIRST_COMPLETED)
                if watcher in done:
                    if getter.done() and unsent is not None:
                        unsent(getter.result())
                    getter.cancel()
                    return
                if getter in done:
                    body = encode_event(jsonrpc.encode(getter.result()))
                else:
                    getter.cancel()
                    body = KEEPALIVE
                await send({"type": "http.response.body", "body": body, "more_body": True})
        finally:
            watcher.cancel()
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _get(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Legacy standalone stream: unsolicited notifications and server requests."""
        headers = _headers(scope)
        session_id = headers.get("mcp-session-id")
        if session_id is None:
            raise HttpError(405, "Method Not Allowed", headers={"allow": "POST"})
        if "text/event-stream" not in headers.get("accept", "") and "*/*" not in headers.get("accept", ""):
            raise HttpError(406, "Not Acceptable: Accept must list text/event-stream")
        call = await self._base_call(scope, headers, {"jsonrpc": "2.0", "method": "http/get"}, b"")
        session = self.gateway.sessions.get(session_id, call.principal.key)
        if session is None:
            raise HttpError(404, "Not Found: unknown or expired session", code=-32001)
        if session.stream_open:
            raise HttpError(409, "Conflict: a stream is already open for this session")
        session.stream_open = True
        try:
            await self._stream(session.outbox, receive, send, until=lambda: session.closed,
                               unsent=session.push)
        finally:
            session.stream_open = False

    # -- the deprecated HTTP+SSE transport (2024-11-05) ----------------------------------

    async def _legacy_sse_stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET /sse: open a session; everything for it, answers included, flows on this stream."""
        headers = _headers(scope)
        call = await self._base_call(scope, headers, {"jsonrpc": "2.0", "method": "http/sse"}, b"")
        try:
            session = self.gateway.sessions.create(call.principal.key, "2024-11-05", {}, {})
        except McpwallError as exc:  # at max_sessions: refuse like initialize does, never raise out of the app
            raise HttpError(503, exc.message, code=exc.code) from None
        session.stream_open = True
        endpoint = f"{MESSAGES_PATH}?session_id={session.id}".encode()
        try:
            await self._stream(session.outbox, receive, send, first=encode_event(endpoint, event="endpoint"),
                               until=lambda: session.closed)
        finally:
            await self.gateway.end_session(session.id)  # the stream is the session

    async def _legacy_sse_message(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /messages?session_id=…: accept a message; its answer goes out on the stream."""
        headers = _headers(scope)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        session_id = (query.get("session_id") or query.get("sessionId") or [""])[0]
        if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise HttpError(415, "Unsupported Media Type: Content-Type must be application/json")
        body = await self._read_body(scope, receive, headers)
        try:
            message = jsonrpc.decode(body, self.gateway.limits)
            kind = jsonrpc.classify(message)
        except McpwallError as exc:
            raise HttpError(exc.http_status or 400, exc.message, code=exc.code) from None
        call = await self._base_call(scope, headers, message, body)
        session = self.gateway.sessions.get(session_id, call.principal.key)
        if session is None:
            raise HttpError(404, "Not Found: unknown or expired session", code=-32001)
        call.session_id, call.protocol_version = session.id, session.protocol_version
        call.client_capabilities = session.client_capabilities
        await _plain(send, 202, b"")
        if kind in ("response", "error"):
            session.resolve(message)
        elif kind == "notification":
            await self.gateway.client_notification(call, session)
        else:
            session.in_flight[call.request_id] = asyncio.create_task(self._legacy_sse_answer(call, session))

    async def _legacy_sse_answer(self, call: Call, session: FrontSession) -> None:
        try:
            if call.method == "initialize":
                params = call.params
                caps = params.get("capabilities")
                info = params.get("clientInfo")
                session.client_capabilities = call.client_capabilities = caps if isinstance(caps, dict) else {}
                session.client_info = info if isinstance(info, dict) else {}
            peer = SessionPeer(session, _push_to(session), legacy=True)
            call.notify = lambda method, params: peer.notify(jsonrpc.notification(method, params))
            call.ask_client = lambda method, params: peer.ask(method, params, 300.0)
            reply = await self.gateway.handle(call, peer, session)
            if call.method == "initialize" and "result" in reply.message:
                session.protocol_version = reply.message["result"].get("protocolVersion", session.protocol_version)
            session.push(reply.message)
        finally:
            session.in_flight.pop(call.request_id, None)

    async def _delete(self, scope: Scope, send: Send) -> None:
        headers = _headers(scope)
        session_id = headers.get("mcp-session-id")
        if session_id is None:
            raise HttpError(405, "Method Not Allowed", headers={"allow": "POST"})
        call = await self._base_call(scope, headers, {"jsonrpc": "2.0", "method": "http/delete"}, b"")
        if self.gateway.sessions.get(session_id, call.principal.key) is None:
            raise HttpError(404, "Not Found: unknown or expired session", code=-32001)
        await self.gateway.end_session(session_id)
        await _plain(send, 200, b"")


class _NoPeer:
    can_ask = False

    async def notify(self, message: dict[str, Any]) -> None:
        return None

    async def ask(self, method: str, params: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
        from mcpwall.errors import BridgeUnsupported

        raise BridgeUnsupported("no client channel is open for server requests")


class _ResponseStream:
    """One POST's response: JSON until something must stream, then SSE."""

    def __init__(self, send: Send, sse_ok: bool, force_sse: bool, session: FrontSession | None) -> None:
        self._send = send
        self.sse_ok = sse_ok
        self.session = session
        self.streaming = False
        self._lock = asyncio.Lock()
        self._force = force_sse and sse_ok

    async def _start(self) -> None:
        if not self.streaming:
            self.streaming = True
            await self._send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})

    async def emit(self, message: dict[str, Any]) -> None:
        if not self.sse_ok:
            # The client takes JSON only: route to the session's standalone stream if it has one.
            if self.session is not None:
                self.session.push(message)
            return
        async with self._lock:
            await self._start()
            await self._send({"type": "http.response.body", "body": encode_event(jsonrpc.encode(message)),
                              "more_body": True})

    async def keepalive(self) -> None:
        if not self.sse_ok:
            return
        async with self._lock:
            await self._start()
            await self._send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})

    async def finish(self, reply: Reply, call: Call) -> None:
        async with self._lock:
            if self._force and not self.streaming:
                await self._start()
            if self.streaming:
                await self._send({"type": "http.response.body", "body": encode_event(jsonrpc.encode(reply.message)),
                                  "more_body": False})
                return
        await _send_reply(self._send, reply)


async def _send_reply(send: Send, reply: Reply) -> None:
    await _plain(send, reply.status, jsonrpc.encode(reply.message), reply.headers)


async def _plain(send: Send, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    raw = list(JSON_HEADERS) if body else []
    for name, value in (headers or {}).items():
        raw.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def _push_to(session: FrontSession) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def push(message: dict[str, Any]) -> None:
        session.push(message)
    return push


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


def _host_name(host: str) -> str | None:
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else None
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _header_decode(value: str) -> str:
    if value.startswith("=?base64?") and value.endswith("?="):
        try:
            return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, and b64decode's own error for non-ASCII text
            return "\0invalid"
    return value

