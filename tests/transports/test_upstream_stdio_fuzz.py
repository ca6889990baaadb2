"""Property tests for the upstream side: a hostile stdio server must not reach the clients.

The upstream is ``tests/fixtures/hostile_upstream.py``. For every hypothesis example it is told
(through the arguments of one ``tools/call``) to write a plan of hostile output before its real
answer — garbage and partial lines, invalid UTF-8, lines over the gateway's message limit,
batches, forged answers to the pending request (string, float and unknown ids, wrong version,
result and error together), progress with bogus tokens, stray notifications, server→client
requests — and a duplicate answer after it. Forged output always carries ``POISON``.

The client is the in-process HTTP front, in the modern (stateless) and the legacy (session)
era. Invariants:

* the client gets exactly the real answer, and ``POISON`` never appears in anything it receives;
* everything streamed to it is well-formed JSON-RPC: progress only under the client's own token,
  logs only where the era allows them, server→client requests only under gateway-minted ids and
  never for a capability the client did not declare (none, here) — the stateless client gets none;
* every server→client request the gateway refuses is answered to the upstream (ping: ``{}``);
* hostile input never causes an internal error in the gateway (no logged exception);
* the gateway keeps answering: the next call through the same upstream and a call to a second,
  well-behaved upstream both work.

A separate test makes the upstream stop reading its stdin: calls must then time out (-31504)
instead of hanging, and the other upstream must stay reachable.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sys
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mcpwall.config.model import Config
from mcpwall.gateway.core import Gateway, Listener
from mcpwall.protocol import jsonrpc
from mcpwall.transports.http_front import HttpFront
from mcpwall.transports.sse import SSEParser
from support.fuzz_jsonrpc import META, MODERN, json_values

HOSTILE = str(Path(__file__).resolve().parents[1] / "fixtures" / "hostile_upstream.py")
POISON = "POISON"
MAX_BYTES = 64 * 1024
WAIT = 30.0
SPEC_SERVER_REQUESTS = {"sampling/createMessage": "sampling", "elicitation/create": "elicitation",
                        "roots/list": "roots"}


def config(timeout: float = 20.0, max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    return {
        "servers": {
            "hostile": {"command": sys.executable, "args": [HOSTILE], "era": "legacy", "timeout": timeout,
                        "circuit": {"failures": 1_000_000, "reset_after": 0.05}},
            "demo": {"command": sys.executable, "args": ["-m", "mcpwall.demo.server"]},
        },
        "guards": {"limits": {"max_message_bytes": max_bytes}},
    }


class InternalErrors(logging.Handler):
    """Collects log records that carry an exception: hostile input must never cause one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)

    def take(self) -> list[str]:
        out = [f"{r.name}: {r.getMessage()} ({r.exc_info[1]!r})" for r in self.records if r.exc_info]
        self.records.clear()
        return out


@dataclass
class Harness:
    gateway: Gateway
    app: HttpFront
    errors: InternalErrors
    runner: asyncio.Runner | None = None
    session: str = ""  # a legacy session with no client capabilities
    serial: int = 0
    replies: int = 0  # answers the upstream has received so far to its server→client requests
    stats: dict[str, int] = field(default_factory=dict)

    def run(self, coro: Awaitable[Any]) -> Any:
        assert self.runner is not None
        return self.runner.run(_bounded(coro, WAIT * 4))


async def _bounded(coro: Awaitable[Any], seconds: float) -> Any:
    async with asyncio.timeout(seconds):
        return await coro


async def _start(cfg: dict[str, Any], workdir: Path) -> tuple[Gateway, HttpFront]:
    gateway = Gateway(Config.model_validate(cfg), config_dir=workdir)  # audit files go there
    await gateway.start()
    return gateway, HttpFront(gateway, lifespan=False)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    errors = InternalErrors()
    logging.getLogger("mcpwall").addHandler(errors)
    runner = asyncio.Runner()
    gateway, app = runner.run(_start(config(), tmp_path_factory.mktemp("upstream-fuzz")))
    h = Harness(gateway, app, errors, runner)
    try:
        h.session = h.run(_initialize(app))
        yield h
    finally:
        runner.run(gateway.aclose())
        runner.close()
        logging.getLogger("mcpwall").removeHandler(errors)


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app, raise_app_exceptions=True),
                             base_url="http://127.0.0.1:8765", timeout=WAIT)


BASE_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


async def _initialize(app: Any) -> str:
    async with _client(app) as c:
        response = await c.post("/mcp", headers=BASE_HEADERS, json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}})
    assert response.status_code == 200, response.text
    return response.headers["mcp-session-id"]


