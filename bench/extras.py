"""Measurements that are not request streams: the load generator's own ceiling, memory per
idle legacy session, time until ``mcpwall serve`` is ready, and content-scanning speed.

* ceiling  — the load generator against the upstream's ``/static`` route (a canned answer,
  no parsing), so what is left is the client's cost; reported as calls/s and as the load
  generator's own CPU microseconds per call.
* sessions — RSS of a fresh gateway, then after 1,000 legacy sessions (initialize +
  initialized, then idle), per session; the same for FastMCP when it is available.
* startup  — spawn to ``GET /healthz`` 200 of ``mcpwall serve`` (upstream already running).
* scan     — ``bench/detect.py`` (written with the detection engine) when it exists.
* costs    — each guard's own time per call, read from the gateway's Prometheus metrics after a
  load run of the default policy: the only view of the guards every configuration runs
  (``limits``, and ``audit``, which cannot be turned off), so they have no "alone" row.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import stats
from bench.driver import LoadGen
from bench.fastmcp_env import FastMCPUnavailable
from bench.payloads import CALL_TOOLS
from bench.procs import StartError, rss_of
from bench.runner import Options, log
from bench.targets import REPO, Fleet


def ceiling(fleet: Fleet, loadgen: LoadGen, options: Options, levels: list[int]) -> dict[str, Any]:
    up = fleet.start_upstream()
    rows = []
    for concurrency in levels:
        runs = []
        for _ in range(max(1, min(options.repeats, 2))):
            raw = loadgen.run({"host": "127.0.0.1", "port": up.port, "path": "/static", "era": "static",
                               "concurrency": concurrency, "duration": options.duration, "warmup": options.warmup,
                               "watch_pids": {"upstream": up.pid}})
            summary = stats.summarize(raw)
            summary["loadgen_us_per_call"] = (raw["loadgen_cpu_s"] * 1e6 / raw["ok"]) if raw.get("ok") else None
            summary["upstream_cpu_s"] = raw.get("cpu_s", {}).get("upstream")
            runs.append(summary)
        best = max(runs, key=lambda r: r["rps"])
        rows.append({"concurrency": concurrency, "rps": best["rps"], "p50": best["p50"], "p99": best["p99"],
                     "errors": best["error_count"], "loadgen_us_per_call": best["loadgen_us_per_call"],
                     "loadgen_cpu_s": best["loadgen_cpu_s"], "upstream_cpu_s": best["upstream_cpu_s"]})
        log(f"   ceiling c={concurrency:<4} {best['rps']:9.0f}/s  load generator "
            f"{best['loadgen_us_per_call'] or 0:.1f} µs CPU per call")
    per_call = [r["loadgen_us_per_call"] for r in rows if r["loadgen_us_per_call"]]
    return {"rows": rows, "max_rps": max(r["rps"] for r in rows),
            "loadgen_us_per_call": min(per_call) if per_call else None,
            "note": "raw keep-alive client vs the upstream's /static route; one load-generator process"}


def _settle_rss(pid: int, seconds: float = 0.5) -> int:
    time.sleep(seconds)
    return rss_of(pid)


def _sessions_for(fleet: Fleet, loadgen: LoadGen, key: str, count: int) -> dict[str, Any]:
    if key == "fastmcp":
        endpoint = fleet.fastmcp("json", CALL_TOOLS, tag="-sessions")
    else:
        endpoint = fleet.gateway("mcpwall", "json", CALL_TOOLS, tag="-sessions")
    try:
        # One call first, so lazily built state (catalogue, pools) is not charged to sessions.
        loadgen.run({"host": endpoint.host, "port": endpoint.port, "path": endpoint.path, "era": "legacy",
                     "op": "small", "concurrency": 1, "duration": 0.2, "warmup": 0.05})
        idle = _settle_rss(endpoint.pid)
        opened = loadgen.call({"cmd": "open_sessions", "args": {
            "host": endpoint.host, "port": endpoint.port, "path": endpoint.path, "count": count}}, timeout=300.0)
        loaded = _settle_rss(endpoint.pid, 1.0)
        closed = loadgen.call({"cmd": "close_sessions"}, timeout=300.0)
        after = _settle_rss(endpoint.pid)
        per = (loaded - idle) / max(1, opened.get("opened", 0))
        return {"idle_rss": idle, "rss_with_sessions": loaded, "rss_after_close": after,
                "sessions": opened.get("opened", 0), "open_seconds": opened.get("seconds"),
                "errors": opened.get("errors", {}), "error_sample": opened.get("error_sample", ""),
                "closed": closed.get("closed"), "bytes_per_session": per}
    finally:
        fleet.supervisor.stop(endpoint.managed)


def sessions(fleet: Fleet, loadgen: LoadGen, count: int, with_fastmcp: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"count": count}
    for key in ["mcpwall", *(["fastmcp"] if with_fastmcp else [])]:
        try:
            out[key] = _sessions_for(fleet, loadgen, key, count)
            row = out[key]
            log(f"   {key}: idle {row['idle_rss'] / 2**20:.1f} MiB, {row['sessions']} sessions "
                f"+{row['bytes_per_session'] / 1024:.1f} KiB each")
        except (StartError, FastMCPUnavailable) as exc:
            out[key] = {"error": str(exc)}
            log(f"   {key}: did not start: {str(exc).splitlines()[0]}")
    return out


def guard_costs(fleet: Fleet, loadgen: LoadGen, options: Options) -> dict[str, Any]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    endpoint = fleet.gateway("default", "json", CALL_TOOLS, tag="-costs")
    try:
        raw = loadgen.run({"host": endpoint.host, "port": endpoint.port, "path": endpoint.path, "era": "modern",
                           "op": "small", "concurrency": 1, "duration": max(1.0, options.duration * 2),
                           "warmup": options.warmup})
        with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.admin_port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        fleet.supervisor.stop(endpoint.managed)
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "mcpwall_guard_duration_seconds":
            continue
        for sample in family.samples:
            guard = sample.labels.get("guard", "?")
            if sample.name.endswith("_sum"):
                sums[guard] = sums.get(guard, 0.0) + sample.value
            elif sample.name.endswith("_count"):
                counts[guard] = counts.get(guard, 0.0) + sample.value
    calls = raw.get("ok") or 0
    rows = {guard: {"us_per_call": sums[guard] * 1e6 / calls if calls else None,
                    "us_per_hook": sums[guard] * 1e6 / counts[guard] if counts.get(guard) else None,
                    "hooks": counts.get(guard, 0)} for guard in sorted(sums)}
    for guard, row in rows.items():
        log(f"   {guard:<10} {row['us_per_call'] or 0:7.1f} µs per call")
    return {"calls": calls, "guards": rows,
            "note": "event-loop time in each guard's hooks (the audit writer thread is not included)"}


def startup(fleet: Fleet, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("mcpwall", "default"):
        times: list[float] = []
        error = ""
        for i in range(repeats):
            try:
                endpoint = fleet.gateway(key, "json", CALL_TOOLS, tag=f"-startup{i}")
            except StartError as exc:
                error = str(exc)
                break
            times.append(endpoint.ready_s or 0.0)
            fleet.supervisor.stop(endpoint.managed)
        out[key] = {"ready_s": times, "median_s": statistics.median(times) if times else None, "error": error}
        if times:
            log(f"   {key}: ready in {statistics.median(times) * 1000:.0f} ms (median of {len(times)})")
        else:
            log(f"   {key}: did not start: {error.splitlines()[0] if error else '?'}")
    return out


def scan(quick: bool, run_dir: Path) -> dict[str, Any]:
    """Run ``bench/detect.py`` (throughput and quality of the scanners) and keep its numbers."""
    script = REPO / "bench" / "detect.py"
    if not script.exists():
        return {"available": False, "note": "bench/detect.py does not exist yet"}
    out = run_dir / "detect.json"
    argv = [sys.executable, "-m", "bench.detect", "--json", str(out), *(["--quick"] if quick else [])]
    try:
        proc = subprocess.run(argv, cwd=str(REPO), capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return {"available": True, "error": "bench/detect.py ran longer than 300 s"}
    result: dict[str, Any] = {"available": True, "returncode": proc.returncode, "stderr": proc.stderr[-2000:]}
    (run_dir / "detect.md").write_text(proc.stdout)
    try:
        data = json.loads(out.read_text())
    except (OSError, ValueError):
        result["error"] = (proc.stderr.strip().splitlines() or ["bench/detect.py wrote no JSON"])[-1][:300]
        return result
    rows = data.get("throughput", [])
    engines = [e for e in ("hyperscan", "re") if any(r.get("engine") == e for r in rows)]
    if not engines:
        result["error"] = "bench/detect.py reported no throughput"
        return result
    engine = engines[0]  # the one the gateway uses: hyperscan when installed
    per: dict[str, float] = {}
    for row in rows:
        if row.get("engine") == engine:
            name = str(row.get("scanner"))
            per[name] = min(per.get(name, float("inf")), float(row.get("mb_per_s", 0.0)))
    # The bar is about the guards that scan results (dlp, injection): the slower of them counts.
    content = [v for k, v in per.items() if k.split()[0] in ("dlp", "injection")]
    result.update(engine=engine, mb_s_by_scanner=per, notes=data.get("notes", []),
                  mb_s=min(content) if content else per.get("all rules", min(per.values()) if per else None))
    log(f"   {engine}: " + ", ".join(f"{k} {v:,.0f} MB/s" for k, v in per.items()))
    return result


def describe_path(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
