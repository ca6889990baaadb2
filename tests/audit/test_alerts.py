"""Alert rules, flood control, and signed webhook delivery to a real receiver on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from mcpwall.audit.alerts import AlertEngine, capability_classes
from mcpwall.audit.redact import Redactor
from mcpwall.audit.settings import AlertSettings
from mcpwall.gateway.call import Call, Principal
from mcpwall.pipeline.guard import Outcome
from mcpwall.webhook_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify_signature

SECRET = "whsec-test-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def engine(clock: Clock | None = None, **settings: Any) -> AlertEngine:
    return AlertEngine(AlertSettings.model_validate({"log": False, **settings}), Redactor(), clock=clock or Clock())


def tool_call(tool: str, principal: str = "alice", definition: dict[str, Any] | None = None) -> Call:
    return Call(message={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool}},
                principal=Principal(principal), era="legacy", protocol_version="2025-11-25", transport="http",
                server="fs", target=tool, definition=definition)


# -- rules --------------------------------------------------------------------------------------


def test_auth_failure_burst_per_source_within_window() -> None:
    clock = Clock()
    alerts = engine(clock, rules={"auth_failure_burst": {"count": 3, "window": "10s"}})
    for _ in range(2):
        alerts.on_event({"kind": "auth.failure", "source": "198.51.100.1"})
        alerts.on_event({"kind": "auth.failure", "source": "198.51.100.2"})
    clock.now += 11  # the first two fall out of the window
    alerts.on_event({"kind": "auth.failure", "source": "198.51.100.1"})
    assert not alerts.recent
    alerts.on_event({"kind": "auth.failure", "source": "198.51.100.1"})
    alerts.on_event({"kind": "auth.failure", "source": "198.51.100.1"})
    (alert,) = alerts.recent
    assert (alert.rule, alert.subject, alert.details["failures"]) == ("auth_failure_burst", "198.51.100.1", 3)


def test_event_rules() -> None:
    alerts = engine()
    alerts.on_event({"kind": "pin.changed", "upstream": "fs", "tool": "read_file"})
    alerts.on_event({"kind": "finding", "guard": "dlp", "type": "aws_key", "severity": "high", "match": "AKIA..."})
    alerts.on_event({"kind": "circuit.open", "upstream": "search"})
    alerts.on_event({"kind": "upstream.restart", "upstream": "search"})  # not an alert
    assert [(a.rule, a.severity, a.subject) for a in alerts.recent] == [
        ("pin_change", "critical", "fs/read_file"), ("finding", "critical", "dlp:aws_key:-"),
        ("circuit_open", "warning", "search")]


def test_first_time_tool_and_capability_class() -> None:
    alerts = engine()
    read = {"name": "read_file", "annotations": {"readOnlyHint": True}}
    alerts.observe_call(tool_call("read_file", definition=read), Outcome("allow"))
    alerts.observe_call(tool_call("read_file", definition=read), Outcome("allow"))
    alerts.observe_call(tool_call("read_file", "bob", definition=read), Outcome("allow"))
    write = {"annotations": {"destructiveHint": False}}
    alerts.observe_call(tool_call("write_file", definition=write), Outcome("allow"))
    got = [(a.rule, a.subject) for a in alerts.recent]
    assert got == [("new_tool", "fs/read_file"), ("new_capability", "alice:read"), ("new_capability", "bob:read"),
                   ("new_tool", "fs/write_file"), ("new_capability", "alice:write")]
    assert alerts.recent[-1].severity == "warning"  # a read-only client now writes


def test_unknown_tools_do_not_count_as_first_use() -> None:
    alerts = engine()
    alerts.observe_call(tool_call("made_up_name", definition=None), Outcome("deny"))
    assert not alerts.recent and not alerts.seen


def test_capability_classes_follow_the_spec_defaults() -> None:
    assert capability_classes(None) == ["destructive"]
    assert capability_classes({"annotations": {"readOnlyHint": True, "openWorldHint": True}}) == ["read", "open_world"]
    assert capability_classes({"annotations": {"destructiveHint": False}}) == ["write"]


# -- flood control ----------------------------------------------------------------------------------


def test_cooldown_coalesces_repeats_into_the_next_alert() -> None:
    clock = Clock()
    alerts = engine(clock, cooldown="60s")
    for _ in range(5):
        alerts.on_event({"kind": "circuit.open", "upstream": "search"})
    assert len(alerts.recent) == 1
    clock.now += 61
    alerts.on_event({"kind": "circuit.open", "upstream": "search"})
    assert [a.repeats for a in alerts.recent] == [0, 4]


def test_global_rate_limit_suppresses_and_summarises() -> None:
    clock = Clock()
    alerts = engine(clock, max_per_minute=5)
    for i in range(20):
        alerts.on_event({"kind": "circuit.open", "upstream": f"u{i}"})
    assert len(alerts.recent) == 5 and alerts.suppressed_total == 15
    clock.now += 60
    alerts.on_event({"kind": "circuit.open", "upstream": "later"})
    summary = [a for a in alerts.recent if a.rule == "alerts.suppressed"]
    assert len(summary) == 1 and summary[0].details["suppressed"] == 15
    assert alerts.recent[-1].subject == "later"


def test_alert_details_are_redacted() -> None:
    alerts = engine()
    alerts.on_event({"kind": "finding", "guard": "dlp", "type": "token", "token": "ghp_" + "a" * 36,
                     "note": "Bearer abcdefghijklmnop"})
    (alert,) = alerts.recent
    assert "ghp_" not in str(alert.as_dict()) and "abcdefghijklmnop" not in str(alert.as_dict())


# -- webhook ---------------------------------------------------------------------------------------


@dataclass
class Receiver:
    url: str
    fail_first: int = 0
    status_after: int = 200
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    attempts: int = 0
    got: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.attempts += 1
            status = 500 if state.attempts <= state.fail_first else state.status_after
            if status == 200:
                state.requests.append(({k: v for k, v in self.headers.items()}, body))
                state.got.set()
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.mark.anyio
async def test_webhook_receives_signed_alerts_after_retries(receiver: Receiver) -> None:
    receiver.fail_first = 2
    alerts = engine(webhooks=[{"url": receiver.url, "secret": SECRET, "max_attempts": 5}])
    await alerts.start()
    alerts.on_event({"kind": "pin.changed", "upstream": "fs", "tool": "read_file"})
    await alerts.drain(30)
    await alerts.aclose()
    assert receiver.attempts == 3
    ((headers, body),) = receiver.requests
    assert verify_signature(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify_signature("wrong-secret", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    payload = orjson.loads(body)
    assert (payload["rule"], payload["subject"]) == ("pin_change", "fs/read_file")
    assert headers["X-Mcpwall-Delivery"] == payload["id"]


@pytest.mark.anyio
async def test_webhook_does_not_retry_a_client_error(receiver: Receiver) -> None:
    receiver.status_after = 400
    alerts = engine(webhooks=[{"url": receiver.url, "secret": SECRET}])
    await alerts.start()
    alerts.on_event({"kind": "circuit.open", "upstream": "x"})
    await alerts.drain(30)
    await alerts.aclose()
    assert receiver.attempts == 1 and alerts.webhooks[0].failed == 1


@pytest.mark.anyio
async def test_webhook_min_severity_filters(receiver: Receiver) -> None:
    alerts = engine(webhooks=[{"url": receiver.url, "min_severity": "critical"}])
    await alerts.start()
    alerts.on_event({"kind": "circuit.open", "upstream": "x"})  # warning
    alerts.on_event({"kind": "pin.changed", "upstream": "fs", "tool": "t"})  # critical
    await alerts.drain(30)
    await alerts.aclose()
    assert [orjson.loads(b)["rule"] for _, b in receiver.requests] == ["pin_change"]


def test_signature_rejects_stale_and_tampered_deliveries() -> None:
    body = b'{"rule":"x"}'
    ts = str(int(time.time()))
    header = sign(SECRET, ts, body)
    assert verify_signature(SECRET, ts, body, header)
    assert not verify_signature(SECRET, ts, body + b" ", header)
    assert not verify_signature(SECRET, str(int(time.time()) - 3600), body, sign(SECRET, str(int(time.time()) - 3600),
                                                                                  body))
    assert not verify_signature(SECRET, "not-a-number", body, header)
