"""The ``ratelimit`` guard: token-bucket rates, daily/monthly quotas and cost budgets.

Each ``rates`` entry is a token bucket (``rate: 100/m``, ``burst``) kept per combination of
the dimensions in ``per`` — ``principal``, ``role``, ``tool``, ``server`` (none: one global
bucket). Each ``quotas`` entry is a calendar allowance (``period: day|month`` in a time zone)
of calls, or of cost units when ``cost`` prices tools. Every limit can be narrowed to some
roles, tools, servers and methods.

All limits that apply to a call are charged in one atomic store operation — all or none — so
counts stay exact under any concurrency and a refused call costs nothing. A refusal is a
JSON-RPC error ``-31429`` with ``data.retryAfter`` (seconds), and on HTTP a ``429`` with
``Retry-After``. Counters live in the storage layer (SQLite by default, Redis to share limits
between replicas).
"""

from __future__ import annotations

import calendar
import logging
import math
import re
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mcpwall.config.types import Strict, TimeZone
from mcpwall.errors import GATEWAY_RATE_LIMITED, ConfigError
from mcpwall.gateway.call import Call, Principal
from mcpwall.pipeline.guard import Guard, GuardEnv, GuardSettings
from mcpwall.pipeline.verdict import PASS, Reject, Verdict
from mcpwall.policy.conditions import glob_regex
from mcpwall.storage.counters import Bucket, CounterStore, Limit, Quota, open_counter_store

log = logging.getLogger("mcpwall.ratelimit")

Dimension = Literal["principal", "role", "tool", "server"]
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|sec|m|min|h|hour|d|day)\s*$")
_UNIT = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
_BY_PRINCIPAL: tuple[Dimension, ...] = ("principal",)
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def parse_rate(text: str) -> tuple[float, float]:
    """``"100/m"`` → (100, 60.0): that many tokens per that many seconds."""
    match = _RATE.match(text)
    if match is None:
        raise ValueError("expected a rate such as 10/s, 100/m, 5000/h or 20/30s")
    count = float(match.group(1))
    span = float(match.group(2) or 1) * _UNIT[match.group(3)]
    if count <= 0 or span <= 0:
        raise ValueError("a rate needs a positive count and period")
    return count, span


class _Scope(Strict):
    name: str = Field(description="Stable name; counters are keyed by it.")
    per: list[Dimension] = Field(default_factory=lambda: list(_BY_PRINCIPAL),
                                 description="Keep a separate counter per value of these; [] is one global counter.")
    roles: list[str] = Field(default_factory=list, description="Apply only to principals with one of these roles.")
    tools: list[str] = Field(default_factory=list, description="Apply only to tools/call of these tools (globs).")
    servers: list[str] = Field(default_factory=list, description="Apply only to calls routed to these upstreams.")
    methods: list[str] = Field(default_factory=lambda: ["*"], description="JSON-RPC methods counted (globs).")

    @field_validator("per")
    @classmethod
    def _unique(cls, value: list[Dimension]) -> list[Dimension]:
        return list(dict.fromkeys(value))


class RateSpec(_Scope):
    rate: str = Field(description="Sustained rate: N/s, N/m, N/h, N/d or N/<duration> such as 20/30s.")
    burst: int | None = Field(None, ge=1, description="Bucket size; default: the rate's count.")

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str) -> str:
        parse_rate(value)
        return value


class QuotaSpec(_Scope):
    limit: float = Field(gt=0, description="Calls (or cost units) per period.")
    period: Literal["day", "month"]
    tz: TimeZone = Field("UTC", description="Time zone whose midnight starts a period.")
    cost: dict[str, float] = Field(default_factory=dict, description="Tool glob → cost of one call (first match).")
    default_cost: float = Field(1.0, ge=0, description="Cost of calls no `cost` glob matches.")
    methods: list[str] = Field(default_factory=lambda: ["tools/call"])

    @field_validator("cost")
    @classmethod
    def _costs(cls, value: dict[str, float]) -> dict[str, float]:
        if any(v < 0 for v in value.values()):
            raise ValueError("costs must not be negative")
        return value


