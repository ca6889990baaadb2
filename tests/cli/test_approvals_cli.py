"""``mcpwall approvals``: the CLI against a real admin API served over HTTP."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from click.testing import CliRunner
from starlette.applications import Starlette

import mcpwall.config.model  # noqa: F401 - loads the guard registry before the guard modules
from mcpwall.approvals.service import CallFacts
from mcpwall.approvals.settings import ApprovalSettings
from mcpwall.cli import main
from mcpwall.gateway.call import Call, Principal
from mcpwall.gateway.events import EventBus
from mcpwall.guards.approval import ApprovalGuard
from mcpwall.pipeline.guard import GuardEnv
from support.procs import free_port

TOKEN = "cli-test-admin-token-0123456789"


class AdminServer:
    """The approvals admin API in a background thread with its own event loop."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = 0
        self.ready = threading.Event()
        self.ids: list[str] = []
        self.guard: ApprovalGuard | None = None
        self._server: uvicorn.Server | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(tmp_path),), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _main(self, tmp_path: Path) -> None:
        env = GuardEnv(events=EventBus(), config_dir=tmp_path, storage_url="memory://")
        self.guard = ApprovalGuard(ApprovalSettings.model_validate(
            {"admin_token": TOKEN, "rules": [{"tools": "*", "approvers": 1}]}), env)
        await self.guard.start()
        for principal, path in (("alice", "/tmp/a"), ("alice", "/tmp/b"), ("bob", "/tmp/c")):
            call = Call(message={"method": "tools/call", "params": {"name": "fs__delete_file",
                                                                    "arguments": {"path": path, "token": "t0p"}}},
                        principal=Principal(principal), era="legacy", protocol_version="2025-11-25",
                        transport="http", exposed_name="fs__delete_file", target="delete_file", server="fs")
            record = self.guard.service.open(CallFacts.of(call), self.guard.assess(call), labels=["destructive"],
                                             session_labels=["untrusted"])
            self.ids.append(record.id)
        app = Starlette(routes=self.guard.admin_routes())
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
        # Bind before serving: connections queue in the kernel until uvicorn accepts them.
        sock = socket.create_server(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.ready.set()
        await self._server.serve(sockets=[sock])
        await self.guard.aclose()

    def __enter__(self) -> AdminServer:
        self._thread.start()
        assert self.ready.wait(30), "the admin API did not start"
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.should_exit = True
        self._thread.join(30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AdminServer]:
    with AdminServer(tmp_path) as running:
        yield running


def run(server: AdminServer, *args: str, token: str | None = TOKEN) -> Any:
    env = {"MCPWALL_ADMIN_URL": server.url}
    if token is not None:
        env["MCPWALL_ADMIN_TOKEN"] = token
    return CliRunner().invoke(main, ["approvals", *args], env=env)


def status_of(server: AdminServer, approval_id: str) -> str:
    response = httpx.get(f"{server.url}/api/approvals/{approval_id}", headers={"Authorization": f"Bearer {TOKEN}"})
    return str(response.json()["approval"]["status"])


def test_list_shows_pending_requests(server: AdminServer) -> None:
    result = run(server, "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["ID", "STATUS", "AGE"]
    assert {line.split()[0] for line in lines[1:]} == set(server.ids)
    as_json = run(server, "list", "--json")
    assert {item["id"] for item in orjson.loads(as_json.output)} == set(server.ids)


def test_show_prints_who_what_risk_and_redacted_arguments(server: AdminServer) -> None:
    result = run(server, "show", server.ids[0])
    assert result.exit_code == 0, result.output
    assert "alice" in result.output and "fs__delete_file" in result.output and "untrusted" in result.output
    assert '"token": "[redacted]"' in result.output and "t0p" not in result.output
    assert "risk" in result.output
    detail = orjson.loads(run(server, "show", server.ids[0], "--json").output)
    assert detail["arguments"] == {"path": "/tmp/a", "token": "[redacted]"}


def test_approve_and_deny(server: AdminServer) -> None:
    approved = run(server, "approve", server.ids[0], "--approver", "carol", "--comment", "ok")
    assert approved.exit_code == 0 and f"approved {server.ids[0]}" in approved.output
    denied = run(server, "deny", server.ids[1], "--approver", "carol", "--reason", "no")
    assert denied.exit_code == 0 and f"denied {server.ids[1]}" in denied.output
    assert status_of(server, server.ids[0]) == "approved" and status_of(server, server.ids[1]) == "denied"
    again = run(server, "approve", server.ids[0], "--approver", "dave")
    assert again.exit_code == 1 and "not_pending" in again.output


def test_an_approver_cannot_approve_their_own_call(server: AdminServer) -> None:
    result = run(server, "approve", server.ids[2], "--approver", "bob")
    assert result.exit_code == 1 and "self_approval" in result.output
    assert status_of(server, server.ids[2]) == "pending"


def test_authentication_and_reachability_errors_have_their_own_exit_codes(server: AdminServer) -> None:
    assert run(server, "list", token="wrong-token-0123456789").exit_code == 3
    assert run(server, "list", token=None).exit_code == 3
    unreachable = CliRunner().invoke(main, ["approvals", "--admin-url", f"http://127.0.0.1:{free_port()}",
                                            "--token", TOKEN, "list"])
    assert unreachable.exit_code == 4


def test_the_admin_address_can_come_from_the_config(server: AdminServer, tmp_path: Path) -> None:
    config = tmp_path / "mcpwall.yaml"
    config.write_text(f"admin: {{host: 127.0.0.1, port: {server.port}}}\n")
    result = CliRunner().invoke(main, ["approvals", "-c", str(config), "--token", TOKEN, "list"])
    assert result.exit_code == 0 and server.ids[0] in result.output
