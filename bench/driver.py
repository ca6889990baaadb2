"""The harness side of the load generator: warm worker processes fed JSON commands.

One or more ``python -m bench.loadgen --worker`` processes stay up for the whole benchmark
(their start-up is paid once, and their CPU never mixes with the target's). A run with more
than one worker splits its clients across them and merges the samples. Every read of a
worker's answer has a deadline; a worker that misses it is killed and replaced.
"""

from __future__ import annotations

import contextlib
import select
import sys
import time
from typing import Any

import orjson

from bench.procs import Managed, Supervisor


class LoadGenError(RuntimeError):
    pass


class LoadGen:
    def __init__(self, supervisor: Supervisor, workers: int = 1) -> None:
        self.supervisor = supervisor
        self.count = max(1, workers)
        self.workers: list[Managed] = [self._spawn(i) for i in range(self.count)]

    def _spawn(self, index: int) -> Managed:
        managed = self.supervisor.spawn(f"loadgen-{index}", [sys.executable, "-m", "bench.loadgen", "--worker"],
                                        pipes=True)
        return managed

    def _send(self, index: int, command: dict[str, Any]) -> None:
        stdin = self.workers[index].popen.stdin
        assert stdin is not None
        stdin.write(orjson.dumps(command) + b"\n")
        stdin.flush()

    def _receive(self, index: int, timeout: float) -> dict[str, Any]:
        worker = self.workers[index]
        stdout = worker.popen.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        if not ready:
            self.supervisor.stop(worker)
            self.workers[index] = self._spawn(index)
            raise LoadGenError(f"load generator gave no answer in {timeout:.0f}s")
        line = stdout.readline()
        if not line:
            tail = worker.log_tail()
            self.supervisor.stop(worker)
            self.workers[index] = self._spawn(index)
            raise LoadGenError(f"load generator exited:\n{tail}")
        reply: dict[str, Any] = orjson.loads(line)
        if "error" in reply and isinstance(reply["error"], str):
            raise LoadGenError(reply["error"])
        return reply

    def call(self, command: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        """One command on the first worker."""
        self._send(0, command)
        return self._receive(0, timeout)

    def run(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A timed run, split across the workers when there are enough clients."""
        timeout = spec.get("setup_timeout", 30.0) + spec.get("warmup", 0.5) + spec.get("max_duration", 8.0) \
            + spec.get("drain_timeout", 10.0) + 20.0
        concurrency = int(spec["concurrency"])
        used = min(self.count, concurrency)
        shares = [concurrency // used + (1 if i < concurrency % used else 0) for i in range(used)]
        for i, share in enumerate(shares):
            # Only the first worker reads the target's CPU, so it is counted once.
            part = {**spec, "concurrency": share, "watch_pids": spec.get("watch_pids", {}) if i == 0 else {}}
            self._send(i, {"cmd": "run", "spec": part})
        replies = [self._receive(i, timeout) for i in range(used)]
        return merge(replies)

    def release(self, timeout: float = 60.0) -> None:
        """End the clients every worker kept between runs (sessions are DELETEd)."""
        for i in range(self.count):
            self._send(i, {"cmd": "release"})
        for i in range(self.count):
            self._receive(i, timeout)

    def stdio(self, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
        return self.call({"cmd": "stdio", "spec": spec}, timeout)

    def close(self) -> None:
        for i, worker in enumerate(self.workers):
            with contextlib.suppress(OSError, ValueError):
                self._send(i, {"cmd": "quit"})
            deadline = time.monotonic() + 2.0
            while worker.alive() and time.monotonic() < deadline:
                time.sleep(0.01)
            self.supervisor.stop(worker)


def merge(replies: list[dict[str, Any]]) -> dict[str, Any]:
    if len(replies) == 1:
        return replies[0]
    out: dict[str, Any] = {"ok": 0, "errors": {}, "error_sample": "", "setup_errors": 0, "timeouts": 0,
                           "loadgen_cpu_s": 0.0, "cpu_s": {}, "latencies_ms": []}
    for reply in replies:
        for key in ("ok", "setup_errors", "timeouts", "loadgen_cpu_s"):
            out[key] += reply.get(key, 0)
        for kind, count in reply.get("errors", {}).items():
            out["errors"][kind] = out["errors"].get(kind, 0) + count
        out["error_sample"] = out["error_sample"] or reply.get("error_sample", "")
        out["cpu_s"].update(reply.get("cpu_s", {}))
        out["latencies_ms"].extend(reply.get("latencies_ms", []))
    out["elapsed"] = sum(r.get("elapsed", 0.0) for r in replies) / len(replies)
    return out
