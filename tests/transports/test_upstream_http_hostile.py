"""HTTP upstreams that accept a request and then never answer it: the gateway must not hang.

Two small servers run in the test's own event loop (aiohttp.web on 127.0.0.1):

* a legacy Streamable HTTP server that completes ``initialize`` and lists a tool, but never
  answers ``tools/call`` — nor the ``notifications/cancelled`` the gateway sends when the call
  times out;
* a legacy HTTP+SSE (2024-11-05) server whose event stream names its POST endpoint and which
  then never answers a POST.

In both cases the client must get an upstream timeout (-31504) or unavailable (-31503) error,
the gateway's start must complete, and a second, well-behaved upstream must keep working.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiohttp import web

from mcpwall.config.model import Config
from mcpwall.gateway.core import Gateway
from mcpwall.transports.http_front import HttpFront

MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
WAIT = 30.0
TOOLS = [{"name": "hang", "description": "Never answers.", "inputSchema": {"type": "object"}}]


async def _forever() -> None:
    await asyncio.Event().wait()  # until the server shuts down and cancels the handler


async def streamable(request: web.Request) -> web.StreamResponse:
    if request.method != "POST":
        return web.Response(status=405)
    message = await request.json()
    method, rid = message.get("method"), message.get("id")
    if rid is None:
        if method == "notifications/cancelled":
            await _forever()  # the gateway must not wait for this answer forever
        return web.Response(status=202)
    if method == "initialize":
        result: dict[str, Any] = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                                  "serverInfo": {"name": "stuck", "version": "1"}}
        return web.json_response({"jsonrpc": "2.0", "id": rid, "result": result},
                                 headers={"mcp-session-id": "stuck-session"})
    if method == "tools/list":
        return web.json_response({"jsonrpc": "2.0", "id": rid, "result": {"tools": TOOLS}})
    await _forever()
    raise AssertionError("unreachable")


async def sse_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"event: endpoint\ndata: /messages\n\n")
    await _forever()
    return response


async def sse_message(request: web.Request) -> web.StreamResponse:
    await request.read()
    await _forever()
    raise AssertionError("unreachable")


@asynccontextmanager
async def stuck_server() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_route("*", "/mcp", streamable)
    app.router.add_get("/sse", sse_stream)
    app.router.add_post("/messages", sse_message)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def call(app: Any, tool: str, serial: int) -> dict[str, Any]:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               "mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": tool}
    body = orjson.dumps({"jsonrpc": "2.0", "id": serial, "method": "tools/call",
                         "params": {"name": tool, "arguments": {"text": "x"}, "_meta": META}})
    transport = httpx.ASGITransport(app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765") as client:
        response = await client.post("/mcp", headers=headers, content=body)
    assert response.status_code in (200, 400), response.text  # 400: an unknown tool, in the modern era
    return response.json()  # type: ignore[no-any-return]


def run(scenario: Any) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(WAIT * 2):  # a hang fails the test instead of stalling the run
            await scenario()

    with asyncio.Runner() as runner:
        runner.run(bounded())


def gateway_config(stuck: dict[str, Any]) -> dict[str, Any]:
    return {"servers": {"stuck": {**stuck, "era": "legacy", "timeout": 1.0, "connect_timeout": 1.0,
                                  "circuit": {"failures": 1000}},
                        "demo": {"command": sys.executable, "args": ["-m", "mcpwall.demo.server"]}}}


def test_a_streamable_upstream_that_never_answers_times_out(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with stuck_server() as port:
            gateway = Gateway(Config.model_validate(gateway_config({"url": f"http://127.0.0.1:{port}/mcp"})),
                              config_dir=tmp_path)
            await gateway.start()
            try:
                app = HttpFront(gateway, lifespan=False)
                answer = await call(app, "stuck__hang", 1)
                assert answer["error"]["code"] == -31504, answer
                assert (await call(app, "demo__echo", 2))["result"]["content"][0]["text"] == "x"
            finally:
                await gateway.aclose()

    run(scenario)


def test_a_legacy_sse_upstream_that_never_answers_does_not_block_the_gateway(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with stuck_server() as port:
            config = gateway_config({"url": f"http://127.0.0.1:{port}/sse", "transport": "sse"})
            gateway = Gateway(Config.model_validate(config), config_dir=tmp_path)
            await gateway.start()  # the stuck upstream's initialize must time out, not hold the start
            try:
                app = HttpFront(gateway, lifespan=False)
                assert gateway.ready.is_set()
                assert (await call(app, "demo__echo", 1))["result"]["content"][0]["text"] == "x"
                answer = await call(app, "stuck__hang", 2)
                assert answer["error"]["code"] in (-32602, -31503, -31504), answer  # unknown (never listed) or down
            finally:
                await gateway.aclose()

    run(scenario)
