"""OAuth 2.1 bearer tokens (JWT access tokens): mcpwall as an MCP resource server.

Checks, in order: a compact JWS of sane size; an ``alg`` from the issuer's pinned list (which
can never hold ``none`` or an ``HS*`` algorithm); a trusted ``iss``; a key from that issuer's
JWKS whose type fits the algorithm; the signature; ``exp`` (required), ``nbf``; an ``aud``
naming this gateway's canonical resource URI (RFC 8707) — tokens minted for another service
are refused, which is what makes token passthrough useless to an attacker; and, for
certificate-bound tokens (RFC 8705 ``cnf.x5t#S256``), the client certificate.

Claims become a principal: the subject, roles from a roles claim and from scopes, scopes,
and chosen attributes. The Protected Resource Metadata document (RFC 9728) tells clients which
authorization servers to ask.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx
import jwt
from pydantic import Field, field_validator, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mcpwall.auth.base import AuthFailure, AuthMethod, bearer_token, claim_path
from mcpwall.auth.jwks import Fetch, JwksCache, JwksUnavailable, check_url, discover_jwks_uri, http_fetcher
from mcpwall.config.types import Seconds, Strict
from mcpwall.gateway.call import Call, Principal

Algorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
_DEFAULT_ALGORITHMS: tuple[Algorithm, ...] = ("RS256", "ES256")
PRM_PATH = "/.well-known/oauth-protected-resource"
_TOKEN_CACHE_MAX = 10_000


class IssuerSettings(Strict):
    issuer: str = Field(description="The exact `iss` value tokens carry.")
    jwks_uri: str | None = Field(None, description="Key set URL; discovered from the issuer's metadata if unset.")
    audience: list[str] | None = Field(
        None, description="Accepted `aud` values; default: the gateway's `resource` URI (RFC 8707).")
    algorithms: list[Algorithm] = Field(
        default_factory=lambda: list(_DEFAULT_ALGORITHMS), min_length=1,
        description="Pinned signature algorithms. `none` and HS* are never accepted.")
    principal_claim: str = Field("sub", description="Claim (dotted path) that names the principal.")
    roles_claim: str | None = Field("roles", description="Claim (dotted path) holding role names, if any.")
    role_map: dict[str, list[str]] = Field(
        default_factory=dict, description="Roles-claim value → gateway roles. When set, unmapped values are dropped.")
    scope_roles: dict[str, list[str]] = Field(default_factory=dict, description="Scope → gateway roles it grants.")
    attributes: dict[str, str] = Field(
        default_factory=dict, description="Principal attribute → claim path (e.g. tenant: org_id).")
    required_claims: list[str] = Field(default_factory=list, description="Claims that must be present.")
    leeway: Seconds = Field(30.0, le=300, description="Clock skew tolerated on exp/nbf/iat.")

    @field_validator("issuer", "jwks_uri")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            check_url(value)
        return value


class BearerSettings(Strict):
    resource: str = Field(description="Canonical URI of this gateway's MCP endpoint, e.g. https://mcp.example.com/mcp. "
                                      "Tokens must name it in `aud`.")
    issuers: list[IssuerSettings] = Field(min_length=1)
    authorization_servers: list[str] | None = Field(
        None, description="Advertised in the protected-resource metadata; default: the issuers.")
    scopes_supported: list[str] = Field(default_factory=list, description="Minimal baseline scopes to advertise.")
    required_scopes: list[str] = Field(
        default_factory=list, description="Scopes every token must carry (403 insufficient_scope otherwise).")
    resource_name: str | None = None
    resource_documentation: str | None = None
    jwks_cache_ttl: Seconds = 3600.0
    jwks_refresh_min_interval: Seconds = Field(30.0, description="Least time between refetches for unknown kids.")
    jwks_max_stale: Seconds = Field(3600.0, description="How long cached keys serve after the JWKS became unreachable.")
    fetch_timeout: Seconds = Field(5.0, gt=0)
    max_token_bytes: int = Field(16384, ge=512)
    token_cache_ttl: Seconds = Field(
        60.0, le=3600, description="How long a verified token is remembered (never past its exp); 0 disables.")

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.fragment:
            raise ValueError("must be an absolute http(s) URI without a fragment")
        return value.rstrip("/") if parts.path not in ("", "/") else value

    @model_validator(mode="after")
    def _unique_issuers(self) -> BearerSettings:
        names = [i.issuer for i in self.issuers]
        if len(set(names)) != len(names):
            raise ValueError("each issuer may appear once")
        return self

    def metadata_url(self) -> str:
        parts = urlsplit(self.resource)
        path = parts.path.rstrip("/")
        return f"{parts.scheme}://{parts.netloc}{PRM_PATH}{path}"

    def metadata(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "resource": self.resource,
            "authorization_servers": self.authorization_servers or [i.issuer for i in self.issuers],
            "bearer_methods_supported": ["header"],
        }
        if self.scopes_supported:
            doc["scopes_supported"] = self.scopes_supported
        if self.resource_name:
            doc["resource_name"] = self.resource_name
        if self.resource_documentation:
            doc["resource_documentation"] = self.resource_documentation
        return doc


def challenge(settings: BearerSettings | None, *, error: str | None = None, scopes: tuple[str, ...] = (),
              metadata_url: str | None = None) -> str:
    """A ``WWW-Authenticate`` value. Values never contain client input."""
    parts: list[str] = []
    if error:
        parts.append(f'error="{error}"')
    scope = " ".join(scopes) if scopes else (" ".join(settings.scopes_supported) if settings else "")
    if scope:
        parts.append(f'scope="{scope}"')
    url = metadata_url or (settings.metadata_url() if settings else None)
    if url:
        parts.append(f'resource_metadata="{url}"')
    return "Bearer " + ", ".join(parts) if parts else "Bearer"


class BearerMethod(AuthMethod):
    name: ClassVar[str] = "bearer"

    def __init__(self, settings: BearerSettings, *, fetch: Fetch | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._client: httpx.AsyncClient | None = None
        if fetch is None:
            self._client = httpx.AsyncClient(timeout=settings.fetch_timeout, follow_redirects=False,
                                             trust_env=False)
            fetch = http_fetcher(self._client)
        self._fetch = fetch
        self._clock = clock
        self._issuers = {i.issuer: i for i in settings.issuers}
        self._caches: dict[str, JwksCache] = {}
        self._accepted = {alg for i in settings.issuers for alg in i.algorithms}
        # SHA-256 of a verified token → (valid until, claims, issuer). Signature checks cost far
        # more than the rest of a request; a token is re-verified at least every token_cache_ttl.
        self._verified: OrderedDict[bytes, tuple[float, dict[str, Any], IssuerSettings]] = OrderedDict()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def _cache(self, issuer: IssuerSettings) -> JwksCache:
        cache = self._caches.get(issuer.issuer)
        if cache is None:
            uri = issuer.jwks_uri or await discover_jwks_uri(issuer.issuer, self._fetch)
            cache = JwksCache(uri, self._fetch, ttl=self.settings.jwks_cache_ttl,
                              min_refresh_interval=self.settings.jwks_refresh_min_interval,
                              max_stale=self.settings.jwks_max_stale)
            self._caches[issuer.issuer] = cache
        return cache

    async def authenticate(self, call: Call) -> Principal | None:
        token = bearer_token(call)
        if token is None or token.startswith("mcpw_"):
            return None
        claims, issuer = await self.verify(token, call)
        return self._principal(claims, issuer)

    async def verify(self, token: str, call: Call | None = None) -> tuple[dict[str, Any], IssuerSettings]:
        if len(token) > self.settings.max_token_bytes or token.count(".") != 2:
            raise AuthFailure("malformed_token", method=self.name)
        key = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        cached = self._verified.get(key)
        if cached is not None and cached[0] > now:
            self._check_binding(cached[1], call)
            return cached[1], cached[2]
        claims, issuer = await self._verify(token, call)
        ttl = self.settings.token_cache_ttl
        exp = claims.get("exp")
        if ttl > 0 and isinstance(exp, (int, float)):
            self._verified[key] = (min(float(exp), now + ttl), claims, issuer)
            while len(self._verified) > _TOKEN_CACHE_MAX:
                self._verified.popitem(last=False)
        return claims, issuer

    async def _verify(self, token: str, call: Call | None) -> tuple[dict[str, Any], IssuerSettings]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthFailure("malformed_token", method=self.name) from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._accepted:
            raise AuthFailure("algorithm_not_allowed", method=self.name)
        iss = unverified.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthFailure("untrusted_issuer", method=self.name)
        if alg not in issuer.algorithms:
            raise AuthFailure("algorithm_not_allowed", method=self.name, hint=issuer.issuer)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthFailure("malformed_token", method=self.name)
        try:
            keys = await (await self._cache(issuer)).keys_for(kid, alg)
        except JwksUnavailable:
            raise AuthFailure("jwks_unavailable", method=self.name, hint=issuer.issuer) from None
        if not keys:
            raise AuthFailure("unknown_key", method=self.name, hint=issuer.issuer)
        claims = self._decode(token, keys, alg, issuer)
        self._check_binding(claims, call)
        return claims, issuer

    def _decode(self, token: str, keys: list[Any], alg: str, issuer: IssuerSettings) -> dict[str, Any]:
        audience = issuer.audience or [self.settings.resource]
        required = ["exp", "iss", "aud", *issuer.required_claims]
        failure: AuthFailure | None = None
        for key in keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token, key=key, algorithms=[alg], audience=audience, issuer=issuer.issuer,
                    leeway=issuer.leeway, options={"require": required, "verify_iat": False})
                return claims
            except jwt.InvalidSignatureError:
                failure = AuthFailure("bad_signature", method=self.name, hint=issuer.issuer)
            except jwt.ExpiredSignatureError:
                raise AuthFailure("expired", method=self.name, hint=issuer.issuer) from None
            except jwt.ImmatureSignatureError:
                raise AuthFailure("not_yet_valid", method=self.name, hint=issuer.issuer) from None
            except jwt.InvalidAudienceError:
                raise AuthFailure("wrong_audience", method=self.name, hint=issuer.issuer) from None
            except jwt.InvalidIssuerError:
                raise AuthFailure("untrusted_issuer", method=self.name) from None
            except jwt.MissingRequiredClaimError:
                raise AuthFailure("missing_claim", method=self.name, hint=issuer.issuer) from None
            except jwt.PyJWTError:
                failure = AuthFailure("invalid_token", method=self.name, hint=issuer.issuer)
        raise failure or AuthFailure("invalid_token", method=self.name)

    def _check_binding(self, claims: dict[str, Any], call: Call | None) -> None:
        cnf = claims.get("cnf")
        if not isinstance(cnf, dict) or "x5t#S256" not in cnf:
            return
        peer = ((call.transport_info.get("tls") or {}).get("peer") if call is not None else None) or {}
        fingerprint = peer.get("fingerprint_sha256")
        if not isinstance(fingerprint, str):
            raise AuthFailure("certificate_binding", method=self.name)
        thumbprint = base64.urlsafe_b64encode(bytes.fromhex(fingerprint)).rstrip(b"=").decode()
        if cnf["x5t#S256"] != thumbprint:
            raise AuthFailure("certificate_binding", method=self.name)

    def _principal(self, claims: dict[str, Any], issuer: IssuerSettings) -> Principal:
        subject = claim_path(claims, issuer.principal_claim)
        if not isinstance(subject, str) or not subject:
            raise AuthFailure("missing_claim", method=self.name, hint=issuer.issuer)
        scopes = _scopes(claims)
        missing = [s for s in self.settings.required_scopes if s not in scopes]
        if missing:
            raise AuthFailure("insufficient_scope", method=self.name, status=403, error="insufficient_scope",
                              scopes=tuple(dict.fromkeys([*self.settings.required_scopes])))
        roles: set[str] = set()
        if issuer.roles_claim:
            for value in _strings(claim_path(claims, issuer.roles_claim)):
                if issuer.role_map:
                    roles.update(issuer.role_map.get(value, ()))
                else:
                    roles.add(value)
        for scope in scopes:
            roles.update(issuer.scope_roles.get(scope, ()))
        attributes = {"issuer": issuer.issuer}
        client_id = claims.get("client_id", claims.get("azp"))
        if isinstance(client_id, str):
            attributes["client_id"] = client_id
        for name, path in issuer.attributes.items():
            value = claim_path(claims, path)
            if isinstance(value, bool):
                continue
            if isinstance(value, (str, int)):
                attributes[name] = str(value)
        return Principal(id=subject, roles=frozenset(roles), scopes=frozenset(scopes), auth_method=self.name,
                         attributes=attributes)

def metadata_routes(settings: BearerSettings) -> list[BaseRoute]:
    """The metadata document at the root and at the path-inserted well-known URI (RFC 9728 §3.1)."""
    document = settings.metadata()

    async def metadata(request: Request) -> Response:
        return JSONResponse(document, headers={"cache-control": "public, max-age=3600"})

    path = urlsplit(settings.resource).path.rstrip("/")
    paths = [PRM_PATH] + ([PRM_PATH + path] if path else [])
    return [Route(p, metadata, methods=["GET"]) for p in paths]


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    raw = claims.get("scope", claims.get("scp"))
    if isinstance(raw, str):
        return frozenset(s for s in raw.split() if s)
    return frozenset(_strings(raw))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []
