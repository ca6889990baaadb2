"""The limits guard: in-flight cap per session/principal, string cap, framing limits from settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcpwall.config.model import Config
from mcpwall.errors import INVALID_REQUEST
from mcpwall.gateway.call import ANONYMOUS, Call
from mcpwall.gateway.events import EventBus
from mcpwall.guards.limits import LimitsGuard, LimitsSettings
from mcpwall.pipeline.guard import GuardEnv, Outcome
from mcpwall.pipeline.verdict import Reject

pytestmark = pytest.mark.anyio
ENV = GuardEnv(events=EventBus(), config_dir=Path("."))


def call(session: str | None = "s1", text: str = "x") -> Call:
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "t", "arguments": {"text": text}}}
    return Call(message=message, principal=ANONYMOUS, era="legacy", protocol_version="2025-11-25",
                transport="http", session_id=session)


async def test_in_flight_cap_per_session_is_released_on_completion() -> None:
    guard = LimitsGuard(LimitsSettings(max_in_flight=2), ENV)
    first, second, third = call(), call(), call()
    assert not isinstance(await guard.on_request(first), Reject)
    assert not isinstance(await guard.on_request(second), Reject)
    refused = await guard.on_request(third)
    assert isinstance(refused, Reject) and refused.http_status == 429 and refused.code == INVALID_REQUEST
    assert not isinstance(await guard.on_request(call(session="other")), Reject)  # other sessions unaffected
    await guard.on_complete(first, Outcome(decision="allow"))
    assert not isinstance(await guard.on_request(call()), Reject)


async def test_stateless_calls_share_the_principal_budget() -> None:
    guard = LimitsGuard(LimitsSettings(max_in_flight=1), ENV)
    assert not isinstance(await guard.on_request(call(session=None)), Reject)
    assert isinstance(await guard.on_request(call(session=None)), Reject)


async def test_string_cap() -> None:
    guard = LimitsGuard(LimitsSettings(max_string_bytes="1KiB"), ENV)
    refused = await guard.on_request(call(text="é" * 600))  # 1200 bytes in UTF-8
    assert isinstance(refused, Reject) and refused.code == INVALID_REQUEST and not refused.as_tool_error
    assert not isinstance(await guard.on_request(call(session="s2", text="e" * 600)), Reject)


def test_framing_limits_come_from_the_settings() -> None:
    config = Config.model_validate({"guards": {"limits": {"max_message_bytes": "64KiB", "max_depth": 8}}})
    guard = LimitsGuard(config.guard_settings("limits"), ENV)  # type: ignore[arg-type]
    assert (guard.framing.max_bytes, guard.framing.max_depth) == (64 * 1024, 8)
