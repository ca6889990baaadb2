"""Export audit records for SIEMs: JSON lines, CEF, syslog (RFC 5424 carrying CEF), and
OpenTelemetry log records (OTLP/JSON ``ExportLogsServiceRequest``).

JSON lines are the records themselves plus their ``hash`` — enough to re-verify the chain
offline. CEF and syslog map the main fields onto standard CEF keys (``suser``, ``src``, ``act``,
``rt``) and the rest onto labelled custom strings. OTLP documents carry each record as a log
record whose body is the record's JSON and whose attributes are the indexed fields.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from mcpwall import __version__
from mcpwall.audit.record import parse_timestamp
from mcpwall.audit.store import Row

FORMATS = ("jsonl", "cef", "syslog", "otel")
_SYSLOG_FACILITY = 16  # local0
_OTEL_BATCH = 500


def parsed(rows: Iterable[Row]) -> Iterator[dict[str, Any]]:
    for row in rows:
        record = orjson.loads(row.body)
        record["hash"] = row.hash
        yield record


def to_jsonl(record: dict[str, Any]) -> str:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode()


# -- CEF -------------------------------------------------------------------------------------

def _cef_header(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _cef_ext(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")


def severity(record: dict[str, Any]) -> int:
    """CEF severity 0-10."""
    kind = record.get("kind")
    if kind == "alert":
        level = (record.get("data") or {}).get("severity")
        return {"critical": 9, "warning": 6}.get(str(level), 3)
    if kind in ("audit.gap", "audit.anomaly", "pin.changed"):
        return 8
    if kind == "auth.failure":
        return 5
    return {"deny": 6, "error": 5}.get(str(record.get("decision")), 3)


def _source_ip(source: Any) -> str | None:
    if not isinstance(source, str):
        return None
    host = source.rsplit(":", 1)[0].strip("[]") if source.count(":") == 1 or source.startswith("[") else source
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def to_cef(record: dict[str, Any]) -> str:
    kind = str(record.get("kind", "event"))
    method = record.get("method")
    signature = method if kind == "call" and method else kind
    target = record.get("target")
    decision = record.get("decision")
    name = " ".join(str(p) for p in (signature, target, decision) if p)
    ext: list[tuple[str, Any]] = []
    with contextlib.suppress(KeyError, ValueError):
        ext.append(("rt", int(parse_timestamp(str(record["ts"])) * 1000)))
    principal = record.get("principal")
    if isinstance(principal, dict) and principal.get("id"):
        ext.append(("suser", principal["id"]))
    src = _source_ip(record.get("source"))
    if src:
        ext.append(("src", src))
    if decision:
        ext.append(("act", decision))
    if record.get("reason"):
        ext.append(("msg", record["reason"]))
    custom = [("tool", target), ("upstream", record.get("upstream")), ("decisionId", record.get("id")),
              ("hash", record.get("hash"))]
    for index, (label, value) in enumerate(custom, start=1):
        if value is not None:
            ext.append((f"cs{index}Label", label))
            ext.append((f"cs{index}", value))
    ext.append(("cn1Label", "seq"))
    ext.append(("cn1", record.get("seq")))
    if isinstance(record.get("error_code"), int):
        ext.append(("cn2Label", "errorCode"))
        ext.append(("cn2", record["error_code"]))
    if isinstance(record.get("latency_ms"), int | float):
        ext.append(("cn3Label", "latencyMs"))
        ext.append(("cn3", int(record["latency_ms"])))
    extension = " ".join(f"{key}={_cef_ext(value)}" for key, value in ext if value is not None)
    header = "|".join(_cef_header(p) for p in ("mcpwall", "mcpwall", __version__, signature, name or kind,
                                                 severity(record)))
    return f"CEF:0|{header}|{extension}"


def to_syslog(record: dict[str, Any], hostname: str | None = None) -> str:
    cef_severity = severity(record)
    level = 2 if cef_severity >= 9 else 4 if cef_severity >= 6 else 5 if cef_severity >= 5 else 6
    host = (hostname or socket.gethostname() or "-").replace(" ", "_")[:255]
    msgid = str(record.get("kind", "-")).replace(" ", "_")[:32] or "-"
    return f"<{_SYSLOG_FACILITY * 8 + level}>1 {record.get('ts', '-')} {host} mcpwall - {msgid} - {to_cef(record)}"


# -- OpenTelemetry ---------------------------------------------------------------------------

def _otel_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    return {"stringValue": orjson.dumps(value).decode()}


def otel_log_record(record: dict[str, Any]) -> dict[str, Any]:
    cef_severity = severity(record)
    number, text = (17, "ERROR") if cef_severity >= 9 else (13, "WARN") if cef_severity >= 5 else (9, "INFO")
    try:
        nanos = str(int(parse_timestamp(str(record["ts"])) * 1_000_000) * 1000)
    except (KeyError, ValueError):
        nanos = "0"
    attributes: dict[str, Any] = {"mcpwall.audit.seq": record.get("seq"), "mcpwall.audit.hash": record.get("hash"),
                                  "mcpwall.audit.kind": record.get("kind")}
    principal = record.get("principal")
    if isinstance(principal, dict):
        attributes["enduser.id"] = principal.get("id")
    for key, attr in (("method", "mcp.method.name"), ("target", "mcpwall.target"), ("upstream", "mcpwall.upstream"),
                      ("decision", "mcpwall.decision"), ("id", "mcpwall.decision_id"), ("error_code",
                      "rpc.jsonrpc.error_code")):
        attributes[attr] = record.get(key)
    out: dict[str, Any] = {
        "timeUnixNano": nanos,
        "observedTimeUnixNano": nanos,
        "severityNumber": number,
        "severityText": text,
        "body": {"stringValue": to_jsonl(record)},
        "attributes": [{"key": k, "value": _otel_value(v)} for k, v in attributes.items() if v is not None],
    }
    if isinstance(record.get("trace_id"), str):
        out["traceId"] = record["trace_id"]
    return out


def otel_documents(records: Iterable[dict[str, Any]], *, batch: int = _OTEL_BATCH) -> Iterator[str]:
    """One ``ExportLogsServiceRequest`` JSON document per ``batch`` records (one per line)."""
    chunk: list[dict[str, Any]] = []

    def document() -> str:
        return orjson.dumps({"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "mcpwall"}}]},
            "scopeLogs": [{"scope": {"name": "mcpwall.audit", "version": __version__}, "logRecords": chunk}],
        }]}).decode()

    for record in records:
        chunk.append(otel_log_record(record))
        if len(chunk) >= batch:
            yield document()
            chunk = []
    if chunk:
        yield document()


def render(records: Iterable[dict[str, Any]], fmt: str) -> Iterator[str]:
    if fmt == "otel":
        yield from otel_documents(records)
        return
    line = {"jsonl": to_jsonl, "cef": to_cef, "syslog": to_syslog}[fmt]
    for record in records:
        yield line(record)
