"""Property tests for the stdio front: hostile lines in, only JSON-RPC out.

The main property drives the real CLI (``python -m mcpwall stdio -c FILE``, the bundled demo
upstream behind it) for the whole module and feeds each hypothesis example a few lines —
garbage bytes, cut-off JSON, invalid UTF-8, lines over ``limits.max_message_bytes``, batches,
JSON-RPC shapes with wrong types — followed by a sentinel request. Invariants:

* every line of stdout is one JSON-RPC message;
* each line that is not a readable message gets exactly one error, with id null, before the
  sentinel's answer (the front answers bad lines in order, as it reads them);
* each readable request gets exactly one answer carrying its id (unless a later line cancelled
  it, which may silence it, as the spec allows) — re-initializing the session silences nothing;
* afterwards a valid request is still answered.

Framing edge cases that need a tiny line limit (a line over the reader's limit that arrives in
pieces) run ``StdioFront`` in-process on a ``StreamReader``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections import Counter
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mcpwall.config.model import Config
from mcpwall.errors import McpwallError
from mcpwall.gateway.core import Gateway
from mcpwall.protocol import jsonrpc
from mcpwall.transports.stdio_front import StdioFront
from support.fuzz_jsonrpc import META, dumps, json_values, legacy_request, messages, modern_request, notification

MAX_BYTES = 64 * 1024
LIMITS = jsonrpc.Limits(max_bytes=MAX_BYTES)
WAIT = 30.0
CONFIG: dict[str, Any] = {
    "servers": {"demo": {"command": sys.executable, "args": ["-m", "mcpwall.demo.server"],
                         # The demo server exits on arguments it cannot handle; come back fast.
                         "restart": {"initial_backoff": 0.01, "max_backoff": 0.05},
                         "circuit": {"failures": 1_000_000, "reset_after": 0.05}}},
    "guards": {"limits": {"max_message_bytes": MAX_BYTES}},
}


# -- the gateway as a child process --------------------------------------------------------------


@dataclass
class StdioGateway:
    runner: asyncio.Runner
    process: asyncio.subprocess.Process
    inbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    reader: asyncio.Task[None] | None = None
    serial: int = 0
    stray: list[Any] = field(default_factory=list)  # messages that arrived between examples
    late: set[Any] = field(default_factory=set)  # ids whose silenced request may still answer

    def run(self, coro: Awaitable[Any]) -> Any:
        return self.runner.run(_bounded(coro, WAIT * 4))

    async def send(self, lines: list[bytes]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"".join(line + b"\n" for line in lines))
        await self.process.stdin.drain()

    async def next_message(self, deadline: float) -> Any:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise AssertionError("timed out waiting for the gateway's stdout")
        try:
            async with asyncio.timeout(remaining):
                item = await self.inbox.get()
        except TimeoutError:
            raise AssertionError(f"timed out after {WAIT:g}s waiting for the gateway's stdout") from None
        if isinstance(item, BaseException):
            raise item
        return item


async def _bounded(coro: Awaitable[Any], seconds: float) -> Any:
    async with asyncio.timeout(seconds):
        return await coro


async def _read_stdout(gw: StdioGateway) -> None:
    """Every stdout line must be exactly one JSON-RPC message; anything else fails the test."""
    assert gw.process.stdout is not None
    while True:
        line = await gw.process.stdout.readline()
        if not line:
            await gw.inbox.put(AssertionError("the gateway closed stdout"))
            return
        try:
            message = orjson.loads(line)
            jsonrpc.classify(message)
        except (orjson.JSONDecodeError, McpwallError):
            await gw.inbox.put(AssertionError(f"stdout carried a non-JSON-RPC line: {line[:300]!r}"))
            return
        await gw.inbox.put(message)


@pytest.fixture(scope="module")
def stdio_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StdioGateway]:
    workdir = tmp_path_factory.mktemp("stdio-front")
    config = workdir / "mcpwall.yaml"
    config.write_text(json.dumps(CONFIG))
    runner = asyncio.Runner()

    async def start() -> asyncio.subprocess.Process:
        with (workdir / "stderr.log").open("wb") as log:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mcpwall", "stdio", "-c", str(config), cwd=workdir,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log, limit=16 * 1024 * 1024)

    process = runner.run(start())
    gw = StdioGateway(runner, process)
    gw.reader = runner.run(_spawn(_read_stdout(gw)))
    try:
        gw.run(_exchange(gw, []))  # ready: the sentinel is answered
        yield gw
    finally:
        runner.run(_stop(gw))
        runner.close()


async def _spawn(coro: Any) -> asyncio.Task[None]:
    return asyncio.create_task(coro)


async def _stop(gw: StdioGateway) -> None:
    if gw.process.stdin is not None:
        gw.process.stdin.close()
    try:
        async with asyncio.timeout(WAIT):
            await gw.process.wait()
    except TimeoutError:
        gw.process.kill()
        await gw.process.wait()
    if gw.reader is not None:
        gw.reader.cancel()
        with contextlib.suppress(BaseException):
            await gw.reader


# -- the oracle ----------------------------------------------------------------------------------


def expected(lines: list[bytes]) -> tuple[int, Counter[Any], set[Any]]:
    """(bad lines, answers due per request id, ids whose answer a later line may silence)."""
    bad = 0
    due: Counter[Any] = Counter()
    maybe: set[Any] = set()
    for line in lines:
        if not line.strip():
            continue
        try:
            message = jsonrpc.decode(line, LIMITS)
            if isinstance(message, list):
                raise McpwallError("batch")
            kind = jsonrpc.classify(message)
        except McpwallError:
            bad += 1
            continue
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        if kind == "request":
            due[_key(message["id"])] += 1
        elif kind == "notification" and message["method"] == "notifications/cancelled":
            rid = params.get("requestId")
            if isinstance(rid, (str, int)) and not isinstance(rid, bool):
                maybe.add(_key(rid))
    return bad, due, maybe


def _key(rid: Any) -> tuple[str, Any]:
    return (type(rid).__name__, rid)


async def _exchange(gw: StdioGateway, lines: list[bytes]) -> None:
    """Send the lines and a sentinel; check every answer until all that are due have arrived."""
    gw.serial += 1
    sentinel = f"sentinel-{gw.serial}"
    bad, due, maybe = expected(lines)
    await gw.send([*lines, orjson.dumps({"jsonrpc": "2.0", "id": sentinel, "method": "ping"})])
    deadline = asyncio.get_running_loop().time() + WAIT
    seen: Counter[Any] = Counter()
    nulls = 0
    sentinel_seen = False
    while not sentinel_seen or any(seen[k] < n for k, n in due.items() if k not in maybe):
        message = await gw.next_message(deadline)
        if "method" in message:
            continue  # a notification or server request from the gateway: allowed, and well-formed
        rid = message.get("id")
        if rid == sentinel:
            assert message.get("result") == {}, message
            assert nulls == bad, f"{bad} unreadable lines got {nulls} null-id errors before the sentinel: {lines}"
            sentinel_seen = True
        elif rid is None:
            assert "error" in message, message
            assert not sentinel_seen, f"a null-id error arrived after the sentinel: {message}"
            nulls += 1
        elif _key(rid) not in due and _key(rid) in gw.late:
            continue  # the late answer of a request an earlier example may have silenced
        else:
            seen[_key(rid)] += 1
            assert _key(rid) in due, f"an answer for an id nobody sent: {message}"
            assert seen[_key(rid)] <= due[_key(rid)], f"a request was answered twice: {message}"
    gw.late |= {k for k in maybe if seen[k] < due[k]}


async def _resync(gw: StdioGateway) -> None:
    """Drop whatever an earlier (failed) example left unread, so each example stands alone."""
    gw.serial += 1
    rid = f"sync-{gw.serial}"
    await gw.send([orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": "ping"})])
    deadline = asyncio.get_running_loop().time() + WAIT
    while (await gw.next_message(deadline)).get("id") != rid:
        pass


async def _still_serves(gw: StdioGateway) -> None:
    """A valid modern call reaches the upstream (which may be restarting after a fuzzed call)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    delay = 0.01
    while True:
        gw.serial += 1
        rid = f"echo-{gw.serial}"
        await gw.send([orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {
            "name": "demo__echo", "arguments": {"text": rid}, "_meta": META}})])
        while True:
            message = await gw.next_message(deadline)
            if message.get("id") == rid:
                break
            gw.stray.append(message)  # a late answer of a silenced request
        content = (message.get("result") or {}).get("content") or [{}]
        if content[0].get("text") == rid:
            return
        assert message.get("error", {}).get("code") == -31503, message  # only "restarting" may delay it
        if loop.time() > deadline:
            raise AssertionError(f"the gateway did not serve a valid request again: {message}")
        await asyncio.sleep(delay)  # polling a restarting upstream, with a deadline
        delay = min(delay * 2, 0.25)


