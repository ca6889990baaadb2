"""The guard chain: order, first reject wins, fail closed, shadow mode, holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mcpwall.gateway.call import ANONYMOUS, Call
from mcpwall.gateway.events import EventBus
from mcpwall.pipeline.chain import GuardChain
from mcpwall.pipeline.guard import Guard, GuardEnv, GuardSettings
from mcpwall.pipeline.verdict import PASS, Hold, Mutate, Pass, Reject, Verdict

pytestmark = pytest.mark.anyio
ENV = GuardEnv(events=EventBus(), config_dir=Path("."))


class Scripted(Guard):
    def __init__(self, name: str, verdict: Verdict | Exception, log: list[str], mode: str = "enforce") -> None:
        super().__init__(GuardSettings(mode=mode), ENV)  # type: ignore[arg-type]
        self.name = name  # type: ignore[misc]
        self.verdict, self.log = verdict, log

    async def on_request(self, call: Call) -> Verdict:
        self.log.append(f"req:{self.name}")
        if isinstance(self.verdict, Exception):
            raise self.verdict
        return self.verdict

    async def on_response(self, call: Call, result: dict[str, Any]) -> Verdict:
        self.log.append(f"resp:{self.name}")
        return Mutate({**result, self.name: True}) if isinstance(self.verdict, Mutate) else PASS

    async def on_list(self, call: Call, kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if isinstance(self.verdict, Exception):
            raise self.verdict
        return [i for i in items if i.get("name") != self.name]


def call() -> Call:
    return Call(message={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t"}},
                principal=ANONYMOUS, era="legacy", protocol_version="2025-11-25", transport="http")


async def test_order_and_first_reject_stops() -> None:
    log: list[str] = []
    chain = GuardChain([Scripted("a", PASS, log), Scripted("b", Reject("no"), log), Scripted("c", PASS, log)])
    c = call()
    reject = await chain.on_request(c)
    assert reject is not None and reject.reason == "no"
    assert log == ["req:a", "req:b"]
    assert [(r.guard, r.verdict) for r in c.records] == [("b", "reject")]


async def test_responses_run_in_reverse_order_and_mutate() -> None:
    log: list[str] = []
    chain = GuardChain([Scripted("a", Mutate({}), log), Scripted("b", Mutate({}), log)])
    result, reject = await chain.on_response(call(), {"x": 1})
    assert reject is None and result == {"x": 1, "a": True, "b": True}
    assert log == ["resp:b", "resp:a"]


async def test_guard_exception_fails_closed() -> None:
    chain = GuardChain([Scripted("boom", RuntimeError("bug"), [])])
    reject = await chain.on_request(call())
    assert reject is not None
    assert await chain.on_list(call(), "tools", [{"name": "x"}]) == []


async def test_shadow_records_but_does_not_enforce() -> None:
    chain = GuardChain([Scripted("s", Reject("would block"), [], mode="shadow")])
    c = call()
    assert await chain.on_request(c) is None
    assert [(r.guard, r.verdict, r.shadow) for r in c.records] == [("s", "reject", True)]
    assert await chain.on_list(c, "tools", [{"name": "s"}, {"name": "x"}]) == [{"name": "s"}, {"name": "x"}]


async def test_mutate_on_request_replaces_the_message() -> None:
    new = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t", "arguments": {"a": 1}}}
    chain = GuardChain([Scripted("m", Mutate(new), [])])
    c = call()
    assert await chain.on_request(c) is None
    assert c.arguments == {"a": 1}


async def test_hold_waits_for_the_decision() -> None:
    async def deny() -> Pass | Reject:
        return Reject("denied by approver")

    async def allow() -> Pass | Reject:
        return PASS

    denied = GuardChain([Scripted("h", Hold("needs approval", deny), [])])
    reject = await denied.on_request(call())
    assert reject is not None and reject.reason == "denied by approver"
    allowed = GuardChain([Scripted("h", Hold("needs approval", allow), [])])
    c = call()
    assert await allowed.on_request(c) is None
    assert c.records[0].verdict == "hold"
