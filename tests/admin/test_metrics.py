"""Metrics on the admin port, scraped over HTTP and read back with the Prometheus client's own parser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import mcpwall.config.model  # noqa: F401 - loads the guard registry before the guard modules
from mcpwall.admin.app import create_admin_app
from mcpwall.admin.metrics import Metrics
from mcpwall.audit.settings import AuditSettings
from mcpwall.config.model import Config
from mcpwall.gateway.events import EventBus
from mcpwall.guards.audit import AuditGuard
from mcpwall.guards.limits import LimitsGuard, LimitsSettings
from mcpwall.pipeline.chain import GuardChain
from mcpwall.pipeline.guard import GuardEnv

pytestmark = pytest.mark.anyio


@dataclass
class State:
    config: Config
    chain: GuardChain
    events: EventBus
    metrics: Metrics
    ready_flag: list[bool] = field(default_factory=lambda: [True])

    def ready(self) -> bool:
        return self.ready_flag[0]


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[State]:
    bus = EventBus()
    metrics = Metrics()
    env = GuardEnv(events=bus, config_dir=tmp_path, storage_url="sqlite:///gw.db", state={"metrics": metrics})
    audit = AuditGuard(AuditSettings(retention=0), env)
    chain = GuardChain([LimitsGuard(LimitsSettings(), env), audit])
    await chain.start()
    yield State(Config(), chain, bus, metrics)
    await chain.aclose()


async def _scrape(state: State, path: str = "/metrics") -> httpx.Response:
    app = create_admin_app(state)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1:8766") as client:
        return await client.get(path)


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_scraped_metrics_parse_and_carry_every_family(state: State) -> None:
    m = state.metrics
    m.observe_call("tools/call", "fs", "allow", 0.004)
    m.observe_call("tools/call", "fs", "deny", 0.001)
    m.observe_call("x-made-up/method", "fs", "allow", 0.002)  # clamped to "other"
    m.observe_upstream("fs", 0.003)
    m.observe_upstream("fs", 0.5, ok=False, kind="timeout")
    m.observe_guard("limits", 0.00002)
    state.events.emit("auth.failure", source="1.2.3.4", method="apikey")
    state.events.emit("ratelimit.hit", rule="per-minute")
    state.events.emit("upstream.restart", upstream="fs")
    state.events.emit("circuit.open", upstream="fs")
    state.events.emit("config.reload", ok=False)

    response = await _scrape(state)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    assert samples[key("mcpwall_requests_total", decision="allow", method="tools/call", upstream="fs")] == 1
    assert samples[key("mcpwall_requests_total", decision="allow", method="other", upstream="fs")] == 1
    assert samples[key("mcpwall_request_duration_seconds_count", method="tools/call", upstream="fs")] == 2
    assert samples[key("mcpwall_upstream_duration_seconds_count", upstream="fs")] == 2
    assert samples[key("mcpwall_upstream_errors_total", kind="timeout", upstream="fs")] == 1
    assert samples[key("mcpwall_guard_duration_seconds_count", guard="limits")] == 1
    assert samples[key("mcpwall_auth_failures_total", method="apikey")] == 1
    assert samples[key("mcpwall_rate_limit_hits_total", rule="per-minute")] == 1
    assert samples[key("mcpwall_upstream_restarts_total", upstream="fs")] == 1
    assert samples[key("mcpwall_circuit_state", upstream="fs")] == 2
    assert samples[key("mcpwall_config_reloads_total", result="failed")] == 1
    assert samples[key("mcpwall_alerts_total", rule="circuit_open", severity="warning")] == 1
    assert key("mcpwall_guard_cost_seconds_total", guard="audit") in samples
    assert samples[key("mcpwall_audit_sink_up")] == 1
    assert samples[key("mcpwall_audit_backlog")] >= 0
    assert key("mcpwall_audit_records_written_total") in samples


async def test_label_values_are_capped(state: State) -> None:
    for i in range(400):
        state.metrics.observe_call("tools/call", f"upstream-{i}", "allow", 0.001)
    samples = _samples((await _scrape(state)).text)
    upstreams = {dict(labels).get("upstream") for (name, labels) in samples if name == "mcpwall_requests_total"}
    assert len(upstreams) <= 257 and "other" in upstreams


async def test_healthz_follows_readiness_and_audit_health(state: State) -> None:
    ok = await _scrape(state, "/healthz")
    assert ok.status_code == 200 and ok.json()["status"] == "ok" and ok.json()["audit"]["healthy"] is True
    state.ready_flag[0] = False
    assert (await _scrape(state, "/healthz")).status_code == 503


async def test_alerts_route_comes_from_the_audit_guard(state: State) -> None:
    state.events.emit("pin.changed", upstream="fs", tool="read_file")
    body = (await _scrape(state, "/alerts")).json()
    assert [a["rule"] for a in body["alerts"]] == ["pin_change"]


async def test_foreign_host_header_is_refused(state: State) -> None:
    app = create_admin_app(state)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://evil.example") as client:
        assert (await client.get("/metrics")).status_code == 400


async def test_admin_app_without_audit_guard_serves_empty_alerts(tmp_path: Path) -> None:
    env = GuardEnv(events=EventBus(), config_dir=tmp_path)
    chain = GuardChain([LimitsGuard(LimitsSettings(), env)])

    @dataclass
    class Minimal:
        config: Any
        chain: GuardChain

    app = create_admin_app(Minimal(Config(), chain))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://localhost") as client:
        assert (await client.get("/alerts")).json()["alerts"] == []
        assert (await client.get("/healthz")).status_code == 200
