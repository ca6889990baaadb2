"""Property tests for the Streamable HTTP front, driven in-process through its ASGI app.

One real gateway (the bundled demo upstream as a stdio upstream) runs for the whole module on
one event loop; every hypothesis example sends a short sequence of hostile HTTP requests —
arbitrary bodies, JSON-RPC shapes with wrong types in every field, batches, deep nesting, and
every header the front reads — through ``httpx.ASGITransport``. Invariants:

* the ASGI app never raises;
* every status is one that docs/errors.md documents;
* every JSON body (and every SSE event) is a well-formed JSON-RPC response or error, and an
  answer echoes the request's id or carries null;
* no body reveals internals (tracebacks, local paths, framework or runtime names, version
  strings) unless the client itself sent that text;
* afterwards a valid modern call and a valid legacy session still work (nothing was lost).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import sys
import tempfile
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import mcpwall
from mcpwall.config.model import Config
from mcpwall.gateway.core import Gateway
from mcpwall.protocol import jsonrpc
from mcpwall.transports.http_front import HttpFront
from mcpwall.transports.sse import SSEParser
from support.fuzz_jsonrpc import (
    META,
    METHODS,
    MODERN,
    dumps,
    json_values,
    legacy_request,
    messages,
    modern_request,
    notification,
)

SERVER_INFO_META = "io.modelcontextprotocol/serverInfo"
MAX_BYTES = 64 * 1024
DOCUMENTED_STATUSES = {200, 202, 400, 401, 403, 404, 405, 406, 409, 413, 415, 421, 429}
REQUEST_TIMEOUT = 30.0
RECOVERY_TIMEOUT = 30.0
SESSION = "<session>"  # placeholder for the live 2025-03-26 session of the harness
SAME = "<same>"  # placeholder for "the value the body implies" (Mcp-Method, Mcp-Name)
SAME_B64 = "<same-b64>"

CONFIG: dict[str, Any] = {
    "servers": {"demo": {"command": sys.executable, "args": ["-m", "mcpwall.demo.server"],
                         # The demo server exits on arguments it cannot handle; come back fast.
                         "restart": {"initial_backoff": 0.01, "max_backoff": 0.05},
                         "circuit": {"failures": 1_000_000, "reset_after": 0.05}}},
    "guards": {"limits": {"max_message_bytes": MAX_BYTES}},
}

# Text that would reveal the gateway's internals. Each is a leak only if the client did not send it.
LEAK_WORDS = ("traceback", 'file "', "uvicorn", "starlette", "python", "site-packages", "nonetype",
              "attributeerror", "keyerror", "typeerror", "valueerror", "unicodeencodeerror", "object has no attribute")
VERSION_RE = re.compile(r"(?<![\w.])\d+\.\d+\.\d+(?![\w.])")


def _local_paths() -> list[str]:
    paths = {str(Path(mcpwall.__file__).resolve().parent), sys.prefix, sys.base_prefix, sys.executable,
             tempfile.gettempdir(), str(Path.cwd())}
    return sorted(p.lower() for p in paths if len(p) > 4)


LOCAL_PATHS = _local_paths()


# -- the harness: one gateway, one loop, for the whole module -------------------------------------


@dataclass
class Harness:
    runner: asyncio.Runner
    gateway: Gateway
    app: HttpFront
    session: str = ""  # a live legacy session negotiated at 2025-03-26 (batches allowed)
    exchanges: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def run(self, coro: Awaitable[Any]) -> Any:
        return self.runner.run(_bounded(coro, REQUEST_TIMEOUT * 4))


async def _bounded(coro: Awaitable[Any], seconds: float) -> Any:
    async with asyncio.timeout(seconds):
        return await coro


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gateways' config folder: where the audit guard keeps its files, away from the repository."""
    return tmp_path_factory.mktemp("http-front")


