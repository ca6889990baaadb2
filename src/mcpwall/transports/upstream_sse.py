"""An upstream on the deprecated HTTP+SSE transport (protocol 2024-11-05), legacy era only.

The session is one long GET stream: the server's first event names the endpoint to POST
messages to, and every response, notification and server request arrives on that stream. The
endpoint must stay on the upstream's own origin — a server cannot point the gateway elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from mcpwall.errors import ProtocolError, UpstreamUnavailable
from mcpwall.protocol import jsonrpc
from mcpwall.transports.sse import SSEParser
from mcpwall.transports.upstream_base import (
    RequestOptions,
    UnsolicitedHandler,
    UpstreamSession,
    initialize_params,
    parse_initialize,
)
from mcpwall.transports.upstream_http import STREAM_TIMEOUT, post_message

log = logging.getLogger("mcpwall.upstream.sse")


class SseSession(UpstreamSession):
    def __init__(self, name: str, url: str, client: aiohttp.ClientSession, *, limits: jsonrpc.Limits,
                 legacy_capabilities: dict[str, Any], on_unsolicited: UnsolicitedHandler | None = None) -> None:
        super().__init__(name, "legacy", on_unsolicited=on_unsolicited)
        self.url = url
        self.client = client
        self.limits = limits
        self.legacy_capabilities = legacy_capabilities
        self.endpoint: str | None = None
        self._endpoint_ready = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def open(self, connect_timeout: float) -> None:
        self._reader = asyncio.create_task(self._read())
        try:
            async with asyncio.timeout(connect_timeout):
                await self._endpoint_ready.wait()
        except TimeoutError:
            raise UpstreamUnavailable(f"upstream {self.name} sent no endpoint event") from None
        if self.endpoint is None:
            raise UpstreamUnavailable(f"upstream {self.name} closed its event stream")
        result = await self.request("initialize", initialize_params(self.legacy_capabilities, "2024-11-05"),
                                    RequestOptions(timeout=connect_timeout))
        self.handshake = parse_initialize(result)
        await self.notify("notifications/initialized")

    def _accept_endpoint(self, data: str) -> None:
        endpoint = urljoin(self.url, data.strip())
        base, target = urlsplit(self.url), urlsplit(endpoint)
        if (base.scheme, base.netloc) != (target.scheme, target.netloc):
            log.error("upstream %s: refused an endpoint on another origin", self.name)
            self._endpoint_ready.set()
            return
        self.endpoint = endpoint
        self._endpoint_ready.set()

    async def _read(self) -> None:
        try:
            async with self.client.get(self.url, headers={"accept": "text/event-stream"}, allow_redirects=False,
                                       timeout=STREAM_TIMEOUT) as response:
                if response.status != 200:
                    log.error("upstream %s: event stream answered HTTP %s", self.name, response.status)
                    return
                parser = SSEParser(max_event_bytes=self.limits.max_bytes)
                async for chunk in response.content.iter_any():
                    for event in parser.feed(chunk):
                        if event.event == "endpoint" and self.endpoint is None:
                            self._accept_endpoint(event.data)
                        elif event.event == "message":
                            await self.dispatch(event.data)
        except (aiohttp.ClientError, ProtocolError) as exc:
            log.warning("upstream %s: event stream failed: %s", self.name, exc)
        finally:
            self.closed = True
            self._endpoint_ready.set()
            self.fail_pending(f"upstream {self.name} closed its event stream")

    async def send_message(self, message: dict[str, Any]) -> None:
        if self.endpoint is None or self.closed:
            raise UpstreamUnavailable(f"upstream {self.name} is not connected")
        status = await post_message(self.client, self.endpoint, message, {"content-type": "application/json"},
                                    self.limits.max_bytes, self.name)
        if status >= 400:
            raise UpstreamUnavailable(f"upstream {self.name} refused a message (HTTP {status})")

    async def request(self, method: str, params: dict[str, Any] | None, options: RequestOptions) -> dict[str, Any]:
        params, token = self.prepare_params(params, options)
        rid = self.next_id()
        # The POST is inside the request's timeout: the upstream may take it and never answer.
        message = jsonrpc.request(rid, method, params)
        return await self.run_request(rid, options, token, lambda: self.send_and_wait(rid, message, self.send_message))

    async def aclose(self) -> None:
        self.closed = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
            self._reader = None
