"""Counters: the state behind rate limits, quotas, replay protection and auth-failure tracking.

One narrow interface, several backends:

* ``memory://`` — one process, for tests and throwaway gateways;
* ``sqlite:///path`` — the embedded default, exact across processes on one host;
* ``redis://host:port/db`` — shared by several gateway replicas.

Every backend decides a whole set of limits atomically (:meth:`CounterStore.acquire`): either
every bucket and quota has room and all of them are charged, or none is charged. That is what
keeps counts exact under concurrency — 1,000 simultaneous calls against a limit of 100 let
exactly 100 through — and keeps a call refused by one limit from eating another's allowance.

Callers pass ``now`` (epoch seconds) so tests can drive time; replicas sharing a Redis
should keep their clocks in sync (NTP), as token buckets compare timestamps across them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mcpwall.storage.urls import scheme, sqlite_path


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket: holds at most ``capacity`` tokens, refilled at ``rate`` per second.
    Each acquire takes ``cost`` tokens (1 for a plain request rate)."""

    key: str
    capacity: float
    rate: float
    cost: float = 1.0

    def idle_ttl(self) -> float:
        """Seconds after which an untouched bucket is full again, so its state can be dropped."""
        return self.capacity / self.rate + 1.0


@dataclass(frozen=True, slots=True)
class Quota:
    """A fixed-window allowance: at most ``limit`` units until ``resets_at`` (epoch seconds).
    The window's identity belongs in ``key`` (e.g. ``…:2026-05-04``), so a new window is a new key."""

    key: str
    limit: float
    resets_at: float
    cost: float = 1.0


Limit = Bucket | Quota


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0  # seconds until every refusing limit would have room
    denied: tuple[str, ...] = ()  # keys of the limits that refused


ALLOWED = Decision(True)


class CounterStore(ABC):
    """The interface every backend implements. All methods are safe under concurrency."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections and create tables. Called once before use."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    @abstractmethod
    async def acquire(self, limits: Sequence[Limit], now: float) -> Decision:
        """Charge every limit if all have room; otherwise charge none and say which refused."""

    @abstractmethod
    async def claim(self, key: str, ttl: float, now: float) -> bool:
        """Record ``key`` for ``ttl`` seconds. True the first time, False while it is remembered
        (replay protection: a nonce may be claimed once)."""

    @abstractmethod
    async def incr(self, key: str, amount: float, ttl: float, now: float) -> float:
        """Add ``amount`` to a counter that expires ``ttl`` seconds after its first increment;
        return the new value."""

    @abstractmethod
    async def get(self, key: str, now: float) -> float:
        """Current value of an ``incr`` counter or quota (0 when absent or expired)."""

    @abstractmethod
    async def reset(self, key: str) -> None:
        """Forget a counter, quota, claim or bucket."""


def decide(limits: Sequence[Limit], states: Sequence[tuple[float, float] | None], now: float
           ) -> tuple[Decision, list[float]]:
    """The pure arithmetic every backend shares.

    ``states[i]`` is ``(tokens, updated_at)`` for a bucket or ``(used, resets_at)`` for a quota,
    or None when the store has nothing. Returns the decision and, per limit, the value to store
    if the decision is to allow (tokens left, or units used).
    """
    new_values: list[float] = []
    denied: list[str] = []
    wait = 0.0
    for limit, state in zip(limits, states, strict=True):
        if isinstance(limit, Bucket):
            tokens = refill(limit, state, now)
            if tokens + 1e-9 < limit.cost:
                denied.append(limit.key)
                wait = max(wait, (limit.cost - tokens) / limit.rate if limit.cost <= limit.capacity
                           else math.inf)
            new_values.append(tokens - limit.cost)
        else:
            used = state[0] if state is not None and state[1] > now else 0.0
            if used + limit.cost > limit.limit + 1e-9:
                denied.append(limit.key)
                wait = max(wait, limit.resets_at - now)
            new_values.append(used + limit.cost)
    if denied:
        return Decision(False, max(wait, 0.0), tuple(denied)), new_values
    return ALLOWED, new_values


def refill(bucket: Bucket, state: tuple[float, float] | None, now: float) -> float:
    if state is None:
        return bucket.capacity
    tokens, updated = state
    return min(bucket.capacity, tokens + max(0.0, now - updated) * bucket.rate)


def open_counter_store(url: str, base_dir: Path | None = None) -> CounterStore:
    """The backend for a storage URL. Raises ``ValueError`` for a scheme without one."""
    kind = scheme(url)
    if kind == "memory":
        from mcpwall.storage.counters_memory import MemoryCounterStore

        return MemoryCounterStore()
    if kind == "sqlite":
        path = sqlite_path(url, base_dir)
        if path is None:
            raise ValueError("a SQLite storage URL looks like sqlite:///path/to/file.db")
        from mcpwall.storage.counters_sqlite import SqliteCounterStore

        return SqliteCounterStore(path)
    if kind in ("redis", "rediss"):
        from mcpwall.storage.counters_redis import RedisCounterStore

        return RedisCounterStore(url)
    raise ValueError(f"no counter store for storage scheme {kind!r} (use memory://, sqlite:/// or redis://)")
