"""Turn a finished call, or an event from the bus, into an audit record (format v1).

Everything a client or an upstream controls goes through the :class:`Redactor` on the way in:
arguments, params, reasons, findings, event fields. Session ids are hashed (a legacy
``Mcp-Session-Id`` is a bearer credential for the session). Empty fields are left out, so
records stay small; ``docs/audit.md`` lists every field.
"""

from __future__ import annotations

import hashlib
from typing import Any

from mcpwall.audit.record import timestamp
from mcpwall.audit.redact import REDACTED, Redactor, scrub_text
from mcpwall.gateway.call import Call, GuardRecord, Principal
from mcpwall.pipeline.guard import Outcome

# Fields of a guard finding that may quote the offending content (a DLP hit quotes the secret).
_QUOTING_KEYS = frozenset({"match", "matched", "value", "text", "snippet", "excerpt", "sample", "secret",
                           "content", "evidence", "context"})
_NAMED_ARGUMENTS = frozenset({"tools/call", "prompts/get"})
_PARAMS_SKIP = frozenset({"_meta", "arguments", "name", "uri"})


def session_ref(session_id: str) -> str:
    return "sha256:" + hashlib.sha256(session_id.encode()).hexdigest()[:16]


def principal_of(value: Any, redactor: Redactor) -> dict[str, Any] | None:
    if isinstance(value, Principal):
        out: dict[str, Any] = {"id": scrub_text(value.id), "auth": value.auth_method}
        if value.roles:
            out["roles"] = sorted(value.roles)
        if value.attributes:
            out["attributes"] = redactor.redact(value.attributes)
        return out
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return {k: v for k, v in redactor.redact(value).items() if k in ("id", "auth", "roles", "attributes")}
    if isinstance(value, str):
        return {"id": scrub_text(value)}
    return None


def guard_records(records: list[GuardRecord], redactor: Redactor) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for rec in records:
        item: dict[str, Any] = {"guard": rec.guard, "verdict": rec.verdict}
        if rec.reason:
            item["reason"] = redactor.redact(rec.reason)
        if rec.shadow:
            item["shadow"] = True
        if rec.findings:
            item["findings"] = [sanitize_finding(f, redactor) for f in rec.findings]
        out.append(item)
    return out


def sanitize_finding(finding: Any, redactor: Redactor) -> Any:
    if not isinstance(finding, dict):
        return redactor.redact(finding)
    cleaned = {k: (REDACTED if str(k).lower() in _QUOTING_KEYS else v) for k, v in finding.items()}
    return redactor.redact(cleaned)


def call_record(call: Call, outcome: Outcome, redactor: Redactor) -> dict[str, Any]:
    record: dict[str, Any] = {
        "kind": "call",
        "ts": timestamp(),
        "started": timestamp(call.wall_time),
        "id": call.decision_id,
        "principal": principal_of(call.principal, redactor),
        "source": scrub_text(call.source) if call.source else None,
        "transport": call.transport,
        "era": call.era,
        "protocol_version": call.protocol_version,
        "direction": call.direction,
        "upstream": call.server,
        "method": redactor.redact(call.method) if call.method else None,
        "target": redactor.redact(call.target) if call.target else None,
        "exposed_name": redactor.redact(call.exposed_name) if call.exposed_name else None,
        "decision": outcome.decision,
        "latency_ms": round(outcome.latency_ms, 3),
    }
    if call.session_id:
        record["session"] = session_ref(call.session_id)
    request_id = call.request_id
    if request_id is not None:
        record["request_id"] = redactor.redact(request_id)
    params = call.params
    if call.method in _NAMED_ARGUMENTS:
        arguments = params.get("arguments")
        if arguments is not None:
            record["arguments"] = redactor.redact(arguments)
    else:
        rest = {k: v for k, v in params.items() if k not in _PARAMS_SKIP}
        if rest:
            record["params"] = redactor.redact(rest)
    if call.records:
        record["guards"] = guard_records(call.records, redactor)
    if outcome.reason:
        record["reason"] = redactor.redact(outcome.reason)
    if outcome.error_code is not None:
        record["error_code"] = outcome.error_code
    summary = outcome.result_summary()
    if summary is not None:
        record["result"] = {"bytes": summary[0], "digest": summary[1]}
    if call.labels:
        record["labels"] = sorted(call.labels)
    listed = call.scratch.get("audit.listed")
    if isinstance(listed, int):
        record["listed"] = listed
    trace_id = call.scratch.get("trace_id")
    if isinstance(trace_id, str):
        record["trace_id"] = trace_id
    if outcome.extra:
        record["extra"] = redactor.redact(outcome.extra)
    return {k: v for k, v in record.items() if v is not None}


def event_record(event: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    """An event from the bus. Well-known fields get the record's own names (so they are indexed
    and filterable); everything else goes, redacted, under ``data``."""
    fields = dict(event)
    kind = str(fields.pop("kind", "event"))
    when = fields.pop("time", None)
    record: dict[str, Any] = {"kind": kind, "ts": timestamp(when if isinstance(when, int | float) else None)}
    principal = principal_of(fields.pop("principal", None), redactor)
    if principal:
        record["principal"] = principal
    for source_key, record_key in (("source", "source"), ("upstream", "upstream"), ("server", "upstream"),
                                   ("method", "method"), ("tool", "target"), ("target", "target"),
                                   ("decision", "decision"), ("reason", "reason"), ("decision_id", "id"),
                                   ("id", "id")):
        value = fields.pop(source_key, None)
        if isinstance(value, str) and record_key not in record:
            record[record_key] = redactor.redact(value)
    session = fields.pop("session_id", None)
    if isinstance(session, str):
        record["session"] = session_ref(session)
    if fields:
        data = dict(fields)
        if isinstance(data.get("findings"), list):
            data["findings"] = [sanitize_finding(f, redactor) for f in data["findings"]]
        for key in list(data):
            if str(key).lower() in _QUOTING_KEYS:
                data[key] = REDACTED
        record["data"] = redactor.redact(data)
    return record
