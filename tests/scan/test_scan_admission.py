"""The admission gate: scan at start, quarantine below the bar, re-admit on recovery, emit events."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from fixtures.scan_servers import TOKEN, Fleet
from mcpwall.config.model import AdmissionConfig, Config, ServerConfig
from mcpwall.gateway.events import EventBus
from mcpwall.scan.admission import EVENT, AdmissionGate, verdict
from mcpwall.scan.model import Grade, ScanReport
from mcpwall.scan.probe import ScanOptions

pytestmark = pytest.mark.anyio


def report(score: int, *, letter: str | None = None, mcp: Grade | None = None, reachable: bool = True) -> ScanReport:
    from mcpwall.scan.scoring import letter_for

    return ScanReport(target="https://up/mcp", scanner="t", started_at="t", duration_ms=0, active=False,
                      authenticated=True, reachable=reachable, posture=[], mcp=[], findings=[],
                      grade=Grade(score, letter or letter_for(score)), mcp_grade=mcp, requests=0)


class FakeScanner:
    def __init__(self, *scores: int | Exception) -> None:
        self.scores = list(scores)
        self.calls: list[tuple[str, ScanOptions]] = []

    async def __call__(self, url: str, options: ScanOptions) -> ScanReport:
        self.calls.append((url, options))
        value = self.scores.pop(0) if len(self.scores) > 1 else self.scores[0]
        if isinstance(value, Exception):
            raise value
        return report(value)


def servers(**admission: Any) -> dict[str, ServerConfig]:
    return {
        "gated": ServerConfig(url="https://up.example.com/mcp", headers={"Authorization": "Bearer up"},
                              admission=AdmissionConfig(**admission)),
        "plain": ServerConfig(url="https://other.example.com/mcp"),
        "local": ServerConfig(command="echo"),
    }


def collect(bus: EventBus) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    bus.subscribe(lambda e: events.append(e) if e["kind"] == EVENT else None)
    return events


async def test_upstreams_without_admission_are_always_admitted_and_gated_ones_wait_for_a_scan() -> None:
    gate = AdmissionGate(servers(), EventBus(), scanner=FakeScanner(95))
    assert gate.gated == ["gated"]
    assert gate.is_admitted("plain") and gate.is_admitted("local") and gate.is_admitted("unknown")
    assert not gate.is_admitted("gated")  # fail closed before the first scan
    assert gate.status("gated").state == "pending"  # type: ignore[union-attr]


async def test_scan_uses_the_upstream_credentials_and_admits_a_good_grade() -> None:
    bus = EventBus()
    events = collect(bus)
    scanner = FakeScanner(92)
    gate = AdmissionGate(servers(min_grade="A", timeout="5s"), bus, scanner=scanner)
    await gate.start()
    try:
        assert gate.is_admitted("gated")
        url, options = scanner.calls[0]
        assert url == "https://up.example.com/mcp"
        assert options.credentials == {"Authorization": "Bearer up"} and options.timeout == 5 and not options.active
        assert [(e["server"], e["state"], e["previous"], e["grade"]) for e in events] == \
            [("gated", "admitted", "pending", "A")]
    finally:
        await gate.aclose()


async def test_quarantine_and_recovery_emit_one_event_per_change() -> None:
    bus = EventBus()
    events = collect(bus)
    gate = AdmissionGate(servers(min_grade="B"), bus, scanner=FakeScanner(50, 55, 80, 81))
    assert (await gate.rescan("gated")).state == "quarantined"
    assert not gate.is_admitted("gated")
    await gate.rescan("gated")  # still bad: no new event
    assert (await gate.rescan("gated")).state == "admitted"
    await gate.rescan("gated")
    assert [(e["state"], e["admitted"]) for e in events] == [("quarantined", False), ("admitted", True)]
    assert "below B" in events[0]["reason"]
    assert gate.report("gated") is not None and gate.report("gated").grade.score == 81  # type: ignore[union-attr]


async def test_scanner_failure_and_unreachable_upstream_quarantine() -> None:
    gate = AdmissionGate(servers(), EventBus(), scanner=FakeScanner(RuntimeError("boom")))
    status = await gate.rescan("gated")
    assert status.state == "quarantined" and status.grade == "F" and "RuntimeError" in status.reason
    admission = AdmissionConfig()
    assert verdict(report(100, reachable=False), admission)[0] is False


async def test_mcp_sub_grade_bar() -> None:
    admission = AdmissionConfig(min_grade="B", mcp_min_grade="B")
    assert verdict(report(95, mcp=Grade(60, "C")), admission)[0] is False
    assert verdict(report(95, mcp=None), admission)[0] is False
    assert verdict(report(95, mcp=Grade(90, "A")), admission)[0] is True


async def test_aclose_stops_the_rescan_loop() -> None:
    gate = AdmissionGate(servers(rescan="1h"), EventBus(), scanner=FakeScanner(95))
    await gate.start()
    tasks = list(gate._tasks)
    await gate.aclose()
    assert all(t.done() for t in tasks) and gate._tasks == []


async def test_real_scans_of_fixture_servers(fleet: Fleet) -> None:
    def upstream(name: str, grade: str) -> ServerConfig:
        return ServerConfig(url=fleet.urls[name], headers={"Authorization": f"Bearer {TOKEN}"},
                            admission=AdmissionConfig(min_grade=grade, cafile=str(fleet.certs.ca)))

    bus = EventBus()
    events = collect(bus)
    gate = AdmissionGate({"good": upstream("hardened", "A"), "open": upstream("no_auth", "A"),
                          "lenient": upstream("no_auth", "B")}, bus)
    await gate.start()
    try:
        assert gate.is_admitted("good") and gate.is_admitted("lenient")
        assert not gate.is_admitted("open")
        status = gate.status("open")
        assert status is not None and status.grade == "B" and "auth-required" in status.failed_checks
        assert {e["server"]: e["state"] for e in events} == {"good": "admitted", "open": "quarantined",
                                                            "lenient": "admitted"}
    finally:
        await gate.aclose()


def test_admission_config_in_yaml_terms() -> None:
    config = Config.model_validate({"servers": {"up": {"url": "https://up/mcp",
                                                        "admission": {"min_grade": "B", "rescan": "1h"}}}})
    admission = config.servers["up"].admission
    assert admission is not None and admission.rescan == 3600 and admission.min_grade == "B"
    with pytest.raises(ValidationError):
        Config.model_validate({"servers": {"up": {"command": "x", "admission": {}}}})
    with pytest.raises(ValidationError):
        Config.model_validate({"servers": {"up": {"url": "https://u/mcp", "admission": {"min_grade": "E"}}}})
