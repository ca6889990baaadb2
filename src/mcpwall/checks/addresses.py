"""Classify IP addresses and normalise URL hosts, for SSRF checks.

Pure functions, no I/O. Address parsing is left to :mod:`ipaddress`. The one thing done by hand
is reading the legacy numeric IPv4 spellings that browsers, curl and libc's ``inet_aton`` still
accept (``2130706433``, ``0x7f.1``, ``017700000001``, ``127.1``), following the WHATWG URL
standard's IPv4 parser, so that such a host is judged by the address it reaches rather than by
how it is written.

A *category* names why an address is not an acceptable egress target (``loopback``,
``private``, ``metadata``, …); ``None`` means a globally routable address.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote_to_bytes

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

CATEGORIES: Final = (
    "metadata",  # cloud instance metadata endpoints
    "loopback",
    "private",  # RFC 1918, IPv6 unique-local and site-local, local-use NAT64
    "link_local",
    "cgnat",  # RFC 6598 shared address space
    "multicast",
    "unspecified",  # 0.0.0.0/8, ::
    "reserved",  # documentation, benchmarking, future use, broadcast, discard, Teredo
    "non_global",  # anything else the IANA registries say is not globally reachable
)

# Instance metadata services: AWS/GCP/Azure/OCI/DigitalOcean (169.254.169.254), AWS ECS task
# metadata (169.254.170.2), AWS Route 53 resolver and NTP on the link-local range,
# Alibaba Cloud (100.100.100.200), and AWS's IPv6 endpoint (fd00:ec2::254).
METADATA_ADDRESSES: Final = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "169.254.169.253", "169.254.169.123",
    "100.100.100.200", "fd00:ec2::254", "fd00:ec2::253", "fd00:ec2::123",
))
METADATA_HOSTS: Final = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "metadata.azure.internal",
    "instance-data", "instance-data.ec2.internal",
})

_V4: Final[tuple[tuple[str, str], ...]] = (
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "cgnat"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link_local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "reserved"),
    ("192.88.99.0/24", "reserved"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved"),
    ("198.51.100.0/24", "reserved"),
    ("203.0.113.0/24", "reserved"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
)
_V6: Final[tuple[tuple[str, str], ...]] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "private"),
    ("100::/64", "reserved"),
    ("2001::/32", "reserved"),
    ("2001:db8::/32", "reserved"),
    ("3fff::/20", "reserved"),
    ("fc00::/7", "private"),
    ("fe80::/10", "link_local"),
    ("fec0::/10", "private"),
    ("ff00::/8", "multicast"),
)
# IPv4 as integer ranges: membership is two comparisons instead of an ipaddress operation.
_RANGES_V4: Final = tuple((int(net.network_address), int(net.broadcast_address), c)
                          for net, c in ((ipaddress.IPv4Network(n), c) for n, c in _V4))
_TABLE_V6: Final = tuple((ipaddress.IPv6Network(n), c) for n, c in _V6)

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, when it is one of the forms that reach an
    IPv4 host: IPv4-mapped, IPv4-translated, IPv4-compatible, NAT64 (64:ff9b::/96) or 6to4."""
    value = int(ip)
    if ip in _MAPPED or ip in _TRANSLATED or ip in _NAT64:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip in _COMPATIBLE and value > 1:  # :: and ::1 are themselves, not IPv4 0.0.0.0/0.0.0.1
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip in _SIX_TO_FOUR:
        return ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF)
    return None


