"""Prometheus metrics: one registry per :class:`Metrics`, never the global default one.

The core calls the module-level functions (:func:`observe_call`, :func:`observe_upstream`,
:func:`observe_guard`, :func:`set_circuit_state`, …), which feed the default instance that the
admin app serves. Event-driven counters (auth failures, rate-limit hits, upstream restarts,
circuit changes, config reloads) come from the event bus via :meth:`Metrics.attach_events`.
Values that already exist elsewhere — the audit writer's backlog and counters, each guard's
cumulative cost in ``GuardChain.cost_seconds`` — are read at scrape time, so they cost nothing
on the hot path.

Label values that a client can influence (method names) are clamped to a known set, and every
label has a cap on distinct values, so a hostile client cannot explode the series count.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from mcpwall.gateway.events import EventBus
    from mcpwall.pipeline.chain import GuardChain

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0, 60.0)
GUARD_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25,
                 1.0, 5.0)
KNOWN_METHODS = frozenset({
    "initialize", "ping", "tools/list", "tools/call", "prompts/list", "prompts/get", "resources/list",
    "resources/templates/list", "resources/read", "resources/subscribe", "resources/unsubscribe",
    "completion/complete", "logging/setLevel", "server/discover", "subscriptions/listen", "tasks/get",
    "tasks/list", "tasks/cancel", "tasks/result", "sampling/createMessage", "elicitation/create", "roots/list",
    "notifications/initialized", "notifications/cancelled", "notifications/progress",
})
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}
DECISIONS = frozenset({"allow", "deny", "error"})


class _Clamp:
    """Pass label values through until ``limit`` distinct ones were seen; then "other"."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.values: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: Any) -> str:
        text = str(value) if value not in (None, "") else "none"
        if text in self.values:
            return text
        with self._lock:
            if len(self.values) >= self.limit:
                return "other"
            self.values.add(text)
        return text


class AuditSource(Protocol):
    def stats(self) -> Any: ...


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("mcpwall_requests", "Requests handled, by method, upstream and final decision.",
                                ["method", "upstream", "decision"], registry=r)
        self.request_seconds = Histogram("mcpwall_request_duration_seconds",
                                         "Time from request to answer, including the upstream.",
                                         ["method", "upstream"], buckets=LATENCY_BUCKETS, registry=r)
        self.upstream_seconds = Histogram("mcpwall_upstream_duration_seconds", "Time spent waiting on upstreams.",
                                          ["upstream"], buckets=LATENCY_BUCKETS, registry=r)
        self.upstream_errors = Counter("mcpwall_upstream_errors", "Upstream failures, by kind.",
                                       ["upstream", "kind"], registry=r)
        self.guard_seconds = Histogram("mcpwall_guard_duration_seconds", "Time one guard spent on one call.",
                                       ["guard"], buckets=GUARD_BUCKETS, registry=r)
        self.auth_failures = Counter("mcpwall_auth_failures", "Failed authentications, by auth method.",
                                     ["method"], registry=r)
        self.rate_limit_hits = Counter("mcpwall_rate_limit_hits", "Requests refused by a rate limit or quota.",
                                       ["rule"], registry=r)
        self.circuit_state = Gauge("mcpwall_circuit_state", "Circuit breaker per upstream: 0 closed, 1 half-open, "
                                   "2 open.", ["upstream"], registry=r)
        self.upstream_restarts = Counter("mcpwall_upstream_restarts", "Upstream processes restarted.",
                                         ["upstream"], registry=r)
        self.config_reloads = Counter("mcpwall_config_reloads", "Policy reloads, by result.", ["result"], registry=r)
        self.events = Counter("mcpwall_events", "Events on the gateway's event bus, by kind.", ["kind"], registry=r)
        self.alerts = Counter("mcpwall_alerts", "Alerts delivered, by rule and severity.", ["rule", "severity"],
                              registry=r)
        self._method = _Clamp(len(KNOWN_METHODS) + 1)
        self._upstream = _Clamp(256)
        self._guard = _Clamp(64)
        self._rule = _Clamp(256)
        self._kind = _Clamp(128)
        self._auth_method = _Clamp(32)
        self._attached: weakref.WeakSet[EventBus] = weakref.WeakSet()
        self._state = _ScrapeState()
        r.register(_ScrapeCollector(self._state))

    # -- hot-path observations ----------------------------------------------------------------

    def observe_call(self, method: str, upstream: str | None, decision: str, seconds: float) -> None:
        m = self._method(method if method in KNOWN_METHODS else "other")
        u = self._upstream(upstream or "none")
        self.requests.labels(m, u, decision if decision in DECISIONS else "error").inc()
        self.request_seconds.labels(m, u).observe(seconds)

    def observe_upstream(self, upstream: str, seconds: float, *, ok: bool = True, kind: str = "error") -> None:
        u = self._upstream(upstream)
        self.upstream_seconds.labels(u).observe(seconds)
        if not ok:
            self.upstream_errors.labels(u, self._kind(kind)).inc()

    def observe_guard(self, guard: str, seconds: float) -> None:
        self.guard_seconds.labels(self._guard(guard)).observe(seconds)

    def set_circuit_state(self, upstream: str, state: str | int) -> None:
        value = state if isinstance(state, int) else CIRCUIT_STATES.get(state, 2)
        self.circuit_state.labels(self._upstream(upstream)).set(value)

    def upstream_restarted(self, upstream: str) -> None:
        self.upstream_restarts.labels(self._upstream(upstream)).inc()

    def auth_failure(self, method: str = "unknown") -> None:
        self.auth_failures.labels(self._auth_method(method)).inc()

    def rate_limit_hit(self, rule: str = "default") -> None:
        self.rate_limit_hits.labels(self._rule(rule)).inc()

    def alert_raised(self, rule: str, severity: str) -> None:
        self.alerts.labels(self._rule(rule), severity).inc()

    # -- wiring -------------------------------------------------------------------------------

    def attach_events(self, bus: EventBus) -> None:
        """Count what the bus announces. Idempotent per bus."""
        if bus in self._attached:
            return
        self._attached.add(bus)
        bus.subscribe(self.on_event)

    def on_event(self, event: dict[str, Any]) -> None:
        kind = str(event.get("kind", ""))
        self.events.labels(self._kind(kind)).inc()
        upstream = str(event.get("upstream") or event.get("server") or "none")
        if kind == "auth.failure":
            self.auth_failure(str(event.get("method") or event.get("auth_method") or "unknown"))
        elif kind in ("ratelimit.hit", "rate_limit.hit", "ratelimit.exceeded"):
            self.rate_limit_hit(str(event.get("rule") or event.get("limit") or "default"))
        elif kind == "upstream.restart":
            self.upstream_restarted(upstream)
        elif kind.startswith("circuit."):
            state = kind.removeprefix("circuit.")
            self.set_circuit_state(upstream, "closed" if state in ("close", "closed") else state)
        elif kind == "config.reload":
            ok = event.get("ok", True)
            self.config_reloads.labels("ok" if ok else "failed").inc()

    def watch_audit(self, source: AuditSource | None) -> None:
        self._state.audit = source

    def watch_chain(self, chain: GuardChain | None) -> None:
        self._state.chain = chain

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ScrapeState:
    def __init__(self) -> None:
        self.audit: AuditSource | None = None
        self.chain: GuardChain | None = None


