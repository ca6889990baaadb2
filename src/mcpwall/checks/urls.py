"""Parse URLs strictly and judge them against an egress policy (SSRF protection).

The parser accepts only URLs that every mainstream parser reads the same way: a scheme, and
for hierarchical schemes an authority with at most one ``@``, no backslashes, no whitespace or
control characters. Where parsers are known to disagree (backslashes, several ``@``,
``user:pass@`` tricks), the URL is refused rather than guessed at.

:class:`EgressPolicy` holds one compiled set of rules. ``check_static`` judges what the URL
text alone reveals (scheme, port, host lists, literal addresses); ``check`` adds DNS: the name
is resolved with the event loop's resolver and *every* address must pass, so a name with one
public and one private record is refused. The caller that actually connects should connect to
the addresses ``check`` returns (pinning them), or re-resolve and re-check, because DNS can
answer differently the next time (rebinding).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urljoin

import anyio

from mcpwall.checks.addresses import (
    CATEGORIES,
    InvalidHost,
    IPAddress,
    IPNetwork,
    classify,
    classify_name,
    normalize_host,
)

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21, "gopher": 70}
# Schemes that name a network endpoint; a bare string argument using one of them is treated
# as a URL even when nothing in the schema or argument name says so.
NETWORK_SCHEMES = frozenset({
    "http", "https", "ws", "wss", "ftp", "ftps", "sftp", "ssh", "telnet", "gopher", "dict", "ldap",
    "ldaps", "tftp", "smb", "rtsp", "redis", "rediss", "mongodb", "mysql", "postgres", "postgresql",
    "amqp", "nats", "mqtt", "git", "svn", "jar", "netdoc",
})

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f\\]")

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


class EgressDenied(Exception):
    """A URL the policy refuses. ``code`` is a short stable reason, ``message`` is safe to show."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ParsedURL:
    scheme: str
    host: str  # normalised: dotted quad, compressed IPv6 without brackets, or ASCII domain
    ip: IPAddress | None
    port: int | None
    has_userinfo: bool


def parse_url(value: str) -> ParsedURL:
    """Split a URL into scheme, normalised host and port. Raises :class:`EgressDenied`."""
    match = _SCHEME.match(value)
    if match is None:
        raise EgressDenied("malformed", "not an absolute URL")
    if _BAD_CHARS.search(value):
        raise EgressDenied("malformed", "URL contains whitespace, control characters or backslashes")
    scheme = match.group(1).lower()
    rest = value[match.end():]
    if not rest.startswith("//"):
        # An opaque URL (mailto:, data:, urn:) has no host to reach.
        return ParsedURL(scheme, "", None, None, False)
    authority = re.split(r"[/?#]", rest[2:], maxsplit=1)[0]
    userinfo, at, hostport = authority.rpartition("@")
    if at and "@" in userinfo:
        raise EgressDenied("malformed", "URL authority contains more than one '@'")
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise EgressDenied("malformed", "unterminated IPv6 literal")
        raw_host, port_text = hostport[: close + 1], hostport[close + 1:]
        if port_text and not port_text.startswith(":"):
            raise EgressDenied("malformed", "junk after IPv6 literal")
        port_text = port_text[1:]
    else:
        raw_host, _, port_text = hostport.partition(":")
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or not port_text.isascii() or int(port_text) > 65535:
            raise EgressDenied("malformed", "invalid port")
        port = int(port_text)
    if port is None:
        port = DEFAULT_PORTS.get(scheme)
    if not raw_host:
        return ParsedURL(scheme, "", None, port, bool(at))  # file:///…; check_static decides
    try:
        host = normalize_host(raw_host)
    except InvalidHost as exc:
        raise EgressDenied("malformed", f"invalid host: {exc}") from None
    return ParsedURL(scheme, host.name, host.ip, port, bool(at))


def looks_like_url(value: str) -> bool:
    """True when a bare string is a URL with a network scheme (``http://…``, ``gopher://…``)."""
    match = _SCHEME.match(value)
    return (match is not None and value[match.end():match.end() + 2] == "//"
            and match.group(1).lower() in NETWORK_SCHEMES)


def as_url(value: str) -> str | None:
    """Read a value found in a URL-named argument: a URL as is, ``//host`` and ``host/path``
    forms as ``http://`` URLs (many tools add the scheme themselves), None for a relative path."""
    value = value.strip()
    if not value or (value.startswith(("/", ".", "#", "?")) and not value.startswith("//")):
        return None
    if value.startswith("//"):
        return "http:" + value
    match = _SCHEME.match(value)
    if match is not None and not value[match.end():].split("/", 1)[0].isdigit():
        return value  # a scheme, not a "host:port"
    return "http://" + value


