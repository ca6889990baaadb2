"""Announce approval requests and decisions to a webhook, signed and retried.

Each delivery is a JSON POST with these headers:

* ``X-Mcpwall-Event``      — ``approval.requested`` or ``approval.decided``
* ``X-Mcpwall-Delivery``   — a unique id; retries reuse it, so receivers can drop duplicates
* ``X-Mcpwall-Timestamp``  — Unix seconds when the delivery was signed
* ``X-Mcpwall-Signature``  — ``sha256=`` + hex HMAC-SHA256(secret, timestamp + "." + body)

Receivers verify with :func:`mcpwall.webhook_signature.verify_signature` (or its equivalent in their language) and
reject stale timestamps. Deliveries run in the background: a slow or failing receiver never
delays a held call, and failures are logged without the payload.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

import httpx
import orjson

from mcpwall.approvals.settings import WebhookSettings
from mcpwall.webhook_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

log = logging.getLogger("mcpwall.approvals.webhook")

EVENT_HEADER = "X-Mcpwall-Event"
DELIVERY_HEADER = "X-Mcpwall-Delivery"
_BACKOFF = 0.5


class WebhookSender:
    def __init__(self, settings: WebhookSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self._client = httpx.AsyncClient(timeout=settings.timeout, follow_redirects=False, transport=transport)
        self._tasks: set[asyncio.Task[bool]] = set()

    def send(self, event: str, payload: dict[str, Any]) -> asyncio.Task[bool] | None:
        """Queue one delivery in the background; returns its task (tests await it)."""
        if event not in self.settings.events:
            return None
        body = orjson.dumps({"event": event, **payload})
        task = asyncio.get_running_loop().create_task(self._deliver(event, body, secrets.token_hex(12)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _deliver(self, event: str, body: bytes, delivery: str) -> bool:
        for attempt in range(self.settings.retries + 1):
            if attempt:
                await asyncio.sleep(_BACKOFF * 2 ** (attempt - 1))
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", EVENT_HEADER: event, DELIVERY_HEADER: delivery,
                       TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(self.settings.secret, timestamp, body)}
            try:
                response = await self._client.post(self.settings.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                log.warning("approval webhook delivery %s failed (attempt %d): %s", delivery, attempt + 1,
                            type(exc).__name__)
                continue
            if 200 <= response.status_code < 300:
                return True
            log.warning("approval webhook delivery %s got HTTP %d (attempt %d)", delivery, response.status_code,
                        attempt + 1)
        log.error("approval webhook delivery %s gave up after %d attempts", delivery, self.settings.retries + 1)
        return False

    async def aclose(self) -> None:
        for task in tuple(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()
