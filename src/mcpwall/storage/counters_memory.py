"""In-process counters. Exact because every operation completes without awaiting: on one
event loop nothing can interleave between the check and the charge."""

from __future__ import annotations

from collections.abc import Sequence

from mcpwall.storage.counters import Bucket, CounterStore, Decision, Limit, decide

_SWEEP_EVERY = 4096  # operations between sweeps of expired entries


class MemoryCounterStore(CounterStore):
    def __init__(self) -> None:
        # key → (value, time): buckets keep (tokens, updated_at); quotas and counters keep
        # (value, expires_at); claims keep (1, expires_at).
        self._data: dict[str, tuple[float, float]] = {}
        self._expiry: dict[str, float] = {}
        self._ops = 0

    async def acquire(self, limits: Sequence[Limit], now: float) -> Decision:
        self._tick(now)
        states = [self._live(limit.key, now) for limit in limits]
        decision, values = decide(limits, states, now)
        if decision.allowed:
            for limit, value in zip(limits, values, strict=True):
                if isinstance(limit, Bucket):
                    self._data[limit.key] = (value, now)
                    self._expiry[limit.key] = now + limit.idle_ttl()
                else:
                    self._data[limit.key] = (value, limit.resets_at)
                    self._expiry[limit.key] = limit.resets_at
        return decision

    async def claim(self, key: str, ttl: float, now: float) -> bool:
        self._tick(now)
        if self._live(key, now) is not None:
            return False
        self._data[key] = (1.0, now + ttl)
        self._expiry[key] = now + ttl
        return True

    async def incr(self, key: str, amount: float, ttl: float, now: float) -> float:
        self._tick(now)
        state = self._live(key, now)
        value = (state[0] if state is not None else 0.0) + amount
        expires = state[1] if state is not None else now + ttl
        self._data[key] = (value, expires)
        self._expiry[key] = expires
        return value

    async def get(self, key: str, now: float) -> float:
        state = self._live(key, now)
        return state[0] if state is not None else 0.0

    async def reset(self, key: str) -> None:
        self._data.pop(key, None)
        self._expiry.pop(key, None)

    def _live(self, key: str, now: float) -> tuple[float, float] | None:
        expires = self._expiry.get(key)
        if expires is None:
            return None
        if expires <= now:
            del self._data[key], self._expiry[key]
            return None
        return self._data[key]

    def _tick(self, now: float) -> None:
        self._ops += 1
        if self._ops % _SWEEP_EVERY == 0:
            for key in [k for k, exp in self._expiry.items() if exp <= now]:
                del self._data[key], self._expiry[key]
