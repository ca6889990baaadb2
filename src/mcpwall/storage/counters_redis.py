"""Redis counters, shared by several gateway replicas.

Each decision is one Lua script, which Redis runs atomically: it reads every bucket and quota,
and writes them only if all have room. Keys of one decision must live on one node, so on a
Redis Cluster give the deployment a hash tag in ``key_prefix`` (e.g. ``{mcpwall}:``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from mcpwall.storage.counters import Bucket, CounterStore, Decision, Limit

# KEYS: the limits. ARGV[1] = now; then four values per limit: kind ("b" or "q"), capacity or
# limit, rate or resets_at, cost. Floats leave Lua as strings: Redis truncates Lua numbers.
_ACQUIRE = """
local now = tonumber(ARGV[1])
local values = {}
local denied = {}
local wait = 0
for i = 1, #KEYS do
  local base = 1 + (i - 1) * 4
  local kind = ARGV[base + 1]
  local a = tonumber(ARGV[base + 2])
  local b = tonumber(ARGV[base + 3])
  local cost = tonumber(ARGV[base + 4])
  if kind == 'b' then
    local state = redis.call('HMGET', KEYS[i], 't', 's')
    local tokens = tonumber(state[1])
    if tokens == nil then
      tokens = a
    else
      tokens = math.min(a, tokens + math.max(0, now - tonumber(state[2])) * b)
    end
    if tokens + 1e-9 < cost then
      table.insert(denied, KEYS[i])
      local w = (cost - tokens) / b
      if cost > a then w = -1 end
      if w < 0 or (wait >= 0 and w > wait) then wait = w end
    end
    values[i] = tokens - cost
  else
    local used = tonumber(redis.call('GET', KEYS[i]) or '0')
    if used + cost > a + 1e-9 then
      table.insert(denied, KEYS[i])
      local w = b - now
      if wait >= 0 and w > wait then wait = w end
    end
    values[i] = used + cost
  end
end
if #denied > 0 then
  return {0, tostring(wait), denied}
end
for i = 1, #KEYS do
  local base = 1 + (i - 1) * 4
  local kind = ARGV[base + 1]
  local a = tonumber(ARGV[base + 2])
  local b = tonumber(ARGV[base + 3])
  if kind == 'b' then
    redis.call('HSET', KEYS[i], 't', tostring(values[i]), 's', ARGV[1])
    redis.call('PEXPIRE', KEYS[i], math.ceil((a / b + 1) * 1000))
  else
    redis.call('SET', KEYS[i], tostring(values[i]))
    redis.call('PEXPIREAT', KEYS[i], math.ceil(b * 1000))
  end
end
return {1, '0', {}}
"""

_INCR = """
local v = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v
"""


class RedisCounterStore(CounterStore):
    def __init__(self, url: str, *, key_prefix: str = "mcpwall:", max_connections: int = 32) -> None:
        self.url = url
        self.max_connections = max_connections
        self.prefix = key_prefix
        self._client: Any = None
        self._acquire: Any = None
        self._incr: Any = None

    async def start(self) -> None:
        import redis.asyncio as redis

        # A blocking pool makes bursts queue for a connection instead of failing.
        pool = redis.BlockingConnectionPool.from_url(
            self.url, max_connections=self.max_connections, timeout=5, socket_timeout=5, socket_connect_timeout=5)
        client = redis.Redis(connection_pool=pool)
        await client.ping()
        self._client = client
        self._acquire = client.register_script(_ACQUIRE)
        self._incr = client.register_script(_INCR)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose(close_connection_pool=True)
            self._client = None

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _ready(self) -> Any:
        if self._client is None:
            raise RuntimeError("the Redis counter store was not started")
        return self._client

    async def acquire(self, limits: Sequence[Limit], now: float) -> Decision:
        self._ready()
        keys = [self._key(limit.key) for limit in limits]
        args: list[str] = [repr(now)]
        for limit in limits:
            if isinstance(limit, Bucket):
                args += ["b", repr(limit.capacity), repr(limit.rate), repr(limit.cost)]
            else:
                args += ["q", repr(limit.limit), repr(limit.resets_at), repr(limit.cost)]
        allowed, wait, denied = await self._acquire(keys=keys, args=args)
        if int(allowed) == 1:
            return Decision(True)
        seconds = float(wait)
        strip = len(self.prefix)
        names = tuple((k.decode() if isinstance(k, bytes) else str(k))[strip:] for k in denied)
        return Decision(False, math.inf if seconds < 0 else seconds, names)

    async def claim(self, key: str, ttl: float, now: float) -> bool:
        result = await self._ready().set(self._key(key), b"1", nx=True, px=max(1, math.ceil(ttl * 1000)))
        return bool(result)

    async def incr(self, key: str, amount: float, ttl: float, now: float) -> float:
        self._ready()
        value = await self._incr(keys=[self._key(key)], args=[repr(amount), max(1, math.ceil(ttl * 1000))])
        return float(value)

    async def get(self, key: str, now: float) -> float:
        from redis.exceptions import ResponseError

        try:
            value = await self._ready().get(self._key(key))
        except ResponseError:
            return 0.0  # a bucket hash, not a counter
        return float(value) if value is not None else 0.0

    async def reset(self, key: str) -> None:
        await self._ready().delete(self._key(key))
