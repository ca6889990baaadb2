"""The ratelimit guard: buckets per principal/role/tool/server, quotas and cost budgets, the
429 refusal, exactness under concurrency on every backend, and reload."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcpwall.errors import GATEWAY_RATE_LIMITED, ConfigError
from mcpwall.gateway.call import Call, Principal
from mcpwall.gateway.events import EventBus
from mcpwall.guards.ratelimit import RateLimitGuard, RateLimitSettings, parse_rate
from mcpwall.pipeline.guard import GuardEnv
from mcpwall.pipeline.verdict import Pass, Reject
from mcpwall.storage.counters import CounterStore
from mcpwall.storage.counters_redis import RedisCounterStore

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def call(tool: str = "fs__read", *roles: str, principal: str = "alice", server: str = "fs",
         method: str = "tools/call") -> Call:
    params: dict[str, Any] = {"name": tool, "arguments": {}} if method == "tools/call" else {}
    c = Call(message={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
             principal=Principal(id=principal, roles=frozenset(roles), auth_method="api_key"),
             era="modern", protocol_version="2026-07-28", transport="http")
    c.server, c.exposed_name = server, tool if method == "tools/call" else None
    return c


async def guard_for(raw: dict[str, Any], tmp_path: Path, store: str = "memory://",
                    clock: Clock | None = None) -> tuple[RateLimitGuard, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    bus = EventBus()
    bus.subscribe(events.append)
    env = GuardEnv(events=bus, config_dir=tmp_path, storage_url=store)
    guard = RateLimitGuard(RateLimitSettings.model_validate(raw), env, clock=clock or Clock())
    await guard.start()
    return guard, events


async def passes(guard: RateLimitGuard, c: Call, n: int) -> int:
    return sum([isinstance(await guard.on_request(c), Pass) for _ in range(n)])


def test_parse_rate() -> None:
    assert parse_rate("10/s") == (10, 1)
    assert parse_rate("100/m") == (100, 60)
    assert parse_rate("20/30s") == (20, 30)
    assert parse_rate("5000 / day") == (5000, 86400)
    for bad in ("10", "0/s", "/s", "10/y", "ten/s"):
        with pytest.raises(ValueError):
            parse_rate(bad)


@pytest.mark.anyio
async def test_per_principal_bucket_and_the_429_refusal(tmp_path: Path) -> None:
    clock = Clock()
    guard, events = await guard_for({"rates": [{"name": "calls", "rate": "2/m", "burst": 2}]}, tmp_path,
                                    clock=clock)
    assert await passes(guard, call(), 2) == 2
    refused = await guard.on_request(call())
    assert isinstance(refused, Reject)
    assert refused.code == GATEWAY_RATE_LIMITED and refused.http_status == 429 and not refused.as_tool_error
    assert refused.headers == {"Retry-After": "30"} and refused.data == {"retryAfter": 30, "limits": ["calls"]}
    assert await passes(guard, call(principal="bob"), 1) == 1  # others have their own bucket
    clock.now += 30
    assert await passes(guard, call(), 2) == 1
    assert events[0]["kind"] == "ratelimit.exceeded" and events[0]["principal"] == "alice"
    await guard.aclose()


@pytest.mark.anyio
async def test_per_role_buckets_are_shared_by_members(tmp_path: Path) -> None:
    guard, _ = await guard_for({"rates": [{"name": "agents", "rate": "3/h", "per": ["role"],
                                           "roles": ["agent"]}]}, tmp_path)
    assert await passes(guard, call("a", "agent", principal="a1"), 2) == 2
    assert await passes(guard, call("a", "agent", principal="a2"), 2) == 1
    assert await passes(guard, call("a", "human", principal="h"), 5) == 5  # not in the role: not limited
    await guard.aclose()


@pytest.mark.anyio
async def test_per_tool_and_per_server_buckets(tmp_path: Path) -> None:
    raw = {"rates": [{"name": "expensive", "rate": "1/h", "per": ["tool"], "tools": ["search__*"]},
                     {"name": "upstream", "rate": "3/h", "per": ["server"], "servers": ["fs"]}]}
    guard, _ = await guard_for(raw, tmp_path)
    assert await passes(guard, call("search__web", server="search"), 3) == 1
    assert await passes(guard, call("search__news", server="search", principal="bob"), 3) == 1
    assert await passes(guard, call("fs__read", principal="x"), 2) + await passes(
        guard, call("fs__write", principal="y"), 2) == 3
    await guard.aclose()


@pytest.mark.anyio
async def test_methods_filter_and_notifications(tmp_path: Path) -> None:
    guard, _ = await guard_for({"rates": [{"name": "tools", "rate": "1/h", "methods": ["tools/call"]}]}, tmp_path)
    assert await passes(guard, call(method="tools/list"), 5) == 5
    note = call()
    note.message.pop("id")
    assert await passes(guard, note, 5) == 5  # notifications are not counted
    assert await passes(guard, call(), 2) == 1
    await guard.aclose()


@pytest.mark.anyio
async def test_daily_quota_with_costs_resets_at_local_midnight(tmp_path: Path) -> None:
    clock = Clock()
    raw = {"quotas": [{"name": "budget", "limit": 10, "period": "day", "tz": "Europe/Berlin",
                       "cost": {"search__*": 4}, "default_cost": 1}]}
    guard, _ = await guard_for(raw, tmp_path, clock=clock)
    assert await passes(guard, call("search__web"), 3) == 2  # 8 of 10 spent
    assert await passes(guard, call("fs__read"), 3) == 2  # 10 of 10
    refused = await guard.on_request(call("fs__read"))
    assert isinstance(refused, Reject)
    assert refused.data and refused.data["retryAfter"] == 10 * 3600  # 14:00 CEST → midnight
    clock.now += 10 * 3600
    assert await passes(guard, call("search__web"), 1) == 1
    await guard.aclose()


@pytest.mark.anyio
async def test_monthly_quota(tmp_path: Path) -> None:
    clock = Clock()
    guard, _ = await guard_for({"quotas": [{"name": "month", "limit": 2, "period": "month"}]}, tmp_path, clock=clock)
    assert await passes(guard, call(), 3) == 2
    clock.now = datetime(2026, 6, 1, 0, 0, 1, tzinfo=UTC).timestamp()
    assert await passes(guard, call(), 1) == 1
    await guard.aclose()


@pytest.mark.anyio
async def test_a_refused_call_charges_no_limit(tmp_path: Path) -> None:
    raw = {"rates": [{"name": "burst", "rate": "1/h"}],
           "quotas": [{"name": "day", "limit": 100, "period": "day"}]}
    guard, _ = await guard_for(raw, tmp_path)
    assert await passes(guard, call(), 5) == 1
    assert guard.store is not None
    assert await guard.store.get("quota:day:p=alice:2026-05-04", T0) == 1
    await guard.aclose()


@pytest.mark.anyio
async def test_exempt_roles_and_anonymous_callers_by_source(tmp_path: Path) -> None:
    guard, _ = await guard_for({"rates": [{"name": "r", "rate": "1/h"}], "exempt_roles": ["ops"]}, tmp_path)
    assert await passes(guard, call("x", "ops"), 5) == 5
    a = call()
    a.principal = Principal(id="anonymous", attributes={"source": "127.0.0.1"})
    b = call()
    b.principal = Principal(id="anonymous", attributes={"source": "127.0.0.2"})
    assert await passes(guard, a, 2) == 1 and await passes(guard, b, 2) == 1
    await guard.aclose()


@pytest.mark.anyio
async def test_reload_keeps_counters_by_name(tmp_path: Path) -> None:
    guard, _ = await guard_for({"rates": [{"name": "r", "rate": "2/h"}]}, tmp_path)
    assert await passes(guard, call(), 2) == 2
    guard.reload(RateLimitSettings.model_validate({"rates": [{"name": "r", "rate": "3/h"}]}))
    assert await passes(guard, call(), 2) == 0  # the bucket is still empty; the new rate refills it
    with pytest.raises(ConfigError):
        guard.reload(RateLimitSettings.model_validate({"store": "sqlite:///other.db"}))
    await guard.aclose()


def test_settings_validation() -> None:
    from pydantic import ValidationError

    for raw in ({"rates": [{"name": "a", "rate": "1/s"}, {"name": "a", "rate": "1/s"}]},
                {"rates": [{"name": "a:b", "rate": "1/s"}]},
                {"rates": [{"name": "a", "rate": "fast"}]},
                {"quotas": [{"name": "q", "limit": 1, "period": "week"}]},
                {"quotas": [{"name": "q", "limit": 1, "period": "day", "tz": "Nowhere/Land"}]}):
        with pytest.raises(ValidationError):
            RateLimitSettings.model_validate(raw)


# -- exactness under concurrency, on every backend ------------------------------------------------

@pytest.fixture(params=["memory", "sqlite", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield "sqlite:///limits.db"
    else:
        url = os.environ.get("MCPWALL_TEST_REDIS", "redis://127.0.0.1:6379/15")
        probe: CounterStore = RedisCounterStore(url)
        try:
            await probe.start()
        except Exception as exc:
            if os.environ.get("CI") == "true":
                pytest.fail(f"Redis at {url} is unreachable in CI: {exc}")
            pytest.skip(f"Redis at {url} is unreachable: {exc}")
        await probe.aclose()
        yield url


@pytest.mark.anyio
async def test_thousand_concurrent_calls_against_a_limit_of_100(backend: str, tmp_path: Path) -> None:
    name = f"hot{secrets.token_hex(3)}"  # fresh keys on a shared Redis
    raw = {"rates": [{"name": name, "rate": "100/d", "per": []}],
           "quotas": [{"name": f"{name}q", "limit": 1000, "period": "day", "per": []}]}
    guard, _ = await guard_for(raw, tmp_path, store=backend)
    allowed = 0

    async def one(i: int) -> None:
        nonlocal allowed
        if isinstance(await guard.on_request(call(principal=f"p{i}")), Pass):
            allowed += 1

    async with anyio.create_task_group() as tg:
        for i in range(1000):
            tg.start_soon(one, i)
    assert allowed == 100
    await guard.aclose()
