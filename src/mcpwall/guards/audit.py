"""The ``audit`` guard: always last in the chain, always on.

It writes one hash-chained record per decision (``on_complete``) and one per event on the bus
(auth failures, rate-limit hits, pin changes, config reloads, upstream restarts, approvals,
findings, alerts), runs the alert rules, and wires the audit writer's numbers into the metrics.
The record is built on the event loop (redaction only — cheap) and written by the background
writer; with ``durability: sync`` the hook waits until the record is committed.

With ``on_failure: block`` (the default) the guard refuses new calls while the store cannot be
written — fail closed, so nothing happens that could not be audited. With ``buffer`` calls go on
and records queue up to ``buffer_size``; drops are counted, alerted and written to the chain as
an ``audit.gap`` record once the store is back.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from mcpwall.admin.metrics import Metrics, default_metrics
from mcpwall.audit.alerts import Alert, AlertEngine
from mcpwall.audit.capture import call_record, event_record
from mcpwall.audit.record import timestamp
from mcpwall.audit.redact import Redactor, scrub_text
from mcpwall.audit.settings import AuditPaths, AuditSettings, resolve_paths
from mcpwall.audit.signing import load_or_create
from mcpwall.audit.store import open_store
from mcpwall.audit.writer import AuditWriter, WriterOptions
from mcpwall.errors import UPSTREAM_UNAVAILABLE
from mcpwall.gateway.call import Call
from mcpwall.pipeline.guard import Guard, GuardEnv, Outcome
from mcpwall.pipeline.verdict import PASS, Reject, Verdict
from mcpwall.protocol.versions import LIST_METHODS

log = logging.getLogger("mcpwall.audit")

# Events the audit trail does not record as such: the writer's own health reports (the writer
# puts gaps and anomalies on the chain itself) and alerts (recorded when delivered).
_NOT_RECORDED = ("audit.", "alert")


class AuditGuard(Guard):
    name = "audit"
    Settings = AuditSettings
    settings: AuditSettings

    def __init__(self, settings: AuditSettings, env: GuardEnv) -> None:
        super().__init__(settings, env)
        self.paths: AuditPaths = resolve_paths(settings, env.config_dir, env.storage_url)
        redact = settings.redact
        self.redactor = Redactor(fields=redact.fields, action=redact.action, max_string_bytes=redact.max_string_bytes)
        metrics = env.state.get("metrics")
        self.metrics: Metrics = metrics if isinstance(metrics, Metrics) else default_metrics()
        self.alerts = AlertEngine(settings.alerts, self.redactor, record=self._record_alert)
        self.alerts.listeners.append(self._count_alert)
        self.writer: AuditWriter | None = None
        self._unsubscribe: Any = None

    async def start(self) -> None:
        signer = await asyncio.to_thread(load_or_create, self.paths.signing_key)
        self.redactor = Redactor(fields=self.settings.redact.fields, action=self.settings.redact.action,
                                 max_string_bytes=self.settings.redact.max_string_bytes,
                                 hmac_key=signer.redaction_key)
        self.alerts.redactor = self.redactor
        store = open_store(self.paths.url, base_dir=self.env.config_dir, schema=self.settings.pg_schema,
                           sync=self.settings.durability == "sync")
        s = self.settings
        self.writer = AuditWriter(store, signer, WriterOptions(
            batch_max=s.batch_max, batch_wait=s.batch_wait, buffer_size=s.buffer_size,
            checkpoint_every=s.checkpoint_every, checkpoint_interval=s.checkpoint_interval,
            head_interval=s.head_interval, retention=s.retention, prune_interval=s.prune_interval,
            head_file=self.paths.head_file), notify=self._writer_event)
        await self.writer.start(hold_notifications=True)
        self.alerts.use_seen(self.writer.seen_at_start, self.writer.note_seen)
        await self.alerts.start()
        self._unsubscribe = self.env.events.subscribe(self._on_event)
        self.metrics.attach_events(self.env.events)
        self.metrics.watch_audit(self.writer)
        self.env.state["audit"] = self
        self.writer.release_notifications()  # start-up findings, now that alerts are listening
        log.info("audit trail at %s (chain %s, seq %d)", store.location, self.writer.head.chain if self.writer.head
                 else "?", self.writer.head.seq if self.writer.head else 0)

    async def aclose(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self.alerts.aclose()
        if self.writer is not None:
            await self.writer.aclose()
            self.metrics.watch_audit(None)

    # -- hooks --------------------------------------------------------------------------------

    async def on_request(self, call: Call) -> Verdict:
        if self.settings.on_failure == "block" and (self.writer is None or not self.writer.accepting):
            return Reject("the audit trail cannot be written, so the call was refused", code=UPSTREAM_UNAVAILABLE,
                          http_status=503, as_tool_error=False)
        return PASS

    async def on_list(self, call: Call, kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        call.scratch["audit.listed"] = len(items)
        return items

    async def on_complete(self, call: Call, outcome: Outcome) -> None:
        if call.method in LIST_METHODS and not self.settings.record_lists:
            return
        try:
            self.alerts.observe_call(call, outcome)
            record = call_record(call, outcome, self.redactor)
        except Exception:
            # Never lose the decision itself: fall back to the facts that cannot fail to encode.
            log.exception("could not build the audit record for decision %s", call.decision_id)
            record = {"kind": "call", "ts": timestamp(), "id": call.decision_id, "decision": outcome.decision,
                      "principal": {"id": scrub_text(call.principal.id)}, "upstream": call.server,
                      "method": scrub_text(call.method), "error_code": outcome.error_code,
                      "reason": "record incomplete: the full record could not be built"}
        future = self._submit(record, wait=self.settings.durability == "sync")
        if future is not None:
            try:
                await asyncio.wait_for(asyncio.shield(future), self.settings.sync_timeout)
            except TimeoutError:
                log.error("audit record for decision %s not committed within %.1fs", call.decision_id,
                          self.settings.sync_timeout)
            except Exception as exc:
                log.error("audit record for decision %s was not written: %s", call.decision_id, exc)

    def _submit(self, record: dict[str, Any], *, wait: bool = False) -> asyncio.Future[int] | None:
        if self.writer is None:
            log.error("audit record before the audit trail started; dropped (%s)", record.get("kind"))
            return None
        return self.writer.submit(record, wait=wait)

    # -- events and alerts --------------------------------------------------------------------

    def _on_event(self, event: dict[str, Any]) -> None:
        self.alerts.on_event(event)
        kind = str(event.get("kind", ""))
        if kind.startswith(_NOT_RECORDED):
            return
        self._submit(event_record(event, self.redactor))

    def _writer_event(self, kind: str, fields: dict[str, Any]) -> None:
        self.env.events.emit(kind, **fields)

    def _record_alert(self, payload: dict[str, Any]) -> None:
        self._submit({"kind": "alert", "ts": payload["ts"], "id": payload["id"],
                      "data": {k: v for k, v in payload.items() if k not in ("id", "ts")}})

    def _count_alert(self, alert: Alert) -> None:
        self.metrics.alert_raised(alert.rule, alert.severity)

    # -- admin --------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        writer = self.writer
        if writer is None:
            return {"healthy": False, "reason": "not started"}
        stats = writer.stats()
        return {"healthy": stats.healthy, "accepting": writer.accepting, "backlog": stats.backlog,
                "dropped": stats.dropped, "seq": stats.seq, "unsigned": stats.unsigned,
                "blocks_when_down": self.settings.on_failure == "block"}

    def admin_routes(self) -> list[BaseRoute]:
        async def status(request: Request) -> JSONResponse:
            body = self.health()
            head = self.writer.head if self.writer else None
            if head is not None and head.checkpoint is not None:
                body["head"] = {"chain": head.chain, "seq": head.seq, "hash": head.hash,
                                "checkpoint": head.checkpoint.to_json().decode()}
            return JSONResponse(body, status_code=200 if body.get("healthy") else 503)

        return [*self.alerts.admin_routes(), Route("/audit/status", status, methods=["GET"])]
