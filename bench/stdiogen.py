"""Load over stdio: spawn an MCP server process and keep N requests in flight on its pipes.

Used for configuration 6 (an stdio upstream spawned directly vs behind ``mcpwall stdio``).
Requests are newline-delimited JSON-RPC with distinct ids; one reader task matches answers
to waiters by id. A legacy run does the process-scoped ``initialize`` handshake first; a
modern run stamps ``_meta`` on every request. The spawned process is sampled with psutil
for peak RSS and CPU seconds (its children included), then stopped with bounded waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import asdict, dataclass
from typing import Any

from bench import mcpwire
from bench.loadgen import RunResult, _note_error
from bench.procs import rss_of, tree_cpu


@dataclass
class StdioSpec:
    argv: list[str]
    era: str = "modern"
    op: str = "small"
    concurrency: int = 1
    duration: float = 2.0
    warmup: float = 0.5
    tool_prefix: str = ""
    cwd: str | None = None
    stderr_path: str | None = None
    env: dict[str, str] | None = None


def _envelope_id(line: bytes) -> int | None:
    """The JSON-RPC id of an answer line, read from its first or last bytes.

    A full parse of a 1 MiB line would cost more than the thing measured; peers put the id
    either before the result (most do) or after it, so both ends are looked at.
    """
    for part, at in ((line[:160], line[:160].find(b'"id":')), (line[-160:], line[-160:].rfind(b'"id":'))):
        if at < 0:
            continue
        end = at + 5
        while end < len(part) and part[end:end + 1] not in (b",", b"}"):
            end += 1
        try:
            return int(part[at + 5:end])
        except ValueError:
            continue
    return None


class _Pipe:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.waiters: dict[int, asyncio.Future[bytes]] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            # Only the id is needed to route; a full parse of a 1 MiB line would cost more than
            # the thing measured, so the id is sliced from the front (both peers emit it early).
            rid = _envelope_id(line)
            if rid is None:
                continue  # a notification
            waiter = self.waiters.pop(rid, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(line)
        for waiter in self.waiters.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("process closed stdout"))

    async def request(self, rid: int, line: bytes) -> bytes:
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiters[rid] = waiter
        assert self.proc.stdin is not None
        self.proc.stdin.write(line)
        return await waiter


class _Sampler:
    """Peak RSS and CPU seconds of a process and its children, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss = 0
        self.task: asyncio.Task[None] | None = None

    def cpu(self) -> tuple[float, float] | None:
        """(this process, its children) CPU seconds so far, or None without psutil."""
        return tree_cpu(self.pid)

    async def _loop(self) -> None:
        while True:
            self.peak_rss = max(self.peak_rss, rss_of(self.pid))
            await asyncio.sleep(0.05)

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """Close stdin, then SIGTERM, then SIGKILL the process group, each wait bounded."""
    if proc.stdin is not None:
        with contextlib.suppress(Exception):
            proc.stdin.close()
    for sig, wait in ((None, 2.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        if sig is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), wait)
            break
        except TimeoutError:
            continue
    # Children the server started may outlive it; the group was ours.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


async def run_stdio(spec: StdioSpec) -> dict[str, Any]:
    result = RunResult()
    # Opening a log file is a one-off before the measured window, not on the event loop's hot path.
    stderr = open(spec.stderr_path, "ab") if spec.stderr_path else asyncio.subprocess.DEVNULL  # noqa: SIM115, ASYNC230
    env = None if spec.env is None else {**os.environ, **spec.env}
    proc = await asyncio.create_subprocess_exec(
        *spec.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
        cwd=spec.cwd, env=env, limit=64 * 1024 * 1024, start_new_session=True)
    sampler = _Sampler(proc.pid)
    sampler.start()
    pipe = _Pipe(proc)
    extra: dict[str, Any] = {"pid": proc.pid}
    try:
        t_spawn = time.perf_counter()
        op = mcpwire.Op.named(spec.op, spec.tool_prefix)
        if spec.era == "legacy":
            init = await asyncio.wait_for(pipe.request(0, mcpwire.initialize_body(0) + b"\n"), 60.0)
            if b'"result"' not in init[:200]:
                _note_error(result, "init", init[:300].decode("utf-8", "replace"))
                result.setup_errors += 1
                return {**asdict(result), **extra}
            assert proc.stdin is not None
            proc.stdin.write(mcpwire.INITIALIZED_BODY + b"\n")
        prefix, suffix = mcpwire.body_parts(op, spec.era)
        # One answered call before the clock starts: a gateway's own start-up (and its
        # upstream's) is not what the measured window is about.
        prime = await asyncio.wait_for(pipe.request(1, prefix + b"1" + suffix + b"\n"), 60.0)
        extra["first_answer_s"] = time.perf_counter() - t_spawn
        error = mcpwire.check(op, 1, 200, b"application/json", prime.rstrip(b"\n"), strict=True)
        if error is not None:
            _note_error(result, error, prime[:300].decode("utf-8", "replace"))
            result.setup_errors += 1
            return {**asdict(result), **extra}
        stop = [False]
        window = [float("inf"), float("inf")]
        counter = [1]

        async def client() -> None:
            perf = time.perf_counter
            first = True
            while not stop[0]:
                counter[0] += 1
                rid = counter[0]
                t0 = perf()
                try:
                    line = await pipe.request(rid, prefix + str(rid).encode() + suffix + b"\n")
                except ConnectionError as exc:
                    _note_error(result, "closed", repr(exc))
                    return
                t1 = perf()
                error = mcpwire.check(op, rid, 200, b"application/json", line.rstrip(b"\n"), strict=first)
                first = False
                if t0 >= window[0] and t1 <= window[1]:
                    if error is None:
                        result.ok += 1
                        result.latencies_ms.append((t1 - t0) * 1000.0)
                    else:
                        _note_error(result, error, line[:300].decode("utf-8", "replace"))

        tasks = [asyncio.create_task(client()) for _ in range(spec.concurrency)]
        await asyncio.sleep(spec.warmup)
        before = sampler.cpu()
        lg0 = time.process_time()
        window[0] = time.perf_counter()
        await asyncio.sleep(spec.duration)
        window[1] = time.perf_counter()
        after = sampler.cpu()
        result.loadgen_cpu_s = time.process_time() - lg0
        stop[0] = True
        result.elapsed = window[1] - window[0]
        _, pending = await asyncio.wait(tasks, timeout=10.0)
        for task in pending:
            result.timeouts += 1
            task.cancel()
        if before is not None and after is not None:
            extra.update(target_cpu_s=after[0] - before[0], children_cpu_s=after[1] - before[1])
    finally:
        await sampler.stop()
        extra["target_peak_rss"] = sampler.peak_rss
        pipe.reader.cancel()
        await _stop(proc)
        if not isinstance(stderr, int):
            stderr.close()
    return {**asdict(result), **extra}
