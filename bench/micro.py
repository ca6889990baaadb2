"""``python -m bench micro``: the micro-benchmarks behind the gateway's library choices.

* ``servers`` — ASGI servers (uvicorn + uvloop + httptools, uvicorn + asyncio + h11, granian)
  serving the same tiny JSON-RPC app (bare ASGI and behind Starlette), driven by the load
  generator at 1 and 64 clients: calls/s, p50, and the server's CPU µs per call.
* ``clients`` — HTTP clients a gateway could use towards its upstreams (httpx, httpx2,
  aiohttp, a raw asyncio protocol), each in its own process sending tools/call to the fast
  upstream with 1 and 64 concurrent tasks: calls/s and the client's CPU µs per call, for a
  200 B and a 1 MiB result.
* ``json``    — orjson vs the standard library: decode and encode of a tools/call request,
  a 200 B, 64 KiB and 1 MiB result and the 500-tool list, in µs per operation and MB/s.

Results print as tables and go to ``bench/results/micro-<timestamp>.json`` and
``bench/results/latest-micro.json``. Every process started here is stopped before return.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import timeit
from pathlib import Path
from typing import Any

import orjson

from bench import aio, mcpwire, stats
from bench.payloads import CALL_TOOLS, LIST_TOOLS, SIZES, all_tools, call_result
from bench.procs import Sampler, StartError, Supervisor, free_port, http_ok, read_port_line, wait_until
from bench.runner import log

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent

# --- ASGI servers -----------------------------------------------------------------------------------


def _server_argv(kind: str, app: str, port: int) -> list[str]:
    if kind == "uvicorn-uvloop-httptools":
        return [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                "--log-level", "warning", "--no-access-log"]
    if kind == "uvicorn-asyncio-h11":
        return [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--loop", "asyncio", "--http", "h11",
                "--log-level", "warning", "--no-access-log"]
    if kind == "granian":
        granian = str(Path(sys.executable).with_name("granian"))
        return [granian, "--interface", "asgi", app, "--port", str(port), "--loop", "uvloop", "--workers", "1",
                "--runtime-threads", "1", "--no-ws", "--log-level", "warning"]
    raise KeyError(kind)


SERVERS = ["uvicorn-uvloop-httptools", "uvicorn-asyncio-h11", "granian"]
APPS = {"asgi": "bench.micro_app:app", "starlette": "bench.micro_app:starlette_app"}


def servers(supervisor: Supervisor, duration: float, levels: list[int]) -> list[dict[str, Any]]:
    from bench.driver import LoadGen

    loadgen = LoadGen(supervisor, 1)
    rows: list[dict[str, Any]] = []
    try:
        for app_name, app in APPS.items():
            for kind in SERVERS:
                port = free_port()
                managed = supervisor.spawn(f"micro-{kind}-{app_name}", _server_argv(kind, app, port), cwd=str(REPO))
                try:
                    wait_until(http_ok(f"http://127.0.0.1:{port}/healthz"), managed, 20.0, "ready")
                except StartError as exc:
                    rows.append({"server": kind, "app": app_name, "error": str(exc).splitlines()[0]})
                    continue
                for concurrency in levels:
                    spec = {"host": "127.0.0.1", "port": port, "path": "/mcp", "era": "static", "op": "small",
                            "concurrency": concurrency, "duration": duration, "warmup": 0.3,
                            "watch_pids": {"target": managed.pid}}
                    runs = []
                    for _ in range(3):
                        with Sampler({"target": managed.pid}) as sampler:
                            raw = loadgen.run(spec)
                        runs.append(stats.summarize(raw, peak_rss=sampler.peak_rss["target"]))
                    agg = stats.aggregate(runs)
                    rows.append({"server": kind, "app": app_name, "concurrency": concurrency, "rps": agg["rps"],
                                 "p50": agg["p50"], "p99": agg["p99"], "cpu_us_per_call": agg["cpu_us_per_call"],
                                 "errors": agg["error_count"]})
                    log(f"   {kind:26} {app_name:9} c={concurrency:<3} {agg['rps']:8.0f}/s p50 {agg['p50']:.3f} ms "
                        f"{agg['cpu_us_per_call'] or 0:6.1f} µs CPU/call")
                supervisor.stop(managed)
    finally:
        loadgen.close()
    return rows


# --- upstream HTTP clients --------------------------------------------------------------------------

CLIENT_KINDS = ["httpx", "httpx2", "aiohttp", "raw"]


async def _client_bench(kind: str, url: str, op: str, concurrency: int, duration: float) -> dict[str, Any]:
    """Runs inside its own process: ``concurrency`` tasks share one client for ``duration``."""
    from urllib.parse import urlsplit

    wire_op = mcpwire.Op.named(op)
    prefix, suffix = mcpwire.body_parts(wire_op, "modern")
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               **mcpwire.era_headers(wire_op, "modern")}
    parts = urlsplit(url)
    post: Any
    close: Any
    if kind in ("httpx", "httpx2"):
        lib: Any = __import__(kind)
        client = lib.AsyncClient(limits=lib.Limits(max_connections=256, max_keepalive_connections=256), timeout=30)

        async def post(body: bytes) -> bytes:
            resp = await client.post(url, content=body, headers=headers)
            return bytes(resp.content)

        close = client.aclose
    elif kind == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256), auto_decompress=False)

        async def post(body: bytes) -> bytes:
            async with session.post(url, data=body, headers=headers) as resp:
                return bytes(await resp.read())

        close = session.close
    else:
        from bench.httpclients import RawConnection

        pool: list[RawConnection] = []
        conn_headers = mcpwire.era_headers(wire_op, "modern")

        async def post(body: bytes) -> bytes:
            conn = pool.pop() if pool else RawConnection(parts.hostname or "127.0.0.1", parts.port or 80,
                                                             parts.path + ("?" + parts.query if parts.query else ""))
            try:
                _, _, data = await conn.send(conn.prepare(conn_headers), body)
            finally:
                pool.append(conn)
            return data

        async def close() -> None:
            for conn in pool:
                await conn.aclose()

    count = [0]
    stop = [False]

    async def worker(index: int) -> None:
        rid = index * 10_000_000
        while not stop[0]:
            rid += 1
            data = await post(prefix + str(rid).encode() + suffix)
            if len(data) >= wire_op.min_bytes:
                count[0] += 1

    tasks = [asyncio.create_task(worker(i)) for i in range(concurrency)]
    await asyncio.sleep(0.3)
    count[0] = 0
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    await asyncio.sleep(duration)
    done = count[0]
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    stop[0] = True
    await asyncio.wait(tasks, timeout=10)
    await close()
    return {"rps": done / elapsed, "cpu_us_per_call": cpu * 1e6 / max(1, done), "cpu_share": cpu / elapsed}


def clients(supervisor: Supervisor, duration: float, levels: list[int]) -> list[dict[str, Any]]:
    import subprocess

    up = supervisor.spawn("micro-upstream", [sys.executable, "-m", "bench.upstream", "--port", "0"], cwd=str(REPO),
                          stdout_pipe=True)
    port = read_port_line(up)
    url = f"http://127.0.0.1:{port}/mcp?tools={CALL_TOOLS}"
    rows: list[dict[str, Any]] = []
    try:
        for op in ("small", "large"):
            for kind in CLIENT_KINDS:
                for concurrency in levels:
                    runs: list[dict[str, Any]] = []
                    for _ in range(3):
                        proc = subprocess.run([sys.executable, "-m", "bench.micro", "_client", kind, url, op,
                                               str(concurrency), str(duration)], cwd=str(REPO),
                                              capture_output=True, text=True, timeout=120)
                        if proc.returncode != 0:
                            runs = []
                            rows.append({"client": kind, "op": op, "concurrency": concurrency,
                                         "error": (proc.stderr.strip().splitlines() or ["?"])[-1]})
                            break
                        runs.append(json.loads(proc.stdout))
                    if not runs:
                        continue
                    row = {"client": kind, "op": op, "concurrency": concurrency,
                           "rps": statistics.median(r["rps"] for r in runs),
                           "cpu_us_per_call": statistics.median(r["cpu_us_per_call"] for r in runs)}
                    rows.append(row)
                    log(f"   {kind:8} {op:6} c={concurrency:<3} {row['rps']:8.0f}/s "
                        f"{row['cpu_us_per_call']:7.1f} µs client CPU/call")
    finally:
        supervisor.stop(up)
    return rows


# --- JSON libraries --------------------------------------------------------------------------------


def json_libs() -> list[dict[str, Any]]:
    request = {"jsonrpc": "2.0", "id": 12345, "method": "tools/call",
               "params": {"name": "small", "arguments": {"tag": "bench"}, "_meta": mcpwire.MODERN_META}}
    payloads = {
        "tools/call request": request,
        "200 B result": {"jsonrpc": "2.0", "id": 1, "result": call_result("small")},
        "64 KiB result": {"jsonrpc": "2.0", "id": 1, "result": call_result("medium")},
        "1 MiB result": {"jsonrpc": "2.0", "id": 1, "result": call_result("large")},
        f"{LIST_TOOLS}-tool list": {"jsonrpc": "2.0", "id": 1, "result": {"tools": all_tools(LIST_TOOLS)}},
    }
    rows = []
    for name, obj in payloads.items():
        raw = orjson.dumps(obj)
        text = raw.decode()
        size = len(raw)
        number = max(3, int(2_000_000 / size))
        cases = {
            ("orjson", "decode"): lambda raw=raw: orjson.loads(raw),
            ("orjson", "encode"): lambda obj=obj: orjson.dumps(obj),
            ("json", "decode"): lambda text=text: json.loads(text),
            ("json", "encode"): lambda obj=obj: json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode(),
        }
        for (lib, op), fn in cases.items():
            best = min(timeit.repeat(fn, number=number, repeat=5)) / number
            rows.append({"payload": name, "bytes": size, "library": lib, "op": op, "us": best * 1e6,
                         "mb_s": size / best / 1e6})
        log(f"   {name:20} {size:>9} B  " + "  ".join(
            f"{r['library']} {r['op']} {r['us']:.1f} µs" for r in rows[-4:]))
    return rows


# --- entry -----------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    if argv and argv[0] == "_client":
        kind, url, op, concurrency, duration = argv[1:6]
        print(json.dumps(aio.run(_client_bench(kind, url, op, int(concurrency), float(duration)))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench micro")
    parser.add_argument("parts", nargs="*", default=["json", "clients", "servers"],
                        help="json, clients, servers (default: all)")
    parser.add_argument("--duration", type=float, default=1.0)
    args = parser.parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "sizes": SIZES}
    from bench.procs import describe_machine

    out["machine"] = describe_machine()
    with Supervisor(RESULTS / f"micro-{stamp}" / "logs") as supervisor:
        if "json" in args.parts:
            log("== json: orjson vs json")
            out["json"] = json_libs()
        if "clients" in args.parts:
            log("== clients: upstream HTTP clients against the fast upstream")
            out["clients"] = clients(supervisor, args.duration, [1, 64])
        if "servers" in args.parts:
            log("== servers: ASGI servers with a tiny JSON-RPC app")
            out["servers"] = servers(supervisor, args.duration, [1, 64])
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(out, indent=1)
    (RESULTS / f"micro-{stamp}.json").write_text(text)
    (RESULTS / "latest-micro.json").write_text(text)
    markdown = render(out)
    (RESULTS / "latest-micro.md").write_text(markdown)
    print(markdown)
    print(f"results: {RESULTS / f'micro-{stamp}.json'}")
    return 0


def render(out: dict[str, Any]) -> str:
    """Markdown tables of whatever parts ``out`` holds."""
    from bench.report import md_table

    parts = []
    if out.get("servers"):
        rows = [[r["server"], r["app"], str(r.get("concurrency", "")), f"{r['rps']:.0f}" if "rps" in r else "-",
                 f"{r['p50']:.3f}" if r.get("p50") is not None else "-",
                 f"{r['cpu_us_per_call']:.1f}" if r.get("cpu_us_per_call") else r.get("error", "-")]
                for r in out["servers"]]
        parts.append("ASGI servers (tiny JSON-RPC app; server CPU per call)\n\n"
                     + md_table(rows, ["server", "app", "clients", "calls/s", "p50 ms", "server CPU us/call"]))
    if out.get("clients"):
        rows = [[r["client"], r["op"], str(r["concurrency"]), f"{r['rps']:.0f}" if "rps" in r else "-",
                 f"{r['cpu_us_per_call']:.1f}" if "cpu_us_per_call" in r else r.get("error", "-")]
                for r in out["clients"]]
        parts.append("Upstream HTTP clients (tools/call to the fast upstream; client CPU per call)\n\n"
                     + md_table(rows, ["client", "result", "tasks", "calls/s", "client CPU us/call"]))
    if out.get("json"):
        by: dict[tuple[str, int], dict[str, float]] = {}
        for r in out["json"]:
            by.setdefault((r["payload"], r["bytes"]), {})[f"{r['library']} {r['op']}"] = r["us"]
        cols = ["orjson decode", "json decode", "orjson encode", "json encode"]
        rows = [[name, str(size), *(f"{v[c]:.1f}" for c in cols)] for (name, size), v in by.items()]
        parts.append("JSON (microseconds per operation, best of 5)\n\n"
                     + md_table(rows, ["payload", "bytes", *cols]))
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
