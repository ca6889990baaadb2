"""The admission gate: an HTTP upstream below its configured grade is quarantined by the gateway."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from support.procs import ManagedProcess, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
SDK_UPSTREAM = str(Path(__file__).resolve().parents[1] / "fixtures" / "sdk_upstream.py")


async def test_upstream_below_the_bar_is_quarantined(gateway_factory: Any, tmp_path: Path) -> None:
    port = free_port()
    upstream = ManagedProcess([sys.executable, SDK_UPSTREAM, "http", "--port", str(port)],
                              log_path=tmp_path / "upstream.log")
    url = f"http://127.0.0.1:{port}/mcp"
    with upstream:
        upstream.wait_http(url, timeout=30, ok=lambda s: 200 <= s < 500)
        gw = gateway_factory({"servers": {
            # An unauthenticated SDK server cannot reach A; F admits anything.
            "strict": {"url": url, "admission": {"min_grade": "A", "allow_loopback_http": True}},
            "lenient": {"url": url, "admission": {"min_grade": "F", "allow_loopback_http": True}},
        }})
        async with Client(gw.url, mode="2026-07-28") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "lenient__echo" in names
            assert not any(n.startswith("strict__") for n in names)
            with pytest.raises(MCPError) as refused:
                await client.call_tool("strict__echo", {"text": "x"})
            assert refused.value.error.code == -31503
            assert refused.value.error.data == {"upstream": "strict"}
    assert "admission" in gw.output()
