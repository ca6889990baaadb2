"""The approvals admin API: authentication, listing, showing, approving and denying."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

import mcpwall.config.model  # noqa: F401 - loads the guard registry before the guard modules
from mcpwall.approvals.service import CallFacts
from mcpwall.approvals.settings import ApprovalSettings
from mcpwall.gateway.call import Call, Principal
from mcpwall.gateway.events import EventBus
from mcpwall.guards.approval import ApprovalGuard
from mcpwall.pipeline.guard import GuardEnv

pytestmark = pytest.mark.anyio
SHARED = "shared-admin-token-0123456789"
BOB = "bob-personal-token-0123456789"


def call_for(principal: str = "alice", args: dict[str, Any] | None = None) -> Call:
    return Call(message={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                         "params": {"name": "fs__delete_file", "arguments": args or {"path": "/tmp/x"}}},
                principal=Principal(principal), era="legacy", protocol_version="2025-11-25", transport="http",
                server="fs", target="delete_file", exposed_name="fs__delete_file")


class Admin:
    def __init__(self, guard: ApprovalGuard, client: httpx.AsyncClient) -> None:
        self.guard, self.client = guard, client

    def open(self, principal: str = "alice", args: dict[str, Any] | None = None) -> str:
        call = call_for(principal, args)
        record = self.guard.service.open(CallFacts.of(call), self.guard.assess(call), labels=["destructive"],
                                         session_labels=[])
        return record.id


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    env = GuardEnv(events=EventBus(), config_dir=tmp_path, storage_url="memory://")
    guard = ApprovalGuard(ApprovalSettings.model_validate({
        "admin_token": SHARED, "approver_tokens": {"bob": BOB},
        "max_pending_per_principal": 1000, "rules": [{"tools": "*delete*", "approvers": 1}]}), env)
    await guard.start()
    app = Starlette(routes=guard.admin_routes())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin") as client:
        yield Admin(guard, client)
    await guard.aclose()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_every_endpoint_needs_a_valid_token(admin: Admin) -> None:
    approval_id = admin.open()
    for method, path in (("GET", "/api/approvals"), ("GET", f"/api/approvals/{approval_id}"),
                         ("POST", f"/api/approvals/{approval_id}/approve"),
                         ("POST", f"/api/approvals/{approval_id}/deny")):
        for headers in ({}, auth("wrong-token-0123456789"), {"Authorization": SHARED}):
            response = await admin.client.request(method, path, headers=headers, json={"approver": "carol"})
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
    assert admin.guard.service.get(approval_id).pending  # type: ignore[union-attr]


async def test_list_and_show(admin: Admin) -> None:
    first = admin.open(args={"path": "/tmp/a", "token": "abc"})
    response = await admin.client.get("/api/approvals", headers=auth(SHARED))
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    [item] = response.json()["approvals"]
    assert item["id"] == first and item["status"] == "pending" and item["tool"] == "fs__delete_file"
    assert item["arguments"] == {"path": "/tmp/a", "token": "[redacted]"}
    assert item["remaining_seconds"] > 0 and "cache_key" not in item
    shown = await admin.client.get(f"/api/approvals/{first}", headers=auth(BOB))
    assert shown.json()["approval"]["principal"] == "alice"
    missing = await admin.client.get("/api/approvals/nope", headers=auth(SHARED))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = await admin.client.get("/api/approvals?status=bogus", headers=auth(SHARED))
    assert bad.status_code == 400
    everything = await admin.client.get("/api/approvals?status=all&limit=5", headers=auth(SHARED))
    assert len(everything.json()["approvals"]) == 1


async def test_approve_with_the_shared_token_names_the_approver(admin: Admin) -> None:
    approval_id = admin.open()
    nameless = await admin.client.post(f"/api/approvals/{approval_id}/approve", headers=auth(SHARED))
    assert nameless.status_code == 400 and nameless.json()["error"]["code"] == "approver_required"
    response = await admin.client.post(f"/api/approvals/{approval_id}/approve", headers=auth(SHARED),
                                       json={"approver": "carol", "comment": "ok"})
    assert response.status_code == 200 and response.json()["status"] == "approved"
    assert response.json()["approval"]["decided_by"] == "carol"
    again = await admin.client.post(f"/api/approvals/{approval_id}/deny", headers=auth(SHARED),
                                    json={"approver": "dave"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_pending"


async def test_a_personal_token_proves_the_approver(admin: Admin) -> None:
    approval_id = admin.open()
    impostor = await admin.client.post(f"/api/approvals/{approval_id}/approve", headers=auth(BOB),
                                       json={"approver": "carol"})
    assert impostor.status_code == 403 and impostor.json()["error"]["code"] == "token_mismatch"
    response = await admin.client.post(f"/api/approvals/{approval_id}/deny", headers=auth(BOB),
                                       json={"reason": "too risky"})
    assert response.status_code == 200
    approval = response.json()["approval"]
    assert approval["status"] == "denied" and approval["decided_by"] == "bob"
    assert approval["decision_reason"] == "too risky"


async def test_separation_of_duties_through_the_api(admin: Admin) -> None:
    approval_id = admin.open(principal="bob")
    response = await admin.client.post(f"/api/approvals/{approval_id}/approve", headers=auth(BOB))
    assert response.status_code == 403 and response.json()["error"]["code"] == "self_approval"
    assert admin.guard.service.get(approval_id).pending  # type: ignore[union-attr]


async def test_malformed_bodies_are_refused(admin: Admin) -> None:
    approval_id = admin.open()
    for body in (b"[1,2]", b"{not json", b'{"approver": 7}', b'{"approver": "a\\nb"}'):
        response = await admin.client.post(f"/api/approvals/{approval_id}/approve", headers=auth(SHARED),
                                           content=body)
        assert response.status_code == 400, body
    huge = await admin.client.post(f"/api/approvals/{approval_id}/approve", headers=auth(SHARED),
                                   content=b"{" + b" " * 70_000 + b"}")
    assert huge.status_code == 413


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(body=st.binary(max_size=300))
async def test_no_body_makes_the_api_fail_open_or_crash(admin: Admin, body: bytes) -> None:
    approval_id = admin.open(args={"n": len(body), "b": body.hex()})
    with anyio.fail_after(10):
        response = await admin.client.post(f"/api/approvals/{approval_id}/approve", headers=auth(SHARED),
                                           content=body)
    assert response.status_code in (200, 400)
    assert "error" in response.json() or response.json()["approval"]["decided_by"]
