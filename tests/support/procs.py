"""Subprocesses that tests start and must always stop: free ports, bounded readiness, bounded teardown.

Every wait here has a deadline and polls a real condition (an HTTP answer, a process exit); none
sleeps for a fixed time hoping the other side is ready. Output goes to a log file, never to a
pipe, so a chatty child can never block on a full pipe while the test waits for it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import httpx

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
_POLL_FIRST = 0.02
_POLL_MAX = 0.25


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProcessExited(RuntimeError):
    """The child died before it became ready."""


class ManagedProcess:
    """One child process with its output captured to ``log_path``; use as a context manager."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self.name = name or Path(self.argv[0]).name
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            # Own session: teardown can reach grandchildren (e.g. a gateway's stdio upstreams).
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "process not started"
        return self.proc.pid

    def output(self, limit: int = 20_000) -> str:
        """The last ``limit`` characters the process wrote (stdout and stderr together)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text[-limit:]

    def wait_until(
        self, ready: Callable[[], bool], *, timeout: float = READY_TIMEOUT, what: str = "ready"
    ) -> None:
        """Poll ``ready`` with backoff until it holds, the child exits, or ``timeout`` passes."""
        assert self.proc is not None, "process not started"
        deadline = time.monotonic() + timeout
        delay = _POLL_FIRST
        while True:
            if self.proc.poll() is not None:
                raise ProcessExited(
                    f"{self.name} exited with {self.proc.returncode} before it was {what}:\n{self.output()}"
                )
            if ready():
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name} was not {what} within {timeout:.0f}s:\n{self.output()}")
            time.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)

    def wait_http(
        self,
        url: str,
        *,
        method: str = "GET",
        ok: Callable[[int], bool] = lambda status: status == 200,
        timeout: float = READY_TIMEOUT,
    ) -> None:
        """Wait until ``method url`` answers with a status that ``ok`` accepts."""
        with httpx.Client(timeout=2.0, trust_env=False) as client:

            def answered() -> bool:
                try:
                    return ok(client.request(method, url).status_code)
                except httpx.TransportError:
                    return False

            self.wait_until(answered, timeout=timeout, what=f"answering {method} {url}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL the whole session; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.proc.wait(timeout=timeout)
        # Anything the child left behind in its session goes too, so no test leaks processes.
        self._kill_group()
        return self.proc.returncode

    def _kill_group(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