async def call_tool(h: Harness, tool: str, arguments: dict[str, Any], *, era: str,
                    progress: bool = False) -> tuple[Any, list[dict[str, Any]], bytes]:
    """Call a tool as a modern or legacy client. Returns (answer, messages streamed before it, raw body)."""
    h.serial += 1
    rid = h.serial
    meta: dict[str, Any] = dict(META) if era == "modern" else {}
    if progress:
        meta["progressToken"] = "client-token"
    params: dict[str, Any] = {"name": tool, "arguments": arguments}
    if meta:
        params["_meta"] = meta
    headers = dict(BASE_HEADERS)
    if era == "modern":
        headers.update({"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": tool})
    else:
        headers["mcp-session-id"] = h.session
    async with _client(h.app) as c:
        response = await c.post("/mcp", headers=headers,
                                content=orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                                                      "params": params}))
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        streamed = [orjson.loads(e.data) for e in SSEParser(max_event_bytes=1 << 24).feed(response.content)]
    else:
        streamed = [response.json()]
    for message in streamed:
        jsonrpc.classify(message)  # every message the client sees is well-formed JSON-RPC
    answer = streamed[-1]
    assert answer.get("id") == rid, answer
    return answer, streamed[:-1], response.content


def text_of(answer: dict[str, Any]) -> str:
    assert "result" in answer, answer
    return str(answer["result"]["content"][0]["text"])


# -- hostile plans ---------------------------------------------------------------------------------

NOTIFICATIONS = st.one_of(
    st.fixed_dictionaries({"kind": st.just("notify"), "method": st.just("notifications/message"),
                           "params": st.fixed_dictionaries({"level": st.sampled_from(["info", "error", "bogus"]),
                                                            "data": st.text(max_size=20)})}),
    st.fixed_dictionaries({"kind": st.just("notify"), "method": st.sampled_from([
        "notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/updated",
        "notifications/cancelled", "notifications/progress", "notifications/initialized", "notifications/zzz",
        "notifications/message"]), "params": st.one_of(st.none(), json_values, st.fixed_dictionaries({
            "uri": json_values, "requestId": json_values, "progressToken": json_values}))}),
)
ACTIONS = st.one_of(
    st.builds(lambda data: {"kind": "raw", "b64": base64.b64encode(data).decode()}, st.binary(max_size=120)),
    st.builds(lambda cut: {"kind": "partial", "cut": cut}, st.integers(1, 80)),
    st.sampled_from([{"kind": k} for k in ("invalid_utf8", "batch", "bad_version", "string_id", "float_id",
                                           "both", "request_shaped")]),
    st.builds(lambda offset: {"kind": "unknown_id", "offset": offset}, st.integers(0, 5)),
    st.builds(lambda size: {"kind": "huge", "size": size}, st.sampled_from([MAX_BYTES + 10, 3 * MAX_BYTES])),
    st.builds(lambda token: {"kind": "progress", "token": token},
              st.sampled_from(["real", "int", "null", "object", "other", "client", "missing"])),
    NOTIFICATIONS,
    st.builds(lambda method: {"kind": "request", "method": method},
              st.sampled_from([*SPEC_SERVER_REQUESTS, "ping", "evil/exec", "notifications/message"])),
)


def _clean(value: Any) -> bool:
    return POISON not in json.dumps(value)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(plan=st.lists(ACTIONS, max_size=8).filter(_clean), era=st.sampled_from(["modern", "legacy"]),
       progress=st.booleans())
@example(plan=[{"kind": "notify", "method": "notifications/resources/updated", "params": {"uri": ["x"]}}],
         era="legacy", progress=False)
def test_hostile_upstream_output_never_reaches_the_client(harness: Harness, plan: list[dict[str, Any]], era: str,
                                                          progress: bool) -> None:
    harness.run(_scenario(harness, plan, era, progress))


async def _scenario(h: Harness, plan: list[dict[str, Any]], era: str, progress: bool) -> None:
    h.errors.take()
    marker = f"real-answer-{h.serial}"
    answer, streamed, raw = await call_tool(h, "hostile__hostile", {"plan": plan, "text": marker}, era=era,
                                            progress=progress)
    assert POISON.encode() not in raw, raw[:2000]
    assert text_of(answer) == marker
    assert not answer["result"].get("isError")
    for message in streamed:
        method = message.get("method")
        if "id" in message:
            # The client declared no capability, so no server→client request may reach it: spec
            # methods lack the capability, and anything else is not relayed at all.
            raise AssertionError(f"a server request reached a client that cannot take it: {message}")
        elif method == "notifications/progress":
            assert progress, f"progress for a client that asked for none: {message}"
            assert message["params"]["progressToken"] == "client-token", message
        else:
            assert method == "notifications/message", f"unexpected notification on the call's stream: {message}"
            assert era == "legacy", "a modern client gets logs only when it asks for them"
    # Every server→client request was answered to the upstream by the gateway itself.
    refused = [a["method"] for a in plan if a["kind"] == "request"]
    await _expect_replies(h, refused, era)
    assert not h.errors.take(), "hostile upstream output caused an internal error"
    # The gateway still serves both upstreams.
    assert text_of((await call_tool(h, "hostile__echo", {"text": "again"}, era=era))[0]) == "again"
    assert text_of((await call_tool(h, "demo__echo", {"text": "other"}, era=era))[0]) == "other"