@dataclass(frozen=True)
class EgressPolicy:
    """One compiled set of egress rules."""

    schemes: frozenset[str] = frozenset({"http", "https"})
    block: frozenset[str] = frozenset(CATEGORIES)
    allow_cidrs: tuple[IPNetwork, ...] = ()
    deny_cidrs: tuple[IPNetwork, ...] = ()
    allow_hosts: tuple[str, ...] = ()  # glob patterns; when any are given, only they may be reached
    deny_hosts: tuple[str, ...] = ()
    allow_ports: frozenset[int] | None = None
    allow_userinfo: bool = False
    resolve: bool = True
    dns_timeout: float = 2.0
    resolver: Resolver | None = field(default=None, compare=False)

    def check_ip(self, ip: IPAddress) -> None:
        """Refuse an address that is denied, or in a blocked category and not allowed."""
        bare = ip
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
            bare = ipaddress.IPv6Address(ip.compressed.split("%", 1)[0])
        if any(bare.version == net.version and bare in net for net in self.deny_cidrs):
            raise EgressDenied("denied_cidr", f"address {bare} is in a denied range")
        category = classify(bare)
        if category is None or category not in self.block:
            return
        # Metadata endpoints stay blocked however broad an allowed range is; unblocking them
        # takes removing "metadata" from the blocked categories on purpose.
        if category != "metadata" and any(bare.version == net.version and bare in net
                                          for net in self.allow_cidrs):
            return
        raise EgressDenied(category, f"address {bare} is {category.replace('_', '-')}")

    def check_static(self, url: str) -> ParsedURL:
        """Everything decidable from the URL text. Returns the parsed URL or raises."""
        parsed = parse_url(url)
        if parsed.scheme not in self.schemes:
            raise EgressDenied("scheme", f"scheme {parsed.scheme!r} is not allowed")
        if not parsed.host:
            raise EgressDenied("malformed", "URL has no host")
        if parsed.has_userinfo and not self.allow_userinfo:
            raise EgressDenied("userinfo", "URLs carrying user:password@ are not allowed")
        if self.allow_ports is not None and parsed.port not in self.allow_ports:
            raise EgressDenied("port", f"port {parsed.port} is not allowed")
        if _matches(parsed.host, self.deny_hosts):
            raise EgressDenied("denied_host", f"host {parsed.host} is denied")
        if self.allow_hosts and not _matches(parsed.host, self.allow_hosts):
            raise EgressDenied("host_not_allowed", f"host {parsed.host} is not in the allowlist")
        if parsed.ip is not None:
            self.check_ip(parsed.ip)
        else:
            category = classify_name(parsed.host)
            if category is not None and category in self.block:
                raise EgressDenied(category, f"host {parsed.host} is {category.replace('_', '-')}")
        return parsed

    async def check(self, url: str) -> list[IPAddress]:
        """Static checks, then resolve the host and check every address. Returns the addresses
        (connect to these, not to a fresh lookup). Fails closed when resolution fails."""
        parsed = self.check_static(url)
        if parsed.ip is not None:
            return [parsed.ip]
        if not self.resolve:
            return []
        addresses = await self._resolve(parsed.host, parsed.port or 0)
        if not addresses:
            raise EgressDenied("dns", f"host {parsed.host} did not resolve")
        for address in addresses:
            self.check_ip(address)
        return addresses

    async def check_redirect(self, current_url: str, location: str) -> str:
        """Judge a redirect target (resolved against ``current_url``) like any other URL and
        refuse an https→http downgrade. Returns the absolute target URL."""
        target = urljoin(current_url, location)
        if parse_url(current_url).scheme == "https" and parse_url(target).scheme == "http":
            raise EgressDenied("downgrade", "redirect from https to http")
        await self.check(target)
        return target

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        resolver = self.resolver or resolve_host
        try:
            with anyio.fail_after(self.dns_timeout):
                return await resolver(host, port)
        except TimeoutError:
            raise EgressDenied("dns", f"resolving {host} timed out") from None
        except OSError:
            raise EgressDenied("dns", f"host {host} did not resolve") from None


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """All addresses ``host`` resolves to, through the event loop's ``getaddrinfo``."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, IPAddress] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        text = str(sockaddr[0]).split("%", 1)[0]
        seen.setdefault(text, ipaddress.ip_address(text))
    return list(seen.values())


def _matches(host: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(host, pattern) for pattern in patterns)
