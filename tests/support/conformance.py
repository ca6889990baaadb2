"""Drive the official MCP conformance suite (server mode) and read its verdicts.

``run_suite(url, "2026-07-28", ...)`` runs ``conformance server --url URL --requirements REV`` with
the pinned Node 22 and parses the results directory (one ``server-<scenario>-<timestamp>/
checks.json`` per scenario) into :class:`ScenarioResult` records. A scenario passes when none of
its checks is a ``FAILURE`` (the suite's own summary rule); ``WARNING`` checks are kept but do not
fail it. Whether a scenario counts toward conformance ("scored") comes from the requirement file
shipped in the package; the suite also runs unscored ones (extensions, pending) and they are
reported the same way.

``conformance_fixture()`` starts ``tests/fixtures/conformance_server.py`` on a free port.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from support.nodeenv import CONFORMANCE, NODE_MODULES, NodeEnv
from support.procs import ManagedProcess, free_port

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "conformance_server.py"
PACKAGE = NODE_MODULES / "@modelcontextprotocol" / "conformance"
REQUIREMENT_SETS = ("2026-07-28", "2025-11-25")

# One run of either requirement set takes seconds against a healthy server. A scenario that hangs
# is cut by the suite's own per-scenario timeout; SUITE_TIMEOUT bounds the whole run on top of
# that, so a server that hangs on everything costs minutes, not an hour.
SUITE_TIMEOUT = 300.0
SCENARIO_TIMEOUT_MS = 20_000

_RESULT_DIR = re.compile(r"^server-(?P<name>.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")


@dataclass
class ScenarioResult:
    name: str
    passed: bool
    scored: bool
    failed_checks: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    check_counts: dict[str, int] = field(default_factory=dict)


@dataclass
class SuiteRun:
    requirements: str
    url: str
    returncode: int
    scenarios: dict[str, ScenarioResult]
    log_path: Path

    def passed(self) -> set[str]:
        return {name for name, result in self.scenarios.items() if result.passed}

    def scored(self) -> dict[str, ScenarioResult]:
        return {name: result for name, result in self.scenarios.items() if result.scored}

    def summary(self) -> dict[str, Any]:
        scored = self.scored()
        return {
            "requirements": self.requirements,
            "url": self.url,
            "exit_code": self.returncode,
            "scored_passed": sorted(n for n, r in scored.items() if r.passed),
            "scored_failed": sorted(n for n, r in scored.items() if not r.passed),
            "unscored_passed": sorted(n for n, r in self.scenarios.items() if not r.scored and r.passed),
            "unscored_failed": sorted(n for n, r in self.scenarios.items() if not r.scored and not r.passed),
            "scenarios": {name: asdict(result) for name, result in sorted(self.scenarios.items())},
        }


def requirement_set(revision: str) -> tuple[list[str], list[str]]:
    """(scored, not scored) server scenarios of a frozen requirement set, from the installed package."""
    data = yaml.safe_load((PACKAGE / "requirements" / f"{revision}.yaml").read_text())
    scored = list(data.get("server") or [])
    unscored = [
        entry["scenario"]
        for entry in data.get("not_scored") or []
        if entry.get("leg") == "server" and "scenario" in entry
    ]
    return scored, unscored


def parse_results(out_dir: Path, scored: set[str]) -> dict[str, ScenarioResult]:
    """Read every ``server-<scenario>-<timestamp>/checks.json`` below ``out_dir``."""
    results: dict[str, ScenarioResult] = {}
    for checks_file in sorted(out_dir.glob("*/checks.json")):
        match = _RESULT_DIR.match(checks_file.parent.name)
        if not match:
            continue
        name = match.group("name")
        try:
            checks = json.loads(checks_file.read_text())
        except (OSError, ValueError) as exc:
            checks = [{"id": "unreadable-results", "status": "FAILURE", "errorMessage": str(exc)}]
        counts: dict[str, int] = {}
        failed: list[dict[str, str]] = []
        warnings: list[dict[str, str]] = []
        for check in checks:
            status = str(check.get("status", "FAILURE"))
            counts[status] = counts.get(status, 0) + 1
            entry = {"id": str(check.get("id", "?")), "message": str(check.get("errorMessage") or "")[:500]}
            if status == "FAILURE":
                failed.append(entry)
            elif status == "WARNING":
                warnings.append(entry)
        results[name] = ScenarioResult(
            name=name,
            passed=not failed,
            scored=name in scored,
            failed_checks=failed,
            warnings=warnings,
            check_counts=counts,
        )
    return results


def run_suite(
    node: NodeEnv,
    url: str,
    requirements: str,
    out_dir: Path,
    *,
    timeout: float = SUITE_TIMEOUT,
) -> SuiteRun:
    """Run one frozen requirement set against ``url``; scenarios that left no results count as failed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results_dir = out_dir / "results"
    log_path = out_dir / "suite.log"
    argv = node.command(
        CONFORMANCE,
        "server",
        "--url",
        url,
        "--requirements",
        requirements,
        "--timeout",
        str(SCENARIO_TIMEOUT_MS),
        "-o",
        str(results_dir),
    )
    missing = "the suite wrote no results for this scenario"
    with log_path.open("wb") as log:
        try:
            returncode = subprocess.run(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=node.env(),
                timeout=timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:  # run() has killed the suite; keep what it wrote
            returncode = -1
            missing = f"the whole suite run exceeded {timeout:.0f}s before reaching this scenario"
    scored, unscored = requirement_set(requirements)
    scenarios = parse_results(results_dir, set(scored))
    for name in [*scored, *unscored]:
        scenarios.setdefault(
            name,
            ScenarioResult(
                name=name,
                passed=False,
                scored=name in scored,
                failed_checks=[{"id": "no-results", "message": missing}],
            ),
        )
    return SuiteRun(
        requirements=requirements, url=url, returncode=returncode, scenarios=scenarios, log_path=log_path
    )


@contextmanager
def conformance_fixture(workdir: Path) -> Iterator[str]:
    """Start the conformance fixture upstream on a free port; yields its MCP URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    process = ManagedProcess(
        [sys.executable, str(FIXTURE), "--port", str(port)],
        log_path=workdir / "fixture.log",
        cwd=workdir,
        name="conformance fixture",
    )
    with process:
        # Any HTTP answer means uvicorn is serving; a bare POST gets a 4xx from the MCP endpoint.
        process.wait_http(url, method="POST", ok=lambda status: status < 500)
        yield url
