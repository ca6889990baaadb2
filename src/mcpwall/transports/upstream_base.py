"""What every upstream session shares, whatever carries its bytes.

An upstream session is one logical MCP connection from the gateway to one server: a legacy
session (after ``initialize``) or a modern stateless channel. It sends requests under the
gateway's own ids and progress tokens (so many clients can share one connection without
collisions), and routes what the server sends back — progress, logs, server→client requests —
to the :class:`Sink` of the request they belong to.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from mcpwall.errors import (
    METHOD_NOT_FOUND,
    ProtocolError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    to_wire,
)
from mcpwall.protocol import jsonrpc
from mcpwall.protocol.jsonrpc import error_response, response
from mcpwall.protocol.versions import (
    LATEST_LEGACY,
    LATEST_MODERN,
    META_CLIENT_CAPABILITIES,
    META_PROTOCOL_VERSION,
    Era,
)

log = logging.getLogger("mcpwall.upstream")

# What the gateway calls itself, to upstreams and clients alike. The version is a protocol-facing
# label, not the release: no version string ever reaches a peer.
GATEWAY_INFO = {"name": "mcpwall", "version": "1"}
GATEWAY_CLIENT_INFO = GATEWAY_INFO
# Server→client requests the gateway relays to clients (2025-11-25 and earlier); ping it answers.
RELAYED_SERVER_REQUESTS = frozenset({"sampling/createMessage", "elicitation/create", "roots/list"})
# Server→client requests one upstream session may have waiting on clients at once.
MAX_SERVER_REQUESTS = 16
CANCEL_GRACE = 1.0  # how long a timed-out or cancelled request waits to tell the upstream so


class Sink(Protocol):
    """Where the messages a server sends about one request go."""

    async def on_notification(self, message: dict[str, Any]) -> None: ...

    async def on_request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Answer a server→client request; returns the JSON-RPC result or raises McpwallError."""
        ...


@dataclass(slots=True)
class RequestOptions:
    timeout: float
    sink: Sink | None = None
    headers: dict[str, str] = field(default_factory=dict)  # extra HTTP headers for this request
    client_capabilities: dict[str, Any] = field(default_factory=dict)  # for modern _meta


UnsolicitedHandler = Callable[[dict[str, Any]], None]


@dataclass(slots=True)
class Handshake:
    """What the server told us about itself."""

    protocol_version: str = ""
    capabilities: dict[str, Any] = field(default_factory=dict)
    server_info: dict[str, Any] = field(default_factory=dict)
    instructions: str | None = None
    supported_versions: list[str] = field(default_factory=list)