async def _expect_replies(h: Harness, methods: list[str], era: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    delay = 0.01
    while True:
        answer, _, _ = await call_tool(h, "hostile__replies", {}, era=era)
        replies = json.loads(text_of(answer))
        if len(replies) >= h.replies + len(methods):
            break
        assert asyncio.get_running_loop().time() < deadline, f"server requests left unanswered: {methods}"
        await asyncio.sleep(delay)  # the refusals travel on their own tasks; poll with a deadline
        delay = min(delay * 2, 0.25)
    new = replies[h.replies:]
    h.replies = len(replies)
    assert len(new) == len(methods), (new, methods)
    for reply in new:
        assert jsonrpc.classify(reply) in ("response", "error"), reply
        assert str(reply["id"]).startswith("srv-"), reply  # the upstream's own id, restored
        if "result" in reply:
            assert reply["result"] == {}, reply  # only ping succeeds
    assert sum("result" in r for r in new) == methods.count("ping")


# -- an upstream that stops reading --------------------------------------------------------------


def test_an_upstream_that_stops_reading_times_out_instead_of_hanging(tmp_path: Path) -> None:
    async def scenario() -> None:
        gateway, app = await _start(config(timeout=1.0, max_bytes=4 * 1024 * 1024), tmp_path)
        h = Harness(gateway, app, InternalErrors())
        try:
            assert text_of((await call_tool(h, "hostile__stall", {}, era="modern"))[0]) == "stalled"
            # Far more than a pipe holds: the write cannot complete while the child does not read.
            big = {"text": " " * (1024 * 1024)}
            for _ in range(2):
                answer, _, _ = await call_tool(h, "hostile__echo", big, era="modern")
                assert answer["error"]["code"] == -31504, answer
            assert text_of((await call_tool(h, "demo__echo", {"text": "other"}, era="modern"))[0]) == "other"
        finally:
            await gateway.aclose()

    with asyncio.Runner() as runner:
        runner.run(_bounded(scenario(), WAIT * 3))


# -- a notification the gateway handles itself ----------------------------------------------------


@pytest.mark.parametrize("uri", [["demo://readme"], {"u": 1}, None, 7])
def test_resource_updates_with_odd_uris_are_ignored(uri: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        gateway = Gateway(Config.model_validate(config()), config_dir=tmp_path)
        session = gateway.sessions.create("anonymous", "2025-11-25", {}, {})
        session.subscriptions.add("demo://readme")
        listener = Listener("anonymous", 1, uris={"demo://readme"})
        gateway.listeners.add(listener)
        message = {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}}
        gateway._unsolicited("hostile", ("anonymous", "", "legacy"), message)  # must not raise
        assert session.outbox.empty() and listener.queue.empty()

    with asyncio.Runner() as runner:
        runner.run(scenario())



# -- per-session upstream state is released with the session ---------------------------------------


def test_ended_front_sessions_leave_no_upstream_state_behind(tmp_path: Path) -> None:
    cfg = config()
    cfg["servers"]["hostile"]["session_scope"] = "session"  # one upstream process per legacy front session

    async def scenario() -> None:
        gateway, app = await _start(cfg, tmp_path)
        h = Harness(gateway, app, InternalErrors())
        try:
            for i in range(3):
                h.session = await _initialize(app)
                assert text_of((await call_tool(h, "hostile__echo", {"text": f"s{i}"}, era="legacy"))[0]) == f"s{i}"
                async with _client(app) as c:
                    assert (await c.delete("/mcp", headers={"mcp-session-id": h.session})).status_code == 200
            upstream = gateway.upstreams["hostile"]
            assert not [key for key in upstream._sessions if key[1]], "an upstream session outlived its front session"
            assert not [key for key in upstream._locks if key[1]], "a per-session lock outlived its front session"
        finally:
            await gateway.aclose()

    with asyncio.Runner() as runner:
        runner.run(_bounded(scenario(), WAIT * 2))
