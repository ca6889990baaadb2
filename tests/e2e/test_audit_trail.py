"""The audit trail end to end: calls through the real gateway, then ``mcpwall audit verify``.

Also: the admin port's metrics read by the Prometheus parser, a signed alert delivered to a
webhook receiver on loopback, and a gateway killed with SIGKILL in the middle of traffic whose
chain still verifies.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from mcp import Client, types
from mcp.shared.exceptions import MCPError
from prometheus_client.parser import text_string_to_metric_families

from mcpwall.webhook_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SDK_UPSTREAM = str(Path(__file__).resolve().parents[1] / "fixtures" / "sdk_upstream.py")
HOOK_SECRET = "e2e-webhook-secret"
TOKEN = "ghp_" + "Qw3r" * 9


def mcpwall(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcpwall", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def records(workdir: Path) -> list[dict[str, Any]]:
    db = sqlite3.connect(workdir / "mcpwall-audit.db")
    try:
        return [orjson.loads(body) for (body,) in db.execute("SELECT body FROM audit_records ORDER BY seq")]
    finally:
        db.close()


class Hook:
    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Event()
        self.url = ""


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.deliveries.append((dict(self.headers.items()), body))
            state.arrived.set()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


def _config(**audit: Any) -> dict[str, Any]:
    return {"servers": {"sdk": {"command": sys.executable, "args": [SDK_UPSTREAM, "stdio"]}},
            "storage": {"url": "sqlite:///mcpwall.db"}, "guards": {"audit": audit}}


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_calls_are_audited_and_the_chain_verifies(gateway_factory: Any, hook: Hook, mode: str) -> None:
    gw = gateway_factory(_config(durability="sync", alerts={"webhooks": [{"url": hook.url, "secret": HOOK_SECRET}]}))
    async with Client(gw.url, mode=mode) as client:
        await client.list_tools()
        result = await client.call_tool("sdk__echo", {"text": f"token {TOKEN}"})
        assert isinstance(result.content[0], types.TextContent)
        with pytest.raises(MCPError):
            await client.call_tool("sdk__missing", {})

    # durability: sync — the records are committed before the answers came back.
    audited = records(gw.workdir)
    calls = [r for r in audited if r["kind"] == "call" and r.get("method") == "tools/call"]
    echo = next(r for r in calls if r.get("target") == "echo")
    assert echo["decision"] == "allow" and echo["upstream"] == "sdk" and echo["principal"]["id"] == "anonymous"
    assert echo["era"] == ("legacy" if mode == "legacy" else "modern") and echo["transport"] == "http"
    assert echo["result"]["bytes"] > 0 and echo["result"]["digest"]
    assert TOKEN not in orjson.dumps(audited).decode()
    assert any(r.get("exposed_name") == "sdk__missing" and r["decision"] != "allow" for r in calls)
    assert any(r.get("method") == "tools/list" and r.get("listed", 0) >= 1 for r in audited)

    verify = mcpwall("audit", "verify", "-c", str(gw.config_path), cwd=gw.workdir)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    async with httpx.AsyncClient(trust_env=False) as http:
        metrics = (await http.get(f"{gw.admin_url}/metrics")).text
        alerts = (await http.get(f"{gw.admin_url}/alerts")).json()
    samples = {s.name: s.value for f in text_string_to_metric_families(metrics) for s in f.samples if not s.labels}
    assert samples["mcpwall_audit_sink_up"] == 1 and samples["mcpwall_audit_records_written_total"] >= len(calls)
    assert "new_tool" in {a["rule"] for a in alerts["alerts"]}

    assert await anyio.to_thread.run_sync(hook.arrived.wait, 30), "no alert reached the webhook"
    headers, body = hook.deliveries[0]
    assert verify_signature(HOOK_SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])

    # Tampering with the running gateway's store is caught.
    db = sqlite3.connect(gw.workdir / "mcpwall-audit.db", isolation_level=None)
    db.execute("UPDATE audit_records SET body = replace(body, '\"allow\"', '\"deny\"') WHERE seq = ?",
               (next(r["seq"] for r in calls),))
    db.close()
    tampered = mcpwall("audit", "verify", "-c", str(gw.config_path), "--json", cwd=gw.workdir)
    assert tampered.returncode == 1
    assert orjson.loads(tampered.stdout)["first_bad"]["kind"] == "edited"


async def test_kill_9_during_traffic_leaves_a_verifiable_chain(gateway_factory: Any) -> None:
    gw = gateway_factory(_config())
    done = 0
    busy = anyio.Event()

    async def caller(client: Client) -> None:
        nonlocal done
        while True:
            await client.call_tool("sdk__echo", {"text": "x" * 100})
            done += 1
            if done >= 300:
                busy.set()

    with pytest.raises(BaseException):  # noqa: B017 - the connections die with the gateway
        async with Client(gw.url, mode="2026-07-28") as client, anyio.create_task_group() as tasks:
            for _ in range(8):
                tasks.start_soon(caller, client)
            with anyio.fail_after(60):
                await busy.wait()
            os.kill(gw.process.pid, signal.SIGKILL)  # mid-traffic: batches are being written
            await anyio.to_thread.run_sync(gw.process.proc.wait, 30)
            raise RuntimeError("killed")
    assert len(records(gw.workdir)) > 0
    verify = mcpwall("audit", "verify", "-c", str(gw.config_path), cwd=gw.workdir)
    assert verify.returncode == 0, verify.stdout + verify.stderr
