"""Alert rules on the event stream, and the sinks that deliver alerts (log, webhook, admin API).

Rules:

* ``auth_failure_burst`` — ``count`` auth failures (event ``auth.failure``) from one source
  within ``window``;
* ``new_capability`` — a principal calls a tool of a capability class it never used before
  (``read``, ``write``, ``destructive``, ``open_world``, from the tool's annotations; a tool
  without annotations is ``destructive``, the spec's default);
* ``new_tool`` — a tool is called for the first time;
* ``pin_change`` — a tool definition changed (event ``pin.changed``: a possible rug pull);
* ``finding`` — an injection or DLP finding (event ``finding``);
* ``circuit_open`` — an upstream's circuit breaker opened (event ``circuit.open``);
* ``audit_health`` — the audit store went down, records were dropped, or the chain did not
  match its head file at start-up.

"First time" survives restarts: seen keys are stored with the audit records.

Flood control, so an attack cannot bury the operator: the same rule and subject alert at most
once per ``cooldown`` (repeats are counted into the next alert), and at most ``max_per_minute``
alerts go out in total; the excess is counted and summarised in one ``alerts.suppressed`` alert.

Webhooks are POSTed as JSON with ``X-Mcpwall-Timestamp`` and ``X-Mcpwall-Signature:
sha256=<hex>``, the HMAC-SHA256 of ``"<timestamp>." + body`` under the webhook's secret (see
:func:`mcpwall.webhook_signature.verify_signature`); failures are retried with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from mcpwall.audit.record import timestamp
from mcpwall.audit.redact import Redactor, scrub_text
from mcpwall.audit.settings import AlertSettings, WebhookSettings
from mcpwall.gateway.call import Call
from mcpwall.pipeline.guard import Outcome
from mcpwall.webhook_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

log = logging.getLogger("mcpwall.alerts")

SEVERITIES = ("info", "warning", "critical")
_MAX_SOURCES = 10_000


@dataclass(slots=True)
class Alert:
    rule: str
    severity: str
    title: str
    subject: str
    details: dict[str, Any] = field(default_factory=dict)
    repeats: int = 0
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    ts: str = field(default_factory=timestamp)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ts": self.ts, "rule": self.rule, "severity": self.severity, "title": self.title,
                "subject": self.subject, "details": self.details, "repeats": self.repeats}


def capability_classes(definition: dict[str, Any] | None) -> list[str]:
    annotations = (definition or {}).get("annotations")
    ann = annotations if isinstance(annotations, dict) else {}
    if ann.get("readOnlyHint") is True:
        classes = ["read"]
    elif ann.get("destructiveHint") is False:
        classes = ["write"]
    else:
        classes = ["destructive"]
    if ann.get("openWorldHint") is True:
        classes.append("open_world")
    return classes


class WebhookSink:
    """Delivers alerts to one URL from a bounded queue, one at a time, with retries."""

    def __init__(self, settings: WebhookSettings, client: httpx.AsyncClient, *, queue_size: int = 1000) -> None:
        self.settings = settings
        self.client = client
        self.queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=queue_size)
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._min = SEVERITIES.index(settings.min_severity)

    def offer(self, alert: Alert) -> None:
        if SEVERITIES.index(alert.severity) < self._min:
            return
        try:
            self.queue.put_nowait(alert)
        except asyncio.QueueFull:
            self.dropped += 1
            log.error("alert webhook queue is full; alert %s not delivered", alert.id)

    async def run(self) -> None:
        while True:
            alert = await self.queue.get()
            try:
                await self.deliver(alert)
            finally:
                self.queue.task_done()

    async def deliver(self, alert: Alert) -> bool:
        body = orjson.dumps(alert.as_dict())
        delay = 0.5
        for attempt in range(1, self.settings.max_attempts + 1):
            ts = str(int(time.time()))
            headers = {"Content-Type": "application/json", "User-Agent": "mcpwall-alerts",
                       "X-Mcpwall-Delivery": alert.id, TIMESTAMP_HEADER: ts}
            if self.settings.secret:
                headers[SIGNATURE_HEADER] = sign(self.settings.secret, ts, body)
            retry_after: float | None = None
            try:
                response = await self.client.post(self.settings.url, content=body, headers=headers,
                                                  timeout=self.settings.timeout)
                if response.status_code < 300:
                    self.delivered += 1
                    return True
                if response.status_code not in (408, 429) and response.status_code < 500:
                    log.error("alert webhook refused alert %s with HTTP %d", alert.id, response.status_code)
                    self.failed += 1
                    return False
                retry_after = _retry_after(response.headers.get("retry-after"))
                reason = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
            if attempt < self.settings.max_attempts:
                log.warning("alert webhook attempt %d failed (%s); retrying", attempt, reason)
                await asyncio.sleep(min(30.0, retry_after if retry_after is not None else delay))
                delay *= 2
        self.failed += 1
        log.error("alert webhook gave up on alert %s after %d attempts", alert.id, self.settings.max_attempts)
        return False


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class AlertEngine:
    def __init__(self, settings: AlertSettings, redactor: Redactor, *, seen: set[str] | None = None,
                 note_seen: Callable[[str], None] | None = None,
                 record: Callable[[dict[str, Any]], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.rules = settings.rules
        self.redactor = redactor
        self.seen: set[str] = set(seen or ())
        self._note_seen = note_seen
        self._record = record
        self._clock = clock
        self.recent: deque[Alert] = deque(maxlen=settings.keep)
        self.raised = 0
        self.suppressed_total = 0
        self._suppressed_pending = 0
        self._last_sent: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._repeats: dict[tuple[str, str], int] = {}
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._tokens = float(settings.max_per_minute)
        self._refilled = clock()
        self._client: httpx.AsyncClient | None = None
        self.webhooks: list[WebhookSink] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.listeners: list[Callable[[Alert], None]] = []

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self, client: httpx.AsyncClient | None = None) -> None:
        if self.settings.webhooks:
            self._client = client or httpx.AsyncClient(follow_redirects=False)
            for hook in self.settings.webhooks:
                sink = WebhookSink(hook, self._client)
                self.webhooks.append(sink)
                self._tasks.append(asyncio.create_task(sink.run(), name="mcpwall-alert-webhook"))
        self._tasks.append(asyncio.create_task(self._summaries(), name="mcpwall-alert-summaries"))

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until queued webhook deliveries are done (bounded)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                for sink in self.webhooks:
                    await sink.queue.join()

    async def aclose(self) -> None:
        await self.drain(2.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _summaries(self) -> None:
        while True:
            await asyncio.sleep(10.0)
            self._flush_summary()

    def use_seen(self, seen: set[str], note_seen: Callable[[str], None]) -> None:
        """Start from the keys already seen (stored with the audit trail) and persist new ones."""
        self.seen |= seen
        self._note_seen = note_seen

    # -- inputs -------------------------------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        if not self.settings.enabled:
            return
        kind = event.get("kind")
        if kind == "auth.failure":
            self._auth_failure(event)
        elif kind == "pin.changed" and self.rules.pin_change:
            upstream = event.get("upstream") or event.get("server") or "?"
            subject = f"{upstream}/{event.get('tool') or event.get('name') or '?'}"
            self.raise_alert("pin_change", "critical", "A tool definition changed (possible rug pull)", subject,
                             event)
        elif kind == "finding" and self.rules.finding:
            severity = _severity(event.get("severity"))
            what = event.get("type") or event.get("category") or event.get("rule") or "finding"
            subject = f"{event.get('guard', '?')}:{what}:{event.get('upstream') or event.get('server') or '-'}"
            self.raise_alert("finding", severity, f"{event.get('guard', 'a guard')} reported {what}", subject, event)
        elif kind == "circuit.open" and self.rules.circuit_open:
            upstream = str(event.get("upstream") or event.get("server") or "?")
            self.raise_alert("circuit_open", "warning", f"Circuit opened for upstream {upstream}", upstream, event)
        elif kind in ("audit.sink_down", "audit.dropped", "audit.anomaly") and self.rules.audit_health:
            titles = {"audit.sink_down": "The audit store cannot be written",
                      "audit.dropped": "Audit records were dropped (buffer full)",
                      "audit.anomaly": "The audit chain does not match its head file"}
            self.raise_alert("audit_health", "critical", titles[str(kind)], str(kind), event)

    def observe_call(self, call: Call, outcome: Outcome) -> None:
        """First-time rules. Only tools the catalog knows count, so a client cannot fill the
        seen-set (or the operator's inbox) by calling made-up names."""
        if not self.settings.enabled or call.method != "tools/call" or not call.server or not call.target:
            return
        if call.definition is None:
            return
        tool_key = f"tool:{call.server}/{call.target}"
        if tool_key not in self.seen:
            self._mark(tool_key)
            if self.rules.new_tool:
                self.raise_alert("new_tool", "info", f"Tool {call.server}/{call.target} was called for the first time",
                                 f"{call.server}/{call.target}",
                                 {"principal": call.principal.id, "decision": outcome.decision})
        for cls in capability_classes(call.definition):
            cap_key = f"cap:{call.principal.id}:{cls}"
            if cap_key in self.seen:
                continue
            self._mark(cap_key)
            if self.rules.new_capability:
                severity = "warning" if cls in ("write", "destructive", "open_world") else "info"
                self.raise_alert("new_capability", severity,
                                 f"Principal {call.principal.id} used a {cls} tool for the first time",
                                 f"{call.principal.id}:{cls}",
                                 {"principal": call.principal.id, "capability": cls, "upstream": call.server,
                                  "tool": call.target, "decision": outcome.decision})

    def _mark(self, key: str) -> None:
        self.seen.add(key)
        if self._note_seen is not None:
            self._note_seen(key)

    def _auth_failure(self, event: dict[str, Any]) -> None:
        rule = self.rules.auth_failure_burst
        if rule is None:
            return
        source = str(event.get("source") or "unknown")
        now = self._clock()
        times = self._failures.get(source)
        if times is None:
            times = self._failures[source] = deque()
            if len(self._failures) > _MAX_SOURCES:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(source)
        times.append(now)
        while times and now - times[0] > rule.window:
            times.popleft()
        if len(times) >= rule.count:
            count = len(times)
            times.clear()
            self.raise_alert("auth_failure_burst", "warning",
                             f"{count} authentication failures from {source} within {rule.window:g}s", source,
                             {"source": source, "failures": count, "window_s": rule.window,
                              "last_reason": event.get("reason")})

    # -- flood control and delivery -----------------------------------------------------------

    def raise_alert(self, rule: str, severity: str, title: str, subject: str, details: dict[str, Any]) -> Alert | None:
        now = self._clock()
        key = (rule, subject)
        last = self._last_sent.get(key)
        if last is not None and now - last < self.settings.cooldown:
            self._repeats[key] = self._repeats.get(key, 0) + 1
            return None
        self._refill(now)
        if self._tokens < 1.0:
            self._suppressed_pending += 1
            self.suppressed_total += 1
            return None
        self._flush_summary(now)
        if self._tokens < 1.0:
            self._suppressed_pending += 1
            self.suppressed_total += 1
            return None
        self._tokens -= 1.0
        self._last_sent[key] = now
        self._last_sent.move_to_end(key)
        if len(self._last_sent) > _MAX_SOURCES:
            self._last_sent.popitem(last=False)
        clean = self.redactor.redact({k: v for k, v in details.items() if k not in ("kind", "time")})
        alert = Alert(rule=rule, severity=severity, title=scrub_text(title), subject=scrub_text(subject),
                      details=clean, repeats=self._repeats.pop(key, 0))
        self._deliver(alert)
        return alert

    def _refill(self, now: float) -> None:
        rate = self.settings.max_per_minute / 60.0
        self._tokens = min(float(self.settings.max_per_minute), self._tokens + (now - self._refilled) * rate)
        self._refilled = now

    def _flush_summary(self, now: float | None = None) -> None:
        if not self._suppressed_pending:
            return
        self._refill(self._clock() if now is None else now)
        if self._tokens < 1.0:
            return
        self._tokens -= 1.0
        count, self._suppressed_pending = self._suppressed_pending, 0
        self._deliver(Alert(rule="alerts.suppressed", severity="warning",
                            title=f"{count} alerts were suppressed by the alert rate limit", subject="rate-limit",
                            details={"suppressed": count, "max_per_minute": self.settings.max_per_minute}))

    def _deliver(self, alert: Alert) -> None:
        self.raised += 1
        self.recent.append(alert)
        payload = alert.as_dict()
        if self.settings.log:
            log.warning("alert: %s", alert.title, extra={"event": {"alert": payload}})
        for sink in self.webhooks:
            sink.offer(alert)
        for listener in self.listeners:
            try:
                listener(alert)
            except Exception:
                log.exception("alert listener failed")
        if self._record is not None:
            self._record(payload)

    # -- admin API ----------------------------------------------------------------------------

    def admin_routes(self) -> list[BaseRoute]:
        async def alerts(request: Request) -> JSONResponse:
            try:
                limit = max(1, min(int(request.query_params.get("limit", "100")), self.settings.keep))
            except ValueError:
                limit = 100
            items = [a.as_dict() for a in reversed(self.recent)][:limit]
            return JSONResponse({"alerts": items, "raised": self.raised, "suppressed": self.suppressed_total})

        return [Route("/alerts", alerts, methods=["GET"])]


def _severity(value: Any) -> str:
    text = str(value or "").lower()
    if text in ("critical", "high", "error"):
        return "critical"
    if text in ("info", "low"):
        return "info"
    return "warning"
