"""HTTP/1.1 clients the load generator can drive: a raw keep-alive client and two libraries.

``RawConnection`` is an asyncio protocol that writes pre-built request bytes and parses the
answer with httptools: one connection per virtual client, no pooling, no per-request objects
beyond a future, so the load generator costs a few microseconds of CPU per request.
``HttpxConnection`` and ``AiohttpConnection`` wrap the libraries behind the same two calls
(``prepare`` headers once, ``send`` a body) so the three can be compared on the same
workload (``python -m bench micro``). Loopback only; no TLS.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import httptools

Response = tuple[int, dict[bytes, bytes], bytes]


class Connection(Protocol):
    def prepare(self, headers: dict[str, str]) -> Any: ...
    async def send(self, prepared: Any, body: bytes, method: str = "POST") -> Response: ...
    async def aclose(self) -> None: ...


class _RawProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None
        self.headers: dict[bytes, bytes] = {}
        self.chunks: list[bytes] = []
        self.closed = False
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"bad HTTP response: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError("connection closed"))

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def on_message_begin(self) -> None:
        self.headers = {}
        self.chunks = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.keep_alive = self.parser.should_keep_alive()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), self.headers, bytes(body)))


class RawConnection:
    """One keep-alive connection; reconnects transparently when the server closed it."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host = host
        self.port = port
        self.path = path.encode()
        self.proto: _RawProtocol | None = None
        self._host_line = f"host: {host}:{port}\r\n".encode()

    async def _connect(self) -> _RawProtocol:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(_RawProtocol, self.host, self.port)
        self.proto = proto
        return proto

    def prepare(self, headers: dict[str, str]) -> bytes:
        lines = [self._host_line, b"content-type: application/json\r\n",
                 b"accept: application/json, text/event-stream\r\n"]
        lines.extend(f"{k}: {v}\r\n".encode() for k, v in headers.items())
        return b"".join(lines)

    async def send(self, prepared: bytes, body: bytes, method: str = "POST") -> Response:
        proto = self.proto
        if proto is None or proto.closed or not proto.keep_alive:
            if proto is not None and proto.transport is not None:
                proto.transport.close()
            proto = await self._connect()
        waiter: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        proto.waiter = waiter
        assert proto.transport is not None
        proto.transport.write(b"%s %s HTTP/1.1\r\n%scontent-length: %d\r\n\r\n%s"
                              % (method.encode(), self.path, prepared, len(body), body))
        return await waiter

    async def aclose(self) -> None:
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.close()


class HttpxConnection:
    """httpx with one connection per virtual client (for comparison, not the default)."""

    def __init__(self, host: str, port: int, path: str) -> None:
        import httpx

        self.url = f"http://{host}:{port}{path}"
        self.client = httpx.AsyncClient(limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                                        timeout=60.0)

    def prepare(self, headers: dict[str, str]) -> dict[str, str]:
        return {"content-type": "application/json", "accept": "application/json, text/event-stream", **headers}

    async def send(self, prepared: dict[str, str], body: bytes, method: str = "POST") -> Response:
        resp = await self.client.request(method, self.url, content=body, headers=prepared)
        headers = {k.encode(): v.encode() for k, v in resp.headers.items()}
        return resp.status_code, headers, resp.content

    async def aclose(self) -> None:
        await self.client.aclose()


class AiohttpConnection:
    """aiohttp with one connection per virtual client (for comparison, not the default)."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.url = f"http://{host}:{port}{path}"
        self.session: Any = None

    def prepare(self, headers: dict[str, str]) -> dict[str, str]:
        return {"content-type": "application/json", "accept": "application/json, text/event-stream", **headers}

    async def send(self, prepared: dict[str, str], body: bytes, method: str = "POST") -> Response:
        if self.session is None:
            import aiohttp

            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1),
                                                 auto_decompress=False)
        async with self.session.request(method, self.url, data=body, headers=prepared) as resp:
            data = await resp.read()
            headers = {k.lower().encode(): v.encode() for k, v in resp.headers.items()}
            return resp.status, headers, data

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()


CLIENTS: dict[str, type[RawConnection] | type[HttpxConnection] | type[AiohttpConnection]] = {
    "raw": RawConnection, "httpx": HttpxConnection, "aiohttp": AiohttpConnection,
}


def connect(kind: str, host: str, port: int, path: str) -> Connection:
    return CLIENTS[kind](host, port, path)