# -- hostile lines ---------------------------------------------------------------------------------


def _no_newline(data: bytes) -> bytes:
    return data.replace(b"\n", b" ")


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["garbage", "partial", "utf8", "huge", "huge_garbage", "batch", "message",
                                 "message", "message", "legacy", "modern", "notification", "json", "blank"]))
    if kind == "garbage":
        return _no_newline(draw(st.binary(max_size=300)))
    if kind == "partial":
        data = dumps(draw(messages()))
        return _no_newline(data[: draw(st.integers(1, max(1, len(data) - 1)))])
    if kind == "utf8":
        broken = bytearray(dumps(draw(messages())))
        broken[draw(st.integers(0, len(broken) - 1))] = draw(st.sampled_from([0xFF, 0xC0, 0x80, 0xED]))
        return _no_newline(bytes(broken))
    if kind == "huge":
        return dumps({"jsonrpc": "2.0", "id": "huge", "method": "ping",
                      "params": {"pad": "x" * draw(st.integers(MAX_BYTES, MAX_BYTES * 3))}})
    if kind == "huge_garbage":
        return b"{" * draw(st.integers(MAX_BYTES, MAX_BYTES * 2))
    if kind == "batch":
        return _no_newline(dumps(draw(st.lists(st.one_of(messages(), legacy_request()), max_size=4))))
    if kind == "legacy":
        return _no_newline(dumps(draw(legacy_request())))
    if kind == "modern":
        return _no_newline(dumps(draw(modern_request())))
    if kind == "notification":
        return _no_newline(dumps(draw(notification())))
    if kind == "json":
        return _no_newline(dumps(draw(json_values)))
    if kind == "blank":
        return draw(st.sampled_from([b"", b" ", b"\t", b"\r"]))
    return _no_newline(dumps(draw(messages())))


