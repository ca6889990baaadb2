"""Address classification and URL-host normalisation (mcpwall.checks.addresses)."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpwall.checks.addresses import (
    InvalidHost,
    classify,
    classify_name,
    embedded_ipv4,
    normalize_host,
    parse_legacy_ipv4,
)


@pytest.mark.parametrize(("address", "category"), [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "cgnat"),
    ("169.254.0.5", "link_local"),
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("100.100.100.200", "metadata"),
    ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("255.255.255.255", "reserved"),
    ("192.0.2.1", "reserved"),
    ("198.18.0.1", "reserved"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link_local"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fec0::1", "private"),
    ("ff02::1", "multicast"),
    ("fd00:ec2::254", "metadata"),
    ("2001:db8::1", "reserved"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "metadata"),
    ("::ffff:0:10.0.0.1", "private"),  # IPv4-translated
    ("::127.0.0.1", "loopback"),  # IPv4-compatible (deprecated)
    ("64:ff9b::127.0.0.1", "loopback"),  # NAT64
    ("64:ff9b::a9fe:a9fe", "metadata"),
    ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
    ("64:ff9b:1::1", "private"),
])
def test_blocked_addresses_are_classified(address: str, category: str) -> None:
    assert classify(ipaddress.ip_address(address)) == category


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111",
                                     "::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:808:808::1"])
def test_public_addresses_pass(address: str) -> None:
    assert classify(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(("host", "expected"), [
    ("2130706433", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("0", "0.0.0.0"),
    ("0x", "0.0.0.0"),
    ("127.0.0.1.", "127.0.0.1"),
    ("%31%32%37.0.0.1", "127.0.0.1"),
    ("\uff11\uff12\uff17.\uff10.\uff10.\uff11", "127.0.0.1"),  # full-width digits
    ("127\u30020\u30020\u30021", "127.0.0.1"),  # ideographic full stops
    ("0xA9.0xFE.0xA9.0xFE", "169.254.169.254"),
    ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
    ("[::1]", "::1"),
    ("[fe80::1%25eth0]", "fe80::1%eth0"),
])
def test_numeric_host_forms_normalise_to_the_address(host: str, expected: str) -> None:
    normalised = normalize_host(host)
    assert normalised.ip is not None
    assert normalised.name == expected


@pytest.mark.parametrize("host", ["1.2.3.4.5", "256.0.0.1", "1.2.3.0x100", "foo.0x1", "foo.123", "[::1",
                                  "[nonsense]", "", "a..b", "ex ample.com", "a@b", "%ff%fe", "0x7g.1",
                                  "08.1.1.1", "1.2.3.4294967296", "1:2"])
def test_ambiguous_or_invalid_hosts_are_refused(host: str) -> None:
    with pytest.raises(InvalidHost):
        normalize_host(host)


def test_domain_names_are_lower_cased_and_idna_encoded() -> None:
    assert normalize_host("EXAMPLE.com.").name == "example.com"
    assert normalize_host("b\u00fccher.de").name == "xn--bcher-kva.de"
    assert normalize_host("example.com").ip is None


@pytest.mark.parametrize(("name", "category"), [("localhost", "loopback"), ("api.localhost", "loopback"),
                                                 ("metadata.google.internal", "metadata"),
                                                 ("example.com", None)])
def test_names_that_are_special_without_dns(name: str, category: str | None) -> None:
    assert classify_name(name) == category


def test_embedded_ipv4_reads_only_the_forms_that_reach_ipv4() -> None:
    assert embedded_ipv4(ipaddress.IPv6Address("::ffff:1.2.3.4")) == ipaddress.IPv4Address("1.2.3.4")
    assert embedded_ipv4(ipaddress.IPv6Address("::1")) is None
    assert embedded_ipv4(ipaddress.IPv6Address("2606:4700::1")) is None


# -- properties ----------------------------------------------------------------------------------

ipv4s = st.integers(min_value=0, max_value=2**32 - 1).map(ipaddress.IPv4Address)


@given(ipv4s)
def test_every_legacy_spelling_of_an_address_reads_back_as_that_address(ip: ipaddress.IPv4Address) -> None:
    value = int(ip)
    octets = [int(o) for o in str(ip).split(".")]
    spellings = [
        str(value),
        hex(value),
        "0" + oct(value)[2:] if value else "0",
        ".".join(hex(o) for o in octets),
        ".".join(("0" + oct(o)[2:]) if o else "0" for o in octets),
        f"{octets[0]}.{(octets[1] << 16) | (octets[2] << 8) | octets[3]}",
        f"{octets[0]}.{octets[1]}.{(octets[2] << 8) | octets[3]}",
    ]
    for spelling in spellings:
        assert parse_legacy_ipv4(spelling) == ip, spelling
        assert normalize_host(spelling).ip == ip


@given(ipv4s)
def test_legacy_parser_agrees_with_inet_aton(ip: ipaddress.IPv4Address) -> None:
    # libc's inet_aton is what curl and many servers use for these forms.
    for spelling in (str(int(ip)), hex(int(ip)), str(ip)):
        assert socket.inet_aton(spelling) == ip.packed
        assert parse_legacy_ipv4(spelling) == ip


@given(ipv4s)
def test_every_ipv6_wrapping_of_a_blocked_ipv4_is_blocked(ip: ipaddress.IPv4Address) -> None:
    category = classify(ip)
    wrapped = [
        ipaddress.IPv6Address(f"::ffff:{ip}"),
        ipaddress.IPv6Address(f"64:ff9b::{ip}"),
        ipaddress.IPv6Address((0x2002 << 112) | (int(ip) << 80)),
    ]
    for address in wrapped:
        assert classify(address) == category


@given(st.text(max_size=40))
def test_normalize_host_never_fails_unexpectedly(text: str) -> None:
    try:
        host = normalize_host(text)
    except InvalidHost:
        return
    assert host.name == host.name.lower()
    assert host.name.isascii()
    if host.ip is None:
        assert "%" not in host.name and "/" not in host.name and "@" not in host.name


@given(ipv4s)
def test_an_address_passes_only_if_it_is_globally_reachable(ip: ipaddress.IPv4Address) -> None:
    if classify(ip) is None:
        assert ip.is_global


@given(st.integers(min_value=0, max_value=2**128 - 1).map(ipaddress.IPv6Address))
def test_an_ipv6_address_passes_only_if_it_is_globally_reachable(ip: ipaddress.IPv6Address) -> None:
    if classify(ip) is None:
        inner = embedded_ipv4(ip)
        assert inner.is_global if inner is not None else ip.is_global