class RateLimitSettings(GuardSettings):
    store: str | None = Field(None, description="Storage URL for counters; default: storage.url.")
    rates: list[RateSpec] = Field(default_factory=list)
    quotas: list[QuotaSpec] = Field(default_factory=list)
    exempt_roles: list[str] = Field(default_factory=list, description="Principals with these roles are not limited.")

    @model_validator(mode="after")
    def _names(self) -> RateLimitSettings:
        names = [s.name for s in [*self.rates, *self.quotas]]
        for name in names:
            if not _NAME.match(name):
                raise ValueError(f"limit name {name!r} must be 1-64 characters of [A-Za-z0-9_.-]")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"limit names must be unique: {', '.join(duplicates)}")
        return self


@dataclass(frozen=True, slots=True)
class _Matcher:
    roles: frozenset[str]
    tools: Any
    servers: Any
    methods: Any

    @classmethod
    def of(cls, spec: _Scope) -> _Matcher:
        return cls(frozenset(spec.roles), glob_regex(spec.tools), glob_regex(spec.servers),
                   glob_regex(spec.methods, segments=False))

    def applies(self, call: Call, tool: str | None) -> bool:
        if self.methods is None or not self.methods.match(call.method):
            return False
        if self.roles and not (self.roles & call.principal.roles):
            return False
        if self.tools is not None and (tool is None or not self.tools.match(tool)):
            return False
        return self.servers is None or (call.server is not None and self.servers.match(call.server) is not None)


class _Compiled:
    def __init__(self, settings: RateLimitSettings) -> None:
        self.rates = [(spec, _Matcher.of(spec), *parse_rate(spec.rate)) for spec in settings.rates]
        self.quotas = [(spec, _Matcher.of(spec), zoneinfo.ZoneInfo(spec.tz),
                        [(glob_regex([g]), c) for g, c in spec.cost.items()]) for spec in settings.quotas]
        self.exempt = frozenset(settings.exempt_roles)
        self._windows: dict[tuple[str, str], tuple[float, float, str]] = {}  # (period, tz) → (start, end, id)

    def window(self, period: str, tz: zoneinfo.ZoneInfo, now: float) -> tuple[str, float]:
        """:func:`_window`, remembered until the window ends (calendar maths is not free)."""
        key = (period, str(tz))
        cached = self._windows.get(key)
        if cached is not None and cached[0] <= now < cached[1]:
            return cached[2], cached[1]
        window_id, resets_at, start = _window(period, tz, now)
        self._windows[key] = (start, resets_at, window_id)
        return window_id, resets_at