INITIALIZE = (b'{"jsonrpc":"2.0","id":%s,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
              b'"capabilities":{},"clientInfo":{"name":"fuzz","version":"1"}}}')


def _listens(line: bytes) -> bool:
    """A valid modern subscriptions/listen would hold its stream open for good: keep it out."""
    return b"subscriptions/listen" in line


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(st.lists(lines().filter(lambda line: not _listens(line)), min_size=1, max_size=6))
@example([INITIALIZE % b"1", b'{"jsonrpc":"2.0","id":"mid","method":"ping"}', INITIALIZE % b"2"])
@example([b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":[1]}}'])
@example([b"{" * (MAX_BYTES + 1), b"\xff\xfe", b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', b'{"jsonrpc":'])
def test_every_bad_line_gets_one_error_and_the_front_keeps_serving(stdio_gateway: StdioGateway,
                                                                   batch: list[bytes]) -> None:
    async def scenario() -> None:
        await _resync(stdio_gateway)
        await _exchange(stdio_gateway, batch)
        await _still_serves(stdio_gateway)

    stdio_gateway.run(scenario())


# -- in-process framing regressions ------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The in-process gateways' config folder (the audit guard's files), away from the repository."""
    return tmp_path_factory.mktemp("stdio-in-process")


class Collector:
    """The front's stdout: write() and drain(), collected as parsed messages."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[Any] = asyncio.Queue()

    def write(self, data: bytes) -> None:
        for line in data.splitlines():
            self.messages.put_nowait(orjson.loads(line))

    async def drain(self) -> None:
        return None

    async def next(self) -> Any:
        async with asyncio.timeout(WAIT):
            return await self.messages.get()


async def _in_process(limit: int, scenario: Any, workdir: Path) -> None:
    gateway = Gateway(Config.model_validate(CONFIG), config_dir=workdir)  # audit files go there
    await gateway.start()
    reader = asyncio.StreamReader(limit=limit)
    out = Collector()
    front = asyncio.create_task(StdioFront(gateway, reader, out).run())
    try:
        await scenario(reader, out, front)
    finally:
        reader.feed_eof()
        with contextlib.suppress(BaseException):
            async with asyncio.timeout(WAIT):
                await front
        await gateway.aclose()


def run_in_process(limit: int, scenario: Any, workdir: Path) -> None:
    with asyncio.Runner() as runner:
        runner.run(_bounded(_in_process(limit, scenario, workdir), WAIT * 2))


PING = b'{"jsonrpc":"2.0","id":"after","method":"ping"}'


@settings(max_examples=40, deadline=None)
@given(st.integers(300, 3000), st.lists(st.integers(1, 400), min_size=1, max_size=8))
def test_an_overlong_line_is_dropped_whole_even_when_it_arrives_in_pieces(workdir: Path, size: int,
                                                                          pieces: list[int]) -> None:
    """The tail of a line over the reader's limit must not be read as a message of its own —
    here the tail is a complete request, which must never run."""
    smuggled = b'{"jsonrpc":"2.0","id":"smuggled","method":"ping"}'
    line = b" " * size + smuggled + b"\n"

    async def scenario(reader: asyncio.StreamReader, out: Collector, front: asyncio.Task[None]) -> None:
        rest = line
        for piece in pieces:
            reader.feed_data(rest[:piece])
            rest = rest[piece:]
            await asyncio.sleep(0)  # let the front read what has arrived so far
        reader.feed_data(rest)
        reader.feed_data(PING + b"\n")
        first = await out.next()
        assert first["id"] is None and first["error"]["code"] == -32600, first
        second = await out.next()
        assert second == {"jsonrpc": "2.0", "id": "after", "result": {}}, second

    run_in_process(256, scenario, workdir)


def test_requests_around_a_second_initialize_are_all_answered(tmp_path: Path) -> None:
    init = {"jsonrpc": "2.0", "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}

    def echo(rid: str) -> bytes:
        return orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                             "params": {"name": "demo__echo", "arguments": {"text": rid}}}) + b"\n"

    async def scenario(reader: asyncio.StreamReader, out: Collector, front: asyncio.Task[None]) -> None:
        reader.feed_data(orjson.dumps({**init, "id": 1}) + b"\n")
        first = await out.next()
        assert first["id"] == 1 and first["result"]["protocolVersion"] == "2025-06-18", first
        # Calls in flight (sent before and after it) while the client initializes again.
        reader.feed_data(b"".join(echo(f"before-{i}") for i in range(4)) + orjson.dumps({**init, "id": 2}) + b"\n"
                         + b"".join(echo(f"after-{i}") for i in range(4)) + PING + b"\n")
        answers: dict[Any, Any] = {}
        while len(answers) < 10:
            answer = await out.next()
            answers[answer["id"]] = answer
        assert answers[2]["result"]["protocolVersion"] == "2025-06-18"
        assert answers["after"]["result"] == {}
        for rid in [f"{when}-{i}" for when in ("before", "after") for i in range(4)]:
            assert answers[rid]["result"]["content"][0]["text"] == rid, answers[rid]

    run_in_process(1 << 20, scenario, tmp_path)


@pytest.mark.parametrize("request_id", [[1], {"a": 1}, [[]]])
def test_a_cancellation_with_an_unhashable_id_does_not_end_the_front(request_id: Any, tmp_path: Path) -> None:
    async def scenario(reader: asyncio.StreamReader, out: Collector, front: asyncio.Task[None]) -> None:
        reader.feed_data(orjson.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                       "params": {"requestId": request_id}}) + b"\n" + PING + b"\n")
        assert (await out.next())["id"] == "after"
        assert not front.done()

    run_in_process(1 << 20, scenario, tmp_path)
