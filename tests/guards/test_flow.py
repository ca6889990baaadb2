"""The flow guard: session taint, history rules, the default lethal-trifecta rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import ValidationError

import mcpwall.config.model  # noqa: F401 - loads the guard registry before the guard modules
from mcpwall.approvals.service import ApprovalService
from mcpwall.approvals.settings import ApprovalSettings
from mcpwall.gateway.call import Call, GuardRecord, Principal
from mcpwall.gateway.events import EventBus
from mcpwall.guards.approval import ApprovalGuard
from mcpwall.guards.flow import FlowGuard, FlowRule, FlowSettings
from mcpwall.pipeline.guard import GuardEnv
from mcpwall.pipeline.verdict import PASS, Hold, Pass, Reject, Verdict

pytestmark = pytest.mark.anyio

URL_SCHEMA = {"type": "object", "properties": {"url": {"type": "string"}}}


def make_call(tool: str, args: dict[str, Any] | None = None, *, principal: str = "alice", session: str | None = "s1",
              meta: dict[str, Any] | None = None, definition: dict[str, Any] | None = None,
              method: str = "tools/call") -> Call:
    params: dict[str, Any] = {"name": tool, "arguments": args or {}} if method == "tools/call" else {"uri": tool}
    if meta is not None:
        params["_meta"] = meta
    server, _, target = tool.partition("__")
    return Call(message={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                principal=Principal(principal), era="legacy" if session else "modern",
                protocol_version="2025-11-25" if session else "2026-07-28", transport="http", session_id=session,
                server=server if method == "tools/call" else "fs", target=target if method == "tools/call" else tool,
                exposed_name=tool, definition=definition)


class Flow:
    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.events: list[dict[str, Any]] = []
        bus = EventBus()
        bus.subscribe(self.events.append)
        self.env = GuardEnv(events=bus, config_dir=tmp_path, storage_url="memory://")
        self.guard = FlowGuard(FlowSettings.model_validate(settings), self.env)

    async def run(self, call: Call, *, is_error: bool = False) -> Verdict:
        """One call through the guard: the request hook, then (if it passed) the response hook."""
        verdict = await self.guard.on_request(call)
        if verdict is PASS or isinstance(verdict, Pass):
            await self.guard.on_response(call, {"content": [{"type": "text", "text": "ok"}], "isError": is_error})
        return verdict


@pytest.fixture
def flow(tmp_path: Path) -> Flow:
    return Flow(tmp_path)


READ_FILE = "fs__read_file"
FETCH = "web__fetch"
POST = "net__http_post"


async def test_the_trifecta_is_stopped_at_the_third_step(flow: Flow) -> None:
    assert await flow.run(make_call(READ_FILE, {"path": "/home/alice/notes.txt"})) is PASS
    fetch = make_call(FETCH, {"url": "https://example.com/page"}, definition={"inputSchema": URL_SCHEMA})
    assert await flow.run(fetch) is PASS
    verdict = await flow.run(make_call(POST, {"url": "https://collector.example/x", "body": "..."}))
    assert isinstance(verdict, Reject) and verdict.as_tool_error
    assert "lethal-trifecta" in verdict.reason and READ_FILE in verdict.reason and FETCH in verdict.reason
    assert "no approval channel" in verdict.reason
    assert flow.events[-1]["kind"] == "flow.violation" and flow.events[-1]["rules"] == ["lethal-trifecta"]


@pytest.mark.parametrize("tool", [READ_FILE, FETCH, POST])
async def test_each_step_alone_passes(flow: Flow, tool: str) -> None:
    assert await flow.run(make_call(tool, {"url": "https://example.com"})) is PASS


async def test_the_order_of_private_and_untrusted_does_not_matter(flow: Flow) -> None:
    await flow.run(make_call(FETCH, {"url": "https://example.com"}))
    await flow.run(make_call(READ_FILE, {"path": "a"}))
    assert isinstance(await flow.run(make_call("mail__send_email", {"to": "x@example.com"})), Reject)


async def test_the_trifecta_is_held_for_approval_when_approval_is_configured(flow: Flow) -> None:
    approval = ApprovalGuard(ApprovalSettings(), flow.env)
    await approval.start()
    send, requested = anyio.create_memory_object_stream[str](10)
    flow.env.events.subscribe(
        lambda e: send.send_nowait(e["approval_id"]) if e["kind"] == "approval.requested" else None)
    try:
        await flow.run(make_call(READ_FILE, {"path": "a"}))
        await flow.run(make_call(FETCH, {"url": "https://example.com"}))
        verdict = await flow.run(make_call(POST, {"url": "https://collector.example/x"}))
        assert isinstance(verdict, Hold) and "lethal-trifecta" in verdict.reason
        results: list[Any] = []

        async def waiter() -> None:
            results.append(await verdict.wait())

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                with anyio.fail_after(10):
                    approval_id = await requested.receive()
                record = approval.service.get(approval_id)
                assert record is not None
                assert record.sources == ["flow"] and record.session_labels == ["private", "untrusted"]
                approval.service.decide(record.id, "bob", False, note="exfiltration attempt")
        assert isinstance(results[0], Reject) and "exfiltration attempt" in results[0].reason
    finally:
        service = flow.env.state["approval.service"]
        assert isinstance(service, ApprovalService)
        await approval.aclose()


async def test_sessions_are_separate(flow: Flow) -> None:
    await flow.run(make_call(READ_FILE, {"path": "a"}, session="s1"))
    await flow.run(make_call(FETCH, {"url": "https://example.com"}, session="s2"))
    assert await flow.run(make_call(POST, session="s1")) is PASS
    assert await flow.run(make_call(POST, session="s2")) is PASS
    # Another principal never shares a session's taint, even with the same session id.
    await flow.run(make_call(FETCH, {"url": "https://example.com"}, session="s1", principal="bob"))
    assert await flow.run(make_call(POST, session="s1")) is PASS


async def test_stateless_calls_are_grouped_by_conversation_key_or_principal(flow: Flow) -> None:
    conv = {"dev.mcpwall/conversation": "chat-1"}
    await flow.run(make_call(READ_FILE, {"path": "a"}, session=None, meta=conv))
    await flow.run(make_call(FETCH, {"url": "https://e.com"}, session=None, meta=conv))
    assert isinstance(await flow.run(make_call(POST, session=None, meta=conv)), Reject)
    assert await flow.run(make_call(POST, session=None, meta={"dev.mcpwall/conversation": "chat-2"})) is PASS
    await flow.run(make_call(READ_FILE, {"path": "a"}, session=None))
    await flow.run(make_call(FETCH, {"url": "https://e.com"}, session=None))
    assert isinstance(await flow.run(make_call(POST, session=None)), Reject)


async def test_principal_scope_joins_every_session_of_a_caller(tmp_path: Path) -> None:
    flow = Flow(tmp_path, scope="principal")
    await flow.run(make_call(READ_FILE, {"path": "a"}, session="s1"))
    await flow.run(make_call(FETCH, {"url": "https://example.com"}, session="s2"))
    assert isinstance(await flow.run(make_call(POST, session="s3")), Reject)


async def test_content_guard_findings_label_the_session(flow: Flow) -> None:
    await flow.run(make_call(READ_FILE, {"path": "a"}))
    call = make_call("notes__get_note", {"id": 1})
    assert await flow.guard.on_request(call) is PASS
    call.records.append(GuardRecord("injection", "pass", "instructions in the result",
                                    findings=[{"kind": "prompt_injection"}]))
    gained = await flow.guard.on_response(call, {"content": []})
    assert isinstance(gained, Pass) and "untrusted" in gained.reason
    assert isinstance(await flow.run(make_call(POST)), Reject)


async def test_findings_can_carry_their_own_labels(flow: Flow) -> None:
    call = make_call("x__echo")
    await flow.guard.on_request(call)
    call.records.append(GuardRecord("custom", "mutate", "", findings=[{"labels": ["secret", "egress"]}]))
    await flow.guard.on_response(call, {"content": []})
    assert call.labels == {"secret"}  # capability labels in findings are ignored


async def test_resource_reads_label_the_session(flow: Flow) -> None:
    await flow.run(make_call("file:///home/alice/diary.txt", method="resources/read"))
    await flow.run(make_call(FETCH, {"url": "https://example.com"}))
    assert isinstance(await flow.run(make_call(POST)), Reject)


async def test_session_labels_are_visible_to_later_guards(flow: Flow) -> None:
    await flow.run(make_call(READ_FILE, {"path": "a"}))
    call = make_call("x__echo")
    await flow.guard.on_request(call)
    assert call.labels == {"private"}


async def test_denied_within_n_calls_of_another_tool(tmp_path: Path) -> None:
    flow = Flow(tmp_path, rules=[{"name": "no-mail-after-secret", "tools": "*send_email", "after": "*read_secret",
                                  "within": 5}])
    await flow.run(make_call("vault__read_secret", {"name": "db"}))
    verdict = await flow.run(make_call("mail__send_email", {"to": "x"}))
    assert isinstance(verdict, Reject) and "no-mail-after-secret" in verdict.reason and "within 5" in verdict.reason
    for _ in range(5):
        await flow.run(make_call("x__echo"))
    assert await flow.run(make_call("mail__send_email", {"to": "x"})) is PASS


async def test_prerequisites_must_succeed_first(tmp_path: Path) -> None:
    flow = Flow(tmp_path, rules=[{"name": "tested-deploys", "tools": "ci__deploy", "requires": "ci__run_tests"}])
    first = await flow.run(make_call("ci__deploy"))
    assert isinstance(first, Reject) and "ci__run_tests must succeed first" in first.reason
    await flow.run(make_call("ci__run_tests"), is_error=True)
    assert isinstance(await flow.run(make_call("ci__deploy")), Reject)
    await flow.run(make_call("ci__run_tests"))
    assert await flow.run(make_call("ci__deploy")) is PASS


async def test_forbidden_sequences(tmp_path: Path) -> None:
    flow = Flow(tmp_path, rules=[{"name": "no-scrape-then-delete", "tools": "*delete*",
                                  "sequence": ["label:untrusted", "*list*"]}])
    await flow.run(make_call("fs__list_directory"))
    await flow.run(make_call(FETCH, {"url": "https://e.com"}))
    assert await flow.run(make_call("fs__delete_file", {"path": "a"})) is PASS  # wrong order
    await flow.run(make_call("fs__list_directory"))
    verdict = await flow.run(make_call("fs__delete_file", {"path": "a"}))
    assert isinstance(verdict, Reject) and "label:untrusted → *list* → fs__delete_file" in verdict.reason


async def test_rules_can_ask_for_approval_with_their_own_requirements(tmp_path: Path) -> None:
    flow = Flow(tmp_path, rules=[{"name": "careful", "tools": "*delete*", "action": "approve", "approvers": 2,
                                  "timeout": "5m", "reason": "deletes need two people"}])
    approval = ApprovalGuard(ApprovalSettings(), flow.env)
    await approval.start()
    try:
        verdict = await flow.run(make_call("fs__delete_file", {"path": "a"}))
        assert isinstance(verdict, Hold) and "deletes need two people" in verdict.reason
    finally:
        await approval.aclose()


async def test_label_overrides_change_what_the_default_rule_sees(tmp_path: Path) -> None:
    flow = Flow(tmp_path, tool_labels={"net__*": ["-egress"], "x__echo": ["+egress"]})
    await flow.run(make_call(READ_FILE, {"path": "a"}))
    await flow.run(make_call(FETCH, {"url": "https://e.com"}))
    assert await flow.run(make_call(POST)) is PASS
    assert isinstance(await flow.run(make_call("x__echo")), Reject)


async def test_default_rules_can_be_disabled_or_replaced(tmp_path: Path) -> None:
    off = Flow(tmp_path, disable_rules=["lethal-trifecta"])
    replaced = Flow(tmp_path, rules=[{"name": "lethal-trifecta", "capabilities": "egress",
                                      "session_labels": ["private", "untrusted"], "reason": "stop"}])
    for flow in (off, replaced):
        await flow.run(make_call(READ_FILE, {"path": "a"}))
        await flow.run(make_call(FETCH, {"url": "https://e.com"}))
    assert await off.run(make_call(POST)) is PASS
    verdict = await replaced.run(make_call(POST))
    assert isinstance(verdict, Reject) and verdict.reason == "flow rule 'lethal-trifecta': stop"


async def test_history_is_bounded(tmp_path: Path) -> None:
    flow = Flow(tmp_path, history=3, rules=[{"name": "r", "tools": "b", "after": "a"}])
    await flow.run(make_call("x__a"))
    assert isinstance(await flow.run(make_call("x__b")), Reject)
    for _ in range(3):
        await flow.run(make_call("x__echo"))
    assert await flow.run(make_call("x__b")) is PASS


async def test_idle_sessions_are_forgotten(tmp_path: Path) -> None:
    flow = Flow(tmp_path, max_sessions=1)
    await flow.run(make_call(READ_FILE, {"path": "a"}, session="s1"))
    await flow.run(make_call(FETCH, {"url": "https://e.com"}, session="s2"))  # evicts s1
    await flow.run(make_call(FETCH, {"url": "https://e.com"}, session="s1"))
    assert await flow.run(make_call(POST, session="s1")) is PASS


async def test_other_methods_and_server_requests_pass(flow: Flow) -> None:
    assert await flow.guard.on_request(make_call("x__echo", method="prompts/get")) is PASS
    relayed = make_call("x__echo")
    relayed.direction = "server"
    assert await flow.guard.on_request(relayed) is PASS


def test_rules_are_validated() -> None:
    with pytest.raises(ValidationError, match="at least one of"):
        FlowRule(name="empty")
    with pytest.raises(ValidationError, match="not a label"):
        FlowRule(name="bad", session_labels=["Not A Label"])
    with pytest.raises(ValidationError, match="two flow rules"):
        FlowSettings.model_validate({"rules": [{"name": "a", "tools": "x"}, {"name": "a", "tools": "y"}]})


async def test_the_default_settings_come_from_the_config_file(tmp_path: Path) -> None:
    from mcpwall.config.loader import load_text

    config = load_text("guards:\n  flow:\n    rules:\n      - {name: r, tools: '*deploy', requires: '*run_tests'}\n")
    settings = config.guard_settings("flow")
    assert isinstance(settings, FlowSettings) and settings.rules[0].requires == ["*run_tests"]
    assert isinstance(config.guard_settings("approval"), ApprovalSettings)
