"""An upstream MCP server run as a child process, spoken to over newline-delimited JSON-RPC.

The child gets a minimal environment (an allow-list plus the configured ``env``), its own
process group (so ``npx`` and the node process it starts die together), stderr copied to the
log line by line, and the spec's shutdown order: close stdin, then SIGTERM, then SIGKILL,
always reaped so no zombie is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

from mcpwall.errors import UpstreamTimeout, UpstreamUnavailable
from mcpwall.protocol import jsonrpc
from mcpwall.protocol.versions import LATEST_MODERN, META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION, Era
from mcpwall.transports.lines import read_line
from mcpwall.transports.upstream_base import (
    RequestOptions,
    UnsolicitedHandler,
    UpstreamSession,
    initialize_params,
    parse_discover,
    parse_initialize,
)

log = logging.getLogger("mcpwall.upstream.stdio")

ENV_ALLOWLIST = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LC_ALL", "TMPDIR", "TZ",
                 "SYSTEMROOT", "npm_config_cache")
LINE_SLACK = 64 * 1024  # a message may be up to the size limit; the line limit adds a margin
SHUTDOWN_GRACE = 2.0
WRITE_TIMEOUT = 10.0  # longest wait for the child to take one message off its stdin


def child_environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k in ENV_ALLOWLIST if (v := os.environ.get(k)) is not None}
    env.update(extra)
    return env


class StdioSession(UpstreamSession):
    def __init__(self, name: str, era: Era, command: str, args: list[str], *, env: dict[str, str],
                 cwd: str | None, limits: jsonrpc.Limits, legacy_capabilities: dict[str, Any],
                 on_unsolicited: UnsolicitedHandler | None = None) -> None:
        super().__init__(name, era, on_unsolicited=on_unsolicited)
        self.command, self.args, self.env, self.cwd = command, args, env, cwd
        self.limits = limits
        self.legacy_capabilities = legacy_capabilities
        self.process: asyncio.subprocess.Process | None = None
        self.send_message_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.exited = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def open(self, connect_timeout: float) -> None:
        try:
            self.process = await asyncio.create_subprocess_exec(
                self.command, *self.args,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=child_environment(self.env), cwd=self.cwd, limit=self.limits.max_bytes + LINE_SLACK,
                start_new_session=True)
        except OSError as exc:
            log.error("upstream %s: cannot start %r: %s", self.name, self.command, exc.strerror)
            raise UpstreamUnavailable(f"upstream {self.name} could not be started") from None
        log.info("upstream %s: started pid %s", self.name, self.process.pid)
        self._tasks = [asyncio.create_task(self._read_stdout()), asyncio.create_task(self._read_stderr())]
        if self.era == "legacy":
            result = await self.request("initialize", initialize_params(self.legacy_capabilities),
                                        RequestOptions(timeout=connect_timeout))
            self.handshake = parse_initialize(result)
            await self.notify("notifications/initialized")
        else:
            meta = {META_PROTOCOL_VERSION: LATEST_MODERN, META_CLIENT_CAPABILITIES: {}}
            result = await self.request("server/discover", {"_meta": meta}, RequestOptions(timeout=connect_timeout))
            self.handshake = parse_discover(result)

    async def request(self, method: str, params: dict[str, Any] | None, options: RequestOptions) -> dict[str, Any]:
        if self.closed or self.process is None or self.exited.is_set():
            raise UpstreamUnavailable(f"upstream {self.name} is not running")
        params, token = self.prepare_params(params, options)
        rid = self.next_id()
        # The write is inside the timeout: a child that stops reading its stdin fills the pipe,
        # and drain() would then wait forever.
        message = jsonrpc.request(rid, method, params)
        return await self.run_request(rid, options, token, lambda: self.send_and_wait(rid, message, self.send_message))

    async def send_message(self, message: dict[str, Any]) -> None:
        process = self.process
        if process is None or process.stdin is None or self.exited.is_set():
            raise UpstreamUnavailable(f"upstream {self.name} is not running")
        data = jsonrpc.encode(message) + b"\n"
        try:
            # Bounded for the writes that have no request timeout around them (notifications,
            # cancellations, answers to server requests): a child that stops reading must not
            # hold them — and the write lock — forever.
            async with asyncio.timeout(WRITE_TIMEOUT), self.send_message_lock:
                process.stdin.write(data)
                await process.stdin.drain()
        except (ConnectionError, RuntimeError):
            raise UpstreamUnavailable(f"upstream {self.name} closed its input") from None
        except TimeoutError:
            raise UpstreamTimeout(f"upstream {self.name} is not reading its input") from None

    async def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        stdout = self.process.stdout
        try:
            while True:
                line = await read_line(stdout)
                if line is None:
                    # Over the size limit: skipped whole; a request it answered will time out.
                    log.warning("upstream %s: skipped a stdout line over %d bytes", self.name,
                                self.limits.max_bytes + LINE_SLACK)
                    continue
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    await self.dispatch(line)
                except Exception:
                    log.exception("upstream %s: failed to handle a message", self.name)
        finally:
            self.exited.set()
            self.fail_pending(f"upstream {self.name} exited")
            log.warning("upstream %s: stdout closed (process %s)", self.name, self.pid)

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while True:
            try:
                line = await self.process.stderr.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue
            if not line:
                return
            log.info("upstream %s stderr: %s", self.name, line.decode("utf-8", "replace").rstrip()[:2000])

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            if process.stdin is not None:
                with contextlib.suppress(Exception):
                    process.stdin.close()
            if not await _wait(process, SHUTDOWN_GRACE):
                _signal_group(process, signal.SIGTERM)
                if not await _wait(process, SHUTDOWN_GRACE):
                    _signal_group(process, signal.SIGKILL)
                    await process.wait()
        # Reap anything left in the group (e.g. the node child of npx).
        _signal_group(process, signal.SIGKILL)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        log.info("upstream %s: process %s stopped (exit %s)", self.name, process.pid, process.returncode)


async def _wait(process: asyncio.subprocess.Process, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await process.wait()
        return True
    except TimeoutError:
        return False


def _signal_group(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
