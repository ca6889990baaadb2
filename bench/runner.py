"""Runs the groups of a plan: start the configurations, run the scenarios interleaved, stop.

For each group every configuration is started once (a failure to start is recorded with the
tail of its log and the group goes on without it), then for each scenario the repeats run
A B C A B C … and each configuration's medians are kept. HTTP runs go through the warm load
generator workers; stdio runs spawn the target inside the worker, once per run.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import stats
from bench.driver import LoadGen, LoadGenError
from bench.fastmcp_env import FastMCPUnavailable
from bench.plan import Group, Scenario
from bench.procs import Sampler, StartError
from bench.targets import Endpoint, Fleet, label, stdio_argv


@dataclass
class Options:
    repeats: int = 3
    duration: float = 0.6
    warmup: float = 0.15
    drain_timeout: float = 10.0
    min_samples: int = 20  # a slow target's window grows until this many requests finished…
    max_duration: float = 3.0  # …up to this long
    configs: list[str] | None = None  # restrict to these configuration keys
    verbose: bool = True


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


class Runner:
    def __init__(self, options: Options, fleet: Fleet, loadgen: LoadGen, run_dir: Path) -> None:
        self.options = options
        self.fleet = fleet
        self.loadgen = loadgen
        self.run_dir = run_dir
        self._everything: Endpoint | None = None
        self._everything_error: str | None = None

    # --- starting ---------------------------------------------------------------------------

    def _everything_url(self) -> str:
        if self._everything is None:
            if self._everything_error:
                raise StartError(self._everything_error)
            try:
                self._everything = self.fleet.everything()
            except StartError as exc:
                self._everything_error = str(exc)
                raise
        return f"http://127.0.0.1:{self._everything.port}/mcp"

    def _start(self, group: Group, key: str) -> Endpoint:
        if group.name == "everything":
            url = self._everything_url()
            if key == "direct":
                assert self._everything is not None
                return self._everything
            if key == "fastmcp":
                return self.fleet.fastmcp(group.mode, group.tools, upstream_url=url, tag="-everything")
            return self.fleet.gateway(key, group.mode, group.tools, tag="-everything",
                                      servers={"everything": {"url": url, "prefix": False}})
        return self.fleet.start(key, group.mode, group.tools)

    def configs_of(self, group: Group) -> list[str]:
        wanted = self.options.configs
        return [k for k in group.configs if wanted is None or k in wanted or (k.startswith("+") and "guards" in wanted)]

    # --- running ------------------------------------------------------------------------------

    def _http_run(self, group: Group, scenario: Scenario, endpoint: Endpoint) -> dict[str, Any]:
        upstream = self.fleet.upstream
        watch = {"target": endpoint.pid}
        if upstream is not None and upstream.pid != endpoint.pid and group.name != "everything":
            watch["upstream"] = upstream.pid
        spec = {"host": endpoint.host, "port": endpoint.port, "path": endpoint.path, "era": scenario.era,
                "op": scenario.op, "concurrency": scenario.concurrency, "duration": self.options.duration,
                "warmup": self.options.warmup, "drain_timeout": self.options.drain_timeout, "watch_pids": watch,
                "min_samples": self.options.min_samples, "keep": True,
                "max_duration": max(self.options.max_duration, self.options.duration)}
        with Sampler({"target": endpoint.pid}) as sampler:
            raw = self.loadgen.run(spec)
        return stats.summarize(raw, peak_rss=sampler.peak_rss.get("target", 0))

    def _stdio_run(self, scenario: Scenario, argv: list[str], name: str) -> dict[str, Any]:
        spec = {"argv": argv, "era": scenario.era, "op": scenario.op, "concurrency": scenario.concurrency,
                "duration": self.options.duration, "warmup": self.options.warmup,
                "cwd": str(Path(__file__).resolve().parent.parent),
                "stderr_path": str(self.run_dir / "logs" / f"stdio-{name}.log")}
        try:
            raw = self.loadgen.stdio(spec, timeout=90.0 + self.options.duration)
        except LoadGenError as exc:
            # The target's own stderr says more than "closed stdout".
            try:
                tail = Path(str(spec["stderr_path"])).read_text(errors="replace").strip().splitlines()[-3:]
            except OSError:
                tail = []
            raise LoadGenError(f"{exc} | {' | '.join(tail)}") from None
        summary = stats.summarize(raw)
        summary["first_answer_s"] = raw.get("first_answer_s")
        summary["pid"] = raw.get("pid")
        return summary

    def run_group(self, group: Group) -> dict[str, Any]:
        configs = self.configs_of(group)
        started: dict[str, Endpoint] = {}
        failures: dict[str, str] = {}
        stdio_argvs: dict[str, list[str]] = {}
        t0 = time.perf_counter()
        log(f"== {group.name}: {group.title} ({len(configs)} configurations, {len(group.scenarios)} scenarios)")
        for key in configs:
            try:
                if group.transport == "stdio":
                    stdio_argvs[key] = stdio_argv(key, self.run_dir)
                else:
                    started[key] = self._start(group, key)
                    ready = started[key].ready_s
                    log(f"   started {label(key)}" + (f" (ready in {ready * 1000:.0f} ms)" if ready else ""))
            except (StartError, FastMCPUnavailable, OSError) as exc:
                failures[key] = str(exc)
                log(f"   {label(key)} did not start: {str(exc).splitlines()[0]}")
        runnable = [k for k in configs if k in started or k in stdio_argvs]
        records: list[dict[str, Any]] = []
        try:
            for scenario in group.scenarios:
                per: dict[str, list[dict[str, Any]]] = {k: [] for k in runnable}
                for _ in range(self.options.repeats):
                    for key in runnable:
                        try:
                            if group.transport == "stdio":
                                per[key].append(self._stdio_run(scenario, stdio_argvs[key], key))
                            else:
                                per[key].append(self._http_run(group, scenario, started[key]))
                        except LoadGenError as exc:
                            per[key].append(stats.summarize({"errors": {"loadgen": 1}, "error_sample": str(exc)}))
                if group.transport != "stdio":
                    # Sessions kept across the repeats are ended before the next scenario.
                    self.loadgen.release()
                for key in runnable:
                    agg = stats.aggregate(per[key])
                    records.append({"group": group.name, "mode": group.mode, "transport": group.transport,
                                    "scenario": scenario.name, "era": scenario.era, "op": scenario.op,
                                    "concurrency": scenario.concurrency, "config": key, "label": label(key),
                                    "runs": per[key], **agg})
                    if self.options.verbose:
                        nan = float("nan")
                        log(f"   {scenario.name:22} {label(key):28} {agg.get('rps') or 0:9.0f}/s "
                            f"p50 {agg.get('p50') or nan:7.2f} ms  p99 {agg.get('p99') or nan:7.2f} ms"
                            f"  errors {agg.get('error_count', 0)}")
        finally:
            for key, endpoint in started.items():
                if key != "direct":
                    self.fleet.supervisor.stop(endpoint.managed)
        return {"name": group.name, "title": group.title, "mode": group.mode, "transport": group.transport,
                "tools": group.tools, "baseline": group.baseline, "configs": configs,
                "labels": {k: label(k) for k in configs}, "failures": failures,
                "ready_s": {k: e.ready_s for k, e in started.items()}, "records": records,
                "seconds": time.perf_counter() - t0}

    def close(self) -> None:
        if self._everything is not None:
            self.fleet.supervisor.stop(self._everything.managed)