@pytest.fixture(scope="module")
def harness(workdir: Path) -> Iterator[Harness]:
    runner = asyncio.Runner()
    gateway = runner.run(_start_gateway(CONFIG, workdir))
    h = Harness(runner, gateway, HttpFront(gateway, lifespan=False))
    try:
        h.session = h.run(recover(h))
        yield h
    finally:
        runner.run(gateway.aclose())
        runner.close()


async def _start_gateway(config: dict[str, Any], workdir: Path) -> Gateway:
    gateway = Gateway(Config.model_validate(config), config_dir=workdir)
    await gateway.start()
    return gateway


def client(app: Any) -> httpx.AsyncClient:
    # raise_app_exceptions: an exception escaping the app fails the test instead of becoming a 500.
    return httpx.AsyncClient(transport=httpx.ASGITransport(app, raise_app_exceptions=True),
                             base_url="http://127.0.0.1:8765", timeout=REQUEST_TIMEOUT)


def headers_for(method: str, *, modern: bool = False, name: str | None = None,
                session: str | None = None, version: str | None = None) -> dict[str, str]:
    out = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if modern:
        out.update({"mcp-protocol-version": MODERN, "mcp-method": method})
        if name is not None:
            out["mcp-name"] = name
    if session is not None:
        out["mcp-session-id"] = session
    if version is not None:
        out["mcp-protocol-version"] = version
    return out


async def recover(h: Harness) -> str:
    """A valid modern call and a valid legacy session work again (the demo upstream may be
    restarting after a fuzzed call killed it). Returns a fresh 2025-03-26 session id."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RECOVERY_TIMEOUT
    delay = 0.01
    last = ""
    async with client(h.app) as c:
        while True:
            marker = f"alive-{h.exchanges}"
            modern = await c.post("/mcp", headers=headers_for("tools/call", modern=True, name="demo__echo"),
                                  json={"jsonrpc": "2.0", "id": "m", "method": "tools/call",
                                        "params": {"name": "demo__echo", "arguments": {"text": marker},
                                                   "_meta": META}})
            init = await c.post("/mcp", headers=headers_for("initialize"), json={
                "jsonrpc": "2.0", "id": "i", "method": "initialize",
                "params": {"protocolVersion": "2025-03-26", "capabilities": {},
                           "clientInfo": {"name": "fuzz", "version": "1"}}})
            session = str(init.headers.get("mcp-session-id", ""))
            legacy = await c.post("/mcp", headers=headers_for("tools/call", session=session), json={
                "jsonrpc": "2.0", "id": "l", "method": "tools/call",
                "params": {"name": "demo__echo", "arguments": {"text": marker}}})
            ok = (modern.status_code == 200 and _echoed(modern.json(), "m", marker)
                  and init.status_code == 200 and session
                  and legacy.status_code == 200 and _echoed(legacy.json(), "l", marker))
            if ok:
                return session
            last = f"modern={modern.status_code} {modern.text[:300]} init={init.status_code} legacy=" \
                   f"{legacy.status_code} {legacy.text[:300]}"
            if loop.time() > deadline:
                raise AssertionError(f"the gateway did not recover within {RECOVERY_TIMEOUT:g}s: {last}")
            await asyncio.sleep(delay)  # polling a restarting upstream, with a deadline
            delay = min(delay * 2, 0.25)


def _echoed(message: Any, rid: str, text: str) -> bool:
    if not isinstance(message, dict) or message.get("id") != rid:
        return False
    result = message.get("result") or {}
    content = result.get("content") or [{}]
    return bool(content[0].get("text") == text and not result.get("isError"))


# -- hostile requests ------------------------------------------------------------------------------

header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
                      max_size=40)
# The SEP-2243 form of Mcp-Name with whatever may sit between the markers: non-ASCII text,
# invalid base64, base64 of bytes that are not UTF-8.
encoded_words = st.one_of(
    st.builds(lambda text: f"=?base64?{text}?=", header_text),
    st.builds(lambda raw: "=?base64?" + base64.b64encode(raw).decode() + "?=", st.binary(max_size=12)))


@st.composite
def coherent_modern(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A valid-looking 2026-07-28 request with matching headers, then a few mutations."""
    body = draw(modern_request())
    headers: dict[str, Any] = {"mcp-protocol-version": MODERN, "mcp-method": SAME}
    if body["method"] in ("tools/call", "prompts/get", "resources/read"):
        headers["mcp-name"] = draw(st.sampled_from([SAME, SAME_B64]))
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(["mcp-protocol-version", "mcp-method", "mcp-name", "mcp-name"]))
        headers[key] = draw(st.one_of(st.none(), header_text, encoded_words, st.sampled_from(
            ["=?base64?ZGVtb19fZWNobw==?=", "=?base64?!!!?=", "=?base64?\xe9?=", "=?base64??=",
             "=?base64?/w==?=", "2025-06-18"])))
    return body, headers


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """(body bytes, header hints the body suggests)."""
    kind = draw(st.sampled_from(["message", "message", "message", "modern", "modern", "modern", "legacy", "legacy",
                                 "legacy", "notification", "batch", "json", "raw", "cut", "huge", "utf8"]))
    hints: dict[str, Any] = {}
    if kind == "modern":
        message, hints = draw(coherent_modern())
        return dumps(message), hints
    if kind == "message":
        if draw(st.integers(0, 3)):
            hints["mcp-session-id"] = SESSION  # legacy requests need a session
        return dumps(draw(messages())), hints
    if kind == "legacy":
        hints["mcp-session-id"] = SESSION
        return dumps(draw(legacy_request())), hints
    if kind == "batch":
        hints["mcp-session-id"] = SESSION
        return dumps(draw(st.lists(st.one_of(messages(), json_values), max_size=5))), hints
    if kind == "notification":
        if draw(st.integers(0, 5)):
            hints["mcp-session-id"] = SESSION
        return dumps(draw(notification())), hints
    if kind == "json":
        return dumps(draw(json_values)), hints
    if kind == "raw":
        return draw(st.binary(max_size=200)), hints
    if kind == "cut":
        data = dumps(draw(messages()))
        return data[: draw(st.integers(0, max(0, len(data) - 1)))], hints
    if kind == "huge":
        return dumps({"jsonrpc": "2.0", "id": 1, "method": "ping",
                       "params": {"pad": "x" * draw(st.integers(MAX_BYTES, MAX_BYTES + 4096))}}), hints
    broken = bytearray(dumps(draw(messages())))
    broken[draw(st.integers(0, len(broken) - 1))] = draw(st.sampled_from([0xFF, 0xC0, 0x80, 0xED]))
    return bytes(broken), hints


