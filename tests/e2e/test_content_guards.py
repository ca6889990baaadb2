"""dlp, poisoning and injection through the real gateway, with a real upstream written with the mcp SDK.

The upstream (tests/fixtures/content_upstream.py) records every call it receives, so the tests
can prove that a blocked secret never reached it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from support.gateway import Gateway

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "content_upstream.py"
SECRET = "AKIA" + "Q3ZPW5XT7L2M4N6R"


class Upstream:
    def __init__(self, tmp_path: Path) -> None:
        self.record = tmp_path / "calls.jsonl"

    def config(self) -> dict[str, Any]:
        return {"command": sys.executable, "args": [str(FIXTURE), "--record", str(self.record)]}

    def calls(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    return Upstream(tmp_path)


def start(gateway_factory: Callable[..., Gateway], upstream: Upstream, guards: dict[str, Any]) -> Gateway:
    return gateway_factory({"servers": {"up": upstream.config()}, "guards": guards})


def text_of(result: Any) -> str:
    return "".join(getattr(item, "text", "") for item in result.content)


def decision(result: Any) -> dict[str, Any]:
    assert result.is_error
    return dict((result.meta or {})["dev.mcpwall/decision"])


async def test_secret_in_arguments_is_blocked_before_the_upstream_sees_it(
        gateway_factory: Callable[..., Gateway], upstream: Upstream) -> None:
    gateway = start(gateway_factory, upstream, {"dlp": {"action": "block"}})
    async with Client(gateway.url, cache=None) as client:
        clean = await client.call_tool("up__remember", {"note": "buy milk"})
        assert not clean.is_error
        blocked = await client.call_tool("up__remember", {"note": f"the deploy key is {SECRET}"})
        assert decision(blocked)["guard"] == "dlp"
        assert SECRET not in text_of(blocked)
    received = upstream.calls()
    assert [c["args"]["note"] for c in received if c["tool"] == "remember"] == ["buy milk"]
    assert SECRET not in upstream.record.read_text()
    assert SECRET not in gateway.output()


async def test_secret_in_result_is_redacted_and_the_json_stays_valid(
        gateway_factory: Callable[..., Gateway], upstream: Upstream) -> None:
    gateway = start(gateway_factory, upstream, {"dlp": {"action": "redact"}})
    async with Client(gateway.url, cache=None) as client:
        result = await client.call_tool("up__env_dump", {})
        assert not result.is_error
        settings = json.loads(text_of(result))
        assert settings == {"token": "[REDACTED:github-pat]", "replicas": 3}
        assert result.structured_content == {"token": "[REDACTED:github-pat]", "replicas": 3}
        # Arguments with a secret are redacted, not refused, in this mode.
        await client.call_tool("up__remember", {"note": f"key {SECRET}"})
    notes = [c["args"]["note"] for c in upstream.calls() if c["tool"] == "remember"]
    assert notes == ["key [REDACTED:aws-access-key-id]"]


async def test_poisoned_tool_is_withheld(gateway_factory: Callable[..., Gateway], upstream: Upstream) -> None:
    gateway = start(gateway_factory, upstream, {"poisoning": {}})
    async with Client(gateway.url, cache=None) as client:
        names = sorted(tool.name for tool in (await client.list_tools()).tools)
        assert names == ["up__add", "up__env_dump", "up__read_page", "up__remember"]
        with pytest.raises(MCPError) as caught:
            await client.call_tool("up__add_v2", {"a": 1, "b": 2})
        assert caught.value.error.code == -32602
        assert text_of(await client.call_tool("up__add", {"a": 1, "b": 2})) == "3"
    assert [c["tool"] for c in upstream.calls()] == ["add"]


@pytest.mark.parametrize("action", ["flag", "sanitize", "block"])
async def test_injected_result_is_handled_per_mode(gateway_factory: Callable[..., Gateway], upstream: Upstream,
                                                   action: str) -> None:
    gateway = start(gateway_factory, upstream, {"injection": {"action": action}})
    async with Client(gateway.url, cache=None) as client:
        result = await client.call_tool("up__read_page", {})
        text = text_of(result)
        if action == "flag":
            assert not result.is_error
            assert "[mcpwall: the text between these markers" in text and "Ignore all previous instructions" in text
            assert text.startswith("Welcome to the docs! ") and text.endswith(" Thanks for reading.")
        elif action == "sanitize":
            assert not result.is_error
            assert "Ignore all previous instructions" not in text and "[mcpwall: removed text" in text
            assert text.startswith("Welcome to the docs! ")
        else:
            assert decision(result)["guard"] == "injection"
            assert "Ignore all previous instructions" not in text
        clean = await client.call_tool("up__add", {"a": 2, "b": 2})
        assert text_of(clean) == "4"