class _ScrapeCollector(Collector):
    """Values read at scrape time from objects that already keep them."""

    def __init__(self, state: _ScrapeState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        chain = self.state.chain
        if chain is not None:
            cost = CounterMetricFamily("mcpwall_guard_cost_seconds", "Cumulative time spent in each guard.",
                                       labels=["guard"])
            for guard, seconds in list(chain.cost_seconds.items()):
                cost.add_metric([guard], seconds)
            yield cost
        audit = self.state.audit
        if audit is not None:
            stats = audit.stats()
            yield GaugeMetricFamily("mcpwall_audit_backlog", "Audit records waiting to be written.",
                                    value=stats.backlog)
            yield GaugeMetricFamily("mcpwall_audit_sink_up", "1 when the audit store is writable.",
                                    value=1 if stats.healthy else 0)
            yield GaugeMetricFamily("mcpwall_audit_chain_seq", "Sequence number of the last audit record.",
                                    value=stats.seq)
            yield CounterMetricFamily("mcpwall_audit_records_written", "Audit records committed.",
                                      value=stats.written)
            yield CounterMetricFamily("mcpwall_audit_records_dropped", "Audit records dropped (buffer full).",
                                      value=stats.dropped)
            yield CounterMetricFamily("mcpwall_audit_write_failures", "Failed audit store writes.",
                                      value=stats.failures)
            yield CounterMetricFamily("mcpwall_audit_batches", "Audit batches committed.", value=stats.batches)
            yield CounterMetricFamily("mcpwall_audit_batch_seconds", "Time spent committing audit batches.",
                                      value=stats.batch_seconds)


METRICS = Metrics()


def default_metrics() -> Metrics:
    return METRICS


def observe_call(method: str, upstream: str | None, decision: str, seconds: float) -> None:
    METRICS.observe_call(method, upstream, decision, seconds)


def observe_upstream(upstream: str, seconds: float, *, ok: bool = True, kind: str = "error") -> None:
    METRICS.observe_upstream(upstream, seconds, ok=ok, kind=kind)


def observe_guard(guard: str, seconds: float) -> None:
    METRICS.observe_guard(guard, seconds)


def set_circuit_state(upstream: str, state: str | int) -> None:
    METRICS.set_circuit_state(upstream, state)


def upstream_restarted(upstream: str) -> None:
    METRICS.upstream_restarted(upstream)


def auth_failure(method: str = "unknown") -> None:
    METRICS.auth_failure(method)


def rate_limit_hit(rule: str = "default") -> None:
    METRICS.rate_limit_hit(rule)
