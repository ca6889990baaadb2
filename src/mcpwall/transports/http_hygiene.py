"""Transport hygiene for the MCP port, as a pure ASGI middleware wrapped around the front app.

* **HTTPS only** (``listen.https_only``): a plain-HTTP request is refused (403) or redirected
  (308) to the same URL on https. The scheme is the one uvicorn reports, which honours
  ``X-Forwarded-Proto`` only from proxies listed in its ``forwarded_allow_ips``.
* **Origins**: a request with an ``Origin`` that is neither loopback, nor in
  ``listen.allowed_origins``, nor in ``listen.cors.allow_origins`` is refused (403) before any
  application code runs — the DNS-rebinding defence, doubled here so it holds even for routes
  the front does not check.
* **CORS**: only origins in ``listen.cors.allow_origins`` get CORS headers, always echoed
  one by one (never ``*``), with credentials only when ``allow_credentials`` says so.
  Preflights from any other origin get 403.
* **Security headers** on every response: HSTS (on https), a deny-all CSP, ``nosniff``,
  ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer``; ``Server``/``X-Powered-By``
  headers from the application are dropped (pass ``server_header=False`` to uvicorn too).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from mcpwall.auth.base import is_loopback_host
from mcpwall.errors import GATEWAY_REFUSED

if TYPE_CHECKING:
    from mcpwall.config.model import Config, ListenConfig

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ALLOWED_REQUEST_HEADERS = (
    "accept", "authorization", "content-type", "last-event-id", "mcp-method", "mcp-name",
    "mcp-protocol-version", "mcp-session-id", "x-api-key", "x-mcpwall-confirm", "x-mcpwall-key-id",
    "x-mcpwall-nonce", "x-mcpwall-signature", "x-mcpwall-timestamp",
)
EXPOSED_HEADERS = "mcp-session-id, mcp-protocol-version, www-authenticate, retry-after"
_DROPPED = {b"server", b"x-powered-by"}


class HttpHygiene:
    def __init__(self, app: ASGIApp, listen: ListenConfig) -> None:
        self.app = app
        self.https_only = listen.https_only
        self.cors_origins = frozenset(listen.cors.allow_origins)
        self.allowed_origins = frozenset(listen.allowed_origins) | self.cors_origins
        self.allowed_hosts = frozenset(h.lower() for h in listen.allowed_hosts)
        self.credentials = listen.cors.allow_credentials
        self.max_age = str(int(listen.cors.max_age))
        self.security_headers = listen.security_headers
        self.hsts = f"max-age={int(listen.hsts_max_age)}; includeSubDomains".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        https = scope.get("scheme") == "https"
        if self.https_only != "off" and not https:
            await self._not_https(scope, headers, send)
            return
        origin = headers.get("origin")
        if origin is not None and not self._origin_allowed(origin):
            await _refuse(send, 403, "origin not allowed")
            return
        cors = origin is not None and origin in self.cors_origins
        if scope.get("method") == "OPTIONS" and origin is not None and "access-control-request-method" in headers:
            if not cors:
                await _refuse(send, 403, "origin not allowed")
                return
            await self._preflight(send, origin, headers, https)
            return

        async def send_with_headers(message: Message) -> None:
            if message.get("type") == "http.response.start":
                out = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _DROPPED]
                present = {k.lower() for k, _ in out}
                out.extend((k, v) for k, v in self._extra(https, origin if cors else None) if k not in present)
                message = {**message, "headers": out}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _origin_allowed(self, origin: str) -> bool:
        if origin in self.allowed_origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and is_loopback_host(parts.hostname or "")

    def _extra(self, https: bool, cors_origin: str | None) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        if self.security_headers:
            if https:
                out.append((b"strict-transport-security", self.hsts))
            out += [(b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer")]
        if cors_origin is not None:
            out += [(b"access-control-allow-origin", cors_origin.encode("latin-1")),
                    (b"access-control-expose-headers", EXPOSED_HEADERS.encode()),
                    (b"vary", b"Origin")]
            if self.credentials:
                out.append((b"access-control-allow-credentials", b"true"))
        return out

    async def _preflight(self, send: Send, origin: str, headers: dict[str, str], https: bool) -> None:
        asked = [h.strip().lower() for h in headers.get("access-control-request-headers", "").split(",")]
        allowed = [h for h in asked if h in ALLOWED_REQUEST_HEADERS]
        out = [*self._extra(https, origin),
               (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
               (b"access-control-allow-headers", ", ".join(allowed).encode()),
               (b"access-control-max-age", self.max_age.encode())]
        await send({"type": "http.response.start", "status": 204, "headers": out})
        await send({"type": "http.response.body", "body": b""})

    async def _not_https(self, scope: Scope, headers: dict[str, str], send: Send) -> None:
        host = headers.get("host", "")
        hostname = urlsplit(f"//{host}").hostname or ""
        if self.https_only == "redirect" and host and (hostname in self.allowed_hosts or is_loopback_host(hostname)):
            bare = host if ":" not in host or host.endswith("]") else host.rsplit(":", 1)[0]
            target = "https://" + bare + scope.get("raw_path", b"").decode("latin-1")
            if scope.get("query_string"):
                target += "?" + scope["query_string"].decode("latin-1")
            await send({"type": "http.response.start", "status": 308,
                        "headers": [(b"location", target.encode("latin-1")), (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await _refuse(send, 403, "HTTPS is required")


def wrap(app: ASGIApp, config: Config) -> ASGIApp:
    """The front app with transport hygiene around it (outermost middleware)."""
    return HttpHygiene(app, config.listen)


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope.get("headers") or ():
        out[key.decode("latin-1").lower()] = value.decode("latin-1")
    return out


async def _refuse(send: Send, status: int, message: str) -> None:
    body = orjson.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": GATEWAY_REFUSED, "message": message}})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": body})