GATES: dict[str, st.SearchStrategy[Any]] = {
    "method": st.sampled_from(["GET", "DELETE", "PUT", "OPTIONS", "HEAD", "PATCH"]),
    "path": st.sampled_from(["/mcp/", "/", "/healthz", "/nope", "/MCP", "/mcp/x"]),
    "content-type": st.one_of(st.sampled_from(["application/json; charset=utf-8", "APPLICATION/JSON", "text/plain",
                                               "", "application/jsonx"]), header_text, st.none()),
    "accept": st.one_of(st.sampled_from(["*/*", "application/json", "text/event-stream", "text/html", ""]),
                        header_text, st.none()),
    "origin": st.one_of(st.sampled_from(["http://localhost:3000", "http://127.0.0.1", "https://evil.example", "null",
                                         "http://[::1", "http://localhost.evil.example", "file://"]), header_text),
    "host": st.one_of(st.sampled_from(["localhost", "127.0.0.1:8765", "[::1]:80", "evil.example", "[::1",
                                       "127.0.0.1.evil.example", "", "::1"]), header_text),
    "content-length": st.sampled_from(["\xb2", "9" * 5000, "-1", "abc", "00000000000000000000000000001", "1e3"]),
}
PROTOCOL_HEADERS: dict[str, st.SearchStrategy[Any]] = {
    "mcp-protocol-version": st.one_of(st.sampled_from([MODERN, "2025-11-25", "2025-06-18", "2025-03-26",
                                                       "2024-11-05", "1999-01-01"]), header_text),
    "mcp-method": st.one_of(st.just(SAME), st.sampled_from(METHODS[:6]), header_text),
    "mcp-name": st.one_of(st.sampled_from([SAME, SAME_B64, "demo__echo", "=?base64?!!!?=", "=?base64?\xe9?=",
                                           "=?base64??=", "=?base64?ZGVtb19fZWNobw==?="]), header_text),
    "mcp-session-id": st.one_of(st.just(SESSION), st.sampled_from(["", "nope", "x" * 43]), header_text),
}


