"""Validators: checksums, number ranges, entropy and placeholder detection."""

from __future__ import annotations

import pytest

from mcpwall.detect import validators as v


@pytest.mark.parametrize(("name", "good", "bad"), [
    ("credit_card", "4111 1111 1111 1111", "4111 1111 1111 1112"),
    ("credit_card", "378282246310005", "1234567812345678"),
    ("iban", "GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 33"),
    ("iban", "de89370400440532013000", "DE89370400440532013001"),
    ("us_ssn", "536-90-4399", "666-12-3456"),
    ("us_ssn", "846-15-5715", "078-05-1120"),
    ("uk_nino", "AB123456C", "GB123456A"),
    ("ca_sin", "130 692 544", "046 454 287"),
    ("nl_bsn", "111222333", "111222334"),
    ("es_dni", "12345678Z", "12345678A"),
    ("br_cpf", "529.982.247-25", "111.111.111-11"),
    ("in_aadhaar", "2341 2341 2346", "2341 2341 2345"),
    ("ipv4", "203.0.113.42", "256.1.1.1"),
    ("ipv6", "2001:db8::8a2e:370:7334", "12:30:45"),
    ("phone", "+1 (415) 555-2671", "2024-01-15"),
    ("email", "jane@mail.example.org", "a..b@example.org"),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", "eyJmb28iOjF9.eyJzdWIiOiIxIn0.c2ln"),
    ("basic_auth", "ZGVwbG95OlM0bXBsZVB3ZDEyMyE=", "YnJvd3Nlcjo="),
    ("base58check", "5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ",
     "5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTK"),
    ("secret_value", "bP88Q~rcBcYjzzOhg1Hnn76Wm3jGgakZiZ", "X25519.secret_length"),
])
def test_validator(name: str, good: str, bad: str) -> None:
    assert v.VALIDATORS[name](good)
    assert not v.VALIDATORS[name](bad)


@pytest.mark.parametrize("text", ["xxxxxxxx", "<YOUR_API_KEY>", "${TOKEN}", "AKIAIOSFODNN7EXAMPLE", "aaaaaaaaaa",
                                  "password", "$PASSWORD", "ops_eyJzaWduSW5B..", "123123123123123"])
def test_placeholders(text: str) -> None:
    assert v.placeholder(text)


@pytest.mark.parametrize("text", ["k7Qd9Lr2Xv8Zp1Nc4Ty6", "$apr1$salt$hash", "access_token$production$x"])
def test_not_placeholders(text: str) -> None:
    assert not v.placeholder(text)


def test_entropy() -> None:
    assert v.shannon_entropy("") == 0.0
    assert v.shannon_entropy("aaaa") == 0.0
    assert 3.9 < v.shannon_entropy("abcdefghijklmnop") <= 4.0
