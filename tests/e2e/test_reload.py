"""SIGHUP reloads policy from the config file without dropping sessions; a bad file changes nothing."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp import Client
from mcp.shared.exceptions import MCPError

from support.waits import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
SDK_UPSTREAM = str(Path(__file__).resolve().parents[1] / "fixtures" / "sdk_upstream.py")


def config(tools: list[str]) -> dict[str, Any]:
    return {"servers": {"sdk": {"command": sys.executable, "args": [SDK_UPSTREAM, "stdio"]}},
            "guards": {"policy": {"roles": {"*": {"allow": {"tools": tools}}}}}}


async def test_sighup_reloads_policy_and_keeps_sessions(gateway_factory: Any) -> None:
    gw = gateway_factory(config(["sdk__echo"]))
    async with Client(gw.url, mode="legacy") as client:
        with pytest.raises(MCPError) as hidden:
            await client.call_tool("sdk__env", {"name": "PATH"})
        assert hidden.value.error.code == -32602
        full = yaml.safe_load(gw.config_path.read_text())
        full["guards"]["policy"]["roles"]["*"]["allow"]["tools"] = ["sdk__echo", "sdk__env"]
        gw.config_path.write_text(yaml.safe_dump(full))
        gw.process.proc.send_signal(signal.SIGHUP)
        await eventually(lambda: "config reloaded" in gw.output(), timeout=20, what="the reload")
        # Same client, same legacy session: the new policy is in force.
        assert not (await client.call_tool("sdk__env", {"name": "PATH"})).is_error
        gw.config_path.write_text("guards: {policy: {roles: 7}}\n")
        gw.process.proc.send_signal(signal.SIGHUP)
        await eventually(lambda: "config reload refused" in gw.output(), timeout=20, what="the refusal")
        assert not (await client.call_tool("sdk__env", {"name": "PATH"})).is_error
