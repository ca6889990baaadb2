"""The ``limits`` guard: size, depth, shape and concurrency bounds on every message.

Size and nesting depth are enforced by the framing layer before and right after parsing
(the fronts read them from these settings), because a message too large to parse cannot
reach a hook. This guard adds what needs a parsed message: batches (allowed only under
2025-03-26), and a cap on requests in flight per session (per principal for stateless calls).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import Field

from mcpwall.config.types import Bytes
from mcpwall.errors import INVALID_REQUEST
from mcpwall.gateway.call import Call
from mcpwall.pipeline.guard import Guard, GuardSettings, Outcome
from mcpwall.pipeline.verdict import PASS, Reject, Verdict
from mcpwall.protocol.jsonrpc import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, Limits


class LimitsSettings(GuardSettings):
    max_message_bytes: Bytes = Field(DEFAULT_MAX_BYTES, description="Largest message accepted (HTTP 413 above).")
    max_depth: int = Field(DEFAULT_MAX_DEPTH, ge=2, le=1000, description="Deepest JSON nesting accepted.")
    max_in_flight: int = Field(64, ge=1, description="Requests one session (or principal) may have in flight.")
    max_string_bytes: Bytes | None = Field(None, description="Optional cap on any single string value.")


class LimitsGuard(Guard):
    name = "limits"
    Settings = LimitsSettings
    settings: LimitsSettings

    def __init__(self, settings: LimitsSettings, env: Any) -> None:
        super().__init__(settings, env)
        self.framing = Limits(max_bytes=settings.max_message_bytes, max_depth=settings.max_depth)
        self._in_flight: Counter[str] = Counter()

    async def on_request(self, call: Call) -> Verdict:
        if call.direction != "client":
            return PASS
        key = call.session_id or f"principal:{call.principal.id}"
        if self._in_flight[key] >= self.settings.max_in_flight:
            return Reject(f"too many requests in flight (limit {self.settings.max_in_flight})",
                          code=INVALID_REQUEST, as_tool_error=False, http_status=429)
        self._in_flight[key] += 1
        call.scratch["limits.key"] = key
        cap = self.settings.max_string_bytes
        if cap is not None and _longest_string(call.params) > cap:
            return Reject(f"a string value exceeds the limit of {cap} bytes", code=INVALID_REQUEST,
                          as_tool_error=False)
        return PASS

    async def on_complete(self, call: Call, outcome: Outcome) -> None:
        key = call.scratch.pop("limits.key", None)
        if key is not None:
            self._in_flight[key] -= 1
            if self._in_flight[key] <= 0:
                del self._in_flight[key]


def _longest_string(value: Any) -> int:
    longest = 0
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            longest = max(longest, len(node.encode()))
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return longest
