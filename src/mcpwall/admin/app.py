"""The admin port: metrics, health, alerts, and whatever routes the guards contribute.

``create_admin_app(state)`` takes anything shaped like :class:`AdminState` — the gateway object
fits. Routes:

* ``GET /metrics`` — Prometheus text format, from the gateway's own registry;
* ``GET /healthz`` — 200 when ready (and, if the audit guard fails closed, when its store is
  writable), else 503, with a small JSON body;
* every route from ``guard.admin_routes()`` (the audit guard serves ``/alerts`` and
  ``/audit/status``);
* ``GET /alerts`` falls back to an empty list when no guard serves it.

The admin port is never the MCP port, binds to loopback by default, and checks the ``Host``
header so a web page cannot reach it through DNS rebinding.
"""

from __future__ import annotations

from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mcpwall.admin.metrics import Metrics, default_metrics
from mcpwall.config.model import Config
from mcpwall.pipeline.chain import GuardChain

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_WILDCARD_BINDS = ("0.0.0.0", "::", "")


class AdminState(Protocol):
    """What the admin app needs from the gateway. ``ready`` may be an ``asyncio.Event`` or a
    callable returning bool; ``events`` (an EventBus) and ``metrics`` are optional."""

    config: Config
    chain: GuardChain


def _is_ready(state: Any) -> bool:
    ready = getattr(state, "ready", None)
    if ready is None:
        return True
    is_set = getattr(ready, "is_set", None)
    if callable(is_set):
        return bool(is_set())
    if callable(ready):
        return bool(ready())
    return bool(ready)


def allowed_hosts(host: str) -> list[str]:
    if host in _WILDCARD_BINDS:
        return ["*"]
    names = {"127.0.0.1", "localhost", "::1", "[::1]", host}
    if ":" in host and not host.startswith("["):
        names.add(f"[{host}]")
    return sorted(names)


def create_admin_app(state: AdminState) -> Starlette:
    metrics = getattr(state, "metrics", None)
    if not isinstance(metrics, Metrics):
        metrics = default_metrics()
    metrics.watch_chain(state.chain)
    events = getattr(state, "events", None)
    if events is not None:
        metrics.attach_events(events)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=_CONTENT_TYPE)

    async def healthz(request: Request) -> JSONResponse:
        body: dict[str, Any] = {"status": "ok"}
        status = 200
        if not _is_ready(state):
            body["status"], status = "starting", 503
        audit = state.chain.get("audit")
        health = getattr(audit, "health", None)
        if callable(health):
            info = health()
            body["audit"] = info
            if not info.get("healthy") and info.get("blocks_when_down"):
                body["status"], status = "audit unavailable", 503
        return JSONResponse(body, status_code=status)

    async def no_alerts(request: Request) -> JSONResponse:
        return JSONResponse({"alerts": [], "raised": 0, "suppressed": 0})

    routes: list[BaseRoute] = [
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    for guard in state.chain.guards:
        routes.extend(guard.admin_routes())
    routes.append(Route("/alerts", no_alerts, methods=["GET"]))  # shadowed by a guard's /alerts
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(state.config.admin.host))]
    return Starlette(routes=routes, middleware=middleware)
