"""The load generator: N concurrent MCP clients over Streamable HTTP, timed.

Each virtual client owns one keep-alive connection. A legacy client first runs
``initialize`` + ``notifications/initialized`` and then sends ``Mcp-Session-Id`` and
``MCP-Protocol-Version`` on every call; a modern client sends self-contained requests with
``_meta`` and the mirrored ``MCP-Protocol-Version``/``Mcp-Method``/``Mcp-Name`` headers.
All clients finish their set-up before the clock starts; then a warm-up, then the measured
window. Throughput counts good answers that arrive inside the window; latency is sampled
from requests that start inside it, however late they end (a request still unanswered when
the drain time runs out counts as a timeout and enters the latency samples with the time it
had waited, so a slow target's percentiles are not flattered).

It runs as its own process (``python -m bench.loadgen --worker``) and takes JSON commands on
stdin, one per line, answering each with one JSON line on stdout, so the harness can keep
it warm across runs and its CPU never mixes with the target's. ``run`` returns raw latency
samples (ms), counts by error class and the worker's own CPU seconds in the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from bench import aio, mcpwire
from bench.httpclients import Connection, connect


@dataclass
class RunSpec:
    host: str
    port: int
    path: str = "/mcp"
    era: str = "modern"  # modern | legacy | static (no MCP flow: the ceiling probe)
    op: str = "small"
    concurrency: int = 1
    duration: float = 2.0
    warmup: float = 0.5
    tool_prefix: str = ""
    client: str = "raw"
    drain_timeout: float = 10.0
    setup_timeout: float = 30.0
    # A slow target gets a longer window, up to ``max_duration``, until this many requests
    # that started inside it have finished.
    min_samples: int = 20
    max_duration: float = 8.0
    keep: bool = False  # keep the clients (connections, sessions) for the next run of this workload
    # Processes whose CPU seconds inside the measured window are reported, by label.
    watch_pids: dict[str, int] = field(default_factory=dict)


@dataclass
class RunResult:
    ok: int = 0  # good answers that arrived inside the window
    errors: dict[str, int] = field(default_factory=dict)
    error_sample: str = ""
    setup_errors: int = 0
    timeouts: int = 0
    elapsed: float = 0.0
    loadgen_cpu_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)


class _Window:
    """The measured window; ``inf`` until the warm-up ends and until the run ends."""

    def __init__(self, clients: int) -> None:
        self.start = float("inf")
        self.end = float("inf")
        self.stop = False
        self.in_flight: list[float | None] = [None] * clients  # start time of each client's request


def _note_error(result: RunResult, kind: str, sample: str) -> None:
    result.errors[kind] = result.errors.get(kind, 0) + 1
    if not result.error_sample:
        result.error_sample = f"{kind}: {sample[:300]}"


async def _legacy_setup(conn: Connection, result: RunResult) -> dict[str, str] | None:
    """Open one legacy session; the headers every later request must carry, or None."""
    status, headers, body = await conn.send(conn.prepare({}), mcpwire.initialize_body(0))
    msg = mcpwire.message_of(headers.get(b"content-type", b""), body)
    sid = headers.get(b"mcp-session-id")
    if status != 200 or sid is None or not msg:
        _note_error(result, f"init_http_{status}", body[:300].decode("utf-8", "replace"))
        return None
    try:
        version = orjson.loads(msg)["result"]["protocolVersion"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        _note_error(result, "init_bad_result", msg[:300].decode("utf-8", "replace"))
        return None
    session = {"Mcp-Session-Id": sid.decode(), "MCP-Protocol-Version": version}
    status, _, body = await conn.send(conn.prepare(session), mcpwire.INITIALIZED_BODY)
    if status not in (200, 202):
        _note_error(result, f"initialized_http_{status}", body[:300].decode("utf-8", "replace"))
        return None
    return session


class _Client:
    """One virtual client: its connection, its session headers and its request template."""

    def __init__(self, conn: Connection, prepared: Any, prefix: bytes, suffix: bytes, op: mcpwire.Op,
                 session_id: str | None, first_id: int) -> None:
        self.conn = conn
        self.prepared = prepared
        self.prefix = prefix
        self.suffix = suffix
        self.op = op
        self.session_id = session_id
        self.rid = first_id

    async def close(self) -> None:
        if self.session_id is not None:
            with contextlib.suppress(ConnectionError, OSError):
                await asyncio.wait_for(self.conn.send(self.conn.prepare({"Mcp-Session-Id": self.session_id}), b"",
                                                      method="DELETE"), 5.0)
        await self.conn.aclose()


async def _setup(spec: RunSpec, index: int, result: RunResult) -> _Client | None:
    """Connect, open the session (legacy) and make one checked call; None on failure."""
    conn = connect(spec.client, spec.host, spec.port, spec.path)
    era = "modern" if spec.era == "modern" else "legacy"
    op = mcpwire.Op.named(spec.op if spec.era != "static" else "small", spec.tool_prefix)
    headers: dict[str, str] = {}
    try:
        if spec.era == "legacy":
            session = await _legacy_setup(conn, result)
            if session is None:
                result.setup_errors += 1
                await conn.aclose()
                return None
            headers.update(session)
        headers.update(mcpwire.era_headers(op, era))
        prefix, suffix = mcpwire.body_parts(op, era)
        client = _Client(conn, conn.prepare(headers), prefix, suffix, op, headers.get("Mcp-Session-Id"),
                         (index + 1) * 10_000_000)
        # One call before the clock starts, checked in full (tool count, text size): lazy
        # per-session work in the target (an upstream session opened on first use, a catalogue
        # fetched once) is set-up, not steady-state latency.
        client.rid += 1
        status, rheaders, rbody = await conn.send(client.prepared, prefix + str(client.rid).encode() + suffix)
    except (ConnectionError, OSError) as exc:
        _note_error(result, "setup_connect", repr(exc))
        result.setup_errors += 1
        await conn.aclose()
        return None
    if spec.era == "static":
        error = None if status == 200 else f"http_{status}"
    else:
        error = mcpwire.check(op, client.rid, status, rheaders.get(b"content-type", b""), rbody, strict=True)
    if error is not None:
        _note_error(result, f"first_call_{error}", rbody[:300].decode("utf-8", "replace"))
        result.setup_errors += 1
        await client.close()
        return None
    return client


async def _drive(client: _Client, index: int, spec: RunSpec, window: _Window, result: RunResult) -> None:
    """Send requests back to back until the window closes."""
    conn, prepared, prefix, suffix, op = client.conn, client.prepared, client.prefix, client.suffix, client.op
    perf = time.perf_counter
    static = spec.era == "static"
    while not window.stop:
        client.rid += 1
        rid = client.rid
        body = prefix + str(rid).encode() + suffix
        t0 = perf()
        window.in_flight[index] = t0
        try:
            status, rheaders, rbody = await conn.send(prepared, body)
        except (ConnectionError, OSError) as exc:
            window.in_flight[index] = None
            if t0 >= window.start:
                _note_error(result, "connection", repr(exc))
            continue
        t1 = perf()
        window.in_flight[index] = None
        if static:
            error = None if status == 200 else f"http_{status}"
        else:
            error = mcpwire.check(op, rid, status, rheaders.get(b"content-type", b""), rbody)
        if error is None:
            if window.start <= t1 <= window.end:
                result.ok += 1
            if window.start <= t0 <= window.end:
                result.latencies_ms.append((t1 - t0) * 1000.0)
        elif window.start <= t0 <= window.end:
            _note_error(result, error, rbody[:300].decode("utf-8", "replace"))


# Clients kept between runs (``RunSpec.keep``), by target and workload: repeats of a scenario
# skip the set-up of hundreds of sessions, which on a slow target costs more than the run.
_POOL: dict[tuple[Any, ...], list[_Client]] = {}


def _pool_key(spec: RunSpec) -> tuple[Any, ...]:
    return (spec.client, spec.host, spec.port, spec.path, spec.era, spec.op, spec.tool_prefix)


async def release(host: str | None = None, port: int | None = None) -> dict[str, Any]:
    """Close pooled clients (all, or those of one target), ending their legacy sessions."""
    closing: list[_Client] = []
    for key in list(_POOL):
        if (host is None or key[1] == host) and (port is None or key[2] == port):
            closing.extend(_POOL.pop(key))
    await asyncio.gather(*(c.close() for c in closing), return_exceptions=True)
    return {"closed": len(closing)}


def _cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each watched process and its children."""
    from bench.procs import tree_cpu

    out: dict[str, float] = {}
    for key, pid in pids.items():
        times = tree_cpu(pid)
        if times is not None:
            out[key] = sum(times)
    return out


