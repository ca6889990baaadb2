"""The approval webhook: signed deliveries, retries, and what the payload carries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

import mcpwall.config.model  # noqa: F401 - loads the guard registry before the guard modules
from mcpwall.approvals import webhook as webhook_module
from mcpwall.approvals.service import CallFacts
from mcpwall.approvals.settings import ApprovalSettings, WebhookSettings
from mcpwall.approvals.webhook import WebhookSender
from mcpwall.gateway.call import Call, Principal
from mcpwall.gateway.events import EventBus
from mcpwall.guards.approval import ApprovalGuard
from mcpwall.pipeline.guard import GuardEnv
from mcpwall.webhook_signature import sign, verify_signature

pytestmark = pytest.mark.anyio
SECRET = "webhook-secret-0123456789"


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook_module, "_BACKOFF", 0.0)


class Receiver:
    def __init__(self, failures: int = 0, expect: int = 1) -> None:
        self.failures = failures
        self.requests: list[httpx.Request] = []
        self.expect = expect
        self.got_all = anyio.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if len(self.requests) >= self.expect:
            self.got_all.set()
        if len(self.requests) <= self.failures:
            return httpx.Response(503)
        return httpx.Response(204)


def test_signatures_verify_and_expire() -> None:
    body = b'{"event":"x"}'
    signature = sign(SECRET, "1800000000", body)
    assert verify_signature(SECRET, "1800000000", body, signature, now=1_800_000_010)
    assert not verify_signature(SECRET, "1800000000", body + b" ", signature, now=1_800_000_010)
    assert not verify_signature("another-secret-0123456789", "1800000000", body, signature, now=1_800_000_010)
    assert not verify_signature(SECRET, "1800000000", body, signature, now=1_800_001_000)
    assert not verify_signature(SECRET, "soon", body, signature)


async def test_deliveries_are_signed_and_retried_with_one_delivery_id() -> None:
    receiver = Receiver(failures=2)
    sender = WebhookSender(WebhookSettings(url="https://hooks.example/approvals", secret=SECRET, retries=3),
                           transport=httpx.MockTransport(receiver))
    task = sender.send("approval.requested", {"approval": {"id": "a1"}})
    assert task is not None
    with anyio.fail_after(10):
        assert await task
    await sender.aclose()
    assert len(receiver.requests) == 3
    assert len({r.headers["x-mcpwall-delivery"] for r in receiver.requests}) == 1
    last = receiver.requests[-1]
    assert last.headers["x-mcpwall-event"] == "approval.requested"
    assert verify_signature(SECRET, last.headers["x-mcpwall-timestamp"], last.content,
                            last.headers["x-mcpwall-signature"])
    assert orjson.loads(last.content) == {"event": "approval.requested", "approval": {"id": "a1"}}


async def test_a_dead_receiver_gives_up_after_the_retries() -> None:
    receiver = Receiver(failures=100)
    sender = WebhookSender(WebhookSettings(url="https://hooks.example/a", secret=SECRET, retries=2),
                           transport=httpx.MockTransport(receiver))
    task = sender.send("approval.requested", {})
    assert task is not None
    with anyio.fail_after(10):
        assert not await task
    await sender.aclose()
    assert len(receiver.requests) == 3


async def test_unselected_events_are_not_sent() -> None:
    sender = WebhookSender(WebhookSettings(url="https://hooks.example/a", secret=SECRET,
                                           events=["approval.requested"]),
                           transport=httpx.MockTransport(Receiver()))
    assert sender.send("approval.decided", {}) is None
    await sender.aclose()


async def test_each_new_request_is_announced(tmp_path: Path) -> None:
    receiver = Receiver(expect=2)
    env = GuardEnv(events=EventBus(), config_dir=tmp_path, storage_url="memory://")
    guard = ApprovalGuard(ApprovalSettings.model_validate({
        "rules": [{"tools": "*"}], "webhook": {"url": "https://hooks.example/a", "secret": SECRET}}), env)
    await guard.start()
    assert guard.service.webhook is not None
    guard.service.webhook._client = httpx.AsyncClient(transport=httpx.MockTransport(receiver))
    call = Call(message={"method": "tools/call", "params": {"name": "x__t", "arguments": {"password": "p"}}},
                principal=Principal("alice"), era="legacy", protocol_version="2025-11-25", transport="http",
                exposed_name="x__t", target="t", server="x")
    record = guard.service.open(CallFacts.of(call), guard.assess(call), labels=[], session_labels=[])
    guard.service.decide(record.id, "bob", True)
    with anyio.fail_after(10):
        await receiver.got_all.wait()
    events: list[dict[str, Any]] = [orjson.loads(r.content) for r in receiver.requests]
    assert [e["event"] for e in events] == ["approval.requested", "approval.decided"]
    assert events[0]["approval"]["id"] == record.id and events[0]["approval"]["arguments"] == {"password": "[redacted]"}
    assert events[1]["approval"]["status"] == "approved"
    await guard.aclose()


def test_webhook_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        WebhookSettings(url="ftp://x", secret=SECRET)
    with pytest.raises(ValueError):
        WebhookSettings(url="https://x", secret="short")
