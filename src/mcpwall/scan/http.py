"""HTTP probing for the scanner: one polite client that records every exchange.

Every request the scanner makes goes through :class:`Prober`, which

* sends a clear ``User-Agent: mcpwall-scan/<version>`` and never follows redirects (a redirect
  is itself evidence);
* adds the operator's credentials only to requests that ask for them, so "what does an
  anonymous client see" and "what does an authenticated client see" stay separate;
* bounds everything: a request budget, a per-request timeout, a cap on the bytes read from any
  body, and a short read window for streaming answers (a legacy server may answer a GET with an
  endless event stream);
* never raises for network trouble: a failed request is an :class:`Exchange` with ``error`` set,
  because "connection refused" is as much an observation as "200 OK".

It knows nothing about which checks exist; the evaluators read the recorded exchanges.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from mcpwall import __version__
from mcpwall.scan.wire import parse_body

USER_AGENT = f"mcpwall-scan/{__version__}"
DEFAULT_BODY_CAP = 256 * 1024


@dataclass(slots=True)
class Exchange:
    """One request and what came back (or why nothing did)."""

    label: str
    method: str
    url: str
    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)  # lower-case names
    body: bytes = b""
    error: str | None = None
    authenticated: bool = False
    request_headers: dict[str, str] = field(default_factory=dict)  # without credentials
    truncated: bool = False
    elapsed_ms: float = 0.0

    def header(self, name: str) -> str | None:
        name = name.lower()
        values = [v for k, v in self.headers if k == name]
        return ", ".join(values) if values else None

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    def messages(self) -> list[Any]:
        """JSON-RPC messages in the body (plain JSON or an event stream)."""
        return parse_body(self.content_type, self.body)

    def result_message(self) -> dict[str, Any] | None:
        """The first JSON-RPC response object with a ``result`` member, if any."""
        for msg in self.messages():
            if isinstance(msg, dict) and "result" in msg and "id" in msg:
                return msg
        return None

    def error_message(self) -> dict[str, Any] | None:
        for msg in self.messages():
            if isinstance(msg, dict) and isinstance(msg.get("error"), dict):
                return msg
        return None

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    def brief(self) -> str:
        """One line for evidence lists: ``POST /mcp → 401``."""
        path = httpx.URL(self.url).raw_path.decode("ascii", "replace")
        outcome = str(self.status) if self.status is not None else f"no answer ({self.error})"
        return f"{self.method} {path} → {outcome}"


class BudgetExceeded(Exception):
    pass


class Prober:
    """A bounded HTTP client that records exchanges by label."""

    def __init__(self, *, credentials: Mapping[str, str] | None = None, timeout: float = 10.0,
                 verify: ssl.SSLContext | bool = True, max_requests: int = 400,
                 stream_window: float = 3.0, concurrency: int = 4) -> None:
        self.credentials = dict(credentials or {})
        self.timeout = timeout
        self.verify = verify
        self.max_requests = max_requests
        self.stream_window = stream_window
        self.exchanges: dict[str, Exchange] = {}
        self.count = 0
        self._semaphore = asyncio.Semaphore(concurrency)
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Prober:
        self._client = httpx.AsyncClient(
            verify=self.verify, follow_redirects=False, timeout=httpx.Timeout(self.timeout),
            headers={"User-Agent": USER_AGENT}, trust_env=False,
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=4))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def request(self, label: str, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      content: bytes | None = None, auth: bool = False,
                      body_cap: int = DEFAULT_BODY_CAP) -> Exchange:
        if self._client is None:
            raise RuntimeError("Prober used outside 'async with'")
        if self.count >= self.max_requests:
            raise BudgetExceeded(f"request budget of {self.max_requests} spent")
        self.count += 1
        sent = dict(headers or {})
        exchange = Exchange(label=label, method=method, url=url, authenticated=auth and bool(self.credentials),
                            request_headers=sent)
        all_headers = {**sent, **(self.credentials if auth else {})}
        started = time.perf_counter()
        async with self._semaphore:
            try:
                request = self._client.build_request(method, url, headers=all_headers, content=content)
                response = await self._client.send(request, stream=True)
                try:
                    exchange.status = response.status_code
                    exchange.headers = [(k.decode("latin-1").lower(), v.decode("latin-1"))
                                        for k, v in response.headers.raw]
                    exchange.body, exchange.truncated = await self._read(response, body_cap)
                finally:
                    await response.aclose()
            except httpx.TimeoutException:
                exchange.error = "timeout"
            except httpx.ConnectError as exc:
                exchange.error = _connect_error(exc)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                exchange.error = f"connection closed ({type(exc).__name__})"
            except httpx.HTTPError as exc:
                exchange.error = type(exc).__name__
        exchange.elapsed_ms = (time.perf_counter() - started) * 1000
        self.exchanges[label] = exchange
        return exchange

    async def _read(self, response: httpx.Response, cap: int) -> tuple[bytes, bool]:
        # An event stream may never end (a legacy standalone GET stream, a slow tool): read it for
        # a short window and keep what arrived. Other bodies are read up to the byte cap.
        streaming = response.headers.get("content-type", "").startswith("text/event-stream")
        chunks: list[bytes] = []
        size = 0
        truncated = False

        async def pump() -> None:
            nonlocal size, truncated
            async for chunk in response.aiter_raw():
                chunks.append(chunk)
                size += len(chunk)
                if size >= cap:
                    truncated = True
                    return
                if streaming and _stream_has_response(b"".join(chunks)):
                    return

        try:
            if streaming:
                await asyncio.wait_for(pump(), timeout=self.stream_window)
            else:
                await pump()
        except TimeoutError:
            truncated = True
        return b"".join(chunks)[:cap], truncated


def _stream_has_response(data: bytes) -> bool:
    for msg in parse_body("text/event-stream", data):
        if isinstance(msg, dict) and "id" in msg and ("result" in msg or "error" in msg):
            return True
    return False


def _connect_error(exc: httpx.ConnectError) -> str:
    text = str(exc).lower()
    if "certificate" in text or "ssl" in text or "tls" in text:
        return "tls error"
    if "refused" in text:
        return "connection refused"
    return "connect error"


def jsonrpc_body(payload: Any) -> bytes:
    return orjson.dumps(payload)
