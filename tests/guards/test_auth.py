"""The auth guard: combining methods, anonymous access rules, failure slow-down and lockout,
challenges, and no credential in any event or log."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mcpwall.auth import apikey
from mcpwall.errors import GATEWAY_RATE_LIMITED
from mcpwall.gateway.call import ANONYMOUS, Call
from mcpwall.gateway.events import EventBus
from mcpwall.guards.auth import AuthGuard, AuthSettings
from mcpwall.pipeline.guard import GuardEnv
from mcpwall.storage.apikeys import MemoryKeyStore
from mcpwall.storage.counters_memory import MemoryCounterStore

RESOURCE = "https://mcp.example.com/mcp"
PEER = {"subject": "CN=billing,O=acme", "subject_cn": "billing", "san_uri": ["spiffe://acme/billing"],
        "san_dns": [], "san_email": [], "fingerprint_sha256": "ab" * 32, "issuer": "CN=acme CA"}


class Harness:
    def __init__(self, tmp_path: Path, raw: dict[str, Any], *, allow_anonymous: bool = True) -> None:
        self.events: list[dict[str, Any]] = []
        bus = EventBus()
        bus.subscribe(self.events.append)
        self.keys = MemoryKeyStore()
        config = SimpleNamespace(security=SimpleNamespace(allow_anonymous=allow_anonymous))
        env = GuardEnv(events=bus, config_dir=tmp_path, storage_url="memory://",
                       state={"api_keys": self.keys, "counters": MemoryCounterStore(), "config": config})
        self.sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.guard = AuthGuard(AuthSettings.model_validate(raw), env, sleep=sleep)

    async def __aenter__(self) -> Harness:
        await self.guard.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.guard.aclose()


def http_call(headers: dict[str, str] | None = None, host: str = "203.0.113.7", tls: Any = None) -> Call:
    info: dict[str, Any] = {"scheme": "https", "client": (host, 40000), "http_method": "POST", "path": "/mcp",
                            "body_sha256": hashlib.sha256(b"").hexdigest()}
    if tls is not None:
        info["tls"] = tls
    return Call(message={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, principal=ANONYMOUS,
                era="modern", protocol_version="2026-07-28", transport="http", source=host,
                headers=headers or {}, transport_info=info)


KEYS = {"api_keys": {}}
JWT = {"jwt": {"resource": RESOURCE, "scopes_supported": ["mcp:tools"],
               "issuers": [{"issuer": "https://id.example.com", "jwks_uri": "https://id.example.com/jwks"}]}}


@pytest.mark.anyio
async def test_api_key_in_either_header(tmp_path: Path) -> None:
    async with Harness(tmp_path, KEYS) as h:
        _, key = apikey.mint(h.keys, "alice", ("reader",))
        for headers in ({"authorization": f"Bearer {key}"}, {"x-api-key": key}):
            c = http_call(headers)
            assert await h.guard.authenticate(c) is None
            assert c.principal.id == "alice" and c.principal.roles == {"reader"}
            assert c.principal.auth_method == "api_key"


@pytest.mark.anyio
async def test_missing_credentials_get_401_with_resource_metadata(tmp_path: Path) -> None:
    async with Harness(tmp_path, {**KEYS, **JWT}) as h:
        reject = await h.guard.authenticate(http_call())
        assert reject is not None and reject.http_status == 401 and not reject.as_tool_error
        header = (reject.headers or {})["WWW-Authenticate"]
        assert header.startswith("Bearer ")
        assert 'resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"' in header
        assert "error=" not in header  # no token was presented
        assert h.sleeps == []  # asking without credentials is not a failure


@pytest.mark.anyio
async def test_anonymous_only_on_loopback_and_only_when_configured(tmp_path: Path) -> None:
    async with Harness(tmp_path, {**KEYS, "anonymous": {"enabled": True, "roles": ["guest"]}}) as h:
        local = http_call(host="127.0.0.1")
        assert await h.guard.authenticate(local) is None
        assert local.principal.anonymous and local.principal.roles == {"guest"}
        v6 = http_call(host="::1")
        assert await h.guard.authenticate(v6) is None
        remote = await h.guard.authenticate(http_call(host="198.51.100.4"))
        assert remote is not None and remote.http_status == 401
    async with Harness(tmp_path, KEYS) as h:  # not enabled
        reject = await h.guard.authenticate(http_call(host="127.0.0.1"))
        assert reject is not None and reject.http_status == 401
    async with Harness(tmp_path, {**KEYS, "anonymous": {"enabled": True}}, allow_anonymous=False) as h:
        reject = await h.guard.authenticate(http_call(host="127.0.0.1"))  # security.allow_anonymous: false
        assert reject is not None and reject.http_status == 401


@pytest.mark.anyio
async def test_stdio_identity_or_refusal(tmp_path: Path) -> None:
    async with Harness(tmp_path, {**KEYS, "stdio": {"id": "desktop", "roles": ["local"]}}) as h:
        c = http_call()
        c.transport = "stdio"
        assert await h.guard.authenticate(c) is None
        assert c.principal.id == "desktop" and c.principal.auth_method == "stdio"
    async with Harness(tmp_path, {**KEYS, "stdio": None}) as h:
        c = http_call()
        c.transport = "stdio"
        reject = await h.guard.authenticate(c)
        assert reject is not None and reject.code == -31401


@pytest.mark.anyio
async def test_a_bad_credential_refuses_even_beside_a_good_one(tmp_path: Path) -> None:
    async with Harness(tmp_path, {**KEYS, "mtls": {}}) as h:
        c = http_call({"x-api-key": "mcpw_" + "0" * 16 + "_" + "a" * 43}, tls={"peer": PEER})
        reject = await h.guard.authenticate(c)
        assert reject is not None and reject.http_status == 401
        assert c.principal is ANONYMOUS


@pytest.mark.anyio
async def test_required_methods_must_all_succeed(tmp_path: Path) -> None:
    raw = {**KEYS, "mtls": {"principals": {"spiffe://acme/billing": {"id": "billing-svc", "roles": ["billing"]}}},
           "methods": ["api_key", "mtls"], "require": ["mtls"]}
    async with Harness(tmp_path, raw) as h:
        _, key = apikey.mint(h.keys, "alice", ("reader",))
        only_key = await h.guard.authenticate(http_call({"x-api-key": key}))
        assert only_key is not None and only_key.http_status == 401
        both = http_call({"x-api-key": key}, tls={"peer": PEER})
        assert await h.guard.authenticate(both) is None
        assert both.principal.id == "alice"  # api_key comes first in `methods`
        assert both.principal.attributes["auth_methods"] == "api_key,mtls"
        assert both.principal.attributes["mtls.cert_fingerprint"] == "ab" * 32


@pytest.mark.anyio
async def test_mtls_identity_mapping(tmp_path: Path) -> None:
    async with Harness(tmp_path, {"mtls": {"default_roles": ["svc"]}}) as h:
        c = http_call(tls={"peer": PEER})
        assert await h.guard.authenticate(c) is None
        assert c.principal.id == "spiffe://acme/billing" and c.principal.roles == {"svc"}
    async with Harness(tmp_path, {"mtls": {"require_mapping": True, "identity": ["subject_cn"]}}) as h:
        reject = await h.guard.authenticate(http_call(tls={"peer": PEER}))
        assert reject is not None and reject.http_status == 401
    by_fingerprint = {"mtls": {"principals": {"sha256:" + "ab" * 32: {"id": "pinned", "roles": ["x"]}}}}
    async with Harness(tmp_path, by_fingerprint) as h:
        c = http_call(tls={"peer": PEER})
        assert await h.guard.authenticate(c) is None and c.principal.id == "pinned"


@pytest.mark.anyio
async def test_repeated_failures_are_slowed_then_locked_out(tmp_path: Path) -> None:
    raw = {**KEYS, "failures": {"threshold": 3, "base_delay": 0.5, "max_delay": 2, "lockout_after": 6,
                                "lockout": "10m"}}
    async with Harness(tmp_path, raw) as h:
        bad = {"x-api-key": "mcpw_" + "1" * 16 + "_" + "b" * 43}
        statuses = []
        for _ in range(7):
            reject = await h.guard.authenticate(http_call(bad))
            assert reject is not None
            statuses.append(reject.http_status)
        assert h.sleeps == [0.5, 1.0, 2.0]  # failures 3, 4, 5; the 6th locks
        assert statuses == [401, 401, 401, 401, 401, 429, 429]
        _, good = apikey.mint(h.keys, "alice", ())
        locked = await h.guard.authenticate(http_call({"x-api-key": good}))
        assert locked is not None and locked.code == GATEWAY_RATE_LIMITED
        assert int((locked.headers or {})["Retry-After"]) > 0 and locked.data and locked.data["retryAfter"] > 0
        other = http_call({"x-api-key": good}, host="198.51.100.99")  # other sources are unaffected
        assert await h.guard.authenticate(other) is None
        kinds = [e["kind"] for e in h.events]
        assert kinds.count("auth.failure") == 8  # six refusals, then two locked-out attempts
        assert any(e.get("locked") for e in h.events)


@pytest.mark.anyio
async def test_credentials_never_reach_events_or_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with Harness(tmp_path, {**KEYS, **JWT}) as h:
        key = "mcpw_" + "2" * 16 + "_" + "SECRETSECRETSECRETSECRETSECRETSECRETSECRET"[:43].ljust(43, "Z")
        token = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2V2aWwifQ.c2lnbmF0dXJlLXNlY3JldA"
        for headers in ({"x-api-key": key}, {"authorization": f"Bearer {token}"}):
            reject = await h.guard.authenticate(http_call(headers))
            assert reject is not None
            blob = repr(h.events) + caplog.text + repr(reject)
            assert key.split("_", 2)[2] not in blob
            assert "c2lnbmF0dXJlLXNlY3JldA" not in blob


@pytest.mark.anyio
async def test_invalid_token_challenge_says_invalid_token(tmp_path: Path) -> None:
    async with Harness(tmp_path, JWT) as h:
        reject = await h.guard.authenticate(http_call({"authorization": "Bearer a.b.c"}))
        assert reject is not None and reject.http_status == 401
        assert 'error="invalid_token"' in (reject.headers or {})["WWW-Authenticate"]


@pytest.mark.anyio
async def test_resource_metadata_url_is_shared_for_step_up(tmp_path: Path) -> None:
    async with Harness(tmp_path, {**KEYS, **JWT}) as h:
        _, key = apikey.mint(h.keys, "alice", ())
        c = http_call({"x-api-key": key})
        await h.guard.authenticate(c)
        assert c.scratch["auth.resource_metadata"].endswith("/.well-known/oauth-protected-resource/mcp")
        assert [r.path for r in h.guard.http_routes()] == [  # type: ignore[attr-defined]
            "/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"]


def test_settings_check_listed_methods_are_configured() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not configured"):
        AuthSettings.model_validate({"require": ["mtls"]})
