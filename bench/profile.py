"""``python -m bench profile``: where the gateway spends its time on the hot path.

Starts the fast upstream and one ``mcpwall serve`` configuration, drives load at it with the
load generator, and samples the gateway with py-spy (``record``, raw collapsed stacks, which
any flame-graph renderer reads). Prints the functions with the most samples, inclusive and self, so the
costly layers of a ``tools/call`` are visible. Results go to
``bench/results/profile-<timestamp>/``; every process is stopped before return.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.driver import LoadGen
from bench.payloads import CALL_TOOLS
from bench.procs import StartError, Supervisor
from bench.runner import log
from bench.targets import Fleet

RESULTS = Path(__file__).resolve().parent / "results"


def _frame(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; keep function + file tail.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, _line = where.rpartition(":")
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else where
    return f"{name} ({short})"


def summarize(raw_path: Path, top: int = 40) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";") if f]
        for f in set(frames):
            inclusive[f] += n
        if frames:
            own[frames[-1]] += n
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "inclusive:"]
    lines += [f"{n * 100 / total:6.1f}%  {f}" for f, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"{n * 100 / total:6.1f}%  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench profile")
    parser.add_argument("--config", default="mcpwall", help="mcpwall (no guards), default, or +GUARD")
    parser.add_argument("--era", default="modern")
    parser.add_argument("--op", default="small")
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--mode", default="json")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        log("py-spy is not installed (pip install -e '.[bench]')")
        return 2
    out_dir = RESULTS / f"profile-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    with Supervisor(out_dir / "logs") as supervisor:
        fleet = Fleet(supervisor, out_dir)
        loadgen = LoadGen(supervisor, 1)
        try:
            endpoint = fleet.gateway(args.config, args.mode, CALL_TOOLS, tag="-profile")
        except StartError as exc:
            log(str(exc))
            return 1
        spec = {"host": endpoint.host, "port": endpoint.port, "path": endpoint.path, "era": args.era,
                "op": args.op, "concurrency": args.concurrency, "duration": args.seconds + 1.0, "warmup": 0.5,
                "watch_pids": {"target": endpoint.pid}}

        def load() -> None:
            result["run"] = loadgen.run(spec)

        thread = threading.Thread(target=load)
        thread.start()
        time.sleep(0.8)
        raw = out_dir / "stacks.txt"
        subprocess.run([py_spy, "record", "-p", str(endpoint.pid), "-d", str(int(args.seconds)), "-r",
                        str(args.rate), "-f", "raw", "-o", str(raw), "--nonblocking"],
                       capture_output=True, timeout=args.seconds + 60)
        thread.join(args.seconds + 60)
        loadgen.close()
    if raw.exists():
        text = summarize(raw)
        run = result.get("run", {})
        ok = run.get("ok", 0)
        header = (f"profile of mcpwall {args.config}, {args.era} {args.op} c={args.concurrency}: "
                  f"{ok / max(run.get('elapsed', 1), 1e-9):.0f} calls/s during sampling, errors {run.get('errors')}")
        (out_dir / "top.txt").write_text(header + "\n\n" + text + "\n")
        print(header)
        print(text)
        print(f"results: {out_dir}")
        return 0
    log("py-spy produced no samples (is ptrace allowed here?)")
    return 1

