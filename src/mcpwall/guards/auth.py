"""The ``auth`` guard: establishes who is calling, on every HTTP request.

Methods (configure any subset): ``mtls`` (client certificates), ``hmac`` (signed requests),
``bearer`` (OAuth 2.1 JWT access tokens) and ``api_key``. Every configured method inspects the
request; a credential that is present but wrong refuses the request even if another method
succeeded, so a bad token cannot hide behind a good certificate. The first method (in
``methods`` order) that verified a credential names the principal; ``require`` lists methods
that must all succeed (e.g. mTLS *and* a bearer token).

Without any credential: stdio clients get the configured ``stdio`` identity; loopback HTTP
clients may be anonymous when both ``anonymous.enabled`` here and ``security.allow_anonymous``
say so; everyone else gets ``401`` with a ``WWW-Authenticate`` challenge that points to the
protected-resource metadata. Failures are audited (``auth.failure`` events) and slowed down
per source. No credential ever reaches a log line, an event or a response.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import Field, model_validator
from starlette.routing import BaseRoute

from mcpwall.auth.apikey import ApiKeyMethod, ApiKeySettings
from mcpwall.auth.base import AuthFailure, AuthMethod, is_loopback_host
from mcpwall.auth.bearer import BearerMethod, BearerSettings, challenge, metadata_routes
from mcpwall.auth.failures import FailureSettings, FailureTracker
from mcpwall.auth.mtls import MtlsMethod, MtlsSettings
from mcpwall.auth.signing import HmacMethod, HmacSettings
from mcpwall.config.types import Strict
from mcpwall.errors import GATEWAY_RATE_LIMITED, GATEWAY_UNAUTHENTICATED
from mcpwall.gateway.call import ANONYMOUS, Call, Principal
from mcpwall.pipeline.guard import Guard, GuardEnv, GuardSettings
from mcpwall.pipeline.verdict import Reject
from mcpwall.storage.apikeys import open_key_store
from mcpwall.storage.counters import CounterStore, open_counter_store

log = logging.getLogger("mcpwall.auth")

MethodName = Literal["mtls", "hmac", "bearer", "api_key"]
DEFAULT_ORDER: tuple[MethodName, ...] = ("mtls", "hmac", "bearer", "api_key")
# JSON-RPC code for "authentication required / failed" (HTTP 401), in the -31xxx gateway range.
GATEWAY_FORBIDDEN = -31403
SCRATCH_METADATA = "auth.resource_metadata"  # read by the policy guard for step-up challenges


class AnonymousSettings(Strict):
    enabled: bool = Field(False, description="Admit loopback HTTP clients without credentials "
                                             "(also needs security.allow_anonymous).")
    roles: list[str] = Field(default_factory=list, description="Roles the anonymous principal gets.")


class StdioIdentity(Strict):
    id: str = Field("local", description="Principal name for the local stdio client.")
    roles: list[str] = Field(default_factory=list)


class AuthSettings(GuardSettings):
    methods: list[MethodName] | None = Field(
        None, description="Order in which methods name the principal; default: mtls, hmac, bearer, api_key "
                          "(those configured).")
    require: list[MethodName] = Field(default_factory=list, description="Methods that must all succeed.")
    api_keys: ApiKeySettings | None = None
    jwt: BearerSettings | None = None
    mtls: MtlsSettings | None = None
    hmac: HmacSettings | None = None
    anonymous: AnonymousSettings = Field(default_factory=AnonymousSettings)
    stdio: StdioIdentity | None = Field(
        default_factory=StdioIdentity, description="Identity of the stdio client; null refuses stdio "
                                                   "unless anonymous.enabled.")
    failures: FailureSettings = Field(default_factory=FailureSettings)
    nonce_store: str | None = Field(None, description="Storage URL for HMAC nonces; default: storage.url.")

    def configured(self) -> list[MethodName]:
        sections: dict[MethodName, object] = {"mtls": self.mtls, "hmac": self.hmac, "bearer": self.jwt,
                                              "api_key": self.api_keys}
        order = self.methods or list(DEFAULT_ORDER)
        return [m for m in order if sections[m] is not None]

    @model_validator(mode="after")
    def _consistent(self) -> AuthSettings:
        sections = {"mtls": self.mtls, "hmac": self.hmac, "bearer": self.jwt, "api_key": self.api_keys}
        for name in [*(self.methods or []), *self.require]:
            if sections[name] is None:
                section = "jwt" if name == "bearer" else "api_keys" if name == "api_key" else name
                raise ValueError(f"method {name!r} is listed but its section {section!r} is not configured")
        return self


class AuthGuard(Guard):
    name = "auth"
    Settings = AuthSettings
    settings: AuthSettings

    def __init__(self, settings: AuthSettings, env: GuardEnv, *,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        super().__init__(settings, env)
        self._sleep = sleep
        self.tracker = FailureTracker(settings.failures)
        self._owned_store: CounterStore | None = None
        self.methods: list[AuthMethod] = []
        self.bearer: BearerMethod | None = None

    async def start(self) -> None:
        s = self.settings
        for name in s.configured():
            if name == "mtls" and s.mtls is not None:
                self.methods.append(MtlsMethod(s.mtls))
            elif name == "hmac" and s.hmac is not None:
                self.methods.append(HmacMethod(s.hmac, await self._nonce_store()))
            elif name == "bearer" and s.jwt is not None:
                self.bearer = BearerMethod(s.jwt)
                self.methods.append(self.bearer)
            elif name == "api_key" and s.api_keys is not None:
                store = self.env.state.get("api_keys") or open_key_store(
                    s.api_keys.store or self.env.storage_url, self.env.config_dir)
                self.methods.append(ApiKeyMethod(s.api_keys, store))
        for method in self.methods:
            await method.start()

    async def _nonce_store(self) -> CounterStore:
        shared = self.env.state.get("counters")
        if isinstance(shared, CounterStore):
            return shared
        store = open_counter_store(self.settings.nonce_store or self.env.storage_url, self.env.config_dir)
        await store.start()
        self._owned_store = store
        return store

    async def aclose(self) -> None:
        for method in self.methods:
            await method.aclose()
        if self._owned_store is not None:
            await self._owned_store.aclose()

    def http_routes(self) -> list[BaseRoute]:
        if self.settings.jwt is None:
            return []
        return metadata_routes(self.settings.jwt)

    # -- the hook -----------------------------------------------------------------------

    async def authenticate(self, call: Call) -> Reject | None:
        if self.settings.jwt is not None:
            call.scratch[SCRATCH_METADATA] = self.settings.jwt.metadata_url()
        if call.transport == "stdio":
            return self._stdio(call)
        source = _source(call)
        locked = self.tracker.locked_for(source)
        if locked > 0:
            self._emit("auth.failure", call, source, method=None, reason="locked_out")
            return _too_many(locked)
        verified: list[Principal] = []
        for method in self.methods:
            try:
                principal = await method.authenticate(call)
            except AuthFailure as failure:
                return await self._refuse(call, source, failure)
            if principal is not None:
                verified.append(principal)
        if not verified:
            if self._anonymous_allowed(call):
                call.principal = _anonymous(self.settings.anonymous.roles, source)
                return None
            self._emit("auth.missing", call, source, method=None, reason="no_credentials")
            return self._unauthenticated()
        names = [p.auth_method for p in verified]
        missing = [m for m in self.settings.require if m not in names]
        if missing:
            return await self._refuse(call, source, AuthFailure("required_method_missing", method=missing[0]))
        primary = verified[0]
        attributes = dict(primary.attributes)
        attributes["auth_methods"] = ",".join(names)
        for other in verified[1:]:
            for key, value in other.attributes.items():
                attributes.setdefault(f"{other.auth_method}.{key}", value)
        call.principal = Principal(id=primary.id, roles=primary.roles, scopes=primary.scopes,
                                   auth_method=primary.auth_method, attributes=attributes)
        return None

    def _stdio(self, call: Call) -> Reject | None:
        identity = self.settings.stdio
        if identity is not None:
            call.principal = Principal(id=identity.id, roles=frozenset(identity.roles), auth_method="stdio",
                                       attributes={"auth_methods": "stdio"})
            return None
        if self._anonymous_allowed(call):
            call.principal = _anonymous(self.settings.anonymous.roles, "stdio")
            return None
        return Reject("authentication required", code=GATEWAY_UNAUTHENTICATED, as_tool_error=False)

    def _anonymous_allowed(self, call: Call) -> bool:
        if not self.settings.anonymous.enabled:
            return False
        config = self.env.state.get("config")
        security = getattr(config, "security", None)
        if security is not None and not getattr(security, "allow_anonymous", False):
            return False
        if call.transport == "stdio":
            return True
        client = call.transport_info.get("client")
        host = client[0] if isinstance(client, (tuple, list)) and client else None
        return isinstance(host, str) and is_loopback_host(host)

    async def _refuse(self, call: Call, source: str, failure: AuthFailure) -> Reject:
        delay, locked = self.tracker.record_failure(source)
        self._emit("auth.failure", call, source, method=failure.method, reason=failure.reason,
                   hint=failure.hint, locked=locked)
        if delay > 0:
            await self._sleep(delay)
        if failure.status == 403:
            header = challenge(self.settings.jwt, error=failure.error, scopes=failure.scopes)
            return Reject("insufficient scope", code=GATEWAY_FORBIDDEN, http_status=403, as_tool_error=False,
                          headers={"WWW-Authenticate": header}, data={"requiredScopes": list(failure.scopes)})
        if locked:
            return _too_many(self.settings.failures.lockout)
        return self._unauthenticated(error="invalid_token" if failure.method == "bearer" else None)

    def _unauthenticated(self, error: str | None = None) -> Reject:
        headers = {"WWW-Authenticate": challenge(self.settings.jwt, error=error)}
        return Reject("authentication required", code=GATEWAY_UNAUTHENTICATED, http_status=401,
                      as_tool_error=False, headers=headers)

    def _emit(self, kind: str, call: Call, source: str, *, method: str | None, reason: str,
              hint: str = "", locked: bool = False) -> None:
        fields: dict[str, Any] = {"source": source, "method": method, "reason": reason,
                                  "decision_id": call.decision_id, "transport": call.transport}
        if hint:
            fields["hint"] = hint
        if locked:
            fields["locked"] = True
        self.env.events.emit(kind, **fields)
        if kind == "auth.failure":
            log.info("authentication refused from %s: %s (%s)", source, reason, method or "-")


def _source(call: Call) -> str:
    client = call.transport_info.get("client")
    if isinstance(client, (tuple, list)) and client and isinstance(client[0], str):
        return client[0]
    return call.source or "unknown"


def _anonymous(roles: list[str], source: str) -> Principal:
    # The source rides along so rate limits can tell anonymous callers apart.
    return Principal(id=ANONYMOUS.id, roles=frozenset(roles), attributes={"source": source})


def _too_many(seconds: float) -> Reject:
    retry = max(1, math.ceil(seconds))
    return Reject("too many failed authentication attempts", code=GATEWAY_RATE_LIMITED, http_status=429,
                  as_tool_error=False, headers={"Retry-After": str(retry)}, data={"retryAfter": retry})
