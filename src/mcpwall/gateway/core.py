"""The gateway: turns one client message into guarded upstream traffic and back.

Fronts (HTTP, stdio) parse bytes, authenticate and build a :class:`Call`; this module does the
rest — method dispatch, routing through the catalog, the guard chain in both directions, era
bridging, refusal shaping and fan-out of upstream notifications. It knows nothing about HTTP or
pipes: it talks to clients through a :class:`Peer` and to servers through :class:`Upstream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcpwall import tracing
from mcpwall.admin import metrics
from mcpwall.config.model import Config
from mcpwall.errors import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    BridgeUnsupported,
    InvalidParams,
    McpwallError,
    MethodNotFound,
    Refused,
    UpstreamUnavailable,
    to_wire,
)
from mcpwall.gateway.call import Call
from mcpwall.gateway.catalog import Catalog
from mcpwall.gateway.events import EventBus
from mcpwall.gateway.sessions import FrontSession, Peer, SessionStore
from mcpwall.gateway.upstream import SessionKey, Upstream
from mcpwall.guards.limits import LimitsGuard
from mcpwall.pipeline.chain import GuardChain
from mcpwall.pipeline.guard import GuardEnv, Outcome
from mcpwall.pipeline.registry import guard_class
from mcpwall.pipeline.verdict import Reject
from mcpwall.protocol import jsonrpc
from mcpwall.protocol.versions import (
    LIST_METHODS,
    META_DECISION,
    META_LOG_LEVEL,
    META_SERVER_INFO,
    META_SUBSCRIPTION_ID,
    MODERN_VERSIONS,
    Era,
    negotiate_legacy,
)
from mcpwall.scan.admission import AdmissionGate
from mcpwall.transports.upstream_base import GATEWAY_INFO

log = logging.getLogger("mcpwall.gateway")

MAX_BRIDGE_ROUNDS = 8
MAX_SUBSCRIPTIONS = 256  # resource URIs one session or listen stream may watch
MAX_LEARN_PAGES = 100  # pages, and items, the gateway reads to learn one upstream's full list
MAX_LEARN_ITEMS = 20_000
# Methods the 2026-07-28 revision removed; modern clients get "method not found" for them.
LEGACY_ONLY_METHODS = frozenset({"initialize", "ping", "logging/setLevel", "resources/subscribe",
                                 "resources/unsubscribe"})
CLIENT_ANSWER_TIMEOUT = 300.0
_LIST_KIND = {v: k for k, v in LIST_METHODS.items()}  # result key -> method
_CAPABILITY_OF = {"tools/list": "tools", "prompts/list": "prompts", "resources/list": "resources",
                  "resources/templates/list": "resources"}


@dataclass(slots=True)
class Reply:
    """A response for the front to send, with the HTTP facts it needs."""

    message: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class Listener:
    """A modern ``subscriptions/listen`` stream."""

    principal_key: str
    subscription_id: Any
    tools: bool = False
    prompts: bool = False
    resources: bool = False
    uris: set[str] = field(default_factory=set)
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(256))
    call: Call | None = None  # completed for the guards (on_complete) when the stream ends


class Gateway:
    def __init__(self, config: Config, config_dir: Path | None = None) -> None:
        self.config = config
        self.config_dir = config_dir or Path.cwd()
        self.events = EventBus()
        self.env = GuardEnv(events=self.events, config_dir=self.config_dir, storage_url=config.storage.url)
        self.env.state["config"] = config
        guards = [guard_class(name)(config.guard_settings(name), self.env) for name in config.guard_order()]
        self.chain = GuardChain(guards, observe=metrics.observe_guard)
        limits_guard = self.chain.get("limits")
        assert isinstance(limits_guard, LimitsGuard)
        self.limits = limits_guard.framing
        enabled = {n: s for n, s in config.servers.items() if s.enabled}
        secret = config.security.cursor_secret.encode() if config.security.cursor_secret else None
        self.catalog = Catalog({n: s.prefix for n, s in enabled.items()}, config.namespace_separator, secret)
        self.env.state["catalog"] = self.catalog
        self.upstreams = {
            name: Upstream(name, server, limits=self.limits, events=self.events, on_unsolicited=self._unsolicited)
            for name, server in enabled.items()
        }
        self.env.state["upstreams"] = self.upstreams
        # Upstreams with `admission:` are scanned and only used while their grade meets the bar.
        self.admission = AdmissionGate(enabled, self.events)
        self.env.state["admission"] = self.admission
        self.events.subscribe(self._on_admission)
        self.sessions = SessionStore(config.listen.max_sessions, config.listen.legacy_session_idle_timeout,
                                     config.listen.max_sessions_per_principal)
        self.listeners: set[Listener] = set()
        self.ready = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.chain.start()
        await asyncio.gather(self.admission.start(), *(self._start_upstream(u) for u in self.upstreams.values()))
        self._background.append(asyncio.create_task(self._sweep_sessions()))
        self.ready.set()

    async def aclose(self) -> None:
        for task in self._background:
            task.cancel()
        for session in self.sessions.all():
            self.sessions.remove(session.id)
        await self.admission.aclose()
        await asyncio.gather(*(u.aclose() for u in self.upstreams.values()), return_exceptions=True)
        await self.chain.aclose()

    async def _start_upstream(self, upstream: Upstream) -> None:
        """Start one upstream, after its URL passes the egress rules (metadata, link-local and
        other never-legitimate targets). The text and every resolved address are checked now,
        and every later connection's addresses again (no DNS rebinding after start)."""
        if upstream.config.url is not None:
            from mcpwall.checks.urls import EgressDenied
            from mcpwall.guards.egress import EgressSettings, build_policy, resolve_upstream_url

            configured = getattr(self.config.guards, "egress", None)
            settings = configured if isinstance(configured, EgressSettings) else EgressSettings()
            policy = build_policy(settings, upstream.name, upstream=True)

            def address_check(address: str) -> None:
                try:
                    policy.check_ip(ipaddress.ip_address(address))
                except (EgressDenied, ValueError) as exc:
                    raise OSError(f"address refused by the egress rules: {exc}") from None

            upstream.address_check = address_check
            try:
                await resolve_upstream_url(upstream.config.url, settings, upstream.name)
            except EgressDenied as exc:
                log.error("upstream %s refused by the egress rules: %s", upstream.name, exc)
                self.events.emit("upstream.refused", upstream=upstream.name, reason=str(exc))
                return
        await upstream.start()

    def _on_admission(self, event: dict[str, Any]) -> None:
        """A quarantined or re-admitted upstream changes what clients may see: tell them."""
        if event.get("kind") != "admission.changed":
            return
        for kind in ("tools", "prompts", "resources"):
            self._unsolicited(str(event.get("server")), ("", "", "legacy"),
                              jsonrpc.notification(f"notifications/{kind}/list_changed"))

    async def _sweep_sessions(self) -> None:
        interval = max(1.0, min(60.0, self.config.listen.legacy_session_idle_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            for session_id in self.sessions.expired():
                await self.end_session(session_id)

    async def end_session(self, session_id: str) -> None:
        session = self.sessions.remove(session_id)
        if session is not None:
            await asyncio.gather(*(u.close_front_session(session_id) for u in self.upstreams.values()),
                                 return_exceptions=True)
            if session.subscriptions:
                await self._resync_all()

    # -- identity of the gateway ---------------------------------------------------------

    def _single(self) -> Upstream | None:
        if len(self.upstreams) == 1:
            only = next(iter(self.upstreams.values()))
            if not self.catalog.prefixed(only.name):
                return only
        return None

    def server_info(self) -> dict[str, Any]:
        single = self._single()
        if single is not None and single.handshake.server_info:
            return single.handshake.server_info
        return dict(GATEWAY_INFO)

    def instructions(self) -> str | None:
        texts = [u.handshake.instructions for u in self.upstreams.values() if u.handshake.instructions]
        if self._single() is not None:
            return texts[0] if texts else None
        parts = [f"[{u.name}] {u.handshake.instructions}" for u in self.upstreams.values() if u.handshake.instructions]
        return "\n\n".join(parts) or None

    def capabilities(self) -> dict[str, Any]:
        """The union of what the upstreams offer, as one server would announce it."""
        caps: dict[str, Any] = {}
        for upstream in self.upstreams.values():
            for name, value in upstream.handshake.capabilities.items():
                if name in ("tools", "prompts", "resources") and isinstance(value, dict):
                    merged = caps.setdefault(name, {})
                    for flag in ("listChanged", "subscribe"):
                        if value.get(flag):
                            merged[flag] = True
                elif name in ("completions", "logging"):
                    caps[name] = {}
                elif name == "extensions" and isinstance(value, dict):
                    caps.setdefault("extensions", {}).update(value)
        if len(self.upstreams) > 1 or not self.upstreams:
            caps.setdefault("tools", {})["listChanged"] = True
        return caps

    def initialize_result(self, params: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {
            "protocolVersion": negotiate_legacy(params.get("protocolVersion")),
            "capabilities": self.capabilities(),
            "serverInfo": self.server_info(),
        }
        instructions = self.instructions()
        if instructions:
            result["instructions"] = instructions
        return result

    def discover_result(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "resultType": "complete",
            "supportedVersions": list(MODERN_VERSIONS),
            "capabilities": self.capabilities(),
            "ttlMs": 0,
            "cacheScope": "private",
        }
        instructions = self.instructions()
        if instructions:
            result["instructions"] = instructions
        return result

    # -- handling one request ------------------------------------------------------------

    async def handle(self, call: Call, peer: Peer, session: FrontSession | None = None) -> Reply:
        """Process one client request end to end; never raises (except cancellation)."""
        with tracing.call_span(call):
            return await self._handle(call, peer, session)

    async def _handle(self, call: Call, peer: Peer, session: FrontSession | None) -> Reply:
        outcome = Outcome(decision="allow")
        reply: Reply
        try:
            result = await self._dispatch(call, peer, session)
            result = self._shape_result(call, result)
            reply = Reply(jsonrpc.response(call.request_id, result))
            outcome.result = result
            if result.get("isError") is True and META_DECISION in (result.get("_meta") or {}):
                outcome.decision = "deny"
                outcome.reason = result["_meta"][META_DECISION].get("reason", "")
        except Refused as exc:
            outcome.decision, outcome.error_code, outcome.reason = "deny", exc.code, exc.message
            reply = Reply(jsonrpc.error_response(call.request_id, to_wire(exc)),
                          exc.http_status or _status(exc.code, call.era), dict(getattr(exc, "headers", {}) or {}))
        except McpwallError as exc:
            outcome.decision, outcome.error_code, outcome.reason = "error", exc.code, exc.message
            reply = Reply(jsonrpc.error_response(call.request_id, to_wire(exc)),
                          exc.http_status or _status(exc.code, call.era))
        except asyncio.CancelledError:
            outcome.decision, outcome.reason = "error", "cancelled"
            raise
        except Exception as exc:
            outcome.decision, outcome.error_code = "error", -32603
            reply = Reply(jsonrpc.error_response(call.request_id, to_wire(exc)), 200)
        finally:
            elapsed = time.monotonic() - call.started
            outcome.latency_ms = elapsed * 1000
            metrics.observe_call(call.method, call.server, outcome.decision, elapsed)
            await self.chain.on_complete(call, outcome)
        return reply

    async def guard_request(self, call: Call) -> None:
        """Run the request side of the chain; raise the refusal if a guard refuses."""
        reject = await self.chain.on_request(call)
        if reject is not None:
            raise self._refusal(call, reject)

    def _refusal(self, call: Call, reject: Reject) -> Refused:
        guard = next((r.guard for r in reversed(call.records) if r.verdict in ("reject", "error")), "gateway")
        if reject.hidden:
            exc = Refused(_unknown_message(call), guard=guard, code=INVALID_PARAMS)
        else:
            data = {"decision": {"id": call.decision_id, "guard": guard, "reason": reject.reason}}
            if reject.data:
                data.update(reject.data)
            exc = Refused(reject.reason, guard=guard, code=reject.code, data=data, http_status=reject.http_status)
        exc.as_tool_error = reject.as_tool_error and not reject.hidden  # type: ignore[attr-defined]
        exc.headers = reject.headers or {}  # type: ignore[attr-defined]
        return exc

    async def _dispatch(self, call: Call, peer: Peer, session: FrontSession | None) -> dict[str, Any]:
        method = call.method
        if call.era == "modern" and method in LEGACY_ONLY_METHODS:
            raise MethodNotFound(f"Method not found: {method} does not exist in protocol {call.protocol_version}")
        if method in ("tools/call", "prompts/get"):
            await self._route_named(call)
        elif method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
            await self._route_uri(call)
        elif method == "completion/complete":
            await self._route_completion(call)
        try:
            await self.guard_request(call)
        except Refused as exc:
            if method == "tools/call" and getattr(exc, "as_tool_error", False):
                return _tool_error(call, exc)
            raise
        if method in LIST_METHODS:
            return await self._list(call, peer)
        if method == "ping":
            return {}
        if method == "server/discover":
            return self.discover_result()
        if method == "initialize":
            return self.initialize_result(call.params)
        if method == "logging/setLevel":
            if session is not None:
                level = call.params.get("level")
                session.log_level = level if isinstance(level, str) else None
            return {}
        if method in ("resources/subscribe", "resources/unsubscribe") and session is not None:
            return await self._subscribe(call, session)
        if call.server is None:
            single = next(iter(self.upstreams.values())) if len(self.upstreams) == 1 else None
            if single is None:
                raise MethodNotFound(f"Method not found: {method}")
            call.server = single.name
        try:
            result = await self._forward(call, peer, session)
        except Refused as exc:
            if method == "tools/call" and getattr(exc, "as_tool_error", False):
                return _tool_error(call, exc)
            raise
        return result

    # -- routing -------------------------------------------------------------------------

    async def _route_named(self, call: Call) -> None:
        kind = "tools" if call.method == "tools/call" else "prompts"
        name = call.params.get("name")
        if not isinstance(name, str):
            raise InvalidParams("Invalid params: 'name' must be a string")
        call.exposed_name = name
        resolved = self.catalog.resolve(kind, name)
        if resolved is None and self.catalog.needs_listing(kind):
            await self._learn(call, kind, self.catalog.needs_listing(kind))
            resolved = self.catalog.resolve(kind, name)
        if resolved is None:
            raise InvalidParams(_unknown_message(call), data=None)
        call.server, call.target = resolved
        if call.server not in self.upstreams:
            raise InvalidParams(_unknown_message(call))
        definition = self.catalog.definition(call.server, kind, call.target)
        if definition is None and not self.catalog.known_complete(call.server, kind):
            await self._learn(call, kind, [call.server])
            definition = self.catalog.definition(call.server, kind, call.target)
        if definition is None and self.catalog.known_complete(call.server, kind):
            raise InvalidParams(_unknown_message(call))
        call.definition = definition

    async def _learn(self, call: Call, kind: str, servers: list[str]) -> None:
        """Fetch full lists from these upstreams into the catalog (under the caller's identity)."""
        method = _LIST_KIND[kind]

        async def fetch(server: str) -> None:
            upstream = self.upstreams[server]
            if _CAPABILITY_OF[method] not in upstream.handshake.capabilities:
                self.catalog.remember(server, kind, [], replace=True)
                return
            items: list[dict[str, Any]] = []
            cursor: Any = None
            seen: set[str] = set()
            for _ in range(MAX_LEARN_PAGES):
                params = {"cursor": cursor} if cursor is not None else {}
                result, _ = await upstream.request(method, params, **self._identity(call))
                page = result.get(kind)
                items.extend(i for i in page if isinstance(i, dict)) if isinstance(page, list) else None
                cursor = result.get("nextCursor")
                # A cursor seen before, or a list past the cap, is a misbehaving upstream: stop.
                if not cursor or str(cursor) in seen or len(items) > MAX_LEARN_ITEMS:
                    break
                seen.add(str(cursor))
            self.catalog.remember(server, kind, items, replace=True)

        servers = [s for s in servers if self.admission.is_admitted(s)]
        results = await asyncio.gather(*(fetch(s) for s in servers), return_exceptions=True)
        for server, outcome in zip(servers, results, strict=True):
            if isinstance(outcome, BaseException):
                log.warning("could not list %s of upstream %s: %s", kind, server, outcome)

    async def _route_uri(self, call: Call) -> None:
        uri = call.params.get("uri")
        if not isinstance(uri, str):
            raise InvalidParams("Invalid params: 'uri' must be a string")
        call.target = call.exposed_name = uri
        owner = self.catalog.resource_owner(uri)
        if owner is None:
            candidates = [n for n, u in self.upstreams.items()
                          if "resources" in u.handshake.capabilities and self.admission.is_admitted(n)]
            if len(candidates) > 1:
                await self._learn_resources(call, candidates)
                owner = self.catalog.resource_owner(uri)
            elif candidates:
                owner = candidates[0]
        if owner is None:
            raise InvalidParams(f"Resource not found: {uri}", data={"uri": uri})
        call.server = owner

    async def _learn_resources(self, call: Call, servers: list[str]) -> None:
        for method, kind in (("resources/list", "resources"), ("resources/templates/list", "resourceTemplates")):
            for server in servers:
                with contextlib.suppress(McpwallError):
                    result, _ = await self.upstreams[server].request(method, {}, **self._identity(call))
                    items = result.get(kind)
                    if isinstance(items, list):
                        self.catalog.remember(server, kind, [i for i in items if isinstance(i, dict)],
                                              replace=not result.get("nextCursor"))

    async def _route_completion(self, call: Call) -> None:
        ref = call.params.get("ref")
        if not isinstance(ref, dict):
            raise InvalidParams("Invalid params: 'ref' must be an object")
        if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
            probe = Call(message={"method": "prompts/get", "params": {"name": ref["name"]}}, principal=call.principal,
                         era=call.era, protocol_version=call.protocol_version, transport=call.transport,
                         session_id=call.session_id)
            await self._route_named(probe)
            call.server, call.target, call.exposed_name = probe.server, probe.target, ref["name"]
            if probe.target != ref["name"]:
                call.message = {**call.message, "params": {**call.params, "ref": {**ref, "name": probe.target}}}
        elif ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
            uri_call = Call(message={"method": "resources/read", "params": {"uri": ref["uri"]}},
                            principal=call.principal, era=call.era, protocol_version=call.protocol_version,
                            transport=call.transport, session_id=call.session_id)
            await self._route_uri(uri_call)
            call.server, call.target, call.exposed_name = uri_call.server, ref["uri"], ref["uri"]
        else:
            raise InvalidParams("Invalid params: unsupported completion reference")

    # -- forwarding ----------------------------------------------------------------------

    def _identity(self, call: Call) -> dict[str, Any]:
        return {"principal_key": call.principal.key, "front_session": call.session_id, "front_era": call.era,
                "client_capabilities": call.client_capabilities}

    def _upstream_params(self, call: Call) -> dict[str, Any] | None:
        params = dict(call.params) if "params" in call.message else None
        if params is not None and call.method in ("tools/call", "prompts/get") and call.target is not None:
            params["name"] = call.target
        if params is not None and call.era == "legacy" and call.session_id:
            session = self.sessions.get(call.session_id, call.principal.key)
            meta = dict(params.get("_meta") or {})
            meta[META_LOG_LEVEL] = (session.log_level if session and session.log_level else "debug")
            params["_meta"] = meta
        return params

    async def _forward(self, call: Call, peer: Peer, session: FrontSession | None) -> dict[str, Any]:
        assert call.server is not None
        upstream = self.upstreams.get(call.server)
        if upstream is None:
            raise InvalidParams(_unknown_message(call))
        if not self.admission.is_admitted(call.server):
            raise UpstreamUnavailable(f"upstream {call.server} is quarantined: its security scan is below the "
                                      "configured grade", data={"upstream": call.server})
        sink = CallSink(self, call, peer, session)
        params = self._upstream_params(call)
        headers = dict(call.scratch.get("upstream_headers") or {})
        headers.update({k: v for k, v in call.headers.items() if k.startswith("mcp-param-")})
        if params is not None and tracing.TRACING.enabled:
            params = tracing.inject_meta(params)
        with tracing.upstream_span(call.server, call.method):
            result, _ = await upstream.request(call.method, params, sink=sink, headers=headers,
                                               **self._identity(call))
        rounds = 0
        # A modern upstream asks for input; a legacy client can't do MRTR, so the gateway drives it.
        while result.get("resultType") == "input_required" and call.era == "legacy":
            rounds += 1
            if rounds > MAX_BRIDGE_ROUNDS:
                raise BridgeUnsupported("the upstream asked for input too many times")
            responses: dict[str, Any] = {}
            requests = result.get("inputRequests") or {}
            if not isinstance(requests, dict):
                raise BridgeUnsupported("the upstream sent malformed input requests")
            for key, request in requests.items():
                if not isinstance(request, dict) or not isinstance(request.get("method"), str):
                    raise BridgeUnsupported("the upstream sent a malformed input request")
                message = jsonrpc.request(f"mrtr-{key}", request["method"], request.get("params"))
                responses[key] = await sink.on_request(message)
            retry = dict(params or {})
            retry["inputResponses"] = responses
            if "requestState" in result:
                retry["requestState"] = result["requestState"]
            result, _ = await upstream.request(call.method, retry, sink=sink, headers=headers,
                                                 **self._identity(call))
        result, reject = await self.chain.on_response(call, result)
        if reject is not None:
            raise self._refusal(call, reject)
        return result

    async def _subscribe(self, call: Call, session: FrontSession) -> dict[str, Any]:
        """Legacy ``resources/subscribe``: the gateway owns subscriptions, so one upstream
        subscription serves every client watching a URI, whatever era the upstream speaks."""
        assert isinstance(call.target, str) and call.server is not None
        if call.method == "resources/subscribe":
            if len(session.subscriptions) >= MAX_SUBSCRIPTIONS and call.target not in session.subscriptions:
                raise InvalidParams(f"Invalid params: at most {MAX_SUBSCRIPTIONS} subscriptions per session")
            session.subscriptions.add(call.target)
        else:
            session.subscriptions.discard(call.target)
        await self.sync_subscriptions(call.server)
        return {}

    async def sync_subscriptions(self, server: str) -> None:
        wanted: set[str] = set()
        for front in self.sessions.all():
            wanted |= {u for u in front.subscriptions if self._owner(u) == server}
        for listener in self.listeners:
            wanted |= {u for u in listener.uris if self._owner(u) == server}
        await self.upstreams[server].watch_resources(wanted)

    def _owner(self, uri: str) -> str | None:
        """The upstream a resource URI belongs to, if known (or if only one upstream has resources)."""
        owner = self.catalog.resource_owner(uri)
        if owner is None:
            with_resources = [n for n, u in self.upstreams.items() if "resources" in u.handshake.capabilities]
            owner = with_resources[0] if len(with_resources) == 1 else None
        return owner

    # -- lists ---------------------------------------------------------------------------

    async def _list(self, call: Call, peer: Peer) -> dict[str, Any]:
        method = call.method
        kind = LIST_METHODS[method]
        capability = _CAPABILITY_OF[method]
        cursor = call.params.get("cursor")
        if cursor is None:
            plan: dict[str, Any] = {n: None for n, u in self.upstreams.items()
                                    if capability in u.handshake.capabilities}
        else:
            plan = self.catalog.parse_cursor(cursor, kind, call.principal.key)
        plan = {server: c for server, c in plan.items() if self.admission.is_admitted(server)}
        items: list[dict[str, Any]] = []
        remaining: dict[str, Any] = {}
        ttl: list[int] = []
        base = dict(call.params)
        base.pop("cursor", None)

        async def page(server: str, up_cursor: Any) -> tuple[str, dict[str, Any] | BaseException]:
            params = dict(base)
            if up_cursor is not None:
                params["cursor"] = up_cursor
            try:
                result, _ = await self.upstreams[server].request(method, params, **self._identity(call))
            except McpwallError as exc:
                return server, exc
            return server, result

        pages = await asyncio.gather(*(page(s, c) for s, c in plan.items()))
        for server, result in pages:
            if isinstance(result, BaseException):
                log.warning("listing %s of upstream %s failed: %s", kind, server, getattr(result, "message", result))
                self.events.emit("upstream.list_failed", upstream=server, method=method)
                continue
            raw = [i for i in (result.get(kind) or []) if isinstance(i, dict)]
            next_cursor = result.get("nextCursor")
            self.catalog.remember(server, kind, raw, replace=plan[server] is None and not next_cursor)
            if next_cursor:
                remaining[server] = next_cursor
            if isinstance(result.get("ttlMs"), int):
                ttl.append(result["ttlMs"])
            exposed = [self.catalog.expose_item(server, kind, item) for item in raw]
            call.scratch["list_server"] = server
            call.scratch["list_prefix"] = self.catalog.prefix_of(server)
            items.extend(await self.chain.on_list(call, kind, exposed))
        call.scratch.pop("list_server", None)
        call.scratch.pop("list_prefix", None)
        out: dict[str, Any] = {kind: items}
        if remaining:
            out["nextCursor"] = self.catalog.mint_cursor(kind, call.principal.key, remaining)
        if call.era == "modern":
            out["ttlMs"] = min(ttl) if ttl else 0
            out["cacheScope"] = "private"  # filtered per principal: never shareable
        return out

    # -- results -------------------------------------------------------------------------

    def _shape_result(self, call: Call, result: dict[str, Any]) -> dict[str, Any]:
        if call.era == "modern":
            shaped = dict(result)
            shaped.setdefault("resultType", "complete")
            meta = dict(shaped.get("_meta") or {})
            meta[META_SERVER_INFO] = self.server_info()
            shaped["_meta"] = meta
            if call.method in ("resources/read",) and shaped.get("resultType") == "complete":
                shaped.setdefault("ttlMs", 0)
                shaped.setdefault("cacheScope", "private")
            return shaped
        if result.get("resultType") == "complete":
            result = {k: v for k, v in result.items() if k != "resultType"}
        return result

    # -- server-initiated traffic --------------------------------------------------------

    def _unsolicited(self, server: str, key: SessionKey, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        if method in ("notifications/tools/list_changed", "notifications/prompts/list_changed",
                      "notifications/resources/list_changed"):
            kind = method.split("/")[1]
            self.catalog.forget(server, kind)
            self.events.emit("upstream.list_changed", upstream=server, list=kind)
            clean = jsonrpc.notification(method)
            for session in self.sessions.all():
                session.push(clean)
            for listener in list(self.listeners):
                if getattr(listener, kind, False):
                    _offer(listener, _tag(clean, listener))
        elif method == "notifications/resources/updated":
            uri = params.get("uri") if params else None
            if not isinstance(uri, str):
                return  # upstream-controlled: a list or object here would make the set lookups raise
            for session in self.sessions.all():
                if uri in session.subscriptions:
                    session.push(message)
            for listener in list(self.listeners):
                if uri in listener.uris:
                    _offer(listener, _tag(message, listener))
        elif method == "notifications/message":
            principal, front_session, _era = key
            for session in self.sessions.all():
                if session.principal_key == principal and (not front_session or session.id == front_session):
                    session.push(message)

    async def listen(self, call: Call) -> tuple[Listener, dict[str, Any]]:
        """Open a modern ``subscriptions/listen`` stream after the guards allow it.

        Returns the listener (the front drains ``listener.queue``) and the acknowledgement
        notification to send first, naming the subset of the request the gateway honours."""
        try:
            await self.guard_request(call)
        except McpwallError as exc:
            # on_request ran (limits counted the call in flight), so the call must be completed too.
            await self.chain.on_complete(call, Outcome(decision="deny", error_code=exc.code, reason=exc.message))
            raise
        wanted = call.params.get("notifications")
        wanted = wanted if isinstance(wanted, dict) else {}
        caps = self.capabilities()
        listener = Listener(call.principal.key, call.request_id, call=call)
        honoured: dict[str, Any] = {}
        for flag, kind in (("toolsListChanged", "tools"), ("promptsListChanged", "prompts"),
                           ("resourcesListChanged", "resources")):
            if wanted.get(flag) and kind in caps:
                setattr(listener, kind, True)
                honoured[flag] = True
        uris = wanted.get("resourceSubscriptions")
        if isinstance(uris, list) and caps.get("resources", {}).get("subscribe"):
            requested = {u for u in uris[:MAX_SUBSCRIPTIONS] if isinstance(u, str)}
            if any(self._owner(u) is None for u in requested):
                candidates = [n for n, u in self.upstreams.items() if "resources" in u.handshake.capabilities]
                await self._learn_resources(call, candidates)
            # Only URIs that belong to an upstream are watched: nothing is subscribed everywhere.
            listener.uris = {u for u in requested if self._owner(u) is not None}
            honoured["resourceSubscriptions"] = sorted(listener.uris)
        self.listeners.add(listener)
        if listener.uris:
            await self._resync_all()
        ack = jsonrpc.notification("notifications/subscriptions/acknowledged",
                                   {"notifications": honoured, "_meta": {META_SUBSCRIPTION_ID: call.request_id}})
        return listener, ack

    async def unlisten(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        if listener.call is not None:
            # Without this, every closed stream kept a limits.max_in_flight slot of its principal forever.
            call, listener.call = listener.call, None
            await self.chain.on_complete(call, Outcome(decision="allow"))
        if listener.uris:
            await self._resync_all()

    async def _resync_all(self) -> None:
        for server, upstream in self.upstreams.items():
            if "resources" in upstream.handshake.capabilities:
                await self.sync_subscriptions(server)

    async def client_notification(self, call: Call, session: FrontSession | None) -> None:
        """A notification from the client: cancellation, roots changes, initialized."""
        method = call.method
        if method == "notifications/cancelled" and session is not None:
            rid = call.params.get("requestId")
            # requestId is client-controlled JSON: a list or object would make the lookup raise.
            task = session.in_flight.get(rid) if isinstance(rid, (str, int)) else None
            if task is not None:
                task.cancel()
        elif method == "notifications/roots/list_changed":
            for upstream in self.upstreams.values():
                await upstream.notify(method, None, principal_key=call.principal.key,
                                      front_session=call.session_id, front_era=call.era)


class CallSink:
    """Routes what an upstream sends about one call back to that call's client, through the chain."""

    def __init__(self, gateway: Gateway, call: Call, peer: Peer, session: FrontSession | None) -> None:
        self.gateway, self.call, self.peer, self.session = gateway, call, peer, session

    async def on_notification(self, message: dict[str, Any]) -> None:
        if message.get("method") == "notifications/message" and self.call.era == "modern":
            meta = self.call.params.get("_meta")
            if not (isinstance(meta, dict) and META_LOG_LEVEL in meta):
                return  # modern clients get logs only when they asked for them
        with contextlib.suppress(Exception):
            await self.peer.notify(message)

    async def on_request(self, message: dict[str, Any]) -> dict[str, Any]:
        """A server→client request (sampling, elicitation, roots): police it, then relay it."""
        call = self.call
        method = message.get("method") or ""
        relayed = Call(message=message, principal=call.principal, era=call.era,
                       protocol_version=call.protocol_version, transport=call.transport, session_id=call.session_id,
                       source=call.source, client_capabilities=call.client_capabilities, direction="server",
                       server=call.server, target=call.target, exposed_name=call.exposed_name)
        outcome = Outcome(decision="allow")
        try:
            if not self.peer.can_ask:
                raise BridgeUnsupported(
                    f"{method} from upstream {call.server} cannot be relayed: this client connection cannot "
                    "answer server requests (stateless 2026-07-28 call)")
            capability = {"sampling/createMessage": "sampling", "elicitation/create": "elicitation",
                          "roots/list": "roots"}.get(method)
            if capability is not None and capability not in call.client_capabilities:
                raise McpwallError(f"the client did not declare the {capability} capability", code=METHOD_NOT_FOUND)
            await self.gateway.guard_request(relayed)
            result = await self.peer.ask(method, relayed.params or None, CLIENT_ANSWER_TIMEOUT)
            result, reject = await self.gateway.chain.on_response(relayed, result)
            if reject is not None:
                raise self.gateway._refusal(relayed, reject)
            return result
        except McpwallError as exc:
            outcome.decision, outcome.error_code, outcome.reason = "deny", exc.code, exc.message
            raise
        finally:
            outcome.latency_ms = (time.monotonic() - relayed.started) * 1000
            await self.gateway.chain.on_complete(relayed, outcome)


def _offer(listener: Listener, message: dict[str, Any]) -> None:
    with contextlib.suppress(asyncio.QueueFull):
        listener.queue.put_nowait(message)


def _tag(message: dict[str, Any], listener: Listener) -> dict[str, Any]:
    params = dict(message.get("params") or {})
    meta = dict(params.get("_meta") or {})
    meta[META_SUBSCRIPTION_ID] = listener.subscription_id
    params["_meta"] = meta
    return {**message, "params": params}


def _unknown_message(call: Call) -> str:
    what = {"tools/call": "Unknown tool", "prompts/get": "Unknown prompt"}.get(call.method, "Unknown target")
    return f"{what}: {call.exposed_name or call.params.get('name')}"


def _tool_error(call: Call, exc: Refused) -> dict[str, Any]:
    decision: dict[str, Any] = {"id": call.decision_id, "guard": exc.guard, "reason": exc.message}
    if isinstance(exc.data, dict):
        # Facts a guard attached to its refusal (an approval id, a retry time) travel with the decision.
        decision.update({k: v for k, v in exc.data.items() if k != "decision"})
    return {
        "content": [{"type": "text", "text": f"Blocked by mcpwall ({exc.guard}): {exc.message} "
                                             f"[decision {call.decision_id}]"}],
        "isError": True,
        "_meta": {META_DECISION: decision},
    }


def _status(code: int, era: Era) -> int:
    from mcpwall.errors import status_for_code

    return status_for_code(code, modern=era == "modern")



