"""One configured upstream: era detection, a pool of sessions, supervision and a circuit breaker.

Sessions are keyed by (principal, front session, era) and never shared across principals. With
``session_scope: principal`` one session serves all of a principal's front sessions (the
default for stdio, where a session is a process); with ``session``, each legacy front session
gets its own (the default for HTTP, where a session is cheap). A session is opened once and
reused — never re-initialized per call.

Era: the gateway probes ``server/discover`` at start. A modern client is served over a modern
session when the upstream supports it; a legacy client over a legacy session when the upstream
supports it (tried on demand); otherwise the other era, and the gateway bridges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from mcpwall.admin import metrics
from mcpwall.config.model import ServerConfig
from mcpwall.errors import McpwallError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from mcpwall.gateway.events import EventBus
from mcpwall.protocol import jsonrpc
from mcpwall.protocol.versions import Era
from mcpwall.transports.upstream_base import Handshake, RequestOptions, Sink, UpstreamSession
from mcpwall.transports.upstream_http import HttpSession, make_client
from mcpwall.transports.upstream_sse import SseSession
from mcpwall.transports.upstream_stdio import StdioSession

log = logging.getLogger("mcpwall.upstream")

DEFAULT_LEGACY_CAPABILITIES: dict[str, Any] = {"sampling": {}, "elicitation": {"form": {}, "url": {}}}
# The gateway's own upstream sessions (probing, change streams, subscriptions) are bound to this
# principal key — the anonymous principal's, so a gateway without authentication reuses the
# probe session for its clients instead of starting a second process. Authenticated principals
# have keys of their own method ("apikey:…", "jwt:…") and can never share it.
INTERNAL_PRINCIPAL = "anonymous:anonymous"

SessionKey = tuple[str, str, Era]  # (principal key, front session id or "", era)
CircuitState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Open after ``failures`` consecutive transport failures; probe once after ``reset_after``."""

    def __init__(self, name: str, failures: int, reset_after: float, events: EventBus) -> None:
        self.name, self.threshold, self.reset_after, self.events = name, failures, reset_after, events
        self.state: CircuitState = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self._probe_in_flight = False

    def before(self) -> None:
        if self.state == "closed":
            return
        if self.state == "open" and time.monotonic() - self.opened_at >= self.reset_after:
            self._set("half_open")
        if self.state == "half_open" and not self._probe_in_flight:
            self._probe_in_flight = True
            return
        retry = max(0.0, self.reset_after - (time.monotonic() - self.opened_at))
        raise UpstreamUnavailable(f"upstream {self.name} is unavailable (circuit open)",
                                  data={"upstream": self.name, "retryAfter": round(retry, 1)})

    def success(self) -> None:
        self.failures = 0
        self._probe_in_flight = False
        if self.state != "closed":
            self._set("closed")

    def abandon(self) -> None:
        """The request was cancelled: it proves nothing either way, but frees the probe slot."""
        self._probe_in_flight = False

    def failure(self) -> None:
        self._probe_in_flight = False
        self.failures += 1
        if self.state == "half_open" or self.failures >= self.threshold:
            self.opened_at = time.monotonic()
            if self.state != "open":
                self._set("open")

    def _set(self, state: CircuitState) -> None:
        self.state = state
        log.warning("upstream %s: circuit %s", self.name, state)
        self.events.emit(f"circuit.{state}", upstream=self.name)


@dataclass(slots=True)
class _Entry:
    session: UpstreamSession
    last_used: float


UnsolicitedCallback = Callable[[str, SessionKey, dict[str, Any]], None]


