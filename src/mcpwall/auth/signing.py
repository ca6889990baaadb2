"""HMAC request signing for service-to-service callers.

A caller holding a shared secret sends four headers::

    X-Mcpwall-Key-Id:    billing-svc
    X-Mcpwall-Timestamp: 1777900000            (Unix seconds)
    X-Mcpwall-Nonce:     3f9c0a…               (16 to 128 chars of [A-Za-z0-9_-], never reused)
    X-Mcpwall-Signature: <hex HMAC-SHA256 of the string below>

over the canonical string (lines joined with ``\\n``)::

    mcpwall-hmac-v1
    POST                                       (HTTP method, upper case)
    /mcp                                       (the URL path, without the query string)
    1777900000                                 (the timestamp header)
    3f9c0a…                                    (the nonce header)
    <hex SHA-256 of the raw request body>      (of b"" for GET/DELETE)

The gateway refuses timestamps more than ``max_age`` (at most five minutes) away from its
clock in either direction, and any nonce it has seen within twice that window, so a captured
request cannot be replayed. Nonces are remembered in the counter store, so replicas sharing
Redis share the replay check.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import ClassVar

from pydantic import Field

from mcpwall.auth.base import AuthFailure, AuthMethod
from mcpwall.config.types import Seconds, SigningSecret, Strict
from mcpwall.gateway.call import Call, Principal
from mcpwall.storage.counters import CounterStore

VERSION = "mcpwall-hmac-v1"
H_KEY_ID = "x-mcpwall-key-id"
H_TIMESTAMP = "x-mcpwall-timestamp"
H_NONCE = "x-mcpwall-nonce"
H_SIGNATURE = "x-mcpwall-signature"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_TIMESTAMP = re.compile(r"^\d{1,12}$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class HmacClient(Strict):
    secret: SigningSecret = Field(description="Shared secret, at least 32 characters (use ${ENV}).")
    principal: str | None = Field(None, description="Principal name; default: the key id.")
    roles: list[str] = Field(default_factory=list)


class HmacSettings(Strict):
    clients: dict[str, HmacClient] = Field(min_length=1, description="Key id → secret, principal and roles.")
    max_age: Seconds = Field(300.0, gt=0, le=300, description="Largest accepted clock difference (≤ 5 minutes).")


def canonical(method: str, path: str, timestamp: str, nonce: str, body_sha256: str) -> bytes:
    return "\n".join((VERSION, method.upper(), path, timestamp, nonce, body_sha256.lower())).encode()


def sign(secret: str, method: str, path: str, body: bytes, *, key_id: str, now: float | None = None,
         nonce: str | None = None) -> dict[str, str]:
    """The headers a caller adds to sign one request."""
    timestamp = str(int(time.time() if now is None else now))
    nonce = nonce or secrets.token_hex(16)
    digest = hashlib.sha256(body).hexdigest()
    signature = hmac.new(secret.encode(), canonical(method, path, timestamp, nonce, digest), hashlib.sha256)
    return {"X-Mcpwall-Key-Id": key_id, "X-Mcpwall-Timestamp": timestamp, "X-Mcpwall-Nonce": nonce,
            "X-Mcpwall-Signature": signature.hexdigest()}


def present(headers: Mapping[str, str]) -> bool:
    return H_SIGNATURE in headers or H_KEY_ID in headers


class HmacMethod(AuthMethod):
    name: ClassVar[str] = "hmac"

    def __init__(self, settings: HmacSettings, nonces: CounterStore, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.nonces = nonces
        self._clock = clock

    async def authenticate(self, call: Call) -> Principal | None:
        headers = call.headers
        if not present(headers):
            return None
        key_id = headers.get(H_KEY_ID, "")
        timestamp = headers.get(H_TIMESTAMP, "")
        nonce = headers.get(H_NONCE, "")
        signature = headers.get(H_SIGNATURE, "")
        if not (_TIMESTAMP.match(timestamp) and _NONCE.match(nonce) and _HEX64.match(signature)):
            raise AuthFailure("malformed_signature", method=self.name)
        client = self.settings.clients.get(key_id)
        if client is None:
            raise AuthFailure("unknown_key", method=self.name)
        info = call.transport_info
        http_method, path, body_sha256 = info.get("http_method"), info.get("path"), info.get("body_sha256")
        if not (isinstance(http_method, str) and isinstance(path, str)):
            raise AuthFailure("unsigned_transport", method=self.name, hint=key_id)
        if not isinstance(body_sha256, str):
            body_sha256 = EMPTY_SHA256
        expected = hmac.new(client.secret.get_secret_value().encode(),
                            canonical(http_method, path, timestamp, nonce, body_sha256), hashlib.sha256)
        if not hmac.compare_digest(expected.hexdigest(), signature.lower()):
            raise AuthFailure("bad_signature", method=self.name, hint=key_id)
        now = self._clock()
        if abs(now - int(timestamp)) > self.settings.max_age:
            raise AuthFailure("stale_signature", method=self.name, hint=key_id)
        # Only a correctly signed request may spend a nonce, so forgeries cannot burn them.
        if not await self.nonces.claim(f"hmac-nonce:{key_id}:{nonce}", 2 * self.settings.max_age + 1, now):
            raise AuthFailure("replayed_nonce", method=self.name, hint=key_id)
        return Principal(id=client.principal or key_id, roles=frozenset(client.roles), auth_method=self.name,
                         attributes={"key_id": key_id})
