"""The official MCP conformance suite, run directly against the fixture upstream and through mcpwall.

Both frozen requirement sets (2026-07-28 stateless, 2025-11-25 sessions) run twice: once straight
against ``tests/fixtures/conformance_server.py`` and once through ``mcpwall serve`` with that
fixture as its only upstream (``prefix: false``, so the tool names the suite calls are unchanged).
The gateway must be invisible to the suite: every scenario that passes directly passes through it,
and ``dns-rebinding-protection`` passes through it in any case. Results of every leg go to
``.cache/conformance-summary.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.conformance import REQUIREMENT_SETS, SuiteRun, conformance_fixture, run_suite
from support.gateway import run_gateway
from support.nodeenv import CONFORMANCE, REPO, NodeEnv, require_node

pytestmark = [pytest.mark.e2e, pytest.mark.node, pytest.mark.timeout(1800)]

SUMMARY_PATH = REPO / ".cache" / "conformance-summary.json"
DNS_REBINDING = "dns-rebinding-protection"


class Legs:
    """Suite runs collected over the module, written out as one summary at the end."""

    def __init__(self, node: NodeEnv) -> None:
        self.node = node
        self.direct: dict[str, SuiteRun] = {}
        self.gateway: dict[str, SuiteRun] = {}
        self.gateway_error: str | None = None
        self.seconds: dict[str, float] = {}

    def run(self, leg: str, url: str, revision: str, out_dir: Path) -> SuiteRun:
        started = time.monotonic()
        result = run_suite(self.node, url, revision, out_dir / f"{leg}-{revision}")
        self.seconds[f"{leg}/{revision}"] = round(time.monotonic() - started, 1)
        (self.direct if leg == "direct" else self.gateway)[revision] = result
        return result

    def summary(self) -> dict[str, Any]:
        comparison: dict[str, Any] = {}
        for revision in REQUIREMENT_SETS:
            direct = self.direct.get(revision)
            through = self.gateway.get(revision)
            entry: dict[str, Any] = {}
            if direct:
                entry["direct_passed"] = len(direct.passed())
                entry["direct_scored_passed"] = sum(r.passed for r in direct.scored().values())
                entry["scored_total"] = len(direct.scored())
            if through:
                entry["gateway_passed"] = len(through.passed())
                entry["gateway_scored_passed"] = sum(r.passed for r in through.scored().values())
                entry["dns_rebinding_protection_through_gateway"] = DNS_REBINDING in through.passed()
            if direct and through:
                entry["passed_directly_but_not_through_gateway"] = sorted(direct.passed() - through.passed())
                entry["passed_only_through_gateway"] = sorted(through.passed() - direct.passed())
            comparison[revision] = entry
        return {
            "suite": _suite_version(),
            "node": self.node.version,
            "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": self.seconds,
            "gateway_error": self.gateway_error,
            "comparison": comparison,
            "direct": {rev: run.summary() for rev, run in self.direct.items()},
            "gateway": {rev: run.summary() for rev, run in self.gateway.items()},
        }


def _suite_version() -> str:
    from support.conformance import PACKAGE

    try:
        version = json.loads((PACKAGE / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        version = "unknown"
    return f"@modelcontextprotocol/conformance@{version}"


@pytest.fixture(scope="module")
def legs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Legs]:
    collected = Legs(require_node(CONFORMANCE))
    try:
        yield collected
    finally:
        SUMMARY_PATH.parent.mkdir(parents=True, exist_ok=True)
        SUMMARY_PATH.write_text(json.dumps(collected.summary(), indent=2) + "\n")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("conformance")


@pytest.fixture(scope="module")
def fixture_url(workdir: Path) -> Iterator[str]:
    with conformance_fixture(workdir) as url:
        yield url


@pytest.fixture(scope="module")
def direct(legs: Legs, fixture_url: str, workdir: Path) -> dict[str, SuiteRun]:
    for revision in REQUIREMENT_SETS:
        legs.run("direct", fixture_url, revision, workdir)
    return legs.direct


@pytest.fixture(scope="module")
def through_gateway(legs: Legs, fixture_url: str, workdir: Path) -> dict[str, SuiteRun]:
    config = {"servers": {"fixture": {"url": fixture_url, "prefix": False}}}
    gateway_dir = workdir / "gateway"
    gateway_dir.mkdir()
    try:
        with run_gateway(config, workdir=gateway_dir) as gateway:
            for revision in REQUIREMENT_SETS:
                legs.run("gateway", gateway.url, revision, workdir)
    except Exception as exc:
        legs.gateway_error = f"{type(exc).__name__}: {exc}"[:4000]
        raise
    return legs.gateway


def _failures(run: SuiteRun, names: set[str]) -> str:
    lines = []
    for name in sorted(names):
        checks = run.scenarios[name].failed_checks
        detail = "; ".join(f"{c['id']}: {c['message']}" for c in checks[:3])
        lines.append(f"  {name}: {detail}")
    return "\n".join(lines) + f"\n(suite log: {run.log_path})"


@pytest.mark.parametrize("revision", REQUIREMENT_SETS)
def test_fixture_passes_every_scored_scenario_directly(direct: dict[str, SuiteRun], revision: str) -> None:
    run = direct[revision]
    failing = {name for name, result in run.scored().items() if not result.passed}
    assert not failing, f"the fixture fails scored {revision} scenarios directly:\n{_failures(run, failing)}"


@pytest.mark.parametrize("revision", REQUIREMENT_SETS)
def test_gateway_passes_every_scenario_that_passes_directly(
    direct: dict[str, SuiteRun], through_gateway: dict[str, SuiteRun], revision: str
) -> None:
    run = through_gateway[revision]
    lost = direct[revision].passed() - run.passed()
    assert not lost, (
        f"scenarios that pass directly but fail through mcpwall ({revision}):\n{_failures(run, lost)}"
    )


@pytest.mark.parametrize("revision", REQUIREMENT_SETS)
def test_gateway_passes_dns_rebinding_protection(through_gateway: dict[str, SuiteRun], revision: str) -> None:
    run = through_gateway[revision]
    assert DNS_REBINDING in run.passed(), _failures(run, {DNS_REBINDING})
