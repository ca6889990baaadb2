"""API keys: minting, parsing and verifying ``mcpw_<id>_<secret>`` keys.

The id is public (it names the key in ``mcpwall keys list`` and in the audit trail); the
secret is 32 random bytes, shown once at creation and stored only as a SHA-256 digest.
Clients send a key as ``Authorization: Bearer mcpw_…`` or in the ``X-API-Key`` header.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import replace
from typing import ClassVar

from pydantic import Field

from mcpwall.auth.base import AuthFailure, AuthMethod, bearer_token
from mcpwall.config.types import Strict
from mcpwall.gateway.call import Call, Principal
from mcpwall.storage.apikeys import KeyRecord, KeyStore

PREFIX = "mcpw"
_KEY = re.compile(r"^mcpw_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


class ApiKeySettings(Strict):
    header: str = Field("x-api-key", description="Header that may carry a key besides Authorization: Bearer.")
    store: str | None = Field(None, description="Storage URL for key records; default: storage.url.")


def looks_like_key(value: str) -> bool:
    return value.startswith(PREFIX + "_")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def mint(store: KeyStore, principal: str, roles: tuple[str, ...], *, expires_in: float | None = None,
         note: str = "", now: float | None = None) -> tuple[KeyRecord, str]:
    """Create a key; returns its record and the plaintext key (the only time it exists)."""
    when = time.time() if now is None else now
    for _ in range(5):
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = KeyRecord(key_id=key_id, principal=principal, roles=roles, digest=digest(secret),
                           created_at=when, expires_at=None if expires_in is None else when + expires_in,
                           note=note)
        try:
            store.add(record)
        except ValueError:
            continue  # an id collision: 64 random bits make this astronomically rare
        return record, f"{PREFIX}_{key_id}_{secret}"
    raise RuntimeError("could not allocate a key id")


def rotate(store: KeyStore, key_id: str, *, grace: float = 0.0, expires_in: float | None = None,
           now: float | None = None) -> tuple[KeyRecord, str]:
    """Mint a replacement with the same principal and roles; the old key stops working after
    ``grace`` seconds (at once by default)."""
    when = time.time() if now is None else now
    old = store.lookup(key_id)
    if old is None:
        raise KeyError(key_id)
    if old.status(when) == "revoked":
        raise ValueError("the key is already revoked")
    record, plaintext = mint(store, old.principal, old.roles, expires_in=expires_in, note=old.note, now=when)
    cutoff = when + grace
    if old.revoked_at is None or old.revoked_at > cutoff:
        store.update(replace(old, revoked_at=cutoff))
    return record, plaintext


def verify(store: KeyStore, presented: str, now: float) -> KeyRecord:
    """The record of a valid key, or raise :class:`AuthFailure`."""
    match = _KEY.match(presented)
    if match is None:
        raise AuthFailure("malformed_key", method="api_key")
    key_id, secret = match.groups()
    record = store.lookup(key_id)
    # Compare a digest even for unknown ids, so timing does not tell which ids exist.
    expected = record.digest if record is not None else "0" * 64
    if not hmac.compare_digest(expected, digest(secret)) or record is None:
        raise AuthFailure("unknown_key", method="api_key", hint=key_id)
    status = record.status(now)
    if status != "active":
        raise AuthFailure(f"{status}_key", method="api_key", hint=key_id)
    return record


class ApiKeyMethod(AuthMethod):
    name: ClassVar[str] = "api_key"

    def __init__(self, settings: ApiKeySettings, store: KeyStore) -> None:
        self.settings = settings
        self.store = store
        self._header = settings.header.lower()

    async def authenticate(self, call: Call) -> Principal | None:
        presented = call.headers.get(self._header)
        if presented is None:
            token = bearer_token(call)
            if token is None or not looks_like_key(token):
                return None
            presented = token
        record = verify(self.store, presented.strip(), time.time())
        return Principal(id=record.principal, roles=frozenset(record.roles), auth_method=self.name,
                         attributes={"key_id": record.key_id})

    async def aclose(self) -> None:
        self.store.close()
