"""The audit guard: one redacted record per decision and per event, fail-closed when the store is down."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

import mcpwall.config.model  # noqa: F401 - loads the guard registry before the guard modules
from mcpwall.audit.settings import AuditSettings
from mcpwall.audit.signing import load_or_create
from mcpwall.audit.sqlite import SqliteStore
from mcpwall.audit.store import StoreError
from mcpwall.config.loader import load_text
from mcpwall.errors import UPSTREAM_UNAVAILABLE
from mcpwall.gateway.call import Call, GuardRecord, Principal
from mcpwall.gateway.events import EventBus
from mcpwall.guards import audit as audit_module
from mcpwall.guards.audit import AuditGuard
from mcpwall.pipeline.guard import GuardEnv, Outcome
from mcpwall.pipeline.verdict import PASS, Reject

pytestmark = pytest.mark.anyio
SECRET = "sk-live-0123456789abcdefghijklmnop"


def make_call(tool: str = "write_file", args: dict[str, Any] | None = None, *, principal: str = "alice",
              definition: dict[str, Any] | None = None) -> Call:
    params = {"name": f"fs__{tool}", "arguments": args if args is not None else {"path": "/tmp/x"}}
    return Call(message={"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params},
                principal=Principal(principal, roles=frozenset({"dev"}), auth_method="apikey"), era="modern",
                protocol_version="2026-07-28", transport="http", session_id="session-secret-value",
                source="10.1.2.3:5555", server="fs", target=tool, exposed_name=f"fs__{tool}",
                definition=definition if definition is not None else {"name": tool})


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.bus = EventBus()
        self.env = GuardEnv(events=self.bus, config_dir=tmp_path, storage_url="sqlite:///gw.db")
        self.guards: list[AuditGuard] = []

    async def guard(self, **settings: Any) -> AuditGuard:
        settings.setdefault("retention", 0)
        guard = AuditGuard(AuditSettings.model_validate(settings), self.env)
        await guard.start()
        self.guards.append(guard)
        return guard

    def records(self) -> list[dict[str, Any]]:
        db = sqlite3.connect(self.dir / "gw-audit.db")
        try:
            return [orjson.loads(b) for (b,) in db.execute("SELECT body FROM audit_records ORDER BY seq")]
        finally:
            db.close()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    yield h
    for guard in h.guards:
        await guard.aclose()


async def test_one_record_per_decision_with_every_field(harness: Harness) -> None:
    guard = await harness.guard(redact={"fields": ["ssn"]})
    call = make_call(args={"path": "/etc/hosts", "password": "hunter2", "ssn": "123-45-6789",
                           "note": f"use Bearer {SECRET} please"})
    call.records.append(GuardRecord("policy", "pass", "allowed by rule dev-fs"))
    call.records.append(GuardRecord("dlp", "mutate", "masked 1 secret",
                                    findings=[{"type": "api_key", "match": SECRET}]))
    result = {"content": [{"type": "text", "text": "Blocked by mcpwall"}], "isError": True}
    outcome = Outcome(decision="deny", error_code=-31403, reason="blocked by policy", result=result, latency_ms=3.25)
    await guard.on_complete(call, outcome)
    await guard.aclose()
    harness.guards.clear()

    (record,) = [r for r in harness.records() if r["kind"] == "call"]
    assert record["id"] == call.decision_id
    assert record["principal"] == {"id": "alice", "auth": "apikey", "roles": ["dev"]}
    assert (record["source"], record["transport"], record["era"]) == ("10.1.2.3:5555", "http", "modern")
    assert (record["upstream"], record["method"], record["target"]) == ("fs", "tools/call", "write_file")
    assert (record["decision"], record["error_code"], record["reason"]) == ("deny", -31403, "blocked by policy")
    encoded = orjson.dumps(result)
    assert record["result"] == {"bytes": len(encoded), "digest": hashlib.sha256(encoded).hexdigest()}
    assert record["latency_ms"] == 3.25
    assert [g["guard"] for g in record["guards"]] == ["policy", "dlp"]
    assert record["guards"][0] == {"guard": "policy", "verdict": "pass", "reason": "allowed by rule dev-fs"}
    args = record["arguments"]
    assert args["path"] == "/etc/hosts"
    assert args["password"] == "[REDACTED]"
    assert args["ssn"].startswith("hmac-sha256:")
    assert "hunter2" not in str(record) and SECRET not in str(record) and "123-45-6789" not in str(record)
    assert "session-secret-value" not in str(record) and record["session"].startswith("sha256:")
    assert record["ts"] >= record["started"]


async def test_events_are_recorded_and_alerted(harness: Harness) -> None:
    guard = await harness.guard(alerts={"rules": {"auth_failure_burst": {"count": 3, "window": "1m"}}})
    for _ in range(3):
        harness.bus.emit("auth.failure", source="203.0.113.9", method="apikey", reason="unknown key",
                         authorization=f"Bearer {SECRET}")
    harness.bus.emit("pin.changed", upstream="fs", tool="write_file")
    harness.bus.emit("config.reload", ok=True)
    await guard.aclose()
    harness.guards.clear()
    records = harness.records()
    kinds = [r["kind"] for r in records]
    assert kinds.count("auth.failure") == 3 and "pin.changed" in kinds and "config.reload" in kinds
    failure = next(r for r in records if r["kind"] == "auth.failure")
    assert failure["source"] == "203.0.113.9" and failure["data"]["authorization"] == "[REDACTED]"
    alerts = [r["data"]["rule"] for r in records if r["kind"] == "alert"]
    assert sorted(alerts) == ["auth_failure_burst", "pin_change"]
    assert SECRET not in str(records)


async def test_first_use_alerts_survive_restart(harness: Harness) -> None:
    guard = await harness.guard()
    read_tool = {"name": "read_file", "annotations": {"readOnlyHint": True}}
    await guard.on_complete(make_call("read_file", definition=read_tool), Outcome(decision="allow"))
    assert {a.rule for a in guard.alerts.recent} == {"new_tool", "new_capability"}
    await guard.aclose()
    harness.guards.clear()
    guard = await harness.guard()
    await guard.on_complete(make_call("read_file", definition=read_tool), Outcome(decision="allow"))
    assert not guard.alerts.recent  # seen before the restart
    await guard.on_complete(make_call("delete_file"), Outcome(decision="allow"))  # no annotations: destructive
    caps = [a.details.get("capability") for a in guard.alerts.recent if a.rule == "new_capability"]
    assert caps == ["destructive"]


async def test_sync_durability_commits_before_on_complete_returns(harness: Harness) -> None:
    guard = await harness.guard(durability="sync")
    call = make_call()
    await guard.on_complete(call, Outcome(decision="allow"))
    assert call.decision_id in [r.get("id") for r in harness.records()]


class _BrokenStore(SqliteStore):
    broken = False

    def append(self, *args: Any, **kwargs: Any) -> Any:
        if self.broken:
            raise StoreError("disk full")
        return super().append(*args, **kwargs)


async def _break_store(harness: Harness, monkeypatch: pytest.MonkeyPatch,
                       **settings: Any) -> tuple[AuditGuard, _BrokenStore]:
    stores: list[_BrokenStore] = []

    def fake_open(url: str, **kwargs: Any) -> _BrokenStore:
        stores.append(_BrokenStore(harness.dir / "gw-audit.db"))
        return stores[0]

    monkeypatch.setattr(audit_module, "open_store", fake_open)
    guard = await harness.guard(**settings)
    down = asyncio.Event()
    harness.bus.subscribe(lambda e: down.set() if e["kind"] == "audit.sink_down" else None)
    stores[0].broken = True
    assert guard.writer is not None
    guard.writer.submit({"kind": "probe", "ts": "2030-01-01T00:00:00.000000Z"})
    async with asyncio.timeout(10):
        await down.wait()  # the writer reports the outage through the event loop
    return guard, stores[0]


async def test_block_mode_refuses_calls_while_the_store_is_down(harness: Harness,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    guard, store = await _break_store(harness, monkeypatch)
    verdict = await guard.on_request(make_call())
    assert isinstance(verdict, Reject)
    assert (verdict.code, verdict.http_status, verdict.as_tool_error) == (UPSTREAM_UNAVAILABLE, 503, False)
    assert guard.health()["healthy"] is False
    assert any(a.rule == "audit_health" for a in guard.alerts.recent)
    store.broken = False  # let shutdown flush


async def test_buffer_mode_keeps_serving_while_the_store_is_down(harness: Harness,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    guard, store = await _break_store(harness, monkeypatch, on_failure="buffer")
    assert await guard.on_request(make_call()) is PASS
    store.broken = False


async def test_admin_routes_serve_alerts_and_status(harness: Harness) -> None:
    guard = await harness.guard()
    harness.bus.emit("circuit.open", upstream="fs")
    from starlette.applications import Starlette

    app = Starlette(routes=guard.admin_routes())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1") as client:
        alerts = (await client.get("/alerts")).json()
        status = await client.get("/audit/status")
    assert [a["rule"] for a in alerts["alerts"]] == ["circuit_open"]
    assert status.status_code == 200 and status.json()["healthy"] is True


def test_config_forces_audit_last_and_validates_its_settings() -> None:
    config = load_text("guards: {audit: {durability: sync, retention: 30d}, limits: {}}")
    assert config.guard_order()[-1] == "audit"
    settings = config.guard_settings("audit")
    assert isinstance(settings, AuditSettings)
    assert settings.retention == 30 * 86400 and settings.on_failure == "block"


async def test_a_record_that_cannot_be_built_still_leaves_a_trace(harness: Harness,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    guard = await harness.guard()

    def broken(*args: Any) -> dict[str, Any]:
        raise RuntimeError("bug")

    monkeypatch.setattr(audit_module, "call_record", broken)
    call = make_call()
    await guard.on_complete(call, Outcome(decision="deny", error_code=-31403))
    await guard.aclose()
    harness.guards.clear()
    (record,) = [r for r in harness.records() if r.get("id") == call.decision_id]
    assert (record["decision"], record["error_code"], record["principal"]) == ("deny", -31403, {"id": "alice"})
    assert record["reason"].startswith("record incomplete")


async def test_a_store_behind_its_head_file_is_alerted_at_start_up(harness: Harness) -> None:
    guard = await harness.guard()
    await guard.on_complete(make_call(), Outcome(decision="allow"))
    assert guard.writer is not None and guard.writer.head is not None
    chain = guard.writer.head.chain
    await guard.aclose()
    harness.guards.clear()
    # The head file claims more records than the store holds (the store was cut back).
    signer = load_or_create(harness.dir / "mcpwall-audit.key")
    head_file = harness.dir / "gw-audit.db.head"
    head_file.write_bytes(signer.checkpoint(chain, 999, "0" * 64, "2030-01-01T00:00:00.000000Z").to_json())
    guard = await harness.guard()
    assert [a.rule for a in guard.alerts.recent] == ["audit_health"]
    await guard.aclose()
    harness.guards.clear()
    assert "audit.anomaly" in [r["kind"] for r in harness.records()]


async def test_batching_and_signing_settings_reach_the_writer(harness: Harness) -> None:
    guard = await harness.guard(batch_wait="1ms", head_interval="5s", checkpoint_every=50)
    assert guard.writer is not None
    options = guard.writer.options
    assert (options.batch_wait, options.head_interval, options.checkpoint_every) == (0.001, 5.0, 50)
    defaults = AuditSettings()
    assert (defaults.batch_wait, defaults.head_interval) == (0.002, 1.0)
    assert guard.health()["unsigned"] == 0
