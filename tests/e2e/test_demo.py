"""``mcpwall demo``: embedded defaults in front of the bundled demo server, reachable by a real client."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mcp import Client, types

from support.procs import ManagedProcess, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_demo_serves_the_bundled_upstream(tmp_path: Path) -> None:
    port = free_port()
    demo = ManagedProcess([sys.executable, "-m", "mcpwall", "demo", "--port", str(port), "--dir", str(tmp_path)],
                          log_path=tmp_path / "demo.log", cwd=tmp_path)
    with demo:
        demo.wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        async with Client(f"http://127.0.0.1:{port}/mcp", mode="2026-07-28") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"demo__echo", "demo__add", "demo__get_config"} <= names
            result = await client.call_tool("demo__add", {"a": 20, "b": 22})
            block = result.content[0]
            assert isinstance(block, types.TextContent) and block.text == "42"
    assert "Connect a client" in demo.output()
