"""Redaction: credentials never reach the audit trail; configured fields are hashed; output is bounded JSON."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpwall.audit.record import canonical
from mcpwall.audit.redact import REDACTED, TRUNCATED, Redactor, is_credential_key, scrub_text


@pytest.mark.parametrize("key", ["password", "apiKey", "X-Api-Key", "client_secret", "access_token", "Authorization",
                                 "sessionId", "Mcp-Session-Id", "auth", "private_key", "github_token", "Cookie"])
def test_credential_keys(key: str) -> None:
    assert is_credential_key(key)


@pytest.mark.parametrize("key", ["author", "max_tokens", "auth_method", "token_type", "path", "query", "secret_name",
                                 "tokenizer", "api_key_id"])
def test_ordinary_keys(key: str) -> None:
    assert not is_credential_key(key)


@pytest.mark.parametrize("secret", [
    "Bearer abcdefghijklmnopqrstuvwxyz012345",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXZhbHVl",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_" + "A1b2" * 9,
    "sk-proj-abcdefghijklmnopqrstuvwx",
    "xoxb-1234567890-abcdefghij",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
])
def test_credential_shaped_values_are_cut_out(secret: str) -> None:
    out = scrub_text(f"before {secret} after")
    assert secret not in out and "before" in out and "after" in out and REDACTED in out


def test_url_passwords_are_cut_out_but_the_user_stays() -> None:
    assert scrub_text("postgresql://app:s3cr3t@db:5432/x") == f"postgresql://app:{REDACTED}@db:5432/x"


def test_configured_fields_are_hashed_consistently_and_keyed() -> None:
    a = Redactor(fields=["SSN"], hmac_key=b"k1")
    b = Redactor(fields=["ssn"], hmac_key=b"k2")
    first, second = a.redact({"ssn": "123-45-6789"}), a.redact({"nested": {"Ssn": "123-45-6789"}})
    assert first["ssn"] == second["nested"]["Ssn"] and first["ssn"].startswith("hmac-sha256:")
    assert b.redact({"ssn": "123-45-6789"})["ssn"] != first["ssn"]
    assert Redactor(fields=["ssn"], action="remove").redact({"ssn": "1"}) == {"ssn": REDACTED}


def test_credentials_are_removed_not_hashed() -> None:
    assert Redactor(fields=["password"]).redact({"password": "hunter2"}) == {"password": REDACTED}


def test_output_is_bounded() -> None:
    redactor = Redactor(max_string_bytes=64, max_depth=4, max_nodes=50)
    deep: Any = "leaf"
    for _ in range(10):
        deep = {"d": deep}
    assert TRUNCATED in str(redactor.redact(deep))
    long = redactor.redact("x" * 1000)
    assert len(long) < 200 and "1000 bytes" in long
    wide = redactor.redact(list(range(500)))
    assert len(wide) <= 51 and wide[-1] == TRUNCATED


def test_odd_values_become_json() -> None:
    out = Redactor().redact({1: float("nan"), "big": 2**80, "set": {1}, "obj": object(), "t": (1, 2)})
    canonical(out)  # encodable
    assert out["1"] == "nan" and out["big"] == str(2**80) and out["t"] == [1, 2]


keys = st.text(max_size=10) | st.integers() | st.sampled_from(["password", "token", "apiKey"])
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5), max_leaves=30)


@given(values)
def test_any_value_redacts_to_canonical_json(value: Any) -> None:
    canonical(Redactor().redact(value))


@given(values, st.text(min_size=8, max_size=30).filter(lambda s: s.strip() == s and len(set(s)) > 4))
def test_a_secret_under_a_credential_key_never_survives(value: Any, secret: str) -> None:
    out = Redactor().redact({"wrapper": [value, {"clientSecret": secret, "headers": {"Authorization": secret}}]})
    encoded = canonical(out).decode()
    assert f'"clientSecret":"{REDACTED}"' in encoded and f'"Authorization":"{REDACTED}"' in encoded
    inner = out["wrapper"][1]
    assert inner["clientSecret"] == REDACTED and inner["headers"]["Authorization"] == REDACTED


def test_scrubbing_is_linear_on_hostile_text() -> None:
    # Long runs of scheme characters once made the URL-password pattern quadratic (hours for a
    # 4 MiB argument); the suite's per-test timeout would catch a regression.
    assert scrub_text("x" * 4_000_000) == "x" * 4_000_000
    assert scrub_text("a:" * 1_000_000) == "a:" * 1_000_000