async def run(spec: RunSpec) -> RunResult:
    result = RunResult()
    key = _pool_key(spec)
    pooled = _POOL.pop(key, []) if spec.keep else []
    clients, spare = pooled[:spec.concurrency], pooled[spec.concurrency:]
    missing = spec.concurrency - len(clients)
    if missing:
        setups = [asyncio.create_task(_setup(spec, len(clients) + i, result)) for i in range(missing)]
        done, pending = await asyncio.wait(setups, timeout=spec.setup_timeout)
        for task in pending:
            task.cancel()
            result.setup_errors += 1
        clients.extend(c for t in setups if t in done and (c := t.result()) is not None)
    window = _Window(len(clients))
    tasks = [asyncio.create_task(_drive(client, i, spec, window, result)) for i, client in enumerate(clients)]
    await asyncio.sleep(spec.warmup)
    watched = _cpu_seconds(spec.watch_pids)
    cpu0 = time.process_time()
    window.start = time.perf_counter()
    await asyncio.sleep(spec.duration)
    while len(result.latencies_ms) < spec.min_samples and time.perf_counter() - window.start < spec.max_duration:
        # Polled, not signalled: the clients' hot loop stays free of bookkeeping.
        _, running = await asyncio.wait(tasks, timeout=0.02)
        if not running:
            break
    window.end = time.perf_counter()
    result.loadgen_cpu_s = time.process_time() - cpu0
    after = _cpu_seconds(spec.watch_pids)
    result.cpu_s = {k: after[k] - watched[k] for k in watched if k in after}
    window.stop = True
    result.elapsed = window.end - window.start
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=spec.drain_timeout)
    else:
        pending = set()
    now = time.perf_counter()
    for t0 in window.in_flight:
        if t0 is not None and window.start <= t0 <= window.end:
            result.timeouts += 1
            result.latencies_ms.append((now - t0) * 1000.0)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5.0)
    survivors: list[_Client] = []
    for client, task in zip(clients, tasks, strict=True):
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled():
                _note_error(result, "client_crash", repr(task.exception()))
            await client.conn.aclose()  # an answer may still be on its way on this connection
        else:
            survivors.append(client)
    if spec.keep:
        _POOL[key] = survivors + spare
    else:
        await asyncio.gather(*(c.close() for c in survivors + spare), return_exceptions=True)
    return result


