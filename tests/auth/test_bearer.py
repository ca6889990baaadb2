"""Bearer tokens against a real JWKS server on loopback: the attacks a resource server must refuse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mcpwall.auth.base import AuthFailure
from mcpwall.auth.bearer import BearerMethod, BearerSettings, challenge, metadata_routes
from mcpwall.gateway.call import ANONYMOUS, Call
from support.jwks_server import IdentityProvider
from support.pki import ec_key, public_pem

RESOURCE = "https://mcp.example.com/mcp"


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    with IdentityProvider() as provider:
        yield provider


def settings(idp: IdentityProvider, **issuer: Any) -> BearerSettings:
    return BearerSettings.model_validate({
        "resource": RESOURCE, "scopes_supported": ["mcp:tools"],
        "issuers": [{"issuer": idp.issuer, "jwks_uri": idp.jwks_uri, "roles_claim": "realm.roles",
                     "scope_roles": {"mcp:admin": ["admin"]}, "attributes": {"tenant": "org"}, **issuer}],
    })


def call_with(token: str, tls: dict[str, Any] | None = None) -> Call:
    info: dict[str, Any] = {"client": ("203.0.113.9", 5000)}
    if tls is not None:
        info["tls"] = tls
    return Call(message={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, principal=ANONYMOUS, era="modern",
                protocol_version="2026-07-28", transport="http", headers={"authorization": f"Bearer {token}"},
                transport_info=info)


async def reason_of(method: BearerMethod, token: str) -> str:
    with pytest.raises(AuthFailure) as info:
        await method.authenticate(call_with(token))
    return info.value.reason


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return signing_input + "." + b64(signature)


@pytest.mark.anyio
async def test_valid_token_maps_subject_roles_scopes_and_attributes(idp: IdentityProvider) -> None:
    method = BearerMethod(settings(idp))
    token = idp.token(audience=RESOURCE, scope="mcp:tools mcp:admin", realm={"roles": ["reader"]}, org="acme",
                      client_id="agent-1")
    principal = await method.authenticate(call_with(token))
    assert principal is not None
    assert principal.id == "alice"
    assert principal.roles == {"reader", "admin"}
    assert principal.scopes == {"mcp:tools", "mcp:admin"}
    assert principal.auth_method == "bearer"
    assert principal.attributes["tenant"] == "acme"
    assert principal.attributes["client_id"] == "agent-1"
    await method.aclose()


@pytest.mark.anyio
async def test_audience_may_be_a_list_containing_the_resource(idp: IdentityProvider) -> None:
    method = BearerMethod(settings(idp))
    assert await method.authenticate(call_with(idp.token(audience=["https://other.example", RESOURCE])))
    await method.aclose()


@pytest.mark.anyio
async def test_role_map_drops_unmapped_values(idp: IdentityProvider) -> None:
    method = BearerMethod(settings(idp, role_map={"mcp-reader": ["reader"]}))
    principal = await method.authenticate(call_with(idp.token(audience=RESOURCE,
                                                              realm={"roles": ["mcp-reader", "god"]})))
    assert principal is not None and principal.roles == {"reader"}
    await method.aclose()


@pytest.mark.anyio
async def test_expired_token_is_refused(idp: IdentityProvider) -> None:
    method = BearerMethod(settings(idp, leeway=0))
    token = idp.token(audience=RESOURCE, lifetime=-10)
    assert await reason_of(method, token) == "expired"
    await method.aclose()


@pytest.mark.anyio
async def test_not_yet_valid_token_is_refused(idp: IdentityProvider) -> None:
    method = BearerMethod(settings(idp, leeway=0))
    token = idp.token(audience=RESOURCE, not_before=time.time() + 600)
    assert await reason_of(method, token) == "not_yet_valid"
    await method.aclose()


@pytest.mark.anyio
async def test_token_for_another_audience_is_refused(idp: IdentityProvider) -> None:
    """A token minted for another service must not work here (no token passthrough)."""
    method = BearerMethod(settings(idp))
    assert await reason_of(method, idp.token(audience="https://other-service.example/mcp")) == "wrong_audience"
    assert await reason_of(method, idp.token(omit=("aud",))) == "missing_claim"
    await method.aclose()


@pytest.mark.anyio
async def test_untrusted_issuer_is_refused_without_fetching_its_keys(idp: IdentityProvider) -> None:
    method = BearerMethod(settings(idp))
    assert await reason_of(method, idp.token(audience=RESOURCE, issuer="https://evil.example")) == "untrusted_issuer"
    assert idp.fetches == 0
    await method.aclose()


@pytest.mark.anyio
async def test_alg_none_is_refused(idp: IdentityProvider) -> None:
    method = BearerMethod(settings(idp))
    now = int(time.time())
    token = forge({"alg": "none", "typ": "JWT", "kid": "k1"},
                  {"iss": idp.issuer, "sub": "mallory", "aud": RESOURCE, "exp": now + 300})
    assert await reason_of(method, token) == "algorithm_not_allowed"
    token = forge({"alg": "None", "kid": "k1"}, {"iss": idp.issuer, "sub": "mallory", "aud": RESOURCE, "exp": now})
    assert await reason_of(method, token) == "algorithm_not_allowed"
    await method.aclose()


@pytest.mark.anyio
async def test_hs256_signed_with_the_public_key_is_refused(idp: IdentityProvider) -> None:
    """The classic HS/RS confusion: HMAC keyed with the RSA public key the attacker can download."""
    method = BearerMethod(settings(idp))
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    claims = {"iss": idp.issuer, "sub": "mallory", "aud": RESOURCE, "exp": now + 300, "roles": ["admin"]}
    signing_input = forge(header, claims).rsplit(".", 1)[0]
    signature = hmac.new(public_pem(idp.keys["k1"]), signing_input.encode(), hashlib.sha256).digest()
    assert await reason_of(method, signing_input + "." + b64(signature)) == "algorithm_not_allowed"
    await method.aclose()


@pytest.mark.anyio
async def test_allowed_algorithm_with_a_key_of_the_wrong_type_finds_no_key(idp: IdentityProvider) -> None:
    """ES256 is allowed, but the JWKS only has an RSA key under that kid: no key fits."""
    method = BearerMethod(settings(idp, algorithms=["RS256", "ES256"]))
    attacker = ec_key()
    now = int(time.time())
    import jwt as pyjwt

    token = pyjwt.encode({"iss": idp.issuer, "sub": "m", "aud": RESOURCE, "exp": now + 60}, attacker,
                         algorithm="ES256", headers={"kid": "k1"})
    assert await reason_of(method, token) == "unknown_key"
    await method.aclose()


@pytest.mark.anyio
async def test_signature_from_another_key_is_refused(idp: IdentityProvider) -> None:
    method = BearerMethod(settings(idp))
    idp.add_key("k1-rogue", publish=False)
    forged = idp.token(kid="k1-rogue", audience=RESOURCE, headers={"kid": "k1"})
    assert await reason_of(method, forged) == "bad_signature"
    await method.aclose()


@pytest.mark.anyio
async def test_unknown_kid_refetches_once_then_is_rate_limited(idp: IdentityProvider) -> None:
    method = BearerMethod(settings(idp))
    assert await method.authenticate(call_with(idp.token(audience=RESOURCE)))
    assert idp.fetches == 1
    idp.add_key("ghost", publish=False)
    for _ in range(20):
        assert await reason_of(method, idp.token(kid="ghost", audience=RESOURCE)) == "unknown_key"
    assert idp.fetches == 2  # one refetch for the unknown kid, then the refetch interval holds
    await method.aclose()


@pytest.mark.anyio
async def test_key_rotation_is_picked_up_by_refetch(idp: IdentityProvider) -> None:
    method = BearerMethod(settings(idp))
    assert await method.authenticate(call_with(idp.token(audience=RESOURCE)))
    idp.add_key("k2")  # the provider rotates in a new key
    principal = await method.authenticate(call_with(idp.token(kid="k2", audience=RESOURCE)))
    assert principal is not None and idp.fetches == 2
    await method.aclose()


@pytest.mark.anyio
async def test_issuer_metadata_discovery(idp: IdentityProvider) -> None:
    s = BearerSettings.model_validate({"resource": RESOURCE, "issuers": [{"issuer": idp.issuer}]})
    method = BearerMethod(s)
    assert await method.authenticate(call_with(idp.token(audience=RESOURCE)))
    await method.aclose()


@pytest.mark.anyio
async def test_malformed_tokens_are_refused(idp: IdentityProvider) -> None:
    method = BearerMethod(settings(idp))
    for token in ["abc", "a.b", "a.b.c.d.e", "x" * 20000, "eyJhbGciOiJSUzI1NiJ9.e30.", "..."]:
        assert await reason_of(method, token) in ("malformed_token", "algorithm_not_allowed", "untrusted_issuer")
    await method.aclose()


@pytest.mark.anyio
async def test_unreachable_jwks_fails_closed() -> None:
    s = BearerSettings.model_validate({"resource": RESOURCE, "issuers": [
        {"issuer": "http://127.0.0.1:9", "jwks_uri": "http://127.0.0.1:9/jwks.json"}]})
    method = BearerMethod(s)
    with IdentityProvider() as other:
        token = other.token(audience=RESOURCE, issuer="http://127.0.0.1:9")
    assert await reason_of(method, token) == "jwks_unavailable"
    await method.aclose()


@pytest.mark.anyio
async def test_certificate_bound_token_needs_the_matching_certificate(idp: IdentityProvider) -> None:
    method = BearerMethod(settings(idp))
    fingerprint = hashlib.sha256(b"client certificate DER").hexdigest()
    thumb = b64(bytes.fromhex(fingerprint))
    token = idp.token(audience=RESOURCE, cnf={"x5t#S256": thumb})
    assert await method.authenticate(call_with(token, {"peer": {"fingerprint_sha256": fingerprint}}))
    with pytest.raises(AuthFailure, match="certificate_binding"):
        await method.authenticate(call_with(token, {"peer": {"fingerprint_sha256": "00" * 32}}))
    with pytest.raises(AuthFailure, match="certificate_binding"):
        await method.authenticate(call_with(token))
    await method.aclose()


@pytest.mark.anyio
async def test_required_scopes_give_insufficient_scope(idp: IdentityProvider) -> None:
    s = settings(idp)
    s.required_scopes = ["mcp:tools"]
    method = BearerMethod(s)
    with pytest.raises(AuthFailure) as info:
        await method.authenticate(call_with(idp.token(audience=RESOURCE, scope="other")))
    assert info.value.status == 403 and info.value.error == "insufficient_scope"
    assert info.value.scopes == ("mcp:tools",)
    await method.aclose()


@pytest.mark.anyio
async def test_api_keys_and_other_schemes_are_not_bearer_tokens(idp: IdentityProvider) -> None:
    method = BearerMethod(settings(idp))
    assert await method.authenticate(call_with("mcpw_0123456789abcdef_" + "a" * 43)) is None
    basic = call_with("x")
    basic.headers["authorization"] = "Basic dXNlcjpwYXNz"
    assert await method.authenticate(basic) is None
    await method.aclose()


@pytest.mark.anyio
async def test_tokens_never_reach_logs(idp: IdentityProvider, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    method = BearerMethod(settings(idp, leeway=0))
    token = idp.token(audience=RESOURCE, lifetime=-5)
    with pytest.raises(AuthFailure) as info:
        await method.authenticate(call_with(token))
    signature = token.rsplit(".", 1)[1]
    assert signature not in caplog.text and signature not in str(info.value)
    await method.aclose()


def test_settings_refuse_symmetric_and_none_algorithms() -> None:
    from pydantic import ValidationError

    for alg in ("HS256", "none"):
        with pytest.raises(ValidationError):
            BearerSettings.model_validate({"resource": RESOURCE, "issuers": [
                {"issuer": "https://id.example.com", "algorithms": [alg]}]})


def test_settings_refuse_plain_http_issuers_off_loopback() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="https"):
        BearerSettings.model_validate({"resource": RESOURCE, "issuers": [
            {"issuer": "https://id.example.com", "jwks_uri": "http://id.example.com/jwks"}]})


def test_protected_resource_metadata_and_challenges() -> None:
    s = BearerSettings.model_validate({"resource": RESOURCE, "scopes_supported": ["mcp:tools"],
                                       "issuers": [{"issuer": "https://id.example.com"}]})
    assert s.metadata_url() == "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
    doc = s.metadata()
    assert doc["resource"] == RESOURCE and doc["authorization_servers"] == ["https://id.example.com"]
    assert doc["bearer_methods_supported"] == ["header"] and doc["scopes_supported"] == ["mcp:tools"]
    paths = sorted(route.path for route in metadata_routes(s))  # type: ignore[attr-defined]
    assert paths == ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"]
    assert challenge(s) == ('Bearer scope="mcp:tools", '
                            'resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"')
    step_up = challenge(s, error="insufficient_scope", scopes=("files:write",))
    assert step_up.startswith('Bearer error="insufficient_scope", scope="files:write", resource_metadata=')


@pytest.mark.anyio
async def test_verified_tokens_are_remembered_no_longer_than_ttl_or_exp(idp: IdentityProvider) -> None:
    clock = [1_000.0]
    s = settings(idp)
    s.token_cache_ttl = 60
    method = BearerMethod(s, clock=lambda: clock[0])
    checks = 0
    verify = method._verify

    async def counting(token: str, call: Call | None) -> Any:
        nonlocal checks
        checks += 1
        return await verify(token, call)

    method._verify = counting  # type: ignore[method-assign]
    short = idp.token(audience=RESOURCE, lifetime=30)
    assert await method.authenticate(call_with(short))
    ((until, claims, _issuer),) = method._verified.values()
    assert until == min(claims["exp"], 1_060.0)
    assert await method.authenticate(call_with(short))
    assert checks == 1  # remembered
    clock[0] = 1_061.0
    assert await method.authenticate(call_with(short))
    assert checks == 2  # the entry ran out: the signature was checked again
    expired = idp.token(audience=RESOURCE, lifetime=-60)
    with pytest.raises(AuthFailure):
        await method.authenticate(call_with(expired))
    assert len(method._verified) == 1  # refused tokens are never remembered
    await method.aclose()