@st.composite
def http_requests(draw: st.DrawFn) -> dict[str, Any]:
    body, hints = draw(bodies())
    request: dict[str, Any] = {"method": "POST", "path": "/mcp"}
    headers: dict[str, Any] = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    # Most requests pass the transport gates, so that the JSON-RPC layers behind them are fuzzed too.
    if draw(st.integers(0, 3)) == 0:
        for gate in draw(st.lists(st.sampled_from(sorted(GATES)), min_size=1, max_size=3, unique=True)):
            value = draw(GATES[gate])
            if gate in ("method", "path"):
                request[gate] = value
            else:
                headers[gate] = value
    for key, strategy in PROTOCOL_HEADERS.items():
        if key in hints and draw(st.integers(0, 6)):
            headers[key] = hints[key]
        elif draw(st.integers(0, 7)) == 0:
            headers[key] = draw(strategy)
    request["body"] = body
    request["headers"] = {k: v for k, v in headers.items() if v is not None}
    return request


def _regression(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """A request the fuzzer once found (kept as an explicit example)."""
    return {"method": "POST", "path": "/mcp", "body": body,
            "headers": {"content-type": "application/json", "accept": "application/json, text/event-stream",
                        **headers}}


def _resolve(h: Harness, request: dict[str, Any]) -> tuple[str, str, bytes, dict[str, bytes]]:
    body: bytes = request["body"]
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    params = parsed.get("params") if isinstance(parsed, dict) else None
    method = parsed.get("method") if isinstance(parsed, dict) else None
    name = None
    if isinstance(params, dict):
        name = params.get("uri") if method == "resources/read" else params.get("name")
    out: dict[str, bytes] = {}
    for key, value in request["headers"].items():
        if value == SESSION:
            # A live session with GET would open an endless stream; GET gets a dead id instead.
            value = h.session if request["method"] != "GET" else "dead-session"
        elif value in (SAME, SAME_B64):
            same = method if key == "mcp-method" else name
            if not isinstance(same, str):
                continue
            if value == SAME_B64 or not _header_safe(same):
                same = "=?base64?" + base64.b64encode(same.encode("utf-8", "surrogatepass")).decode() + "?="
            value = same
        out[key] = str(value).encode("latin-1")
    return request["method"], request["path"], body, out


def _header_safe(value: str) -> bool:
    return all(0x20 <= ord(c) <= 0xFF and c != "\x7f" for c in value)


# -- checking answers ----------------------------------------------------------------------------


def check_exchange(request: bytes, status: int, ctype: str, body: bytes, path: str, sent_ids: list[Any]) -> None:
    if path.rstrip("/") not in ("/mcp",):
        # Other paths: health (JSON, not JSON-RPC) or the router's own 404/405.
        assert status in DOCUMENTED_STATUSES | {503}, (status, body[:300])
        check_no_leaks(request, body)
        return
    assert status in DOCUMENTED_STATUSES, (status, body[:500])
    if not body:
        return
    if ctype.startswith("text/event-stream"):
        events = SSEParser(max_event_bytes=16 * 1024 * 1024).feed(body)
        assert events, body[:300]
        for event in events:
            message = orjson.loads(event.data)
            kind = jsonrpc.classify(message)
            check_no_leaks(request, _without_server_info(message))
            if kind in ("response", "error"):
                check_answer(message, sent_ids)
        return
    assert ctype.startswith("application/json"), (status, ctype, body[:300])
    message = orjson.loads(body)
    replies = message if isinstance(message, list) else [message]
    assert replies, body
    for reply in replies:
        assert jsonrpc.classify(reply) in ("response", "error"), reply
        check_answer(reply, sent_ids)
        check_no_leaks(request, _without_server_info(reply))


def check_answer(reply: dict[str, Any], sent_ids: list[Any]) -> None:
    if "error" in reply:
        error = reply["error"]
        assert isinstance(error["code"], int) and isinstance(error["message"], str), reply
    rid = reply.get("id")
    assert rid is None or any(rid == s and type(rid) is type(s) for s in sent_ids), (rid, sent_ids)


def _without_server_info(message: Any) -> bytes:
    """The message as bytes, minus the serverInfo objects (which name a version by design)."""
    if isinstance(message, dict) and isinstance(message.get("result"), dict):
        result = dict(message["result"])
        result.pop("serverInfo", None)
        if isinstance(result.get("_meta"), dict):
            result["_meta"] = {k: v for k, v in result["_meta"].items() if k != SERVER_INFO_META}
        message = {**message, "result": result}
    return orjson.dumps(message)


def check_no_leaks(request: bytes, answer: bytes) -> None:
    text = answer.decode("utf-8", "replace").lower()
    sent = request.decode("utf-8", "replace").lower()
    for word in LEAK_WORDS:
        assert word not in text or word in sent, f"answer reveals {word!r}: {answer[:500]!r}"
    for path in LOCAL_PATHS:
        assert path not in text or path in sent, f"answer reveals a local path: {answer[:500]!r}"
    for version in VERSION_RE.findall(text):
        assert version in sent, f"answer reveals version {version!r}: {answer[:500]!r}"


def _ids_in(body: bytes) -> list[Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    items = value if isinstance(value, list) else [value]
    return [item.get("id") for item in items if isinstance(item, dict) and "id" in item]


def raw_request(method: str, path: str, body: bytes | None, headers: dict[str, bytes]) -> httpx.Request:
    """A request with exactly these header bytes: no client defaults (Accept, User-Agent) added."""
    return httpx.Request(method, f"http://127.0.0.1:8765{path}", content=body,
                         headers=[(k.encode("latin-1"), v) for k, v in headers.items()])


async def exchange(h: Harness, c: httpx.AsyncClient, request: dict[str, Any]) -> None:
    method, path, body, headers = _resolve(h, request)
    async with asyncio.timeout(REQUEST_TIMEOUT):
        response = await c.send(raw_request(method, path, body if method not in ("GET", "HEAD") else None, headers))
    h.exchanges += 1
    h.statuses[response.status_code] = h.statuses.get(response.status_code, 0) + 1
    event(f"HTTP {response.status_code}")
    if response.headers.get("content-type", "").startswith("application/json") and response.content:
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
            reply = orjson.loads(response.content)
            event(f"JSON-RPC {reply['error']['code'] if 'error' in reply else 'result'}")
    sent = body + b"\n" + b"\n".join(k + b": " + v for k, v in ((k.encode(), v) for k, v in headers.items()))
    check_no_leaks(sent, b"\n".join(k + b": " + v for k, v in response.headers.raw))  # no Server: banner either
    check_exchange(sent, response.status_code, response.headers.get("content-type", ""), response.content, path,
                   _ids_in(body))


@settings(max_examples=400, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(st.lists(http_requests(), min_size=1, max_size=4))
@example([_regression(b'{"jsonrpc":"2.0","id":1,"method":"ping"}', {"mcp-session-id": SESSION,
                                                                    "content-length": "\xb2"}),
          _regression(b'{"jsonrpc":"2.0","id":1,"method":"ping"}', {"content-length": "9" * 5000})])
@example([_regression(orjson.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
    "name": "demo__echo", "arguments": {"text": "x"}, "_meta": META}}),
    {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "=?base64?\xe9?="})])
