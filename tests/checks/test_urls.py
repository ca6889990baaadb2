"""Strict URL parsing and the egress policy (mcpwall.checks.urls)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpwall.checks.addresses import IPAddress
from mcpwall.checks.urls import EgressDenied, EgressPolicy, as_url, looks_like_url, parse_url, resolve_host


def policy(**kwargs: object) -> EgressPolicy:
    return EgressPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("url", "code"), [
    ("http://127.0.0.1/", "loopback"),
    ("http://localhost:8080/admin", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://0x7f.1/", "loopback"),
    ("http://017700000001/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:7f00:1]:80/", "loopback"),
    ("http://[2002:7f00:1::]/", "loopback"),
    ("http://[64:ff9b::7f00:1]/", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ("http://0xA9FEA9FE/", "metadata"),
    ("http://10.0.0.5/", "private"),
    ("http://192.168.0.1/", "private"),
    ("http://100.64.1.1/", "cgnat"),
    ("http://0.0.0.0:8000/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://example.com/", "scheme"),
    ("javascript:alert(1)", "scheme"),
    ("http://user:pw@example.com/", "userinfo"),
    ("http://example.com@127.0.0.1/", "userinfo"),
    ("http://127.0.0.1\\@example.com/", "malformed"),
    ("http://a@b@127.0.0.1/", "malformed"),
    ("http:///etc", "malformed"),
    ("http://exa mple.com/", "malformed"),
    ("http://example.com:99999/", "malformed"),
    ("http://[::1/", "malformed"),
    ("not a url", "malformed"),
    ("http://%31%32%37.0.0.1/", "loopback"),
    ("HTTP://LOCALHOST/", "loopback"),
])
def test_ssrf_variants_are_refused_without_dns(url: str, code: str) -> None:
    with pytest.raises(EgressDenied) as caught:
        policy(resolve=False).check_static(url)
    assert caught.value.code == code


def test_userinfo_tricks_are_judged_by_the_real_host_when_userinfo_is_allowed() -> None:
    lax = policy(allow_userinfo=True, resolve=False)
    with pytest.raises(EgressDenied) as caught:
        lax.check_static("http://example.com@127.0.0.1/")
    assert caught.value.code == "loopback"
    assert lax.check_static("http://127.0.0.1@example.com/").host == "example.com"


def test_fragment_and_query_do_not_hide_the_host() -> None:
    assert parse_url("http://127.0.0.1#@example.com/").host == "127.0.0.1"
    assert parse_url("http://example.com?@127.0.0.1/").host == "example.com"


def test_public_urls_pass() -> None:
    parsed = policy(resolve=False).check_static("https://example.com:8443/a?b#c")
    assert (parsed.scheme, parsed.host, parsed.port) == ("https", "example.com", 8443)
    assert policy().check_static("http://8.8.8.8/").ip == ipaddress.ip_address("8.8.8.8")


def test_allow_and_deny_lists() -> None:
    p = policy(allow_cidrs=(ipaddress.ip_network("10.1.0.0/16"),), deny_hosts=("*.evil.test",),
               allow_hosts=("*.example.com", "10.1.2.3"), resolve=False)
    p.check_static("http://10.1.2.3/")
    for url, code in [("http://10.2.0.1/", "host_not_allowed"), ("http://x.evil.test/", "denied_host"),
                      ("http://example.org/", "host_not_allowed")]:
        with pytest.raises(EgressDenied) as caught:
            p.check_static(url)
        assert caught.value.code == code
    p.check_static("https://api.example.com/")


def test_allowed_ranges_never_unblock_metadata() -> None:
    p = policy(allow_cidrs=(ipaddress.ip_network("169.254.0.0/16"),), resolve=False)
    p.check_static("http://169.254.1.1/")
    with pytest.raises(EgressDenied) as caught:
        p.check_static("http://169.254.169.254/")
    assert caught.value.code == "metadata"


def test_denied_ranges_apply_to_public_addresses() -> None:
    p = policy(deny_cidrs=(ipaddress.ip_network("8.8.8.0/24"),))
    with pytest.raises(EgressDenied) as caught:
        p.check_ip(ipaddress.ip_address("8.8.8.8"))
    assert caught.value.code == "denied_cidr"


def test_ports_allowlist() -> None:
    p = policy(allow_ports=frozenset({443}), resolve=False)
    p.check_static("https://example.com/")
    with pytest.raises(EgressDenied) as caught:
        p.check_static("http://example.com/")
    assert caught.value.code == "port"


@pytest.mark.anyio
async def test_every_resolved_address_must_pass() -> None:
    async def resolver(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("10.0.0.1")]

    with pytest.raises(EgressDenied) as caught:
        await policy(resolver=resolver).check("http://rebind.example/")
    assert caught.value.code == "private"


@pytest.mark.anyio
async def test_public_resolution_passes_and_returns_the_addresses() -> None:
    async def resolver(host: str, port: int) -> list[IPAddress]:
        assert (host, port) == ("api.example", 443)
        return [ipaddress.ip_address("93.184.215.14")]

    assert await policy(resolver=resolver).check("https://api.example/") == [ipaddress.ip_address("93.184.215.14")]


@pytest.mark.anyio
async def test_resolution_failure_fails_closed() -> None:
    async def resolver(host: str, port: int) -> list[IPAddress]:
        raise OSError("no such host")

    with pytest.raises(EgressDenied) as caught:
        await policy(resolver=resolver).check("http://nowhere.example/")
    assert caught.value.code == "dns"


@pytest.mark.anyio
async def test_the_real_resolver_returns_every_address() -> None:
    addresses = await resolve_host("localhost", 80)
    assert addresses
    assert all(address.is_loopback for address in addresses)
    with pytest.raises(EgressDenied) as caught:
        await policy(resolver=resolve_host).check("http://localhost/")
    assert caught.value.code == "loopback"


@pytest.mark.anyio
async def test_redirects_are_rechecked_and_downgrades_refused() -> None:
    async def resolver(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("93.184.215.14")]

    p = policy(resolver=resolver)
    assert await p.check_redirect("https://a.example/x", "/y") == "https://a.example/y"
    with pytest.raises(EgressDenied) as caught:
        await p.check_redirect("https://a.example/x", "http://169.254.169.254/")
    assert caught.value.code == "downgrade"
    with pytest.raises(EgressDenied) as caught:
        await p.check_redirect("http://a.example/x", "http://169.254.169.254/")
    assert caught.value.code == "metadata"


@pytest.mark.parametrize(("value", "expected"), [
    ("https://example.com/x", "https://example.com/x"),
    ("example.com/path", "http://example.com/path"),
    ("localhost:8080", "http://localhost:8080"),
    ("//example.com/x", "http://example.com/x"),
    ("/relative/path", None),
    ("", None),
    ("javascript:alert(1)", "javascript:alert(1)"),
])
def test_as_url_reads_url_named_values(value: str, expected: str | None) -> None:
    assert as_url(value) == expected


def test_looks_like_url_only_for_network_schemes() -> None:
    assert looks_like_url("http://x")
    assert looks_like_url("gopher://x")
    assert not looks_like_url("file:///etc/passwd")
    assert not looks_like_url("mailto:a@b")
    assert not looks_like_url("see http://x")


# -- properties ----------------------------------------------------------------------------------

@given(st.text(max_size=80))
def test_parse_url_raises_only_egress_denied(text: str) -> None:
    try:
        parsed = parse_url(text)
    except EgressDenied:
        return
    assert parsed.scheme == parsed.scheme.lower()


blocked_ipv4 = st.sampled_from(["127.0.0.0/8", "10.0.0.0/8", "169.254.0.0/16", "192.168.0.0/16", "100.64.0.0/10",
                                "172.16.0.0/12"]).flatmap(
    lambda net: st.integers(0, ipaddress.ip_network(net).num_addresses - 1).map(
        lambda i: ipaddress.ip_network(net)[i]))


@given(blocked_ipv4, st.sampled_from(["dec", "hex", "oct", "mapped", "nat64", "dotted-hex"]),
       st.sampled_from(["http", "https"]), st.booleans())
def test_no_spelling_of_a_blocked_address_passes(ip: ipaddress.IPv4Address, form: str, scheme: str,
                                                 port: bool) -> None:
    value = int(ip)
    host = {
        "dec": str(value),
        "hex": hex(value),
        "oct": "0" + oct(value)[2:],
        "mapped": f"[::ffff:{ip}]",
        "nat64": f"[64:ff9b::{ip}]",
        "dotted-hex": ".".join(hex(int(o)) for o in str(ip).split(".")),
    }[form]
    url = f"{scheme}://{host}{':8080' if port else ''}/x"
    with pytest.raises(EgressDenied):
        policy(resolve=False).check_static(url)
