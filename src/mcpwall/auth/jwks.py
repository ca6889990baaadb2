"""A JWKS cache for one issuer: fetched on first use, refreshed when stale, refetched when a
token names a key id it has not seen (key rotation) — but at most once per
``min_refresh_interval``, so a flood of tokens with invented ``kid`` values cannot turn the
gateway into a hammer against the identity provider.

Only asymmetric signing keys are kept. A key is usable with an algorithm only when its type
fits the algorithm's family (RSA for ``RS*``/``PS*``, the right curve for ``ES*``, OKP for
``EdDSA``); that is what makes HS/RS confusion impossible, together with the algorithm
allowlist that never contains ``none`` or an ``HS*`` algorithm.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from jwt import PyJWK
from jwt.exceptions import PyJWKError

from mcpwall.auth.base import is_loopback_host

log = logging.getLogger("mcpwall.auth.jwks")

MAX_DOCUMENT_BYTES = 1 << 20

# Algorithm → (kty, crv or None). Anything not listed is not a signature algorithm we accept.
ALGORITHM_KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None), "RS384": ("RSA", None), "RS512": ("RSA", None),
    "PS256": ("RSA", None), "PS384": ("RSA", None), "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", "Ed25519"),
}

Fetch = Callable[[str], Awaitable[dict[str, Any]]]


class JwksUnavailable(Exception):
    """The key set could not be fetched and no usable copy is cached."""


def check_url(url: str) -> None:
    """Key material travels over HTTPS; plain HTTP only to a loopback address (tests, sidecars)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback_host(parts.hostname):
        return
    raise ValueError(f"{url!r} must be an https:// URL (http:// is allowed only for loopback)")


def http_fetcher(client: httpx.AsyncClient) -> Fetch:
    async def fetch(url: str) -> dict[str, Any]:
        check_url(url)
        async with client.stream("GET", url, headers={"accept": "application/json"}) as response:
            if response.status_code != 200:
                raise JwksUnavailable(f"HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise JwksUnavailable("document too large")
        data = orjson.loads(bytes(body))
        if not isinstance(data, dict):
            raise JwksUnavailable("not a JSON object")
        return data
    return fetch


class JwksCache:
    def __init__(self, url: str, fetch: Fetch, *, ttl: float = 3600.0, min_refresh_interval: float = 30.0,
                 max_stale: float = 86400.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self._fetch = fetch
        self.ttl = ttl
        self.min_refresh_interval = min_refresh_interval
        self.max_stale = max_stale
        self._clock = clock
        self._keys: list[dict[str, Any]] | None = None
        self._fetched_at = -1e18  # when the current keys arrived
        self._failed_at = -1e18  # when a fetch last failed
        self._kid_refresh_at = -1e18  # when an unknown kid last caused a refetch
        self._generation = 0  # bumps on every completed fetch attempt (single-flight)
        self._lock = asyncio.Lock()
        self._objects: dict[tuple[int, str], Any] = {}
        self.fetches = 0  # for tests and metrics

    async def keys_for(self, kid: str | None, alg: str) -> list[Any]:
        """Verification keys for a token's ``kid`` and ``alg``: one key when ``kid`` is given
        and known, every fitting key when the token has no ``kid``, none if nothing fits."""
        now = self._clock()
        if self._keys is None or now - self._fetched_at >= self.ttl:
            if now - self._failed_at >= self.min_refresh_interval:
                await self._refresh()
            if self._keys is None:
                raise JwksUnavailable("no key set")
        found = self._select(kid, alg)
        if not found and kid is not None and self._clock() - self._kid_refresh_at >= self.min_refresh_interval:
            self._kid_refresh_at = self._clock()  # claimed before awaiting: concurrent misses share it
            await self._refresh()
            found = self._select(kid, alg)
        return found

    async def _refresh(self) -> None:
        generation = self._generation
        async with self._lock:
            if self._generation != generation:
                return  # another request fetched while this one waited
            now = self._clock()
            self.fetches += 1
            try:
                document = await self._fetch(self.url)
                keys = document.get("keys")
                if not isinstance(keys, list):
                    raise JwksUnavailable("no 'keys' array")
            except Exception as exc:
                log.warning("fetching the key set %s failed: %s", self.url, type(exc).__name__)
                self._failed_at = now
                if self._keys is not None and now - self._fetched_at > self.ttl + self.max_stale:
                    self._keys = None  # too old to trust any longer
                return
            finally:
                self._generation += 1
            self._keys = [k for k in keys if _usable(k)]
            self._fetched_at = now
            self._objects.clear()

    def _select(self, kid: str | None, alg: str) -> list[Any]:
        if self._keys is None:
            return []
        wanted = ALGORITHM_KEY_TYPES.get(alg)
        if wanted is None:
            return []
        out = []
        for index, jwk in enumerate(self._keys):
            if kid is not None and jwk.get("kid") != kid:
                continue
            if jwk.get("kty") != wanted[0] or (wanted[1] is not None and jwk.get("crv") != wanted[1]):
                continue
            if "alg" in jwk and jwk["alg"] != alg:
                continue
            cache_key = (index, alg)
            obj = self._objects.get(cache_key)
            if obj is None:
                try:
                    obj = PyJWK(jwk, algorithm=alg).key
                except (PyJWKError, ValueError, TypeError):
                    continue
                self._objects[cache_key] = obj
            out.append(obj)
        return out


def _usable(jwk: Any) -> bool:
    if not isinstance(jwk, dict):
        return False
    if jwk.get("kty") not in ("RSA", "EC", "OKP"):
        return False  # symmetric ("oct") keys never verify tokens here
    if jwk.get("use") not in (None, "sig"):
        return False
    ops = jwk.get("key_ops")
    return ops is None or (isinstance(ops, list) and "verify" in ops)


async def discover_jwks_uri(issuer: str, fetch: Fetch) -> str:
    """Find ``jwks_uri`` through RFC 8414 / OpenID discovery; the document's ``issuer`` must equal
    the configured one exactly (mix-up defence)."""
    parts = urlsplit(issuer)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    candidates = [f"{origin}/.well-known/oauth-authorization-server{path}",
                  f"{origin}/.well-known/openid-configuration{path}"]
    if path:
        candidates.append(f"{origin}{path}/.well-known/openid-configuration")
    for url in candidates:
        try:
            document = await fetch(url)
        except Exception:
            continue
        if document.get("issuer") != issuer:
            continue
        jwks_uri = document.get("jwks_uri")
        if isinstance(jwks_uri, str):
            check_url(jwks_uri)
            return jwks_uri
    raise JwksUnavailable(f"no authorization server metadata with a jwks_uri for {issuer}")
