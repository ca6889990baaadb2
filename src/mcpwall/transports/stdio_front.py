"""The stdio front: the gateway as an MCP server on stdin/stdout, for desktop clients.

Newline-delimited JSON-RPC in both directions. Requests run concurrently (a slow tool does not
block a ping); writes to stdout are serialized. The client is legacy once it sends
``initialize`` and modern when its requests carry 2026-07-28 ``_meta``. Nothing but MCP
messages is ever written to stdout — logs go to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

from mcpwall.errors import GATEWAY_UNAUTHENTICATED, McpwallError, ProtocolError, to_wire
from mcpwall.gateway.call import ANONYMOUS, Call
from mcpwall.gateway.core import Gateway
from mcpwall.gateway.sessions import FrontSession, SessionPeer
from mcpwall.protocol import jsonrpc
from mcpwall.protocol.versions import (
    LATEST_LEGACY,
    META_CLIENT_CAPABILITIES,
    META_PROTOCOL_VERSION,
    MODERN_VERSIONS,
)
from mcpwall.transports.lines import read_line

log = logging.getLogger("mcpwall.stdio")

LINE_LIMIT = 64 * 1024 * 1024


class StdioFront:
    def __init__(self, gateway: Gateway, reader: asyncio.StreamReader, writer: Any) -> None:
        self.gateway = gateway
        self.reader = reader
        self.writer = writer  # has write(bytes) and async drain()
        self._write_lock = asyncio.Lock()
        # One front session object holds the in-flight tasks and pending server requests for
        # both eras; it joins the gateway's session store once the client initializes.
        self.session = FrontSession("stdio", ANONYMOUS.key, LATEST_LEGACY, {}, {})
        self.initialized = False
        self._tasks: set[asyncio.Task[Any]] = set()

    async def write(self, message: dict[str, Any]) -> None:
        data = jsonrpc.encode(message) + b"\n"
        async with self._write_lock:
            self.writer.write(data)
            await self.writer.drain()

    async def run(self) -> None:
        pump = asyncio.create_task(self._pump_outbox())
        try:
            while True:
                line = await read_line(self.reader)
                if line is None:
                    await self.write(jsonrpc.error_response(None, {"code": -32600, "message": "message too large"}))
                    continue
                if not line:
                    break
                if line.strip():
                    await self._on_line(line)
        finally:
            pump.cancel()
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(BaseException):
                    await task

    async def _pump_outbox(self) -> None:
        while True:
            message = await self.session.outbox.get()
            with contextlib.suppress(Exception):
                await self.write(message)

    async def _on_line(self, line: bytes) -> None:
        try:
            message = jsonrpc.decode(line, self.gateway.limits)
            if isinstance(message, list):
                raise ProtocolError("Invalid Request: batches are not accepted on stdio")
            kind = jsonrpc.classify(message)
        except McpwallError as exc:
            await self.write(jsonrpc.error_response(None, to_wire(exc)))
            return
        if kind in ("response", "error"):
            self.session.resolve(message)
            return
        call = Call(message=message, principal=self.session_principal(), era="legacy",
                    protocol_version=self.session.protocol_version, transport="stdio", source="stdio",
                    transport_info={"scheme": "stdio"})
        reject = await self.gateway.chain.authenticate(call)
        if reject is not None:
            if kind == "request":
                error = {"code": reject.code, "message": reject.reason}
                await self.write(jsonrpc.error_response(call.request_id, error))
            return
        if call.principal.anonymous and not self.gateway.config.security.allow_anonymous:
            if kind == "request":
                await self.write(jsonrpc.error_response(call.request_id,
                                                        {"code": GATEWAY_UNAUTHENTICATED,
                                                         "message": "authentication required"}))
            return
        self._set_era(call)
        if kind == "notification":
            if call.method == "notifications/cancelled":
                rid = call.params.get("requestId")
                # Client-controlled JSON: an unhashable id would raise here and end the whole front.
                task = self.session.in_flight.get(rid) if isinstance(rid, (str, int)) else None
                if task is not None:
                    task.cancel()
                return
            await self.gateway.client_notification(call, self.session if self.initialized else None)
            return
        task = asyncio.create_task(self._serve(call))
        self._tasks.add(task)
        self.session.in_flight[call.request_id] = task
        rid = call.request_id
        task.add_done_callback(lambda done: self._done(done, rid))

    def _done(self, task: asyncio.Task[Any], rid: Any) -> None:
        self._tasks.discard(task)
        if self.session.in_flight.get(rid) is task:
            del self.session.in_flight[rid]

    def session_principal(self) -> Any:
        return ANONYMOUS

    def _set_era(self, call: Call) -> None:
        meta = call.params.get("_meta")
        version = meta.get(META_PROTOCOL_VERSION) if isinstance(meta, dict) else None
        if isinstance(version, str) and version in MODERN_VERSIONS and call.method != "initialize":
            call.era = "modern"
            call.protocol_version = version
            caps = meta.get(META_CLIENT_CAPABILITIES) if isinstance(meta, dict) else None
            call.client_capabilities = caps if isinstance(caps, dict) else {}
        else:
            call.era = "legacy"
            call.client_capabilities = self.session.client_capabilities
            if self.initialized:
                call.session_id = self.session.id

    async def _serve(self, call: Call) -> None:
        try:
            if call.method == "initialize":
                await self._initialize(call)
                return
            if call.method == "subscriptions/listen" and call.era == "modern":
                await self._listen(call)
                return
            if call.era == "modern":
                meta = call.params.get("_meta")
                if not isinstance(meta, dict) or not isinstance(meta.get(META_CLIENT_CAPABILITIES), dict):
                    await self.write(jsonrpc.error_response(call.request_id, {
                        "code": -32602, "message": "Invalid params: _meta must carry clientCapabilities"}))
                    return
            legacy = call.era == "legacy" and self.initialized
            peer = SessionPeer(self.session if legacy else None, self.write, legacy=legacy)
            call.notify = lambda method, params: self.write(jsonrpc.notification(method, params))
            if peer.can_ask:
                call.ask_client = lambda method, params: peer.ask(method, params, 300.0)
            reply = await self.gateway.handle(call, peer, self.session if legacy else None)
            await self.write(reply.message)
        except asyncio.CancelledError:
            return  # cancelled by the client: no response, as the spec says

    async def _initialize(self, call: Call) -> None:
        params = call.params
        caps = params.get("capabilities") if isinstance(params.get("capabilities"), dict) else {}
        info = params.get("clientInfo") if isinstance(params.get("clientInfo"), dict) else {}
        call.client_capabilities = caps or {}
        reply = await self.gateway.handle(call, SessionPeer(None, self.write, legacy=False))
        if "result" in reply.message:
            if self.initialized:
                # Ending the old session would cancel its in-flight tasks — this initialize among
                # them, and any request read before or after it — and a cancelled task never
                # answers, so the client would wait forever. The stdio session object lives on,
                # so the requests keep running and answer as usual.
                running, self.session.in_flight = self.session.in_flight, {}
                await self.gateway.end_session(self.session.id)
                self.session.in_flight = running
            self.session.protocol_version = reply.message["result"].get("protocolVersion", LATEST_LEGACY)
            self.session.client_capabilities = caps or {}
            self.session.client_info = info or {}
            self.session.principal_key = call.principal.key
            self.session.closed = False
            self.gateway.sessions.adopt(self.session)
            self.initialized = True
        await self.write(reply.message)

    async def _listen(self, call: Call) -> None:
        try:
            listener, ack = await self.gateway.listen(call)
        except McpwallError as exc:
            await self.write(jsonrpc.error_response(call.request_id, to_wire(exc)))
            return
        await self.write(ack)
        try:
            while True:
                await self.write(await listener.queue.get())
        finally:
            await self.gateway.unlisten(listener)


async def stdio_streams() -> tuple[asyncio.StreamReader, Any]:
    """Async reader/writer over this process's stdin/stdout."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout.buffer)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer
