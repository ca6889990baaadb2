"""SIEM exports: JSON lines that re-verify, CEF and syslog with correct escaping, OTLP/JSON log records."""

from __future__ import annotations

import re
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from mcpwall.audit.export import otel_documents, render, to_cef, to_jsonl, to_syslog
from mcpwall.audit.record import link, record_hash, timestamp

RECORD: dict[str, Any] = {
    "kind": "call", "ts": "2026-03-01T12:00:00.250000Z", "id": "abc123", "seq": 7, "hash": "f" * 64,
    "principal": {"id": "alice", "auth": "jwt"}, "source": "10.0.0.5:41000", "method": "tools/call",
    "target": "run|query=1", "upstream": "db", "decision": "deny", "reason": "blocked\nby policy", "error_code": -31403,
    "latency_ms": 2.7,
}


def _cef_parts(line: str) -> tuple[list[str], dict[str, str]]:
    """A small CEF reader: split the header on unescaped pipes, the extension on unescaped '='."""
    assert line.startswith("CEF:")
    header: list[str] = []
    current, i = "", 4
    while len(header) < 7:
        ch = line[i]
        if ch == "\\":
            current += line[i + 1]
            i += 2
            continue
        if ch == "|":
            header.append(current)
            current = ""
        else:
            current += ch
        i += 1
    extension = line[i:]
    keys = list(re.finditer(r"(?:^| )([A-Za-z0-9]+)=", extension))
    values: dict[str, str] = {}
    for index, match in enumerate(keys):
        end = keys[index + 1].start() if index + 1 < len(keys) else len(extension)
        raw = extension[match.end():end]
        values[match.group(1)] = (raw.replace("\\n", "\n").replace("\\r", "\r").replace("\\=", "=")
                                  .replace("\\\\", "\\"))
    return header, values


def test_cef_maps_and_escapes() -> None:
    line = to_cef(RECORD)
    assert "\n" not in line
    header, ext = _cef_parts(line)
    assert header[:3] == ["0", "mcpwall", "mcpwall"]
    assert header[4] == "tools/call" and header[5] == "tools/call run|query=1 deny" and header[6] == "6"
    assert ext["suser"] == "alice" and ext["src"] == "10.0.0.5" and ext["act"] == "deny"
    assert ext["msg"] == "blocked\nby policy" and ext["cs1"] == "run|query=1" and ext["cn1"] == "7"
    assert ext["rt"] == "1772366400250"


@given(st.text(max_size=40), st.text(max_size=40))
def test_cef_extension_values_survive_any_text(reason: str, target: str) -> None:
    line = to_cef({**RECORD, "reason": reason, "target": target})
    assert "\n" not in line and "\r" not in line
    _, ext = _cef_parts(line)
    if reason:
        assert ext["msg"] == reason
    if target:
        assert ext["cs1"] == target


def test_syslog_is_rfc5424_with_cef() -> None:
    line = to_syslog(RECORD, hostname="gw1")
    assert re.match(r"^<132>1 2026-03-01T12:00:00\.250000Z gw1 mcpwall - call - CEF:0\|", line)


def test_otel_documents_are_otlp_json() -> None:
    docs = list(otel_documents([RECORD] * 3, batch=2))
    assert len(docs) == 2
    first = orjson.loads(docs[0])
    logs = first["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    assert len(logs) == 2
    entry = logs[0]
    assert entry["timeUnixNano"] == "1772366400250000000" and entry["severityText"] == "WARN"
    attributes = {a["key"]: a["value"] for a in entry["attributes"]}
    assert attributes["mcpwall.audit.seq"] == {"intValue": "7"}
    assert attributes["enduser.id"] == {"stringValue": "alice"}
    assert orjson.loads(entry["body"]["stringValue"])["id"] == "abc123"


def test_jsonl_export_can_be_reverified() -> None:
    sealed = link([{"kind": "call", "ts": timestamp(), "n": i} for i in range(3)], 0, "0" * 64)
    lines = list(render(({**s.record, "hash": s.hash} for s in sealed), "jsonl"))
    for line, original in zip(lines, sealed, strict=True):
        record = orjson.loads(line)
        assert record["hash"] == original.hash == record_hash(record)
    assert to_jsonl({"b": 1, "a": 2}) == '{"a":2,"b":1}'