class Upstream:
    def __init__(self, name: str, config: ServerConfig, *, limits: jsonrpc.Limits, events: EventBus,
                 on_unsolicited: UnsolicitedCallback | None = None) -> None:
        self.name = name
        self.config = config
        self.limits = limits
        self.events = events
        self.on_unsolicited = on_unsolicited
        self.circuit = CircuitBreaker(name, config.circuit.failures, config.circuit.reset_after, events)
        self.modern: bool | None = None if config.era == "auto" else config.era == "modern"
        if config.transport == "sse":
            self.modern = False  # HTTP+SSE (2024-11-05) predates the modern era
        self.legacy: bool | None = None if config.era == "auto" else config.era == "legacy"
        self.handshake = Handshake()
        self.ready = False
        self._sessions: dict[SessionKey, _Entry] = {}
        self._locks: dict[SessionKey, asyncio.Lock] = {}
        self._http: aiohttp.ClientSession | None = None
        # Set by the gateway: raises OSError for an address the egress rules forbid.
        self.address_check: Callable[[str], None] | None = None
        self._backoff = 0.0
        self._not_before = 0.0
        self.restarts = 0
        # Modern upstreams announce changes only on a subscriptions/listen stream; the gateway
        # keeps one open for list changes and for the resource URIs its clients watch.
        self._watch_task: asyncio.Task[None] | None = None
        self._watch_uris: frozenset[str] = frozenset()
        self._legacy_subscribed: set[str] = set()

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Detect the era and learn capabilities. Failure leaves the upstream down, not the gateway."""
        if self.config.transport != "stdio":
            self._http = make_client(self.config.headers, self.config.connect_timeout,
                                     address_check=self.address_check)
        try:
            await self._probe()
            self.ready = True
            self._restart_watch()
        except McpwallError as exc:
            log.error("upstream %s: not available at start: %s", self.name, exc.message)
            self.events.emit("upstream.down", upstream=self.name, reason=exc.message)

    async def _probe(self) -> None:
        eras: list[Era] = ["modern", "legacy"] if self.modern is not False else ["legacy"]
        if self.config.era == "legacy":
            eras = ["legacy"]
        for era in eras:
            try:
                session = await self._open((INTERNAL_PRINCIPAL, "", era), DEFAULT_LEGACY_CAPABILITIES)
            except (UpstreamError, UpstreamTimeout, UpstreamUnavailable) as exc:
                if era == "modern" and self.config.era == "auto":
                    log.info("upstream %s: no modern era (%s); trying legacy", self.name, exc.message)
                    self.modern = False
                    continue
                raise
            if era == "modern":
                self.modern = True
            else:
                self.legacy = True
            self.handshake = session.handshake
            log.info("upstream %s: %s era, protocol %s, server %s", self.name, era,
                     session.handshake.protocol_version, session.handshake.server_info.get("name", "?"))
            return

    async def aclose(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(BaseException):
                await self._watch_task
        entries = list(self._sessions.values())
        self._sessions.clear()
        await asyncio.gather(*(e.session.aclose() for e in entries), return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    # -- sessions ------------------------------------------------------------------------

    def era_for(self, front_era: Era) -> Era:
        if self.config.era != "auto":
            return self.config.era
        if front_era == "modern":
            return "modern" if self.modern else "legacy"
        return "legacy" if self.legacy is not False else "modern"

    def _key(self, principal_key: str, front_session: str | None, era: Era) -> SessionKey:
        scoped = front_session if (self.config.session_scope == "session" and era == "legacy") else None
        return (principal_key, scoped or "", era)

    async def session_for(self, principal_key: str, front_session: str | None, front_era: Era,
                          client_capabilities: dict[str, Any] | None = None) -> UpstreamSession:
        era = self.era_for(front_era)
        key = self._key(principal_key, front_session, era)
        entry = self._sessions.get(key)
        if entry is not None and _alive(entry.session):
            entry.last_used = time.monotonic()
            return entry.session
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._sessions.get(key)
            if entry is not None and _alive(entry.session):
                return entry.session
            if entry is not None:
                self._sessions.pop(key, None)
                await entry.session.aclose()
                self.restarts += 1
                self.events.emit("upstream.restart", upstream=self.name, reason="session ended")
            caps = DEFAULT_LEGACY_CAPABILITIES
            if key[1] and client_capabilities is not None:
                caps = {k: v for k, v in client_capabilities.items() if k in ("sampling", "elicitation", "roots")}
            try:
                return await self._open(key, caps)
            except UpstreamError as exc:
                if era == "legacy" and self.config.era == "auto" and self.modern:
                    log.info("upstream %s: refuses legacy sessions (%s); bridging", self.name, exc.message)
                    self.legacy = False
                    return await self.session_for(principal_key, front_session, front_era, client_capabilities)
                raise

    async def _open(self, key: SessionKey, legacy_caps: dict[str, Any]) -> UpstreamSession:
        now = time.monotonic()
        if now < self._not_before:
            raise UpstreamUnavailable(f"upstream {self.name} is restarting",
                                      data={"upstream": self.name, "retryAfter": round(self._not_before - now, 1)})
        await self._make_room(key[0])
        era = key[2]

        def unsolicited(message: dict[str, Any]) -> None:
            if self.on_unsolicited is not None:
                self.on_unsolicited(self.name, key, message)

        session: UpstreamSession
        if self.config.transport == "stdio":
            assert self.config.command is not None
            session = StdioSession(self.name, era, self.config.command, self.config.args, env=self.config.env,
                                   cwd=self.config.cwd, limits=self.limits, legacy_capabilities=legacy_caps,
                                   on_unsolicited=unsolicited)
        elif self.config.transport == "sse":
            assert self._http is not None and self.config.url is not None
            session = SseSession(self.name, self.config.url, self._http, limits=self.limits,
                                 legacy_capabilities=legacy_caps, on_unsolicited=unsolicited)
        else:
            assert self._http is not None and self.config.url is not None
            session = HttpSession(self.name, era, self.config.url, self._http, limits=self.limits,
                                  legacy_capabilities=legacy_caps, on_unsolicited=unsolicited)
        try:
            await session.open(self.config.connect_timeout)
        except BaseException as exc:
            await session.aclose()
            if not isinstance(exc, UpstreamError):
                self._backoff = min(self.config.restart.max_backoff,
                                    max(self.config.restart.initial_backoff, self._backoff * 2))
                self._not_before = time.monotonic() + self._backoff
            raise
        self._backoff = 0.0
        self._sessions[key] = _Entry(session, time.monotonic())
        if not self.handshake.capabilities and not self.handshake.server_info:
            self.handshake = session.handshake
        return session

    async def _make_room(self, for_principal: str) -> None:
        if self.config.transport != "stdio":
            return
        live = [(k, e) for k, e in self._sessions.items() if _alive(e.session)]
        if len(live) < self.config.max_processes:
            return
        # Only the same principal's idle processes make room: one caller must not be able to
        # evict everyone else's upstreams by opening sessions.
        idle = sorted((e.last_used, k) for k, e in live
                      if not e.session.in_flight and k[0] != INTERNAL_PRINCIPAL and k[0] == for_principal)
        if not idle:
            raise UpstreamUnavailable(f"upstream {self.name} is at its process limit",
                                      data={"upstream": self.name})
        key = idle[0][1]
        entry = self._sessions.pop(key)
        await entry.session.aclose()

    async def close_front_session(self, front_session: str) -> None:
        """A legacy front session ended: close the upstream sessions opened for it alone."""
        for key in [k for k in self._sessions if k[1] == front_session]:
            entry = self._sessions.pop(key)
            with contextlib.suppress(Exception):
                await entry.session.aclose()
        for key in [k for k in self._locks if k[1] == front_session]:
            del self._locks[key]  # one lock per front session ever seen would otherwise pile up

    def front_sessions_of(self, key: SessionKey) -> str:
        return key[1]

    # -- change notifications ------------------------------------------------------------

    def _watch_filter(self) -> dict[str, Any]:
        caps = self.handshake.capabilities
        wanted: dict[str, Any] = {}
        for flag, kind in (("toolsListChanged", "tools"), ("promptsListChanged", "prompts"),
                           ("resourcesListChanged", "resources")):
            if isinstance(caps.get(kind), dict) and caps[kind].get("listChanged"):
                wanted[flag] = True
        if self._watch_uris and isinstance(caps.get("resources"), dict) and caps["resources"].get("subscribe"):
            wanted["resourceSubscriptions"] = sorted(self._watch_uris)
        return wanted

    def _restart_watch(self) -> None:
        if not self.modern or self.era_for("modern") != "modern":
            return
        if self._watch_task is not None:
            self._watch_task.cancel()
        self._watch_task = asyncio.create_task(self._watch()) if self._watch_filter() else None

    async def _watch(self) -> None:
        sink = _WatchSink(self)
        delay = self.config.restart.initial_backoff
        while True:
            try:
                session = await self.session_for(INTERNAL_PRINCIPAL, None, "modern")
                await session.request("subscriptions/listen", {"notifications": self._watch_filter()},
                                      RequestOptions(timeout=24 * 3600.0, sink=sink))
                delay = self.config.restart.initial_backoff  # the server ended the stream gracefully
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("upstream %s: change stream ended (%s); reopening", self.name, exc)
                delay = min(self.config.restart.max_backoff, max(0.5, delay * 2))
            await asyncio.sleep(delay)

    async def watch_resources(self, uris: set[str]) -> None:
        """Make updates for exactly these URIs reach the gateway (for clients that subscribed)."""
        if self.era_for("modern") == "modern" and self.modern:
            if frozenset(uris) != self._watch_uris:
                self._watch_uris = frozenset(uris)
                self._restart_watch()
            return
        # Legacy upstream: subscribe on the gateway's own session; updates arrive unsolicited.
        for method, targets in (("resources/subscribe", uris - self._legacy_subscribed),
                                ("resources/unsubscribe", self._legacy_subscribed - uris)):
            for uri in targets:
                try:
                    await self.request(method, {"uri": uri}, principal_key=INTERNAL_PRINCIPAL, front_session=None,
                                       front_era="legacy", client_capabilities={})
                except McpwallError as exc:
                    log.warning("upstream %s: %s %s failed: %s", self.name, method, uri, exc.message)
                    continue
                if method == "resources/subscribe":
                    self._legacy_subscribed.add(uri)
                else:
                    self._legacy_subscribed.discard(uri)

    # -- requests ------------------------------------------------------------------------

    async def request(self, method: str, params: dict[str, Any] | None, *, principal_key: str,
                      front_session: str | None, front_era: Era, client_capabilities: dict[str, Any],
                      sink: Sink | None = None, headers: dict[str, str] | None = None,
                      timeout: float | None = None) -> tuple[dict[str, Any], Era]:
        """Send one request; returns the result and the era of the session that answered."""
        self.circuit.before()
        started = time.monotonic()
        try:
            session = await self.session_for(principal_key, front_session, front_era, client_capabilities)
            options = RequestOptions(timeout=timeout or self.config.timeout, sink=sink, headers=headers or {},
                                     client_capabilities=client_capabilities)
            result = await session.request(method, params, options)
        except UpstreamError:
            self.circuit.success()  # a JSON-RPC error means the upstream is alive
            metrics.observe_upstream(self.name, time.monotonic() - started, ok=False, kind="rpc_error")
            raise
        except (UpstreamUnavailable, UpstreamTimeout) as exc:
            self.circuit.failure()
            kind = "timeout" if isinstance(exc, UpstreamTimeout) else "unavailable"
            metrics.observe_upstream(self.name, time.monotonic() - started, ok=False, kind=kind)
            raise
        except asyncio.CancelledError:
            self.circuit.abandon()
            raise
        self.circuit.success()
        metrics.observe_upstream(self.name, time.monotonic() - started)
        return result, session.era

    async def notify(self, method: str, params: dict[str, Any] | None, *, principal_key: str,
                     front_session: str | None, front_era: Era) -> None:
        era = self.era_for(front_era)
        entry = self._sessions.get(self._key(principal_key, front_session, era))
        if entry is not None and _alive(entry.session):
            with contextlib.suppress(McpwallError):
                await entry.session.notify(method, params)


class _WatchSink:
    """Routes what arrives on the change stream to the gateway's unsolicited-message handler."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def on_notification(self, message: dict[str, Any]) -> None:
        if self.upstream.on_unsolicited is not None:
            self.upstream.on_unsolicited(self.upstream.name, (INTERNAL_PRINCIPAL, "", "modern"), message)

    async def on_request(self, message: dict[str, Any]) -> dict[str, Any]:
        raise McpwallError("a change stream carries no requests", code=-32601)


def _alive(session: UpstreamSession) -> bool:
    if session.closed:
        return False
    return not (isinstance(session, StdioSession) and session.exited.is_set())
