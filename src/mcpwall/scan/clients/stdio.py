"""A minimal MCP client over stdio: start a server, initialize, list its tools, stop it.

Newline-delimited JSON-RPC, legacy handshake (``initialize`` + ``notifications/initialized``)
with a fallback to a modern ``tools/list`` when the server refuses the handshake. Every wait is
bounded; stdout lines are capped in size; anything the server sends that is not a response to
us (notifications, requests such as ``roots/list``) is answered minimally or ignored. The child
gets a small allow-listed environment plus the variables its configuration names, never the
whole environment of the person running the scan. Shutdown follows the spec: close stdin, wait,
terminate, kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from mcpwall.protocol.versions import LATEST_LEGACY
from mcpwall.scan import wire

SAFE_ENV = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT",
            "APPDATA", "LOCALAPPDATA", "USERPROFILE", "PATHEXT", "COMSPEC")
MAX_LINE = 8 * 1024 * 1024
MAX_PAGES = 20


@dataclass(slots=True)
class StdioResult:
    tools: list[dict[str, Any]] | None = None
    server_name: str | None = None
    era: str | None = None
    error: str | None = None
    stderr: str = ""
    notes: list[str] = field(default_factory=list)


class StdioError(Exception):
    pass


class StdioClient:
    def __init__(self, command: str, args: Sequence[str], *, env: Mapping[str, str] | None = None,
                 cwd: str | None = None, timeout: float = 20.0) -> None:
        self.command = command
        self.args = list(args)
        self.env = dict(env or {})
        self.cwd = cwd
        self.timeout = timeout
        self.proc: asyncio.subprocess.Process | None = None
        self._stderr: list[bytes] = []

    def child_env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if k in SAFE_ENV}
        return {**base, **self.env}

    async def _send(self, msg: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps(msg) + b"\n")
        await self.proc.stdin.drain()

    async def _read_response(self, rid: int) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                raise StdioError("the server closed its output")
            try:
                msg = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # servers sometimes print banners on stdout; the spec forbids it but it happens
            if not isinstance(msg, dict):
                continue
            if msg.get("id") == rid and ("result" in msg or "error" in msg):
                return msg
            if "method" in msg and "id" in msg:  # a server->client request: answer so it does not wait on us
                reply: dict[str, Any] = {"jsonrpc": "2.0", "id": msg["id"]}
                if msg["method"] == "roots/list":
                    reply["result"] = {"roots": []}
                elif msg["method"] == "ping":
                    reply["result"] = {}
                else:
                    reply["error"] = {"code": -32601, "message": "not supported by the scanner"}
                await self._send(reply)

    async def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        await self._send(msg)
        return await asyncio.wait_for(self._read_response(int(msg["id"])), self.timeout)

    async def _drain_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        size = 0
        while True:
            chunk = await self.proc.stderr.read(4096)
            if not chunk:
                return
            if size < 16384:
                self._stderr.append(chunk)
                size += len(chunk)

    async def run(self) -> StdioResult:
        result = StdioResult()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                self.command, *self.args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=self.child_env(), cwd=self.cwd, limit=MAX_LINE,
                start_new_session=True)
        except (OSError, ValueError) as exc:
            result.error = f"could not start: {exc.strerror if isinstance(exc, OSError) else exc}"
            return result
        drain = asyncio.create_task(self._drain_stderr())
        try:
            await self._session(result)
        except TimeoutError:
            result.error = f"no answer within {self.timeout:.0f}s"
        except (StdioError, OSError, ValueError) as exc:
            result.error = str(exc) or type(exc).__name__
        finally:
            await self._stop()
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
            result.stderr = b"".join(self._stderr).decode("utf-8", "replace")[-4000:]
        return result

    async def _session(self, result: StdioResult) -> None:
        init = await self.request(wire.initialize(LATEST_LEGACY))
        modern = False
        if isinstance(init.get("result"), dict):
            info = init["result"].get("serverInfo")
            if isinstance(info, dict) and isinstance(info.get("name"), str):
                result.server_name = info["name"][:200]
            result.era = "legacy"
            await self._send(wire.initialized())
        else:
            modern = True
            result.era = "modern"
            result.notes.append("initialize refused; listed tools with the 2026-07-28 protocol")
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            reply = await self.request(wire.tools_list(modern=modern, cursor=cursor))
            body = reply.get("result")
            if not isinstance(body, dict):
                error = reply.get("error")
                code = error.get("code") if isinstance(error, dict) else None
                raise StdioError(f"tools/list failed (JSON-RPC {code})")
            items = body.get("tools")
            if isinstance(items, list):
                tools.extend(t for t in items if isinstance(t, dict) and isinstance(t.get("name"), str))
            nxt = body.get("nextCursor")
            if not isinstance(nxt, str) or nxt == cursor:
                break
            cursor = nxt
        result.tools = tools

    async def _stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(OSError, RuntimeError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 2.0)
            return
        except TimeoutError:
            pass
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 3.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 3.0)
