"""The gateway core end to end: real upstreams, real SDK clients, both eras, HTTP and stdio."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters, types
from mcp.shared.exceptions import MCPError

from support.nodeenv import NodeEnv
from support.procs import ManagedProcess, free_port
from support.waits import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SDK_UPSTREAM = str(FIXTURES / "sdk_upstream.py")
PAGED_UPSTREAM = str(FIXTURES / "paged_upstream.py")
MODES = ["legacy", "2026-07-28"]


def sdk_stdio(record: Path | None = None, **extra: Any) -> dict[str, Any]:
    args = [SDK_UPSTREAM, "stdio"] + (["--record", str(record)] if record else [])
    return {"command": sys.executable, "args": args, **extra}


def result_text(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


@pytest.mark.parametrize("mode", MODES)
async def test_tools_prompts_resources_through_http(gateway_factory: Any, tmp_path: Path, mode: str) -> None:
    record = tmp_path / "calls.jsonl"
    gw = gateway_factory({"servers": {"sdk": sdk_stdio(record)}})
    async with Client(gw.url, mode=mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"sdk__echo", "sdk__slow", "sdk__sample"} <= names
        assert result_text(await client.call_tool("sdk__echo", {"text": "hi"})) == "hi"
        prompt = await client.get_prompt("sdk__greet", {"name": "Ada"})
        assert "Ada" in prompt.messages[0].content.text  # type: ignore[union-attr]
        contents = (await client.read_resource("test://note")).contents
        assert contents[0].text == "a note"  # type: ignore[union-attr]
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("sdk__missing", {})
        assert unknown.value.error.code == -32602
    # The upstream saw the un-namespaced call with the client's arguments.
    assert json.loads(record.read_text().splitlines()[0]) == {"tool": "echo", "args": {"text": "hi"}}


@pytest.mark.parametrize("mode", MODES)
async def test_stdio_front(tmp_path: Path, mode: str) -> None:
    config = tmp_path / "mcpwall.yaml"
    config.write_text(json.dumps({"servers": {"sdk": sdk_stdio()}}))
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcpwall", "stdio", "-c", str(config)],
                                   cwd=str(tmp_path))
    async with Client(params, mode=mode) as client:
        assert "sdk__echo" in {t.name for t in (await client.list_tools()).tools}
        assert result_text(await client.call_tool("sdk__echo", {"text": "via stdio"})) == "via stdio"


async def test_wrap_is_transparent(tmp_path: Path) -> None:
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "mcpwall", "wrap", "--", sys.executable, SDK_UPSTREAM, "stdio"],
                                   cwd=str(tmp_path))
    async with Client(params, mode="legacy") as client:
        assert client.server_info.name == "sdk-upstream"
        names = {t.name for t in (await client.list_tools()).tools}
        assert "echo" in names and not any("__" in n for n in names)
        assert result_text(await client.call_tool("echo", {"text": "wrapped"})) == "wrapped"


async def test_progress_is_relayed(gateway_factory: Any) -> None:
    gw = gateway_factory({"servers": {"sdk": sdk_stdio()}})
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with Client(gw.url, mode="legacy") as client:
        result = await client.call_tool("sdk__progress", {}, progress_callback=on_progress)
    assert result_text(result) == "progressed"
    assert seen == [1, 2, 3]


async def test_sampling_and_elicitation_relay_to_legacy_client(gateway_factory: Any) -> None:
    gw = gateway_factory({"servers": {"sdk": sdk_stdio(era="legacy")}})
    asked: list[str] = []

    async def sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append(params.messages[0].content.text)  # type: ignore[union-attr]
        return types.CreateMessageResult(role="assistant", model="test-model",
                                         content=types.TextContent(type="text", text="forty-two"))

    async def elicitation(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async with Client(gw.url, mode="legacy", sampling_callback=sampling, elicitation_callback=elicitation) as client:
        assert result_text(await client.call_tool("sdk__sample", {"question": "meaning?"})) == "model said: forty-two"
        assert result_text(await client.call_tool("sdk__ask_name", {})) == "hello Ada (accept)"
    assert asked == ["meaning?"]


async def test_legacy_push_during_modern_call_fails_at_once(gateway_factory: Any) -> None:
    gw = gateway_factory({"servers": {"sdk": sdk_stdio(era="legacy", timeout="60s")}})
    async with Client(gw.url, mode="2026-07-28") as client:
        with anyio.fail_after(20), pytest.raises(MCPError) as refused:
            # The bridge is impossible: the upstream's sampling request is refused at once, and the
            # upstream turns that into the call's error — a clear error, never a hang.
            await client.call_tool("sdk__sample", {"question": "meaning?"})
    assert refused.value.error.code == -31501


async def test_list_changed_reaches_legacy_client(gateway_factory: Any) -> None:
    gw = gateway_factory({"servers": {"sdk": sdk_stdio(era="legacy")}})
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with Client(gw.url, mode="legacy", message_handler=on_message) as client:
        assert "sdk__extra" not in {t.name for t in (await client.list_tools()).tools}
        await client.call_tool("sdk__add_tool", {})
        with anyio.fail_after(15):
            await changed.wait()
        assert "sdk__extra" in {t.name for t in (await client.list_tools()).tools}


async def test_pagination_across_two_upstreams(gateway_factory: Any) -> None:
    servers = {name: {"command": sys.executable, "args": [PAGED_UPSTREAM, name, "7", "3"]} for name in ("a", "b")}
    gw = gateway_factory({"servers": servers})
    async with Client(gw.url, mode="legacy") as client:
        names: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = await client.list_tools(cursor=cursor)
            names += [t.name for t in page.tools]
            pages += 1
            cursor = page.next_cursor
            if not cursor:
                break
        assert sorted(names) == sorted(f"{s}__{s}-{i}" for s in "ab" for i in range(7))
        assert pages == 3
        first = await client.list_tools()
        assert first.next_cursor
        with pytest.raises(MCPError) as tampered:
            await client.list_tools(cursor=first.next_cursor[:-2] + "AA")
        assert tampered.value.error.code == -32602
        assert result_text(await client.call_tool("b__b-6", {})) == "called b-6"


async def test_cancellation_reaches_upstream(gateway_factory: Any, tmp_path: Path) -> None:
    record = tmp_path / "calls.jsonl"
    gw = gateway_factory({"servers": {"sdk": sdk_stdio(record)}})
    async with Client(gw.url, mode="legacy") as client:
        with anyio.move_on_after(1.5):
            await client.call_tool("sdk__slow", {"seconds": 30})
        await eventually(lambda: record.exists() and '"cancelled": true' in record.read_text(), timeout=15,
                         what="the upstream to record the cancellation")
        assert result_text(await client.call_tool("sdk__echo", {"text": "still alive"})) == "still alive"


async def test_upstream_crash_mid_call_then_restart(gateway_factory: Any) -> None:
    gw = gateway_factory({"servers": {"sdk": sdk_stdio(restart={"initial_backoff": "0s"})}})
    async with Client(gw.url, mode="legacy") as client:
        with pytest.raises(MCPError) as crashed:
            await client.call_tool("sdk__crash", {})
        assert crashed.value.error.code == -31503
        assert result_text(await client.call_tool("sdk__echo", {"text": "back"})) == "back"


async def test_upstream_hang_times_out(gateway_factory: Any) -> None:
    gw = gateway_factory({"servers": {"sdk": sdk_stdio(timeout="1s")}})
    async with Client(gw.url, mode="2026-07-28") as client:
        with anyio.fail_after(20), pytest.raises(MCPError) as hung:
            await client.call_tool("sdk__slow", {"seconds": 60})
        assert hung.value.error.code == -31504


async def test_circuit_opens_and_recovers(gateway_factory: Any, tmp_path: Path) -> None:
    port = free_port()
    upstream = ManagedProcess([sys.executable, SDK_UPSTREAM, "http", "--port", str(port)],
                              log_path=tmp_path / "upstream.log")
    config = {"servers": {"web": {"url": f"http://127.0.0.1:{port}/mcp", "connect_timeout": "2s",
                                  "circuit": {"failures": 2, "reset_after": "1s"},
                                  "restart": {"initial_backoff": "0s", "max_backoff": "0s"}}}}
    with upstream:
        upstream.wait_http(f"http://127.0.0.1:{port}/mcp", timeout=30, ok=lambda s: 200 <= s < 500)
        gw = gateway_factory(config)
        async with Client(gw.url, mode="2026-07-28") as client:
            assert result_text(await client.call_tool("web__echo", {"text": "up"})) == "up"
    # The upstream is gone: failures open the circuit, which then answers at once.
    async with Client(gw.url, mode="2026-07-28") as client:
        codes = []
        for _ in range(3):
            with pytest.raises(MCPError) as down:
                await client.call_tool("web__echo", {"text": "x"})
            codes.append(down.value.error)
        assert all(e.code == -31503 for e in codes)
        assert "circuit open" in codes[-1].message
        restarted = ManagedProcess([sys.executable, SDK_UPSTREAM, "http", "--port", str(port)],
                                   log_path=tmp_path / "upstream2.log")
        with restarted:
            restarted.wait_http(f"http://127.0.0.1:{port}/mcp", timeout=30, ok=lambda s: 200 <= s < 500)
            outcome: list[str] = []

            async def probe() -> bool:  # the half-open probe succeeds once reset_after has passed
                try:
                    outcome.append(result_text(await client.call_tool("web__echo", {"text": "recovered"})))
                except MCPError:
                    return False
                return True

            for _ in range(100):  # at most ~20 s: each attempt is a real call; the breaker decides
                if await probe():
                    break
                await anyio.sleep(0.2)
            assert outcome == ["recovered"]


@pytest.mark.node
@pytest.mark.parametrize("mode", MODES)
async def test_server_everything_over_stdio(gateway_factory: Any, node_env: NodeEnv, mode: str) -> None:
    command = node_env.command("mcp-server-everything")
    gw = gateway_factory({"servers": {"everything": {"command": command[0], "args": command[1:]}}})
    async with Client(gw.url, mode=mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "everything__echo" in names
        result = await client.call_tool("everything__echo", {"message": "hello"})
        assert "hello" in result_text(result)
        assert (await client.list_prompts()).prompts
        resources = (await client.list_resources()).resources
        assert resources
        read = await client.read_resource(str(resources[0].uri))
        assert read.contents


@pytest.mark.node
async def test_server_everything_over_http(gateway_factory: Any, node_env: NodeEnv, tmp_path: Path) -> None:
    port = free_port()
    env = node_env.env()
    env["PORT"] = str(port)
    upstream = ManagedProcess(node_env.command("mcp-server-everything", "streamableHttp"),
                              log_path=tmp_path / "everything.log", env=env)
    with upstream:
        upstream.wait_http(f"http://127.0.0.1:{port}/mcp", timeout=60, ok=lambda s: 200 <= s < 500)
        gw = gateway_factory({"servers": {"everything": {"url": f"http://127.0.0.1:{port}/mcp"}}})
        for mode in MODES:
            async with Client(gw.url, mode=mode) as client:
                result = await client.call_tool("everything__get-sum", {"a": 2, "b": 3})
                assert "5" in result_text(result)


@pytest.mark.node
async def test_server_filesystem(gateway_factory: Any, node_env: NodeEnv, tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir()
    (root / "hello.txt").write_text("hello from disk")
    command = node_env.command("mcp-server-filesystem", str(root))
    gw = gateway_factory({"servers": {"fs": {"command": command[0], "args": command[1:]}}})
    async with Client(gw.url, mode="legacy") as client:
        result = await client.call_tool("fs__read_text_file", {"path": str(root / "hello.txt")})
        assert result_text(result) == "hello from disk"
        listing = await client.call_tool("fs__list_directory", {"path": str(root)})
        assert "hello.txt" in result_text(listing)


async def test_bad_input_gets_clear_errors(gateway_factory: Any) -> None:
    gw = gateway_factory({"servers": {"sdk": sdk_stdio()}, "guards": {"limits": {"max_message_bytes": "64KiB"}}})
    both = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    modern = {**both, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    async with httpx.AsyncClient(timeout=20) as http:
        cases: list[tuple[dict[str, str], bytes, int, int | None]] = [
            (both, b"{not json", 400, -32700),
            (both, b'{"jsonrpc":"2.0","id":1}', 400, -32600),
            (both, b"x" * (70 * 1024), 413, None),
            ({**both, "content-type": "text/plain"}, b"{}", 415, None),
            ({"content-type": "application/json", "accept": "text/html"}, b"{}", 406, None),
            ({**both, "origin": "http://evil.example.com"}, b"{}", 403, None),
            ({**both, "host": "evil.example.com"}, b"{}", 421, None),
            ({**both, "mcp-session-id": "nope"}, b'{"jsonrpc":"2.0","id":1,"method":"ping"}', 404, None),
            (both, b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', 400, -32600),
            ({**modern, "mcp-method": "prompts/list"},
             json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}}).encode(),
             400, -32020),
            ({**modern, "mcp-protocol-version": "2099-01-01"},
             json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {
                 "_meta": {**meta, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}}}).encode(),
             400, -32022),
            ({**modern, "mcp-method": "no/such"},
             json.dumps({"jsonrpc": "2.0", "id": 1, "method": "no/such", "params": {"_meta": meta}}).encode(),
             404, -32601),
            (modern, b"[" * 70 + b"]" * 70, 400, -32600),
        ]
        for headers, body, status, code in cases:
            response = await http.post(gw.url, content=body, headers=headers)
            assert response.status_code == status, (headers, body[:60], response.text)
            assert "server" not in response.headers
            if code is not None:
                assert response.json()["error"]["code"] == code
            for leak in ("Traceback", "File \"", "uvicorn", "starlette", "python", "mcpwall/"):
                assert leak not in response.text
        assert (await http.get(gw.url, headers={"accept": "text/event-stream"})).status_code == 405
        assert (await http.delete(gw.url)).status_code == 405
        assert (await http.put(gw.url, content=b"{}")).status_code == 405


@pytest.mark.node
async def test_server_everything_over_legacy_sse(gateway_factory: Any, node_env: NodeEnv, tmp_path: Path) -> None:
    port = free_port()
    env = node_env.env()
    env["PORT"] = str(port)
    upstream = ManagedProcess(node_env.command("mcp-server-everything", "sse"),
                              log_path=tmp_path / "everything-sse.log", env=env)
    with upstream:
        # GET /sse never ends, so readiness is the port accepting connections.
        upstream.wait_until(lambda: _port_open(port), timeout=60, what=f"listening on {port}")
        gw = gateway_factory({"servers": {"old": {"url": f"http://127.0.0.1:{port}/sse", "transport": "sse"}}})
        for mode in MODES:
            async with Client(gw.url, mode=mode) as client:
                result = await client.call_tool("old__echo", {"message": "over sse"})
                assert "over sse" in result_text(result)


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_upstream_environment_is_minimal(gateway_factory: Any) -> None:
    gw = gateway_factory({"servers": {"sdk": sdk_stdio(env={"GIVEN": "yes"})}},
                         env={**os.environ, "GATEWAY_SECRET": "hunter2"})
    async with Client(gw.url, mode="legacy") as client:
        leaked = json.loads(result_text(await client.call_tool("sdk__env", {"name": "GATEWAY_SECRET"})))
        given = json.loads(result_text(await client.call_tool("sdk__env", {"name": "GIVEN"})))
    assert leaked["set"] is False
    assert given["value"] == "yes"


async def test_shutdown_leaves_no_upstream_processes(tmp_path: Path) -> None:
    from support.gateway import run_gateway

    with run_gateway({"servers": {"sdk": sdk_stdio()}}, workdir=tmp_path) as gw:
        async with Client(gw.url, mode="legacy") as client:
            pid = json.loads(result_text(await client.call_tool("sdk__env", {"name": "X"})))["pid"]
        assert _alive(pid)
    # run_gateway stopped the gateway with SIGTERM: its upstream must be gone and reaped.
    await eventually(lambda: not _alive(pid), timeout=15, what=f"upstream process {pid} to be gone")


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


async def test_legacy_sse_front_when_enabled(gateway_factory: Any) -> None:
    from mcp.client.sse import sse_client

    gw = gateway_factory({"listen": {"legacy_sse": True}, "servers": {"sdk": sdk_stdio()}})
    async with Client(sse_client(f"{gw.base_url}/sse"), mode="legacy") as client:
        assert "sdk__echo" in {t.name for t in (await client.list_tools()).tools}
        assert result_text(await client.call_tool("sdk__echo", {"text": "old transport"})) == "old transport"
    async with httpx.AsyncClient() as http:  # off by default
        off = gateway_factory({"servers": {"sdk": sdk_stdio()}})
        assert (await http.get(f"{off.base_url}/sse")).status_code == 404


async def test_upstream_url_to_cloud_metadata_is_refused(gateway_factory: Any) -> None:
    gw = gateway_factory({"servers": {"meta": {"url": "http://169.254.169.254/mcp", "connect_timeout": "2s"},
                                      "sdk": sdk_stdio()}})
    async with Client(gw.url, mode="legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "sdk__echo" in names and not any(n.startswith("meta__") for n in names)
    assert "upstream meta refused by the egress rules" in gw.output()


async def test_requests_in_flight_are_capped(gateway_factory: Any, tmp_path: Path) -> None:
    record = tmp_path / "calls.jsonl"
    gw = gateway_factory({"servers": {"sdk": sdk_stdio(record)}, "guards": {"limits": {"max_in_flight": 1}}})
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}

    def call(rid: int, name: str, arguments: dict[str, Any]) -> tuple[dict[str, str], bytes]:
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
                   "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": name}
        body = {"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                "params": {"name": name, "arguments": arguments, "_meta": meta}}
        return headers, json.dumps(body).encode()

    async with httpx.AsyncClient(timeout=30) as http, anyio.create_task_group() as tg:
        first: list[httpx.Response] = []

        async def slow() -> None:
            headers, body = call(1, "sdk__slow", {"seconds": 2})
            first.append(await http.post(gw.url, content=body, headers=headers))

        tg.start_soon(slow)
        await eventually(lambda: record.exists() and '"slow"' in record.read_text(), timeout=20,
                         what="the first call to reach the upstream")
        headers, body = call(2, "sdk__echo", {"text": "second"})
        refused = await http.post(gw.url, content=body, headers=headers)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == -32600
    assert first[0].status_code == 200 and "result" in first[0].json()
    # The slot is released when a call completes: the next call goes through.
    headers, body = call(3, "sdk__echo", {"text": "third"})
    async with httpx.AsyncClient(timeout=30) as http:
        third = (await http.post(gw.url, content=body, headers=headers)).json()
    assert third["result"]["content"][0]["text"] == "third"