class UpstreamSession(abc.ABC):
    """One logical connection to an upstream. Subclasses move bytes; this class keeps ids."""

    limits: jsonrpc.Limits  # set by each transport: what one message from the upstream may weigh

    def __init__(self, name: str, era: Era, *, on_unsolicited: UnsolicitedHandler | None = None) -> None:
        self.name = name
        self.era = era
        self.handshake = Handshake()
        self.on_unsolicited = on_unsolicited
        self.closed = False
        self._ids = itertools.count(1)
        self._tokens = itertools.count(1)
        # gateway progress token -> (client token, sink)
        self._progress: dict[str, tuple[Any, Sink]] = {}
        self.in_flight: dict[int, Sink | None] = {}
        self._spawned: set[asyncio.Task[None]] = set()
        self._server_requests = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background, keeping a reference until it finishes."""
        task = asyncio.create_task(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    def next_id(self) -> int:
        return next(self._ids)

    # -- shaping outgoing requests -------------------------------------------------------

    def prepare_params(self, params: dict[str, Any] | None,
                       options: RequestOptions) -> tuple[dict[str, Any] | None, str | None]:
        """Stamp the era's ``_meta`` and swap the client's progress token for a gateway one."""
        if params is None and self.era == "legacy":
            return None, None
        params = dict(params or {})
        meta = params.get("_meta")
        meta = dict(meta) if isinstance(meta, dict) else {}
        for key in [k for k in meta if k.startswith("io.modelcontextprotocol/")]:
            if self.era == "legacy" or key in (META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES):
                meta.pop(key)
        if self.era == "modern":
            meta[META_PROTOCOL_VERSION] = self.handshake.protocol_version or LATEST_MODERN
            meta[META_CLIENT_CAPABILITIES] = options.client_capabilities
        token = None
        if "progressToken" in meta:
            if options.sink is None:
                del meta["progressToken"]  # nobody to tell; and a raw client token could collide with ours
            else:
                token = f"mcpwall-{next(self._tokens)}"
                self._progress[token] = (meta["progressToken"], options.sink)
                meta["progressToken"] = token
        if meta:
            params["_meta"] = meta
        else:
            params.pop("_meta", None)
        return params, token

    def release_token(self, token: str | None) -> None:
        if token is not None:
            self._progress.pop(token, None)

    # -- routing incoming messages -------------------------------------------------------

    async def route_notification(self, message: dict[str, Any], sink: Sink | None) -> None:
        """Deliver a server notification: progress by token, the rest to the request's sink,
        or to the session-wide handler when it belongs to no request."""
        params = message.get("params")
        if message.get("method") == "notifications/progress" and isinstance(params, dict):
            entry = self._progress.get(str(params.get("progressToken")))
            if entry is None:
                return  # progress for a request that is gone: drop it
            client_token, target = entry
            await target.on_notification({**message, "params": {**params, "progressToken": client_token}})
            return
        if sink is None and message.get("method") in ("notifications/message",) and len(self.in_flight) == 1:
            # stdio servers log without naming a request; with one request in flight it is that one's.
            sink = next(iter(self.in_flight.values()))
        if sink is not None:
            await sink.on_notification(message)
        elif self.on_unsolicited is not None:
            self.on_unsolicited(message)

    async def answer_server_request(self, message: dict[str, Any], sink: Sink | None) -> dict[str, Any]:
        """Produce the JSON-RPC response to a server→client request."""

        rid = message.get("id")
        method = message.get("method")
        if method == "ping":
            return response(rid, {})
        if method not in RELAYED_SERVER_REQUESTS:
            # Clients never declared anything else; relaying unknown methods would hand an
            # upstream a channel the protocol does not give it.
            return error_response(rid, {"code": METHOD_NOT_FOUND, "message": f"Method not found: {method}"})
        if self._server_requests >= MAX_SERVER_REQUESTS:
            return error_response(rid, {"code": -31429, "message": "too many server requests in flight"})
        if sink is None:
            candidates = [s for s in self.in_flight.values() if s is not None]
            sink = candidates[0] if candidates else None
        if sink is None:
            return error_response(rid, {"code": METHOD_NOT_FOUND,
                                        "message": "no client is waiting on this server; request not relayed"})
        self._server_requests += 1
        try:
            return response(rid, await sink.on_request(message))
        except Exception as exc:  # relayed failures become a JSON-RPC error for the server
            return error_response(rid, to_wire(exc))
        finally:
            self._server_requests -= 1

    # -- what the server sends, on transports that multiplex a stream ----------------------

    async def dispatch(self, data: bytes | str) -> None:
        """Handle one message read from a shared stream (stdio stdout, an SSE event stream):
        hand responses to their waiting request, route notifications, answer server requests
        in the background so the reader is never blocked. Garbage is logged and dropped."""
        if not data.strip():
            return
        try:
            message = jsonrpc.decode(data, self.limits)
            kind = jsonrpc.classify(message)
        except ProtocolError as exc:
            log.warning("upstream %s: ignored a bad message: %s", self.name, exc.message)
            return
        if kind in ("response", "error"):
            self.resolve_response(message)
        elif kind == "notification":
            await self.route_notification(message, None)
        else:
            self.spawn(self.answer(message, None))

    async def answer(self, message: dict[str, Any], sink: Sink | None) -> None:
        """Answer one server→client request and send the reply back on this session."""
        reply = await self.answer_server_request(message, sink)
        with contextlib.suppress(Exception):
            await self.send_message(reply)

    # -- one request's life, shared by every transport -------------------------------------

    async def run_request(self, rid: int, options: RequestOptions, token: str | None,
                          exchange: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """Run ``exchange`` (send request ``rid``, return its result) under the request's timeout.

        Timeouts and client cancellations are passed on upstream (``cancel_upstream``); the
        request's sink and progress token are released however it ends."""
        self.in_flight[rid] = options.sink
        try:
            async with asyncio.timeout(options.timeout):
                return await exchange()
        except TimeoutError:
            await self.cancel_upstream(rid, "timeout")
            raise UpstreamTimeout(f"upstream {self.name} did not answer within {options.timeout:g}s") from None
        except asyncio.CancelledError:
            await self.cancel_upstream(rid, "cancelled by the client")
            raise
        finally:
            self.in_flight.pop(rid, None)
            self.release_token(token)

    async def send_and_wait(self, rid: int, message: dict[str, Any],
                            send: Callable[[dict[str, Any]], Awaitable[None]]) -> dict[str, Any]:
        """For transports whose answers arrive on a shared stream (stdio, HTTP+SSE): send, then
        wait for the reader to hand over the response with this id (``resolve_response``)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            await send(message)
            reply = await future
        finally:
            self._pending.pop(rid, None)
        if "error" in reply:
            raise UpstreamError(reply["error"])
        result: dict[str, Any] = reply["result"]
        return result

    def resolve_response(self, message: dict[str, Any]) -> None:
        future = self._pending.get(message.get("id"))  # type: ignore[arg-type]
        if future is not None and not future.done():
            future.set_result(message)

    def fail_pending(self, reason: str) -> None:
        """The stream ended: every waiting request fails now instead of at its timeout."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(UpstreamUnavailable(reason))

    async def cancel_upstream(self, rid: int, reason: str) -> None:
        """Tell the upstream a request is abandoned (transports that cancel differently override)."""
        await self.send_cancel(rid, reason)

    async def send_cancel(self, rid: int, reason: str) -> None:
        """Tell the upstream a request is abandoned, waiting at most CANCEL_GRACE: an upstream that
        stopped reading (or answering) must not hold up the caller's error; the send goes on
        in the background, bounded by the transport's own write timeout."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CANCEL_GRACE):
                await asyncio.shield(self._notify_quietly("notifications/cancelled",
                                                          {"requestId": rid, "reason": reason}))

    async def _notify_quietly(self, method: str, params: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # nobody may be left to hear about a failure
            await self.notify(method, params)

    # -- transport-specific --------------------------------------------------------------

    @abc.abstractmethod
    async def open(self, connect_timeout: float) -> None:
        """Connect and, for legacy sessions, run the initialize handshake."""

    @abc.abstractmethod
    async def request(self, method: str, params: dict[str, Any] | None, options: RequestOptions) -> dict[str, Any]:
        """Send one request; return its result or raise an McpwallError subclass."""

    @abc.abstractmethod
    async def send_message(self, message: dict[str, Any]) -> None:
        """Put one JSON-RPC message on the wire to the upstream (bounded in time)."""

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        await self.send_message(jsonrpc.notification(method, params))

    @abc.abstractmethod
    async def aclose(self) -> None: ...


def initialize_params(capabilities: dict[str, Any], version: str = LATEST_LEGACY) -> dict[str, Any]:
    return {"protocolVersion": version, "capabilities": capabilities, "clientInfo": GATEWAY_CLIENT_INFO}


def parse_initialize(result: dict[str, Any]) -> Handshake:
    caps = result.get("capabilities")
    info = result.get("serverInfo")
    instructions = result.get("instructions")
    return Handshake(
        protocol_version=str(result.get("protocolVersion") or LATEST_LEGACY),
        capabilities=caps if isinstance(caps, dict) else {},
        server_info=info if isinstance(info, dict) else {},
        instructions=instructions if isinstance(instructions, str) else None,
    )


def parse_discover(result: dict[str, Any]) -> Handshake:
    caps = result.get("capabilities")
    meta = result.get("_meta") if isinstance(result.get("_meta"), dict) else {}
    info = meta.get("io.modelcontextprotocol/serverInfo") if meta else None
    versions = result.get("supportedVersions")
    instructions = result.get("instructions")
    versions = [v for v in versions if isinstance(v, str)] if isinstance(versions, list) else []
    return Handshake(
        protocol_version=LATEST_MODERN if LATEST_MODERN in versions else (versions[0] if versions else LATEST_MODERN),
        capabilities=caps if isinstance(caps, dict) else {},
        server_info=info if isinstance(info, dict) else {},
        instructions=instructions if isinstance(instructions, str) else None,
        supported_versions=versions,
    )
