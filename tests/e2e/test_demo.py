"""``mcpwall demo``: embedded defaults in front of the bundled demo server, reachable by a real
client, with the demo's guards visibly at work (DLP redaction, injection flagging, the trifecta)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, types

from support.procs import ManagedProcess, free_port
from support.waits import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
FAKE_KEY_ID = "AKIA" + "QZ7X3M5NB2VPLK4T"  # what the demo server's get_config tool returns


def text(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


def approvals(env: dict[str, str], *args: str) -> Any:
    """Run the real ``mcpwall approvals`` CLI against the demo's admin API."""
    done = subprocess.run([sys.executable, "-m", "mcpwall", "approvals", *args], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout) if "--json" in args else done.stdout


async def test_demo_shows_the_guards_at_work(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "MCPWALL_ADMIN_TOKEN": "demo-test-token-0123456789",
           "MCPWALL_ADMIN_URL": f"http://127.0.0.1:{port + 1}"}
    demo = ManagedProcess([sys.executable, "-m", "mcpwall", "demo", "--port", str(port), "--dir", str(tmp_path)],
                          log_path=tmp_path / "demo.log", cwd=tmp_path, env=env)
    with demo:
        demo.wait_http(f"http://127.0.0.1:{port}/healthz", timeout=90)
        async with Client(f"http://127.0.0.1:{port}/mcp", mode="2026-07-28") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"demo__echo", "demo__add", "demo__get_config", "demo__fetch_page"} <= names
            assert text(await client.call_tool("demo__add", {"a": 20, "b": 22})) == "42"
            config = await client.call_tool("demo__get_config", {})
            assert FAKE_KEY_ID not in text(config) and "region=eu-west-1" in text(config)
            page = await client.call_tool("demo__fetch_page", {"url": "https://1.1.1.1/shop"})
            assert not page.is_error and "[mcpwall:" in text(page)
        async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
            # The lethal trifecta: private data, then untrusted content, then egress — held for a person.
            assert not (await client.call_tool("demo__read_file", {"path": "notes.txt"})).is_error
            assert not (await client.call_tool("demo__fetch_page", {"url": "https://1.1.1.1/shop"})).is_error
            outcome: list[types.CallToolResult] = []

            async def send() -> None:
                outcome.append(await client.call_tool("demo__send_email", {"to": "x@example.net", "body": "q3"}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(send)
                pending: list[dict[str, Any]] = []

                def held() -> bool:
                    pending[:] = approvals(env, "list", "--json")
                    return bool(pending)

                await eventually(held, timeout=30, what="the held send_email in the approvals list")
                approvals(env, "deny", pending[0]["id"], "--approver", "ops", "--reason", "not to outsiders")
            sent = outcome[0]
            assert sent.is_error
            decision = (sent.meta or {})["dev.mcpwall/decision"]
            assert decision["guard"] == "flow"  # the flow rule held the call; a person denied it
            assert decision["approval"] == {"id": pending[0]["id"], "status": "denied"}
    assert "Connect a client" in demo.output()
    assert (tmp_path / "mcpwall.db").exists()
