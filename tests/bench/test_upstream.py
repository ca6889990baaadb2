"""The benchmark's fast upstream speaks both protocol eras correctly to the official SDK client.

If it did not, the benchmark would measure error paths. Driven by ``mcp.Client`` over
Streamable HTTP (JSON and SSE answers) and stdio, in the legacy and 2026-07-28 eras.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

REPO = Path(__file__).resolve().parents[2]
# The upstream's fixed sizes (bench/payloads.py); spelled out so the test needs no import path.
CALL_TOOLS, LIST_TOOLS = 24, 500
SIZES = {"small": 200, "medium": 64 * 1024, "large": 1024 * 1024}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def upstream_port() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.upstream", "--port", "0"], cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield int(json.loads(proc.stdout.readline())["port"])
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
@pytest.mark.parametrize("path", ["/mcp", "/mcp-sse"])
async def test_http_both_eras_and_response_types(upstream_port: int, mode: str, path: str) -> None:
    async with Client(f"http://127.0.0.1:{upstream_port}{path}?tools={CALL_TOOLS}", mode=mode) as client:
        tools = await client.list_tools()
        assert len(tools.tools) == CALL_TOOLS
        medium = await client.call_tool("medium", {"tag": "t"})
        assert not medium.is_error
        assert len(medium.content[0].text) == SIZES["medium"]  # type: ignore[union-attr]
        echo = await client.call_tool("echo", {"message": "hi"})
        assert echo.content[0].text == "hi"  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_full_catalogue_is_the_list_scenario_size(upstream_port: int) -> None:
    async with Client(f"http://127.0.0.1:{upstream_port}/mcp", mode="2026-07-28") as client:
        assert len((await client.list_tools()).tools) == LIST_TOOLS


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_stdio(mode: str) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "bench.upstream", "--stdio"], cwd=str(REPO),
                                   env=_env())
    async with Client(params, mode=mode) as client:
        small = await client.call_tool("small", {})
        assert len(small.content[0].text) == SIZES["small"]  # type: ignore[union-attr]