def classify(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public egress target (a member of :data:`CATEGORIES`), or None."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        ip = ipaddress.IPv6Address(ip.compressed.split("%", 1)[0])
    if ip in METADATA_ADDRESSES:
        return "metadata"
    if isinstance(ip, ipaddress.IPv4Address):
        value = int(ip)
        for low, high, category in _RANGES_V4:
            if low <= value <= high:
                return category
        # The table holds every IPv4 range IANA marks as not globally reachable.
        return None
    inner = embedded_ipv4(ip)
    if inner is not None:
        return classify(inner)
    for network, category in _TABLE_V6:
        if ip in network:
            return category
    return None if ip.is_global else "non_global"


class InvalidHost(ValueError):
    """A host that no conforming URL parser would accept, or that parsers disagree about."""


@dataclass(frozen=True, slots=True)
class Host:
    """A normalised URL host: either an IP address or a lower-case ASCII domain name."""

    name: str  # the canonical text: dotted quad, compressed IPv6 (no brackets), or domain
    ip: IPAddress | None = None

    @property
    def is_ip(self) -> bool:
        return self.ip is not None


# Code points WHATWG forbids in a host (and every other control character), plus "%", which
# must not survive percent-decoding.
_FORBIDDEN_HOST = re.compile(r"[\x00-\x20\x7f#/<>?@\[\\\]^|%]")
_DOTTED_QUAD = re.compile(r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def _ipv4_number(part: str) -> int | None:
    if part == "":
        return None
    base = 10
    if part[:2] in ("0x", "0X"):
        part, base = part[2:], 16
        if part == "":
            return 0  # "0x" alone reads as zero in the WHATWG parser
    elif len(part) > 1 and part[0] == "0":
        part, base = part[1:], 8
    digits = "0123456789abcdefABCDEF"[: 10 if base == 10 else (8 if base == 8 else 22)]
    if not part or any(ch not in digits for ch in part):
        return None
    return int(part, base)


def _ends_in_number(host: str) -> bool:
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    last = parts[-1]
    if last and all(ch in "0123456789" for ch in last):
        return True
    return _ipv4_number(last) is not None and last[:2] in ("0x", "0X")


def parse_legacy_ipv4(host: str) -> ipaddress.IPv4Address:
    """Read a host that ends in a number as an IPv4 address, the way URL parsers do.

    Accepts one to four parts, each decimal, ``0x`` hex or ``0``-prefixed octal; the last part
    fills the remaining bytes. Raises :class:`InvalidHost` when it is not a valid address.
    """
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if len(parts) > 4:
        raise InvalidHost("too many parts for an IPv4 address")
    numbers = []
    for part in parts:
        number = _ipv4_number(part)
        if number is None:
            raise InvalidHost("a host that ends in a number must be an IPv4 address")
        numbers.append(number)
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise InvalidHost("IPv4 address part out of range")
    value = numbers[-1]
    for index, number in enumerate(numbers[:-1]):
        value += number * 256 ** (3 - index)
    return ipaddress.IPv4Address(value)


def normalize_host(raw: str) -> Host:
    """Normalise the host part of a URL (or a bare host name) as a URL parser would.

    Handles bracketed IPv6 (with an optional zone), percent-encoding, full-width characters and
    ideographic dots (NFKC, as IDNA mapping does), upper case, a trailing dot, legacy numeric
    IPv4 forms and internationalised names. Raises :class:`InvalidHost` on anything ambiguous.
    """
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise InvalidHost("unterminated IPv6 literal")
        inner = raw[1:-1].replace("%25", "%", 1)
        try:
            ip6 = ipaddress.IPv6Address(inner)
        except ValueError:
            raise InvalidHost("invalid IPv6 literal") from None
        return Host(ip6.compressed, ip6)
    if _DOTTED_QUAD.fullmatch(raw):  # the common case, already canonical (and cheap to read)
        return Host(raw, ipaddress.IPv4Address(socket.inet_aton(raw)))
    try:
        decoded = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidHost("host is not valid UTF-8") from None
    host = unicodedata.normalize("NFKC", decoded).translate(_DOTS).lower()
    if not host or _FORBIDDEN_HOST.search(host):
        raise InvalidHost("host is empty or contains characters a URL host cannot hold")
    if ":" in host:
        try:  # a bare, unbracketed IPv6 address (host lists, host-only arguments)
            ip6 = ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidHost("a host with ':' must be an IPv6 address") from None
        return Host(ip6.compressed, ip6)
    if _ends_in_number(host):
        ip4 = parse_legacy_ipv4(host)
        return Host(str(ip4), ip4)
    name = host.rstrip(".") if host != "." else ""
    if not name or ".." in name or len(name) > 253:
        raise InvalidHost("malformed domain name")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidHost("host is not a valid internationalised domain name") from None
    if any(len(label) > 63 or label == "" for label in name.split(".")):
        raise InvalidHost("malformed domain name")
    return Host(name)


def classify_name(name: str) -> str | None:
    """Categories that follow from a domain name alone, before any DNS lookup."""
    if name in METADATA_HOSTS:
        return "metadata"
    if name == "localhost" or name.endswith(".localhost"):
        return "loopback"  # RFC 6761: always the loopback interface, whatever DNS says
    return None
