"""``python -m bench [--quick] [NAME ...]``: the one entry point of the benchmark harness.

NAME is any of ceiling, core, list, sse, guards, everything, stdio, sessions, startup, scan, costs
(default: all of them, which is what ``make bench`` runs), or one of the separate tools
``micro`` (library micro-benchmarks), ``profile`` (a profile of the gateway's hot path) and
``docs`` (copy the latest results into docs/performance.md).
Everything is started on loopback with free ports and stopped before the command returns;
results go to ``bench/results/<timestamp>/`` and ``bench/results/latest.*``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench import plan, report
from bench.procs import Supervisor, describe_machine
from bench.runner import Options, Runner, log

RESULTS = Path(__file__).resolve().parent / "results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="NAME: " + ", ".join(plan.ALL_NAMES) + "; or micro, profile, docs")
    parser.add_argument("names", nargs="*", metavar="NAME", help="what to run (default: everything)")
    parser.add_argument("--quick", action="store_true", help="smoke test: one short repeat of a few scenarios")
    parser.add_argument("--repeats", type=int, help="repeats per scenario and configuration (full: 3)")
    parser.add_argument("--duration", type=float, help="measured seconds per run (full: 0.6)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per run (full: 0.15)")
    parser.add_argument("--configs", help="comma-separated configurations to run: direct, mcpwall, default, "
                                          "fastmcp, +GUARD or guards (all per-guard ones)")
    parser.add_argument("--sessions", type=int, default=1000, help="idle legacy sessions to open (default 1000)")
    parser.add_argument("--loadgen-procs", type=int, default=1, help="load generator processes (default 1)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default bench/results)")
    parser.add_argument("--keep-state", action="store_true", help="keep the gateways' state folders")
    return parser


def _options(args: argparse.Namespace) -> Options:
    quick = args.quick
    return Options(repeats=args.repeats or (1 if quick else 3),
                   duration=args.duration or (0.3 if quick else 0.6),
                   warmup=args.warmup if args.warmup is not None else (0.1 if quick else 0.15),
                   drain_timeout=5.0 if quick else 10.0,
                   min_samples=5 if quick else 20, max_duration=2.0 if quick else 3.0,
                   configs=[c.strip() for c in args.configs.split(",")] if args.configs else None)


def _guard_keys() -> tuple[list[str], str]:
    try:
        from bench.targets import optional_guards

        return [f"+{g}" for g in optional_guards()], ""
    except Exception as exc:  # the gateway package may be mid-change; report, don't stop
        return [], f"could not read the guard registry: {exc!r}"


def _estimate(groups: list[plan.Group], runner: Runner, options: Options) -> float:
    runs = sum(len(runner.configs_of(g)) * len(g.scenarios) for g in groups) * options.repeats
    return runs * (options.duration + options.warmup + 0.25)


def run(args: argparse.Namespace) -> int:
    names = args.names or plan.ALL_NAMES
    unknown = [n for n in names if n not in plan.ALL_NAMES]
    if unknown:
        log(f"unknown NAME {unknown}; choose from {', '.join(plan.ALL_NAMES)}, micro, profile, docs")
        return 2
    options = _options(args)
    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "")
    run_dir = args.out / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "meta": {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "mode": "quick" if args.quick else "full",
                 "repeats": options.repeats, "duration": options.duration, "warmup": options.warmup,
                 "names": names, "configs": options.configs, "machine": describe_machine(),
                 "loadgen_procs": args.loadgen_procs},
        "groups": [], "extras": {}, "notes": [],
    }

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    from bench.driver import LoadGen
    from bench.targets import Fleet, default_policy

    with Supervisor(run_dir / "logs") as supervisor:
        loadgen = LoadGen(supervisor, args.loadgen_procs)
        fleet = Fleet(supervisor, run_dir)
        runner = Runner(options, fleet, loadgen, run_dir)
        guard_keys, note = _guard_keys()
        if note:
            results["notes"].append(note)
        try:
            from bench.targets import bench_settings_note, forced_guards

            results["meta"]["default_policy"] = default_policy()[1]
            results["meta"]["forced_guards"] = forced_guards()
            results["notes"].append(f"'no guards' still runs the guards every config gets: "
                                    f"{', '.join(forced_guards())}; the default policy is "
                                    f"{results['meta']['default_policy']}")
            results["notes"].append(bench_settings_note())
        except Exception as exc:
            results["notes"].append(f"could not read the guard registry or default policy: {exc!r}")
        groups = [g for g in plan.groups(args.quick, guard_keys) if g.name in names]
        log(f"mcpwall benchmark: {len(groups)} groups, about {_estimate(groups, runner, options):.0f} s of "
            f"measurement; results in {run_dir}")
        try:
            if "ceiling" in names:
                from bench import extras

                log("== ceiling: the load generator against a static responder")
                results["extras"]["ceiling"] = extras.ceiling(fleet, loadgen, options,
                                                              [1, 16] if args.quick else [1, 16, 64, 256])
            for group in groups:
                data = runner.run_group(group)
                report.add_ratios(data)
                results["groups"].append(data)
            from bench import extras

            if "sessions" in names:
                log(f"== sessions: RSS with {args.sessions} idle legacy sessions")
                count = min(args.sessions, 100) if args.quick else args.sessions
                with_fastmcp = options.configs is None or "fastmcp" in options.configs
                results["extras"]["sessions"] = extras.sessions(fleet, loadgen, count, with_fastmcp)
            if "startup" in names:
                log("== startup: mcpwall serve until /healthz answers")
                results["extras"]["startup"] = extras.startup(fleet, 1 if args.quick else 3)
            if "costs" in names:
                log("== costs: each guard's own time per call (default policy, from /metrics)")
                results["extras"]["costs"] = extras.guard_costs(fleet, loadgen, options)
            if "scan" in names:
                log("== scan: bench/detect.py")
                results["extras"]["scan"] = extras.scan(args.quick, run_dir)
                results["extras"]["scan_mb_s"] = results["extras"]["scan"].get("mb_s")
        except KeyboardInterrupt:
            results["notes"].append("interrupted")
            log("interrupted; stopping everything")
        finally:
            runner.close()
            loadgen.close()
    # Every process this run started, so that anyone can check that none outlived it.
    stdio_pids = [("stdio-target", run["pid"]) for g in results["groups"] for rec in g["records"]
                  for run in rec.get("runs", []) if run.get("pid")]
    results["meta"]["spawned"] = [*supervisor.spawned, *stdio_pids]
    results["meta"]["seconds"] = time.perf_counter() - started
    results["bar"] = report.bar(results)
    _write(results, run_dir, args)
    return 130 if "interrupted" in results["notes"] else 0


def _write(results: dict[str, Any], run_dir: Path, args: argparse.Namespace) -> None:
    (run_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (run_dir / "table.md").write_text(report.render(results, markdown=True))
    text = report.render(results, markdown=False)
    (run_dir / "table.txt").write_text(text)
    chart_note = report.chart(results, run_dir / "chart.png")
    if chart_note:
        results["notes"].append(chart_note)
    if not args.keep_state:
        shutil.rmtree(run_dir / "state", ignore_errors=True)
    for name in ("results.json", "table.md", "table.txt", "chart.png"):
        if (run_dir / name).exists():
            shutil.copyfile(run_dir / name, args.out / f"latest.{name.split('.', 1)[1]}"
                            if name != "results.json" else args.out / "latest.json")
    print(text)
    print(f"results: {run_dir}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "micro":
        from bench import micro

        return micro.main(argv[1:])
    if argv and argv[0] == "profile":
        from bench import profile

        return profile.main(argv[1:])
    if argv and argv[0] == "docs":
        from bench import docs

        return docs.main(argv[1:])
    return run(_parser().parse_args(argv))