@example([_regression(b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":{"a":1}}}',
                      {"mcp-session-id": SESSION})])
def test_hostile_requests_keep_the_front_sound(harness: Harness, requests: list[dict[str, Any]]) -> None:
    async def scenario() -> None:
        async with client(harness.app) as c:
            for request in requests:
                await exchange(harness, c, request)
        harness.session = await recover(harness)

    harness.run(scenario())


# -- targeted regressions found by the fuzzer -------------------------------------------------------


async def _post(app: Any, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with client(app) as c:
        return await c.send(raw_request("POST", "/mcp", body, {k: v.encode("latin-1") for k, v in headers.items()}))


@pytest.mark.parametrize("length", ["\xb2", "9" * 5000, "99999999999999999999999"])
def test_odd_content_length_is_refused_not_raised(harness: Harness, length: str) -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    response = harness.run(_post(harness.app, body, {**headers_for("ping", session=harness.session),
                                                     "content-length": length}))
    # An unreadable length is ignored (the body itself is capped while read); a huge one is 413.
    assert response.status_code in (200, 413)
    if response.status_code == 413:
        assert response.json()["error"]["code"] == -32600


@pytest.mark.parametrize("name", ["=?base64?\xe9?=", "=?base64?!!!?=", "=?base64?/w==?="])
def test_undecodable_mcp_name_is_a_header_mismatch(harness: Harness, name: str) -> None:
    body = orjson.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                         "params": {"name": "demo__echo", "arguments": {"text": "x"}, "_meta": META}})
    response = harness.run(_post(harness.app, body, headers_for("tools/call", modern=True, name=name)))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32020
    assert response.json()["id"] == 7


