"""Processes the harness starts: spawn, wait until ready, sample, stop — every wait bounded.

Every process is started in its own session (process group) with its output in a log file
under the run directory, registered with one :class:`Supervisor`, and stopped with SIGTERM
then SIGKILL of its group, so nothing the harness started outlives it, even on Ctrl-C.
Only processes started here are ever signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import psutil  # type: ignore[import-untyped]
except ImportError:  # the bench extra is not installed: runs work, RSS and CPU are not reported
    psutil = None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class StartError(RuntimeError):
    """A process did not become ready; the message carries the tail of its log."""


@dataclass
class Managed:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    started: float = field(default_factory=time.perf_counter)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 12) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def stop(self, term_wait: float = 5.0) -> None:
        for sig, wait in ((signal.SIGTERM, term_wait), (signal.SIGKILL, 5.0)):
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.popen.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(wait)
        # Whatever the process started in its group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)


class Supervisor:
    """Owns every process of a benchmark run; ``stop_all`` is safe to call twice."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[Managed] = []
        self.spawned: list[tuple[str, int]] = []  # every (name, pid) ever started, for the record
        log_dir.mkdir(parents=True, exist_ok=True)

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None,
              stdout_pipe: bool = False, pipes: bool = False) -> Managed:
        """Start ``argv``; stderr (and stdout unless piped) go to ``<log_dir>/<name>.log``.
        ``stdout_pipe`` pipes stdout; ``pipes`` pipes stdin and stdout (command workers)."""
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
        popen = subprocess.Popen(
            argv, stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
            stdout=subprocess.PIPE if (stdout_pipe or pipes) else log, stderr=log,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
        log.close()
        managed = Managed(name, popen, log_path)
        self.procs.append(managed)
        self.spawned.append((name, popen.pid))
        return managed

    def stop(self, managed: Managed) -> None:
        managed.stop()
        if managed in self.procs:
            self.procs.remove(managed)

    def stop_all(self) -> None:
        for managed in reversed(self.procs):
            managed.stop(term_wait=3.0)
        self.procs.clear()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def wait_until(check: Callable[[], bool], managed: Managed, timeout: float, what: str) -> float:
    """Poll ``check`` every 5 ms until true; seconds taken. Raises StartError on exit/timeout."""
    start = time.perf_counter()
    deadline = start + timeout
    while time.perf_counter() < deadline:
        if check():
            return time.perf_counter() - start
        if not managed.alive():
            raise StartError(f"{managed.name} exited with {managed.popen.returncode} before {what}:\n"
                             f"{managed.log_tail()}")
        time.sleep(0.005)
    raise StartError(f"{managed.name} not {what} after {timeout:.0f}s:\n{managed.log_tail()}")


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False
    return check


def tcp_open(host: str, port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False
    return check


def read_port_line(managed: Managed, timeout: float = 20.0) -> int:
    """The port a child announced as its first stdout line, ``{"port": N}``."""
    import json
    import select

    assert managed.popen.stdout is not None
    ready, _, _ = select.select([managed.popen.stdout], [], [], timeout)
    if not ready:
        raise StartError(f"{managed.name} announced no port in {timeout:.0f}s:\n{managed.log_tail()}")
    line = managed.popen.stdout.readline()
    try:
        return int(json.loads(line)["port"])
    except (ValueError, KeyError, TypeError) as exc:
        managed.popen.poll()
        raise StartError(f"{managed.name} printed {line[:200]!r} instead of its port:\n{managed.log_tail()}") from exc


class Sampler:
    """Peak RSS and CPU seconds of some processes over a window, sampled in a thread."""

    def __init__(self, pids: dict[str, int], interval: float = 0.05) -> None:
        self.procs: dict[str, Any] = {}
        for key, pid in pids.items():
            if psutil is not None:
                with contextlib.suppress(psutil.Error):
                    self.procs[key] = psutil.Process(pid)
        self.interval = interval
        self.peak_rss: dict[str, int] = dict.fromkeys(self.procs, 0)
        self.cpu0: dict[str, float] = {}
        self.cpu_s: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _cpu(proc: Any) -> float:
        total = 0.0
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    ct = child.cpu_times()
                    total += ct.user + ct.system
        return total

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample_rss()

    def _sample_rss(self) -> None:
        for key, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                self.peak_rss[key] = max(self.peak_rss[key], proc.memory_info().rss)

    def __enter__(self) -> Sampler:
        self.cpu0 = {key: self._cpu(proc) for key, proc in self.procs.items()}
        self._sample_rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._sample_rss()
        self.cpu_s = {key: self._cpu(proc) - self.cpu0[key] for key, proc in self.procs.items()}


def rss_of(pid: int) -> int:
    if psutil is None:
        return 0
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


def tree_cpu(pid: int) -> tuple[float, float] | None:
    """(the process, its descendants) CPU seconds so far; None if unknown."""
    if psutil is None:
        return None
    own = children = 0.0
    try:
        proc = psutil.Process(pid)
        times = proc.cpu_times()
        own = times.user + times.system
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                ct = child.cpu_times()
                children += ct.user + ct.system
    except psutil.Error:
        return None
    return own, children


def _ram_gib() -> float:
    if psutil is not None:
        return round(float(psutil.virtual_memory().total) / 2**30, 1)
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    return 0.0


def describe_machine() -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    import platform

    return {"nproc": os.cpu_count(), "cpu_model": cpu_model,
            "ram_gib": _ram_gib(), "psutil": psutil is not None,
            "python": platform.python_version(), "platform": platform.platform(),
            "load_avg": [round(x, 2) for x in os.getloadavg()]}