# --- idle legacy sessions (RSS per session) -------------------------------------------------

_SESSIONS: list[tuple[str, int, str, str]] = []


async def open_sessions(host: str, port: int, path: str, count: int, connections: int = 32) -> dict[str, Any]:
    """Open ``count`` legacy sessions and keep them (no DELETE) for an RSS measurement."""
    result = RunResult()
    todo = [count]

    async def worker() -> None:
        conn = connect("raw", host, port, path)
        try:
            while todo[0] > 0:
                todo[0] -= 1
                try:
                    session = await _legacy_setup(conn, result)
                except (ConnectionError, OSError) as exc:
                    _note_error(result, "connect", repr(exc))
                    continue
                if session is not None:
                    _SESSIONS.append((host, port, path, session["Mcp-Session-Id"]))
        finally:
            await conn.aclose()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(connections, count))))
    return {"opened": len(_SESSIONS), "errors": result.errors, "error_sample": result.error_sample,
            "seconds": time.perf_counter() - t0}


async def close_sessions(connections: int = 32) -> dict[str, Any]:
    closed = 0
    sessions = list(_SESSIONS)
    _SESSIONS.clear()

    async def worker(chunk: list[tuple[str, int, str, str]]) -> None:
        nonlocal closed
        if not chunk:
            return
        conn = connect("raw", chunk[0][0], chunk[0][1], chunk[0][2])
        try:
            for _, _, _, sid in chunk:
                with contextlib.suppress(ConnectionError, OSError):
                    status, _, _ = await conn.send(conn.prepare({"Mcp-Session-Id": sid}), b"", method="DELETE")
                    closed += status in (200, 202, 204)
        finally:
            await conn.aclose()

    await asyncio.gather(*(worker(sessions[i::connections]) for i in range(connections)))
    return {"closed": closed, "of": len(sessions)}


# --- worker loop -----------------------------------------------------------------------------


async def _handle(command: dict[str, Any]) -> dict[str, Any]:
    cmd = command.get("cmd")
    if cmd == "run":
        return asdict(await run(RunSpec(**command["spec"])))
    if cmd == "stdio":
        from bench.stdiogen import StdioSpec, run_stdio

        return await run_stdio(StdioSpec(**command["spec"]))
    if cmd == "open_sessions":
        return await open_sessions(**command["args"])
    if cmd == "close_sessions":
        return await close_sessions()
    if cmd == "release":
        return await release(**command.get("args", {}))
    if cmd == "ping":
        return {"pong": True}
    return {"error": f"unknown command {cmd!r}"}


async def _worker() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer
    while True:
        line = await reader.readline()
        if not line:
            return
        command = orjson.loads(line)
        if command.get("cmd") == "quit":
            return
        try:
            reply = await _handle(command)
        except Exception as exc:  # report, don't die: the harness decides what to do
            reply = {"error": repr(exc)}
        out.write(orjson.dumps(reply) + b"\n")
        out.flush()


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--worker", action="store_true", help="take JSON commands on stdin")
    parser.add_argument("--url", help="one run against this URL (for manual use)")
    parser.add_argument("--era", default="modern")
    parser.add_argument("--op", default="small")
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("-d", "--duration", type=float, default=2.0)
    parser.add_argument("--client", default="raw")
    args = parser.parse_args(argv)
    if args.worker:
        aio.run(_worker())
        return
    if not args.url:
        parser.error("give --worker or --url")
    from urllib.parse import urlsplit

    parts = urlsplit(args.url)
    spec = RunSpec(host=parts.hostname or "127.0.0.1", port=parts.port or 80, path=parts.path or "/mcp",
                   era=args.era, op=args.op, concurrency=args.concurrency, duration=args.duration,
                   client=args.client)
    result = aio.run(run(spec))
    lat = sorted(result.latencies_ms)
    summary = {k: v for k, v in asdict(result).items() if k != "latencies_ms"}
    if lat:
        summary.update(rps=round(result.ok / result.elapsed, 1), p50=lat[len(lat) // 2],
                       p99=lat[min(len(lat) - 1, int(len(lat) * 0.99))])
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
