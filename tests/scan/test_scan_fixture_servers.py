"""Every check fires on the server built to fail it, and only there, and is scored right."""

from __future__ import annotations

import pytest

from fixtures.scan_servers import MCP_FLAWS, POSTURE_FLAWS, Fleet
from mcpwall.scan.checks import POSTURE
from mcpwall.scan.mcp_checks import MCP
from mcpwall.scan.runner import scan_url

pytestmark = pytest.mark.anyio

WEIGHTS = {spec.id: spec.weight for spec, _ in POSTURE}


def failed(results: list) -> set[str]:  # type: ignore[type-arg]
    return {r.spec.id for r in results if r.status == "fail"}


async def test_hardened_server_scores_full_marks(fleet: Fleet) -> None:
    report = await scan_url(fleet.urls["hardened"], fleet.options("hardened", active=True))
    assert report.reachable
    assert report.era == "legacy"
    assert [r.status for r in report.posture] == ["pass"] * 14
    assert report.grade.score == 100 and report.grade.letter == "A"
    assert {r.spec.id: r.status for r in report.mcp} == {spec.id: "pass" for spec, _ in MCP}
    assert report.mcp_grade is not None and report.mcp_grade.score == 100
    assert report.findings == []


@pytest.mark.parametrize("flaw", sorted(POSTURE_FLAWS))
async def test_posture_flaw_fails_exactly_its_check(fleet: Fleet, flaw: str) -> None:
    report = await scan_url(fleet.urls[flaw], fleet.options(flaw))
    check = POSTURE_FLAWS[flaw]
    assert failed(report.posture) == {check}
    assert report.grade.score == 100 - WEIGHTS[check]
    assert all(r.status != "unknown" for r in report.posture)


@pytest.mark.parametrize("flaw", sorted(MCP_FLAWS))
async def test_mcp_flaw_fails_exactly_its_probe(fleet: Fleet, flaw: str) -> None:
    probe = next(spec for spec, _ in MCP if spec.id == MCP_FLAWS[flaw])
    report = await scan_url(fleet.urls[flaw], fleet.options(flaw, active=probe.active_only))
    assert failed(report.mcp) == {probe.id}
    assert report.grade.score == 100, [r.spec.id for r in report.posture if r.status != "pass"]
    assert report.mcp_grade is not None
    total = 115 if probe.active_only else 100
    assert report.mcp_grade.score == round(100 * (total - probe.weight) / total)


async def test_server_with_every_flaw_fails_every_check(fleet: Fleet) -> None:
    report = await scan_url(fleet.urls["all"], fleet.options("all", active=True))
    assert [r.status for r in report.posture] == ["fail"] * 14
    assert report.grade.score == 0 and report.grade.letter == "F"
    assert failed(report.mcp) == {spec.id for spec, _ in MCP}
    assert report.mcp_grade is not None and report.mcp_grade.letter == "F"
    rules = {f.rule for f in report.findings}
    assert {"tool-poisoning", "tool-hidden-unicode", "tool-destructive-unannotated"} <= rules


async def test_anonymous_scan_of_hardened_server_keeps_grade_and_marks_what_it_cannot_see(fleet: Fleet) -> None:
    report = await scan_url(fleet.urls["hardened"], fleet.options("hardened", authenticated=False))
    assert report.grade.score == 100
    unknown = {r.spec.id for r in report.mcp if r.status == "unknown"}
    assert unknown == {"mcp-batch-handling", "mcp-session-ids", "mcp-tool-descriptions",
                       "mcp-destructive-annotations"}
    assert report.mcp_grade is not None and report.mcp_grade.score == 100
    assert report.mcp_grade.observed_weight < report.mcp_grade.total_weight


async def test_expired_certificate_fails_https_and_tls(fleet: Fleet) -> None:
    report = await scan_url(fleet.urls["expired"], fleet.options("expired"))
    assert failed(report.posture) == {"https-enforced"}
    tls = next(r for r in report.mcp if r.spec.id == "mcp-tls")
    assert tls.status == "fail"
    assert any("untrusted" in n or "not trusted" in n for n in report.notes)


async def test_plain_http_fails_https_and_hsts_unless_loopback_is_allowed(fleet: Fleet) -> None:
    url = fleet.urls["plain_hardened"]
    strict = await scan_url(url, fleet.options("plain_hardened"))
    assert failed(strict.posture) == {"https-enforced", "hsts"}
    assert strict.grade.score == 77
    options = fleet.options("plain_hardened")
    options.allow_loopback_http = True
    lenient = await scan_url(url, options)
    assert failed(lenient.posture) == set()
    assert {r.spec.id: r.status for r in lenient.posture}["https-enforced"] == "na"
    assert lenient.grade.score == 100


async def test_modern_server_is_scanned_in_its_era(fleet: Fleet) -> None:
    report = await scan_url(fleet.urls["modern"], fleet.options("modern", active=True))
    assert report.era == "modern"
    assert report.grade.score == 100
    statuses = {r.spec.id: r.status for r in report.mcp}
    assert statuses["mcp-session-ids"] == "na" and statuses["mcp-session-replay"] == "na"
    assert statuses["mcp-tool-descriptions"] == "pass"
    assert len(report.tools) == 2


async def test_event_stream_answers_are_read(fleet: Fleet) -> None:
    report = await scan_url(fleet.urls["sse"], fleet.options("sse", active=True))
    assert report.era == "legacy" and len(report.tools) == 2
    assert report.grade.score == 100
    assert report.mcp_grade is not None and report.mcp_grade.score == 100


async def test_unreachable_target_grades_f_with_a_note() -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    report = await scan_url(f"http://127.0.0.1:{port}/mcp")
    assert not report.reachable
    assert report.grade.letter == "F"
    assert all(r.status == "unknown" for r in report.checks)
    assert report.notes


async def test_scan_stays_within_a_small_request_budget(fleet: Fleet) -> None:
    report = await scan_url(fleet.urls["hardened"], fleet.options("hardened"))
    assert report.requests <= 70