class RateLimitGuard(Guard):
    name = "ratelimit"
    Settings = RateLimitSettings
    settings: RateLimitSettings

    def __init__(self, settings: RateLimitSettings, env: GuardEnv, *,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(settings, env)
        self._compiled = _Compiled(settings)
        self._clock = clock
        self.store: CounterStore | None = None
        self._owned = False

    async def start(self) -> None:
        shared = self.env.state.get("counters")
        if isinstance(shared, CounterStore) and self.settings.store is None:
            self.store = shared
            return
        self.store = open_counter_store(self.settings.store or self.env.storage_url, self.env.config_dir)
        await self.store.start()
        self._owned = True

    async def aclose(self) -> None:
        if self._owned and self.store is not None:
            await self.store.aclose()

    def reload(self, settings: RateLimitSettings) -> None:
        """Swap in new limits. Counters carry over by limit name. Raises ``ConfigError`` if invalid."""
        if (settings.store or self.env.storage_url) != (self.settings.store or self.env.storage_url):
            raise ConfigError(["guards.ratelimit.store: changing the counter store needs a restart"])
        try:
            compiled = _Compiled(settings)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError) as exc:
            raise ConfigError([f"guards.ratelimit: {exc}"]) from None
        self.settings, self._compiled = settings, compiled

    async def on_request(self, call: Call) -> Verdict:
        if call.direction != "client" or call.request_id is None:
            return PASS
        compiled = self._compiled
        principal = call.principal
        if compiled.exempt & principal.roles:
            return PASS
        now = self._clock()
        limits = self.limits_for(call, compiled, now)
        if not limits:
            return PASS
        if self.store is None:
            raise RuntimeError("the rate limit store is not started")
        decision = await self.store.acquire(limits, now)
        if decision.allowed:
            return PASS
        retry = max(1, math.ceil(min(decision.retry_after, 86400 * 31)))
        names = sorted({key.split(":", 2)[1] for key in decision.denied})
        self.env.events.emit("ratelimit.exceeded", principal=principal.id, limits=names, method=call.method,
                             server=call.server, tool=_tool(call), retry_after=retry, decision_id=call.decision_id)
        return Reject(f"rate limit exceeded ({', '.join(names)}); retry after {retry}s", code=GATEWAY_RATE_LIMITED,
                      http_status=429, as_tool_error=False, headers={"Retry-After": str(retry)},
                      data={"retryAfter": retry, "limits": names})

    def limits_for(self, call: Call, compiled: _Compiled | None = None, now: float | None = None) -> list[Limit]:
        compiled = compiled or self._compiled
        now = self._clock() if now is None else now
        tool = _tool(call)
        limits: list[Limit] = []
        for spec, matcher, count, span in compiled.rates:
            if not matcher.applies(call, tool):
                continue
            capacity = float(spec.burst or count)
            for key in _keys(spec.name, spec.per, matcher.roles, call, tool):
                limits.append(Bucket(f"rate:{key}", capacity=capacity, rate=count / span))
        for qspec, matcher, tz, costs in compiled.quotas:
            if not matcher.applies(call, tool):
                continue
            cost = next((c for regex, c in costs if regex is not None and tool is not None and regex.match(tool)),
                        qspec.default_cost)
            if cost <= 0:
                continue
            window, resets_at = compiled.window(qspec.period, tz, now)
            for key in _keys(qspec.name, qspec.per, matcher.roles, call, tool):
                limits.append(Quota(f"quota:{key}:{window}", limit=qspec.limit, resets_at=resets_at, cost=cost))
        return limits


def _tool(call: Call) -> str | None:
    if call.method != "tools/call":
        return None
    name = call.exposed_name or call.params.get("name")
    return name if isinstance(name, str) else None


def _principal_key(principal: Principal) -> str:
    if principal.anonymous:
        return "anonymous@" + principal.attributes.get("source", "")
    return principal.id


def _keys(name: str, per: list[Dimension], roles_filter: frozenset[str], call: Call, tool: str | None) -> list[str]:
    """One counter key per combination of the ``per`` dimensions (several when per role)."""
    base = [name]
    role_values: list[str] = [""]
    if "role" in per:
        roles = sorted(call.principal.roles & roles_filter if roles_filter else call.principal.roles)
        role_values = roles or ["(none)"]
    parts: list[str] = []
    for dim in per:
        if dim == "principal":
            parts.append("p=" + _principal_key(call.principal))
        elif dim == "tool":
            parts.append("t=" + (tool or "method:" + call.method))
        elif dim == "server":
            parts.append("s=" + (call.server or "-"))
    if "role" not in per:
        return [":".join(base + parts)]
    return [":".join([*base, *parts, "r=" + role]) for role in role_values]


def _window(period: str, tz: zoneinfo.ZoneInfo, now: float) -> tuple[str, float, float]:
    """The calendar window containing ``now`` in ``tz``: its id, when it ends and when it
    started (epoch seconds)."""
    local = datetime.fromtimestamp(now, tz)
    if period == "day":
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=1)  # aware arithmetic is wall-clock: DST days of 23/25 hours work
        return start.strftime("%Y-%m-%d"), end.timestamp(), start.timestamp()
    days = calendar.monthrange(local.year, local.month)[1]
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start + timedelta(days=days)
    return start.strftime("%Y-%m"), end.timestamp(), start.timestamp()
