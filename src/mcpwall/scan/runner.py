"""``scan_url``: collect evidence, evaluate both check families, score, and build the report.

The one entry point the CLI and the admission gate call. It never raises for anything the
target does; an unreachable target produces a report graded F with a note saying why.
"""

from __future__ import annotations

import datetime as dt
import time

import httpx

from mcpwall.scan import checks, mcp_checks
from mcpwall.scan.http import USER_AGENT
from mcpwall.scan.model import SEVERITY_ORDER, ScanReport
from mcpwall.scan.probe import Collector, ScanOptions
from mcpwall.scan.scoring import posture_grade, relative_grade


def normalise_target(url: str) -> str:
    parsed = httpx.URL(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("the target must be an http:// or https:// URL")
    if parsed.userinfo:
        raise ValueError("put credentials in --header or --bearer, not in the URL")
    return str(parsed.copy_with(fragment=None))


async def scan_url(url: str, options: ScanOptions | None = None) -> ScanReport:
    options = options or ScanOptions()
    target = normalise_target(url)
    started = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    evidence = await Collector(target, options).run()
    posture = checks.evaluate(evidence)
    mcp, findings, tools = mcp_checks.evaluate(evidence)
    findings.sort(key=lambda f: (SEVERITY_ORDER[f.severity], f.rule, f.subject))
    return ScanReport(
        target=target,
        scanner=USER_AGENT,
        started_at=started.isoformat(timespec="seconds"),
        duration_ms=(time.perf_counter() - clock) * 1000,
        active=options.active,
        authenticated=bool(options.credentials),
        reachable=evidence.reachable,
        posture=posture,
        mcp=mcp,
        findings=findings,
        grade=posture_grade(posture),
        mcp_grade=relative_grade(mcp),
        requests=evidence.requests,
        era=evidence.view.era,
        server_name=evidence.view.server_name,
        tools=[{"name": t.name, "capabilities": t.capabilities} for t in tools],
        notes=list(evidence.notes),
    )
