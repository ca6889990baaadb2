"""``mcpwall audit verify|tail|query|export`` on a chain written through the real writer."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

import mcpwall.config.model  # noqa: F401 - loads the guard registry before the guard modules
from mcpwall.audit.record import timestamp
from mcpwall.audit.settings import AuditSettings, resolve_paths
from mcpwall.audit.signing import load_or_create
from mcpwall.audit.store import open_store
from mcpwall.audit.writer import AuditWriter, WriterOptions
from mcpwall.cli.audit import audit


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mcpwall.yaml"
    path.write_text("storage: {url: 'sqlite:///gw.db'}\nguards: {audit: {retention: 0}}\n")
    paths = resolve_paths(AuditSettings(), tmp_path, "sqlite:///gw.db")
    writer = AuditWriter(open_store(paths.url), load_or_create(paths.signing_key),
                         WriterOptions(head_file=paths.head_file, retention=0, checkpoint_every=5, batch_max=5))
    for i in range(30):
        writer.submit(_record(i))
    writer.submit({"kind": "auth.failure", "ts": timestamp(), "source": "203.0.113.7"})
    writer.start_thread()
    writer.close_sync()
    return path


def _record(i: int) -> dict[str, Any]:
    return {"kind": "call", "ts": timestamp(), "id": f"d{i}", "principal": {"id": "alice" if i % 2 else "bob"},
            "method": "tools/call", "upstream": "fs", "target": "read" if i % 3 else "write",
            "decision": "deny" if i % 10 == 0 else "allow", "source": "127.0.0.1:5000"}


def run(*args: str) -> Any:
    return CliRunner().invoke(audit, list(args), catch_exceptions=False)


def _db(config: Path) -> sqlite3.Connection:
    return sqlite3.connect(config.parent / "gw-audit.db", isolation_level=None)


def test_verify_ok(config: Path) -> None:
    result = run("verify", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: chain ") and "31 records" in result.output


def test_verify_names_the_first_bad_record_and_fails(config: Path) -> None:
    with _db(config) as db:
        db.execute("UPDATE audit_records SET decision = 'allow' WHERE seq = 11")
        db.execute("DELETE FROM audit_records WHERE seq = 20")
    result = run("verify", "-c", str(config), "--json")
    assert result.exit_code == 1
    report = orjson.loads(result.stdout)
    assert report["first_bad"]["seq"] == 11 and report["first_bad"]["kind"] == "edited"
    assert {p["kind"]: p["seq"] for p in report["problems"]} == {"edited": 11, "deleted": 20}


def test_verify_text_failure_goes_to_stderr(config: Path) -> None:
    with _db(config) as db:
        db.execute("DELETE FROM audit_records WHERE seq > 25")
    result = CliRunner().invoke(audit, ["verify", "-c", str(config)])
    assert result.exit_code == 1
    assert "first bad record: seq 26 (truncated)" in result.stderr


def test_query_filters(config: Path) -> None:
    result = run("query", "-c", str(config), "--principal", "bob", "--decision", "deny", "--format", "jsonl")
    records = [orjson.loads(line) for line in result.output.splitlines()]
    assert [r["id"] for r in records] == ["d0", "d10", "d20"]
    result = run("query", "-c", str(config), "--tool", "write", "--principal", "alice", "--format", "jsonl")
    assert {orjson.loads(line)["id"] for line in result.output.splitlines()} == {"d3", "d9", "d15", "d21", "d27"}
    assert run("query", "-c", str(config), "--since", "2h", "--kind", "auth.failure").output.count("\n") == 1
    assert run("query", "-c", str(config), "--until", "2000-01-01").output == ""


def test_tail_prints_the_newest_records_oldest_first(config: Path) -> None:
    lines = run("tail", "-c", str(config), "-n", "3").output.splitlines()
    assert [line.split()[0] for line in lines] == ["29", "30", "31"]


@pytest.mark.parametrize("fmt", ["jsonl", "cef", "syslog", "otel"])
def test_export_formats(config: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"export.{fmt}"
    result = run("export", "-c", str(config), "--format", fmt, "-o", str(out))
    assert result.exit_code == 0
    lines = out.read_text().splitlines()
    if fmt == "otel":
        assert len(orjson.loads(lines[0])["resourceLogs"][0]["scopeLogs"][0]["logRecords"]) == 31
    else:
        assert len(lines) == 31
        assert lines[0].startswith({"jsonl": "{", "cef": "CEF:0|", "syslog": "<"}[fmt])


def test_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "mcpwall.yaml"
    path.write_text("storage: {url: 'sqlite:///nothing.db'}\n")
    result = CliRunner().invoke(audit, ["verify", "-c", str(path)])
    assert result.exit_code != 0 and "no audit database" in result.output


def test_an_export_with_proof_verifies_offline_and_tampering_is_named(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "chain.jsonl"
    assert run("export", "-c", str(config), "--proof", "-o", str(out)).exit_code == 0
    lines = out.read_text().splitlines()
    assert orjson.loads(lines[-1]).keys() == {"head"}
    ok = run("verify", "-c", str(config), "--file", str(out))
    assert ok.exit_code == 0, ok.output

    def verdict(edited: list[str]) -> dict[str, Any]:
        out.write_text("\n".join(edited) + "\n")
        result = CliRunner().invoke(audit, ["verify", "-c", str(config), "--file", str(out), "--json"])
        assert result.exit_code == 1
        return orjson.loads(result.stdout)["first_bad"]

    record = orjson.loads(lines[4])
    record["decision"] = "deny" if record.get("decision") == "allow" else "allow"
    assert verdict([*lines[:4], orjson.dumps(record).decode(), *lines[5:]])["seq"] == 5
    deleted = verdict([*lines[:9], *lines[10:]])
    assert (deleted["kind"], deleted["seq"], deleted["until_seq"]) == ("deleted", 10, 10)
    trailer = [line for line in lines if orjson.loads(line).keys() & {"checkpoint", "head"}]
    records_only = [line for line in lines if line not in trailer]
    assert verdict([*records_only[:-3], *trailer])["kind"] == "truncated"


def test_proof_needs_an_unfiltered_jsonl_export(config: Path) -> None:
    result = CliRunner().invoke(audit, ["export", "-c", str(config), "--proof", "--principal", "bob"])
    assert result.exit_code == 2