@pytest.mark.parametrize("request_id", [[1], {"a": 1}, [[]]])
def test_cancellation_with_unhashable_request_id_is_accepted(harness: Harness, request_id: Any) -> None:
    body = orjson.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id}})
    response = harness.run(_post(harness.app, body, headers_for("notifications/cancelled", session=harness.session)))
    assert response.status_code == 202
    harness.session = harness.run(recover(harness))


# -- streams: driven on the raw ASGI interface (httpx buffers whole responses) ------------------------


async def open_stream(app: Any, method: str, headers: dict[str, str], body: bytes = b"") -> dict[str, Any]:
    """Start a request, wait for the response head and first body chunk, then disconnect.

    Returns the response start message and the first chunk."""
    started: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    first: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    gone = asyncio.Event()
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and not started.done():
            started.set_result(message)
        elif message["type"] == "http.response.body" and not first.done():
            first.set_result(message.get("body", b""))

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": "/mcp",
             "raw_path": b"/mcp", "query_string": b"", "scheme": "http", "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 8765),
             "headers": [(b"host", b"127.0.0.1:8765")] + [(k.encode(), v.encode()) for k, v in headers.items()]}
    task = asyncio.create_task(app(scope, receive, send))
    async with asyncio.timeout(REQUEST_TIMEOUT):
        head = await started
        chunk = await first
    gone.set()
    async with asyncio.timeout(REQUEST_TIMEOUT):
        await task  # raises if the app raised
    return {"status": head["status"], "headers": dict(head.get("headers", [])), "first": chunk}


def test_closed_listen_streams_release_their_in_flight_slot(tmp_path: Path) -> None:
    """Each closed subscriptions/listen stream must give back its limits.max_in_flight slot."""
    config = {**CONFIG, "guards": {"limits": {"max_message_bytes": MAX_BYTES, "max_in_flight": 2}}}

    async def scenario() -> None:
        gateway = await _start_gateway(config, tmp_path)
        app = HttpFront(gateway, lifespan=False)
        try:
            for rid in range(5):
                body = orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": "subscriptions/listen",
                                     "params": {"notifications": {"toolsListChanged": True}, "_meta": META}})
                stream = await open_stream(app, "POST", headers_for("subscriptions/listen", modern=True), body)
                assert stream["status"] == 200, stream
                assert b"notifications/subscriptions/acknowledged" in stream["first"]
            response = await _post(app, orjson.dumps({"jsonrpc": "2.0", "id": 9, "method": "tools/list",
                                                      "params": {"_meta": META}}),
                                   headers_for("tools/list", modern=True))
            assert response.status_code == 200, response.text
            assert "tools" in response.json()["result"]
        finally:
            await gateway.aclose()

    with asyncio.Runner() as runner:
        runner.run(_bounded(scenario(), REQUEST_TIMEOUT * 2))


