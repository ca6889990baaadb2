"""HMAC request signing: good signatures pass; replayed, stale, future and tampered ones do not."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpwall.auth.base import AuthFailure
from mcpwall.auth.signing import HmacMethod, HmacSettings, sign
from mcpwall.gateway.call import ANONYMOUS, Call
from mcpwall.storage.counters_memory import MemoryCounterStore

SECRET = "s" * 40
NOW = 1_800_000_000.0
BODY = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'


def method(clock: float = NOW) -> HmacMethod:
    s = HmacSettings.model_validate({"clients": {"billing": {"secret": SECRET, "roles": ["billing"]}}})
    return HmacMethod(s, MemoryCounterStore(), clock=lambda: clock)


def call(headers: dict[str, str], body: bytes = BODY, path: str = "/mcp", http_method: str = "POST") -> Call:
    return Call(message={}, principal=ANONYMOUS, era="modern", protocol_version="2026-07-28", transport="http",
                headers={k.lower(): v for k, v in headers.items()},
                transport_info={"http_method": http_method, "path": path,
                                "body_sha256": hashlib.sha256(body).hexdigest()})


async def refused(m: HmacMethod, c: Call) -> str:
    with pytest.raises(AuthFailure) as info:
        await m.authenticate(c)
    return info.value.reason


@pytest.mark.anyio
async def test_valid_signature_names_the_client() -> None:
    m = method()
    principal = await m.authenticate(call(sign(SECRET, "POST", "/mcp", BODY, key_id="billing", now=NOW)))
    assert principal is not None and principal.id == "billing" and principal.roles == {"billing"}
    assert principal.auth_method == "hmac"


@pytest.mark.anyio
async def test_replayed_nonce_is_refused() -> None:
    m = method()
    headers = sign(SECRET, "POST", "/mcp", BODY, key_id="billing", now=NOW)
    assert await m.authenticate(call(headers))
    assert await refused(m, call(headers)) == "replayed_nonce"


@pytest.mark.anyio
async def test_stale_and_future_timestamps_are_refused() -> None:
    m = method()
    old = sign(SECRET, "POST", "/mcp", BODY, key_id="billing", now=NOW - 301)
    assert await refused(m, call(old)) == "stale_signature"
    future = sign(SECRET, "POST", "/mcp", BODY, key_id="billing", now=NOW + 301)
    assert await refused(m, call(future)) == "stale_signature"
    edge = sign(SECRET, "POST", "/mcp", BODY, key_id="billing", now=NOW - 300)
    assert await m.authenticate(call(edge))


@pytest.mark.anyio
async def test_any_change_to_signed_parts_breaks_the_signature() -> None:
    m = method()
    headers = sign(SECRET, "POST", "/mcp", BODY, key_id="billing", now=NOW)
    assert await refused(m, call(headers, body=BODY + b" ")) == "bad_signature"
    assert await refused(m, call(headers, path="/other")) == "bad_signature"
    assert await refused(m, call(headers, http_method="DELETE")) == "bad_signature"
    moved = dict(headers, **{"X-Mcpwall-Timestamp": str(int(NOW) + 1)})
    assert await refused(m, call(moved)) == "bad_signature"
    wrong_key = sign("t" * 40, "POST", "/mcp", BODY, key_id="billing", now=NOW)
    assert await refused(m, call(wrong_key)) == "bad_signature"


@pytest.mark.anyio
async def test_forged_requests_do_not_burn_nonces() -> None:
    m = method()
    headers = sign(SECRET, "POST", "/mcp", BODY, key_id="billing", now=NOW)
    forged = dict(headers, **{"X-Mcpwall-Signature": "0" * 64})
    assert await refused(m, call(forged)) == "bad_signature"
    assert await m.authenticate(call(headers))  # the real request still goes through


@pytest.mark.anyio
async def test_unknown_client_and_malformed_headers() -> None:
    m = method()
    assert await refused(m, call(sign(SECRET, "POST", "/mcp", BODY, key_id="nobody", now=NOW))) == "unknown_key"
    good = sign(SECRET, "POST", "/mcp", BODY, key_id="billing", now=NOW)
    for name, value in [("X-Mcpwall-Nonce", "short"), ("X-Mcpwall-Timestamp", "-5"),
                        ("X-Mcpwall-Signature", "zz"), ("X-Mcpwall-Nonce", "a b" * 10)]:
        assert await refused(m, call(dict(good, **{name: value}))) == "malformed_signature"
    assert await m.authenticate(call({})) is None


@pytest.mark.anyio
async def test_missing_transport_facts_fail_closed() -> None:
    m = method()
    c = call(sign(SECRET, "POST", "/mcp", BODY, key_id="billing", now=NOW))
    c.transport_info = {}
    assert await refused(m, c) == "unsigned_transport"


def test_settings_refuse_short_secrets_and_long_windows() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        HmacSettings.model_validate({"clients": {"a": {"secret": "short"}}})
    with pytest.raises(ValidationError):
        HmacSettings.model_validate({"clients": {"a": {"secret": SECRET}}, "max_age": "10m"})
    assert "s" * 40 not in repr(HmacSettings.model_validate({"clients": {"a": {"secret": SECRET}}}))


@settings(max_examples=200)
@given(st.dictionaries(st.sampled_from(["x-mcpwall-key-id", "x-mcpwall-timestamp", "x-mcpwall-nonce",
                                        "x-mcpwall-signature"]), st.text(max_size=80)))
@pytest.mark.anyio
async def test_hostile_headers_only_ever_fail_cleanly(headers: dict[str, Any]) -> None:
    m = method()
    try:
        result = await m.authenticate(call(headers))
    except AuthFailure:
        return
    assert result is None
