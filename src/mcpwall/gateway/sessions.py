"""Client-side sessions: legacy front sessions, and the channel each request uses to talk back.

A legacy front session is minted by the gateway on ``initialize`` (a 256-bit random id), bound to
the principal that created it, and used only to route — never to authenticate: every request is
authenticated on its own. Sessions idle longer than the configured timeout are closed, and so
are the upstream sessions opened for them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from mcpwall.errors import BridgeUnsupported, UpstreamTimeout, UpstreamUnavailable
from mcpwall.protocol import jsonrpc

log = logging.getLogger("mcpwall.sessions")

OUTBOX_LIMIT = 1024
_server_request_ids = itertools.count(1)


@dataclass(eq=False)
class FrontSession:
    """A legacy client session (HTTP with ``Mcp-Session-Id``, or the one session of stdio)."""

    id: str
    principal_key: str
    protocol_version: str
    client_capabilities: dict[str, Any]
    client_info: dict[str, Any]
    created: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    log_level: str | None = None
    subscriptions: set[str] = field(default_factory=set)
    # Messages for the standalone stream (HTTP GET) or stdout (stdio): unsolicited notifications
    # and server→client requests that belong to no open request stream.
    outbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    pending: dict[Any, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    in_flight: dict[Any, asyncio.Task[Any]] = field(default_factory=dict)
    stream_open: bool = False
    closed: bool = False

    def push(self, message: dict[str, Any]) -> None:
        """Queue a message for the session's stream. Notifications beyond the limit are dropped
        when the client stops reading; responses and requests never are (they are bounded by the
        requests in flight, and dropping one would leave a caller waiting forever)."""
        if "id" not in message and self.outbox.qsize() >= OUTBOX_LIMIT:
            log.warning("session outbox full; dropped a notification")
            return
        self.outbox.put_nowait(message)

    def resolve(self, message: dict[str, Any]) -> bool:
        """Deliver the client's response to a server→client request. False if nobody waits."""
        future = self.pending.get(message.get("id"))
        if future is None or future.done():
            return False
        future.set_result(message)
        return True


class SessionStore:
    def __init__(self, max_sessions: int, idle_timeout: float, max_per_principal: int | None = None) -> None:
        self.max_sessions = max_sessions
        self.max_per_principal = max_per_principal or max_sessions
        self.idle_timeout = idle_timeout
        self._sessions: dict[str, FrontSession] = {}
        self._per_principal: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, principal_key: str, protocol_version: str, capabilities: dict[str, Any],
               client_info: dict[str, Any]) -> FrontSession:
        if len(self._sessions) >= self.max_sessions:
            raise UpstreamUnavailable("the gateway has too many open sessions; try again later")
        if self._per_principal.get(principal_key, 0) >= self.max_per_principal:
            # One caller cannot use up everyone's sessions.
            raise UpstreamUnavailable("too many open sessions for this caller; end some first")
        session = FrontSession(secrets.token_urlsafe(32), principal_key, protocol_version, capabilities, client_info)
        self._sessions[session.id] = session
        self._per_principal[principal_key] = self._per_principal.get(principal_key, 0) + 1
        return session

    def adopt(self, session: FrontSession) -> None:
        """Register a session the front created itself (stdio has exactly one)."""
        if session.id not in self._sessions:
            self._per_principal[session.principal_key] = self._per_principal.get(session.principal_key, 0) + 1
        self._sessions[session.id] = session

    def get(self, session_id: str, principal_key: str) -> FrontSession | None:
        """The live session with this id, if it belongs to this principal."""
        session = self._sessions.get(session_id)
        if session is None or session.closed or session.principal_key != principal_key:
            return None
        session.last_seen = time.monotonic()
        return session

    def remove(self, session_id: str) -> FrontSession | None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            left = self._per_principal.get(session.principal_key, 1) - 1
            if left > 0:
                self._per_principal[session.principal_key] = left
            else:
                self._per_principal.pop(session.principal_key, None)
            session.closed = True
            for task in session.in_flight.values():
                task.cancel()
            for future in session.pending.values():
                if not future.done():
                    future.cancel()
        return session

    def expired(self) -> list[str]:
        cutoff = time.monotonic() - self.idle_timeout
        return [sid for sid, s in self._sessions.items() if s.last_seen < cutoff and not s.in_flight]

    def all(self) -> list[FrontSession]:
        return list(self._sessions.values())


class Peer(Protocol):
    """How the gateway reaches the client of one request."""

    @property
    def can_ask(self) -> bool:
        """Whether server→client requests can be delivered (legacy clients only)."""
        ...

    async def notify(self, message: dict[str, Any]) -> None: ...

    async def ask(self, method: str, params: dict[str, Any] | None, timeout: float) -> dict[str, Any]: ...


class SessionPeer:
    """A peer that sends through a per-request channel and takes answers through the session.

    ``send`` is the request's own stream (an SSE response on HTTP, stdout on stdio)."""

    def __init__(self, session: FrontSession | None, send: Any, *, legacy: bool) -> None:
        self.session = session
        self._send = send
        self._legacy = legacy

    @property
    def can_ask(self) -> bool:
        return self._legacy and self.session is not None

    async def notify(self, message: dict[str, Any]) -> None:
        await self._send(message)

    async def ask(self, method: str, params: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
        if not self.can_ask or self.session is None:
            raise BridgeUnsupported(f"the client cannot receive {method} requests on this connection")
        rid = f"mcpwall-s{next(_server_request_ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.session.pending[rid] = future
        try:
            await self._send(jsonrpc.request(rid, method, params))
            async with asyncio.timeout(timeout):
                reply = await future
        except TimeoutError:
            raise UpstreamTimeout(f"the client did not answer {method} within {timeout:g}s") from None
        finally:
            self.session.pending.pop(rid, None)
        if "error" in reply:
            from mcpwall.errors import UpstreamError

            raise UpstreamError(reply["error"])
        result = reply.get("result")
        return result if isinstance(result, dict) else {}