# -- sessions belong to the principal that opened them ----------------------------------------------


def test_a_session_is_useless_to_another_principal(tmp_path: Path) -> None:
    pytest.importorskip("mcpwall.guards.auth")
    from mcpwall.auth import apikey
    from mcpwall.storage.apikeys import SqliteKeyStore

    keys_url = f"sqlite:///{tmp_path}/keys.db"
    store = SqliteKeyStore(tmp_path / "keys.db")
    _, alice = apikey.mint(store, "alice", ())
    _, bob = apikey.mint(store, "bob", ())
    store.close()
    config = {**CONFIG, "storage": {"url": f"sqlite:///{tmp_path}/state.db"},
              "guards": {"limits": {"max_message_bytes": MAX_BYTES}, "auth": {"api_keys": {"store": keys_url}}}}

    async def scenario() -> None:
        gateway = await _start_gateway(config, tmp_path)
        app = HttpFront(gateway, lifespan=False)
        try:
            await _cross_principal(app, alice, bob)
        finally:
            await gateway.aclose()

    with asyncio.Runner() as runner:
        runner.run(_bounded(scenario(), REQUEST_TIMEOUT * 2))


async def _cross_principal(app: Any, alice: str, bob: str) -> None:
    as_alice, as_bob = {"x-api-key": alice}, {"x-api-key": bob}
    init = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "a", "version": "1"}}})
    opened = await _post(app, init, {**headers_for("initialize"), **as_alice})
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    call = orjson.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                         "params": {"name": "demo__echo", "arguments": {"text": "mine"}}})
    batch = orjson.dumps([{"jsonrpc": "2.0", "id": 3, "method": "ping"}])
    # Bob knows Alice's session id: POST, batch, GET stream and DELETE all act as if it did not exist.
    for body in (call, batch):
        refused = await _post(app, body, {**headers_for("tools/call", session=session), **as_bob})
        assert refused.status_code == 404, refused.text
        assert "mine" not in refused.text
    async with client(app) as c:
        stream = await c.get("/mcp", headers={"accept": "text/event-stream", "mcp-session-id": session, **as_bob})
        assert stream.status_code == 404
        deleted = await c.delete("/mcp", headers={"mcp-session-id": session, **as_bob})
        assert deleted.status_code == 404
    # Unauthenticated use of the session is refused outright.
    anonymous = await _post(app, call, headers_for("tools/call", session=session))
    assert anonymous.status_code == 401
    # Alice's session survived all of it.
    mine = await _post(app, call, {**headers_for("tools/call", session=session), **as_alice})
    assert mine.status_code == 200, mine.text
    assert mine.json()["id"] == 2
    assert mine.json()["result"]["content"][0]["text"] == "mine"


# -- the deprecated HTTP+SSE transport, when enabled ------------------------------------------------


def test_legacy_sse_stream_at_the_session_limit_is_refused_not_raised(tmp_path: Path) -> None:
    config = {**CONFIG, "listen": {"legacy_sse": True, "max_sessions": 1}}

    async def scenario() -> None:
        gateway = await _start_gateway(config, tmp_path)
        app = HttpFront(gateway, lifespan=False)
        try:
            init = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "a", "version": "1"}}})
            assert (await _post(app, init, headers_for("initialize"))).status_code == 200  # the only session
            async with client(app) as c:
                refused = await c.get("/sse", headers={"accept": "text/event-stream"})
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == -31503
        finally:
            await gateway.aclose()

    with asyncio.Runner() as runner:
        runner.run(_bounded(scenario(), REQUEST_TIMEOUT * 2))
