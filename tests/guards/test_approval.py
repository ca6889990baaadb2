"""The approval guard: holding, deciding, timing out, caching, separation of duties, restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import mcpwall.config.model  # noqa: F401 - loads the guard registry before the guard modules
from mcpwall.approvals.service import ApprovalService, CallFacts, DuplicateApprover, NotPending, SelfApproval
from mcpwall.approvals.settings import ApprovalSettings
from mcpwall.gateway.call import Call, GuardRecord, Principal
from mcpwall.gateway.events import EventBus
from mcpwall.guards.approval import ApprovalGuard, request_approval
from mcpwall.pipeline.chain import GuardChain
from mcpwall.pipeline.guard import GuardEnv
from mcpwall.pipeline.verdict import PASS, Hold, Pass, Reject

pytestmark = pytest.mark.anyio
BOUND = 10.0  # seconds: an upper bound on any wait, never an expectation


def make_call(tool: str = "fs__delete_file", args: dict[str, Any] | None = None, *, principal: str = "alice",
              definition: dict[str, Any] | None = None, meta: dict[str, Any] | None = None,
              capabilities: dict[str, Any] | None = None) -> Call:
    params: dict[str, Any] = {"name": tool, "arguments": {"path": "/tmp/x"} if args is None else args}
    if meta is not None:
        params["_meta"] = meta
    server, _, target = tool.partition("__")
    return Call(message={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params},
                principal=Principal(principal), era="legacy", protocol_version="2025-11-25", transport="http",
                session_id="s1", server=server, target=target, exposed_name=tool,
                definition=definition or {"name": target, "inputSchema": {"type": "object"}},
                client_capabilities=capabilities or {})


class Harness:
    def __init__(self, tmp_path: Path, storage_url: str = "memory://") -> None:
        self.events: list[dict[str, Any]] = []
        self.bus = EventBus()
        self.bus.subscribe(self.events.append)
        self.env = GuardEnv(events=self.bus, config_dir=tmp_path, storage_url=storage_url)
        self._send, self._requested = anyio.create_memory_object_stream[str](100)
        self.bus.subscribe(lambda e: self._send.send_nowait(e["approval_id"])
                           if e["kind"] == "approval.requested" else None)

    async def next_request(self) -> str:
        """The id of the next approval request opened (bounded wait)."""
        with anyio.fail_after(BOUND):
            return await self._requested.receive()

    async def guard(self, **settings: Any) -> ApprovalGuard:
        guard = ApprovalGuard(ApprovalSettings.model_validate(settings), self.env)
        await guard.start()
        return guard

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.events]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    yield h
    service = h.env.state.get("approval.service")
    if isinstance(service, ApprovalService):
        while service._users > 0:
            await service.release()


DELETE_NEEDS_APPROVAL: dict[str, Any] = {"rules": [{"tools": "*delete*", "action": "approve"}]}


async def held(guard: ApprovalGuard, call: Call) -> tuple[Hold, Callable[[], Awaitable[Pass | Reject]]]:
    verdict = await guard.on_request(call)
    assert isinstance(verdict, Hold)
    return verdict, verdict.wait


async def run_held(harness: Harness, guard: ApprovalGuard, call: Call, act: Callable[[str], Any]) -> Pass | Reject:
    """Hold ``call``, let ``act(approval_id)`` decide, and return the verdict the chain gets."""
    _, wait = await held(guard, call)
    result: list[Pass | Reject] = []

    async def waiter() -> None:
        result.append(await wait())

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            act(await harness.next_request())
    return result[0]


async def test_calls_no_rule_matches_pass_untouched(harness: Harness) -> None:
    guard = await harness.guard(**DELETE_NEEDS_APPROVAL)
    assert await guard.on_request(make_call("fs__read_file")) is PASS
    assert harness.kinds() == []


async def test_an_approved_call_passes_and_the_request_records_who_what_and_why(harness: Harness) -> None:
    guard = await harness.guard(**DELETE_NEEDS_APPROVAL)
    call = make_call(args={"path": "/tmp/x", "api_key": "sk-live-abcdefghijklmnopqrstuvwx"})
    verdict = await run_held(harness, guard, call, lambda i: guard.service.decide(i, "bob", True, note="fine"))
    assert isinstance(verdict, Pass) and "bob" in verdict.reason
    record = guard.service.recent("approved")[0]
    assert record.principal == "alice" and record.tool == "fs__delete_file"
    assert record.arguments == {"path": "/tmp/x", "api_key": "[redacted]"}
    assert record.risk["score"] > 0 and "destructive" in " ".join(record.risk["reasons"])
    assert record.reasons and record.decided_by == "bob"
    assert harness.kinds() == ["approval.requested", "approval.vote", "approval.decided"]
    assert harness.events[-1]["status"] == "approved"
    assert call.scratch["approval.granted"] == record.id


async def test_a_denied_call_is_refused_with_the_reason_as_a_tool_error(harness: Harness) -> None:
    guard = await harness.guard(**DELETE_NEEDS_APPROVAL)
    verdict = await run_held(harness, guard, make_call(),
                             lambda i: guard.service.decide(i, "bob", False, note="not today"))
    assert isinstance(verdict, Reject) and verdict.as_tool_error
    assert "not today" in verdict.reason and "bob" in verdict.reason
    assert verdict.data is not None and verdict.data["approval"]["status"] == "denied"


async def test_no_decision_before_the_timeout_denies(harness: Harness) -> None:
    guard = await harness.guard(rules=[{"tools": "*delete*", "timeout": "50ms"}])
    _, wait = await held(guard, make_call())
    with anyio.fail_after(BOUND):
        verdict = await wait()
    assert isinstance(verdict, Reject) and verdict.data is not None
    assert verdict.data["approval"]["status"] == "expired"
    assert guard.service.recent("expired")
    assert harness.events[-1]["kind"] == "approval.decided" and harness.events[-1]["status"] == "expired"


async def test_a_caller_cannot_approve_their_own_call(harness: Harness) -> None:
    guard = await harness.guard(**DELETE_NEEDS_APPROVAL)
    call = make_call(principal="user:alice@example.com")
    verdict_box: list[Any] = []

    def act(approval_id: str) -> None:
        for name in ("alice", "Alice@example.com", "user:alice@example.com"):
            with pytest.raises(SelfApproval):
                guard.service.decide(approval_id, name, True)
        verdict_box.append(guard.service.decide(approval_id, "carol", True))

    verdict = await run_held(harness, guard, call, act)
    assert isinstance(verdict, Pass) and verdict_box[0].decided_by == "carol"


async def test_two_person_approval_needs_two_distinct_approvers(harness: Harness) -> None:
    guard = await harness.guard(rules=[{"tools": "*delete*", "approvers": 2}])

    def act(approval_id: str) -> None:
        first = guard.service.decide(approval_id, "bob", True)
        assert first.pending
        with pytest.raises(DuplicateApprover):
            guard.service.decide(approval_id, "BOB", True)
        assert guard.service.decide(approval_id, "carol", True).status == "approved"

    verdict = await run_held(harness, guard, make_call(), act)
    assert isinstance(verdict, Pass) and "bob" in verdict.reason and "carol" in verdict.reason


async def test_decisions_are_re_evaluated_against_todays_settings(harness: Harness) -> None:
    guard = await harness.guard(**DELETE_NEEDS_APPROVAL)

    def act(approval_id: str) -> None:
        # A reload between the request and the decision now asks for two approvers.
        guard.service.configure(ApprovalSettings.model_validate({"rules": [{"tools": "*delete*", "approvers": 2}]}))
        assert guard.service.decide(approval_id, "bob", True).pending
        assert guard.service.decide(approval_id, "carol", True).status == "approved"

    assert isinstance(await run_held(harness, guard, make_call(), act), Pass)


async def test_decided_requests_refuse_further_decisions(harness: Harness) -> None:
    guard = await harness.guard(**DELETE_NEEDS_APPROVAL)
    ids: list[str] = []

    def act(approval_id: str) -> None:
        ids.append(approval_id)
        guard.service.decide(approval_id, "bob", False)

    await run_held(harness, guard, make_call(), act)
    with pytest.raises(NotPending):
        guard.service.decide(ids[0], "carol", True)


async def test_approvals_are_cached_per_principal_tool_and_arguments(harness: Harness) -> None:
    guard = await harness.guard(**DELETE_NEEDS_APPROVAL)
    await run_held(harness, guard, make_call(), lambda i: guard.service.decide(i, "bob", True))
    again = await guard.on_request(make_call())
    assert isinstance(again, Pass) and "approved earlier by bob" in again.reason
    assert isinstance(await guard.on_request(make_call(args={"path": "/tmp/other"})), Hold)
    assert isinstance(await guard.on_request(make_call(principal="mallory")), Hold)


async def test_cached_approvals_die_with_a_changed_tool_definition(harness: Harness) -> None:
    guard = await harness.guard(**DELETE_NEEDS_APPROVAL)
    await run_held(harness, guard, make_call(), lambda i: guard.service.decide(i, "bob", True))
    changed = make_call(definition={"name": "delete_file", "description": "now also uploads the file"})
    assert isinstance(await guard.on_request(changed), Hold)


async def test_cached_denials_refuse_at_once(harness: Harness) -> None:
    guard = await harness.guard(**DELETE_NEEDS_APPROVAL)
    await run_held(harness, guard, make_call(), lambda i: guard.service.decide(i, "bob", False, note="no"))
    again = await guard.on_request(make_call())
    assert isinstance(again, Reject) and "denied earlier by bob" in again.reason


async def test_a_cached_approval_does_not_cover_stricter_settings(harness: Harness) -> None:
    guard = await harness.guard(**DELETE_NEEDS_APPROVAL)
    await run_held(harness, guard, make_call(), lambda i: guard.service.decide(i, "bob", True))
    stricter = await harness.guard(rules=[{"tools": "*delete*", "approvers": 2}])
    assert isinstance(await stricter.on_request(make_call()), Hold)


async def test_arguments_changed_while_held_are_refused(harness: Harness) -> None:
    guard = await harness.guard(**DELETE_NEEDS_APPROVAL)
    call = make_call()

    def act(approval_id: str) -> None:
        call.message["params"]["arguments"] = {"path": "/"}
        guard.service.decide(approval_id, "bob", True)

    verdict = await run_held(harness, guard, call, act)
    assert isinstance(verdict, Reject) and verdict.data is not None
    assert verdict.data["approval"]["status"] == "mismatch"


async def test_a_retry_joins_the_pending_request(harness: Harness) -> None:
    guard = await harness.guard(**DELETE_NEEDS_APPROVAL)
    _, first = await held(guard, make_call())
    _, second = await held(guard, make_call())
    results: list[Pass | Reject] = []

    async def wait(fn: Callable[[], Awaitable[Pass | Reject]]) -> None:
        results.append(await fn())

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait, first)
            approval_id = await harness.next_request()
            tg.start_soon(wait, second)
            await anyio.wait_all_tasks_blocked()  # both calls are now waiting
            assert guard.service._waiting[approval_id] == 2
            assert len(guard.service.recent("pending")) == 1
            guard.service.decide(approval_id, "bob", True)
    assert [type(r) for r in results] == [Pass, Pass]


async def test_risk_threshold_holds_risky_calls_only(harness: Harness) -> None:
    guard = await harness.guard(risk_threshold=60)
    assert await guard.on_request(make_call("fs__read_file", {"path": "notes.txt"})) is PASS
    risky = make_call("shell__run_command", {"command": "rm -rf / --no-preserve-root"})
    verdict = await guard.on_request(risky)
    assert isinstance(verdict, Hold) and "risk score" in verdict.reason


async def test_findings_and_session_taint_raise_the_risk(harness: Harness) -> None:
    guard = await harness.guard(risk_threshold=40)
    call = make_call("mail__send_email", {"to": "x@example.com"})
    assert await guard.on_request(call) is PASS
    call.labels |= {"private", "untrusted"}
    call.records.append(GuardRecord("dlp", "pass", "found a card number", findings=[{"kind": "pan"}]))
    assert isinstance(await guard.on_request(call), Hold)


async def test_allow_rules_exempt_calls_from_the_risk_threshold(harness: Harness) -> None:
    guard = await harness.guard(risk_threshold=1, rules=[{"tools": "fs__*", "action": "allow"}])
    assert await guard.on_request(make_call()) is PASS


async def test_rules_can_select_by_capability_and_role(harness: Harness) -> None:
    guard = await harness.guard(rules=[{"capabilities": ["egress"], "roles": ["contractor"]}])
    contractor = make_call("mail__send_email", {"to": "x"})
    contractor.principal = Principal("dave", roles=frozenset({"contractor"}))
    assert isinstance(await guard.on_request(contractor), Hold)
    assert await guard.on_request(make_call("mail__send_email", {"to": "x"})) is PASS


async def test_progress_notifications_keep_the_client_informed(harness: Harness) -> None:
    guard = await harness.guard(**DELETE_NEEDS_APPROVAL)
    sent: list[tuple[str, dict[str, Any]]] = []

    async def notify(method: str, params: dict[str, Any]) -> None:
        sent.append((method, params))

    call = make_call(meta={"progressToken": "tok-7"})
    call.notify = notify
    await run_held(harness, guard, call, lambda i: guard.service.decide(i, "bob", True))
    assert sent and sent[0][0] == "notifications/progress"
    assert sent[0][1]["progressToken"] == "tok-7" and "waiting for approval" in sent[0][1]["message"]


async def test_without_a_progress_token_nothing_is_sent(harness: Harness) -> None:
    guard = await harness.guard(**DELETE_NEEDS_APPROVAL)
    sent: list[Any] = []

    async def notify(method: str, params: dict[str, Any]) -> None:
        sent.append(method)

    call = make_call()
    call.notify = notify
    await run_held(harness, guard, call, lambda i: guard.service.decide(i, "bob", True))
    assert sent == []


def asking(answer: dict[str, Any] | Exception, asked: list[dict[str, Any]]) -> Any:
    async def ask(method: str, params: dict[str, Any]) -> dict[str, Any]:
        asked.append({"method": method, **params})
        if isinstance(answer, Exception):
            raise answer
        return answer
    return ask


ELICITING = {"elicitation": {"form": {}}}


async def test_the_end_user_can_approve_through_elicitation(harness: Harness) -> None:
    guard = await harness.guard(user_confirmation="either", **DELETE_NEEDS_APPROVAL)
    asked: list[dict[str, Any]] = []
    call = make_call(capabilities=ELICITING, args={"path": "/tmp/x", "password": "hunter2"})
    call.ask_client = asking({"action": "accept", "content": {"approve": True}}, asked)
    _, wait = await held(guard, call)
    with anyio.fail_after(BOUND):
        verdict = await wait()
    assert isinstance(verdict, Pass) and "user:alice" in verdict.reason
    assert asked[0]["method"] == "elicitation/create"
    assert "fs__delete_file" in asked[0]["message"] and "hunter2" not in asked[0]["message"]
    assert asked[0]["requestedSchema"]["properties"]["approve"]["type"] == "boolean"


async def test_the_end_user_declining_denies(harness: Harness) -> None:
    guard = await harness.guard(user_confirmation="either", **DELETE_NEEDS_APPROVAL)
    call = make_call(capabilities=ELICITING)
    call.ask_client = asking({"action": "decline"}, [])
    _, wait = await held(guard, call)
    with anyio.fail_after(BOUND):
        verdict = await wait()
    assert isinstance(verdict, Reject) and "declined by the user" in verdict.reason
    # A declined dialog is not cached: asking again opens a new request.
    assert isinstance(await guard.on_request(make_call(capabilities=ELICITING)), Hold)


async def test_both_channels_need_the_user_and_an_approver(harness: Harness) -> None:
    guard = await harness.guard(user_confirmation="both", **DELETE_NEEDS_APPROVAL)
    call = make_call(capabilities=ELICITING)
    call.ask_client = asking({"action": "accept", "content": {"approve": True}}, [])

    def act(approval_id: str) -> None:
        record = guard.service.get(approval_id)
        assert record is not None and record.pending
        guard.service.decide(approval_id, "bob", True)

    # ``act`` runs once the request is pending; the user's answer may come before or after bob's.
    verdict = await run_held(harness, guard, call, act)
    assert isinstance(verdict, Pass)
    record = guard.service.recent("approved")[0]
    assert record.user_confirmed and {a["approver"] for a in record.approvals} == {"user:alice", "bob"}


async def test_both_channels_fail_closed_without_elicitation_support(harness: Harness) -> None:
    guard = await harness.guard(user_confirmation="both", **DELETE_NEEDS_APPROVAL)
    _, wait = await held(guard, make_call())
    with anyio.fail_after(BOUND):
        verdict = await wait()
    assert isinstance(verdict, Reject) and "elicitation" in verdict.reason


async def test_a_client_that_cannot_answer_leaves_the_admin_channel_open(harness: Harness) -> None:
    guard = await harness.guard(user_confirmation="either", **DELETE_NEEDS_APPROVAL)
    call = make_call(capabilities=ELICITING)
    call.ask_client = asking(RuntimeError("client went away"), [])
    verdict = await run_held(harness, guard, call, lambda i: guard.service.decide(i, "bob", True))
    assert isinstance(verdict, Pass) and "bob" in verdict.reason


async def test_pending_requests_survive_a_restart(tmp_path: Path) -> None:
    first = Harness(tmp_path, "sqlite:///state/mcpwall.db")
    guard = await first.guard(**DELETE_NEEDS_APPROVAL)
    _, wait = await held(guard, make_call())
    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await first.next_request()
        tg.cancel_scope.cancel()  # the client gives up (or the gateway dies) while the call is held
    await guard.aclose()

    second = Harness(tmp_path, "sqlite:///state/mcpwall.db")
    restarted = await second.guard(**DELETE_NEEDS_APPROVAL)
    pending = restarted.service.recent("pending")
    assert len(pending) == 1 and pending[0].tool == "fs__delete_file"
    restarted.service.decide(pending[0].id, "bob", True)
    # The client reconnects and retries the same call: the stored decision answers it.
    retry = await restarted.on_request(make_call())
    assert isinstance(retry, Pass) and pending[0].id in retry.reason
    await restarted.aclose()


async def test_requests_that_expired_while_down_are_denied_at_start(tmp_path: Path) -> None:
    first = Harness(tmp_path, "sqlite:///mcpwall.db")
    guard = await first.guard(rules=[{"tools": "*delete*", "timeout": "1ms"}])
    call = make_call()
    # Open the request and stop the process before its timer can run (no await in between).
    guard.service.open(CallFacts.of(call), guard.assess(call), labels=[], session_labels=[])
    await guard.aclose()
    second = Harness(tmp_path, "sqlite:///mcpwall.db")
    restarted = await second.guard(**DELETE_NEEDS_APPROVAL)
    assert restarted.service.recent("pending") == []
    assert [r.decided_by for r in restarted.service.recent("expired")] == ["timeout"]
    assert second.kinds() == ["approval.decided"]
    await restarted.aclose()


async def test_too_many_pending_requests_are_refused(harness: Harness) -> None:
    guard = await harness.guard(max_pending_per_principal=1, **DELETE_NEEDS_APPROVAL)
    _, first = await held(guard, make_call())
    _, second = await held(guard, make_call(args={"path": "/tmp/y"}))
    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        approval_id = await harness.next_request()
        with anyio.fail_after(BOUND):
            verdict = await second()
        assert isinstance(verdict, Reject) and "too many" in verdict.reason
        guard.service.decide(approval_id, "bob", True)


async def test_shadow_mode_asks_nobody(harness: Harness) -> None:
    guard = await harness.guard(mode="shadow", **DELETE_NEEDS_APPROVAL)
    chain = GuardChain([guard])
    call = make_call()
    assert await chain.on_request(call) is None
    assert call.records[0].verdict == "hold" and call.records[0].shadow
    assert guard.service.recent("all") == [] and harness.kinds() == []


async def test_request_approval_holds_for_other_guards_and_merges_requirements(harness: Harness) -> None:
    assert request_approval(harness.env, make_call(), reason="x", source="flow") is None
    guard = await harness.guard(rules=[{"tools": "*delete*", "approvers": 2}])
    call = make_call()
    verdict = request_approval(harness.env, call, reason="flow rule 'r': it follows a read", source="flow",
                               timeout=30)
    assert isinstance(verdict, Hold)

    def act(approval_id: str) -> None:
        record = guard.service.get(approval_id)
        assert record is not None
        assert record.approvers_required == 2 and record.sources == ["approval", "flow"]
        assert any("flow rule" in r for r in record.reasons)
        assert record.expires - record.created == pytest.approx(30)
        guard.service.decide(approval_id, "bob", True)
        guard.service.decide(approval_id, "carol", True)

    result: list[Any] = []

    async def waiter() -> None:
        result.append(await verdict.wait())

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            act(await harness.next_request())
    assert isinstance(result[0], Pass)
    # The approval guard itself does not ask again for the same call.
    assert await guard.on_request(call) is PASS


async def test_a_retry_does_not_ask_the_user_twice(harness: Harness) -> None:
    guard = await harness.guard(user_confirmation="either", **DELETE_NEEDS_APPROVAL)
    asked: list[str] = []
    never = anyio.Event()

    async def ask(method: str, params: dict[str, Any]) -> dict[str, Any]:
        asked.append(method)
        await never.wait()  # the user has not answered yet
        return {}

    calls = [make_call(capabilities=ELICITING) for _ in range(2)]
    for call in calls:
        call.ask_client = ask
    waits = [(await held(guard, call))[1] for call in calls]
    results: list[Pass | Reject] = []

    async def wait(fn: Callable[[], Awaitable[Pass | Reject]]) -> None:
        results.append(await fn())

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait, waits[0])
            approval_id = await harness.next_request()
            tg.start_soon(wait, waits[1])
            await anyio.wait_all_tasks_blocked()
            assert asked == ["elicitation/create"]
            guard.service.decide(approval_id, "bob", True)
    assert [type(r) for r in results] == [Pass, Pass]
