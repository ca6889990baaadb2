"""The ``egress`` guard: SSRF protection for URL-valued arguments and upstream URLs.

A ``tools/call`` argument is treated as a URL when the tool's ``inputSchema`` says
``format: uri`` (or ``uri-reference``, ``iri``, ``url``), when its property name says so
(``url``, ``imageUrl``, ``callback_uri``, ``endpoint``, ``href``, ``webhook``, ``host``, …),
when the config names it (``arguments: {"fetch__*": ["target"]}``), or when its whole value
is a URL with a network scheme (``http://…``, ``gopher://…``). Each such URL must use an
allowed scheme, carry no ``user:pass@``, match the host allow/deny lists, and reach no
loopback, private, link-local, CGNAT, multicast, reserved or cloud-metadata address — judged
on the address itself whatever its spelling (``2130706433``, ``0x7f.1``, ``[::ffff:127.0.0.1]``,
6to4, NAT64) and, for names, on *every* address DNS returns.

Upstream URLs are checked with a laxer default (operators run local upstreams on purpose):
only metadata, link-local, multicast, unspecified and reserved addresses are refused. The
gateway core calls :func:`check_upstream_url` at config load and may call
:func:`resolve_upstream_url` before connecting. The gateway itself follows no redirects to
arguments' URLs — the upstream does the fetching — so redirect re-checking applies to code
that fetches on the gateway's behalf, which must pass every hop through :func:`check_redirect`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from mcpwall.checks import argpaths
from mcpwall.checks.addresses import CATEGORIES, IPAddress, IPNetwork
from mcpwall.checks.urls import EgressDenied, EgressPolicy, as_url, looks_like_url
from mcpwall.gateway.call import Call
from mcpwall.pipeline.guard import Guard, GuardEnv, GuardSettings
from mcpwall.pipeline.verdict import PASS, Reject, Verdict

Category = Literal["metadata", "loopback", "private", "link_local", "cgnat", "multicast", "unspecified",
                   "reserved", "non_global"]
URL_FORMATS = frozenset({"uri", "uri-reference", "iri", "iri-reference", "url"})
DEFAULT_URL_WORDS = ["url", "urls", "uri", "uris", "endpoint", "endpoints", "href", "webhook", "callback",
                     "redirect", "host", "hostname"]
MAX_WALK_NODES = 10_000


def _categories(*names: str) -> list[Category]:
    return [cast(Category, name) for name in names]


class EgressRules(BaseModel):
    """Host and address lists; at the top of the settings, or per upstream under ``servers``."""

    model_config = ConfigDict(extra="forbid")

    allow_hosts: list[str] = Field(default_factory=list, description="Glob patterns; when given, only "
                                   "matching hosts may be reached ('*.example.com').")
    deny_hosts: list[str] = Field(default_factory=list, description="Glob patterns that are always refused.")
    allow_cidrs: list[str] = Field(default_factory=list, description="Ranges exempt from the blocked "
                                   "categories (never from metadata).")
    deny_cidrs: list[str] = Field(default_factory=list, description="Extra ranges that are always refused.")


class EgressSettings(GuardSettings, EgressRules):
    schemes: list[str] = Field(default_factory=lambda: ["http", "https"], description="URL schemes allowed.")
    block: list[Category] = Field(default_factory=lambda: _categories(*CATEGORIES),
                                  description="Address categories URL arguments may not reach.")
    upstream_block: list[Category] = Field(
        default_factory=lambda: _categories("metadata", "link_local", "multicast", "unspecified", "reserved"),
        description="Address categories upstream URLs may not reach.")
    allow_userinfo: bool = Field(False, description="Allow user:password@ in URLs.")
    allow_ports: list[int] | None = Field(None, description="When set, the only ports URLs may use.")
    resolve_dns: bool = Field(True, description="Resolve host names and check every address.")
    dns_timeout: float = Field(2.0, gt=0, le=30, description="Seconds allowed for one DNS lookup.")
    url_names: list[str] = Field(default_factory=lambda: list(DEFAULT_URL_WORDS),
                                 description="Words in an argument name that mark it as a URL.")
    arguments: dict[str, list[str]] = Field(default_factory=dict, description="Tool glob -> argument paths "
                                            "always checked as URLs.")
    sniff_values: bool = Field(True, description="Check any string argument that is wholly a network URL.")
    check_resource_uris: bool = Field(False, description="Also check resources/read and resources/subscribe "
                                      "URIs with network schemes.")
    max_urls: int = Field(256, ge=1, description="Most URLs checked in one call; more is refused.")
    servers: dict[str, EgressRules] = Field(default_factory=dict, description="Per-upstream host and range "
                                            "lists, added to the top-level ones.")


def _networks(items: list[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def build_policy(settings: EgressSettings, server: str | None, *, upstream: bool = False) -> EgressPolicy:
    """The compiled policy for URLs of one upstream's tools (or, with ``upstream``, its own URL)."""
    rules = settings.servers.get(server) if server is not None else None
    allow_hosts = (rules.allow_hosts if rules is not None and rules.allow_hosts else settings.allow_hosts)
    extra = rules or EgressRules()
    return EgressPolicy(
        schemes=frozenset(s.lower() for s in settings.schemes),
        block=frozenset(settings.upstream_block if upstream else settings.block),
        allow_cidrs=_networks([*settings.allow_cidrs, *extra.allow_cidrs]),
        deny_cidrs=_networks([*settings.deny_cidrs, *extra.deny_cidrs]),
        allow_hosts=tuple(h.lower().rstrip(".") for h in allow_hosts),
        deny_hosts=tuple(h.lower().rstrip(".") for h in [*settings.deny_hosts, *extra.deny_hosts]),
        allow_ports=frozenset(settings.allow_ports) if settings.allow_ports is not None else None,
        allow_userinfo=settings.allow_userinfo,
        resolve=settings.resolve_dns,
        dns_timeout=settings.dns_timeout,
    )


def check_upstream_url(url: str, settings: EgressSettings | None = None, server: str | None = None) -> str | None:
    """The problem with an upstream URL judged from its text alone (no DNS), or None.
    Meant for config load; ``settings`` defaults to the guard's defaults."""
    try:
        build_policy(settings or EgressSettings(), server, upstream=True).check_static(url)
    except EgressDenied as exc:
        return exc.message
    return None


async def resolve_upstream_url(url: str, settings: EgressSettings | None = None,
                               server: str | None = None) -> list[IPAddress]:
    """Check an upstream URL including DNS; returns the addresses to connect to.
    Raises :class:`~mcpwall.checks.urls.EgressDenied`."""
    return await build_policy(settings or EgressSettings(), server, upstream=True).check(url)


async def check_redirect(current_url: str, location: str, settings: EgressSettings | None = None,
                         server: str | None = None, *, upstream: bool = False) -> str:
    """Judge one redirect hop for code that fetches on the gateway's behalf. Returns the absolute
    target; raises :class:`~mcpwall.checks.urls.EgressDenied` (also on https→http downgrade)."""
    return await build_policy(settings or EgressSettings(), server, upstream=upstream).check_redirect(
        current_url, location)


_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def name_words(name: str) -> list[str]:
    """``imageUrl`` → [image, url]; ``callback_URI`` → [callback, uri]."""
    return [w.lower() for w in _WORD.findall(name)]


class EgressGuard(Guard):
    name = "egress"
    Settings = EgressSettings
    settings: EgressSettings

    def __init__(self, settings: EgressSettings, env: GuardEnv) -> None:
        super().__init__(settings, env)
        self._default = build_policy(settings, None)
        self._policies = {name: build_policy(settings, name) for name in settings.servers}
        self._words = frozenset(w.lower() for w in settings.url_names)
        self._named: dict[str, bool] = {}  # argument name -> marks a URL
        env.state["egress"] = self  # the argcheck guard judges `url` arguments with these rules

    def _url_named(self, key: str) -> bool:
        named = self._named.get(key)
        if named is None:
            named = any(w in self._words for w in name_words(key))
            if len(self._named) >= 4096:
                self._named.clear()
            self._named[key] = named
        return named

    def policy_for(self, server: str | None) -> EgressPolicy:
        return self._policies.get(server, self._default) if server is not None else self._default

    async def on_request(self, call: Call) -> Verdict:
        if call.direction != "client":
            return PASS
        method = call.method
        if method == "tools/call":
            found = self.tool_urls(call)
        elif method == "prompts/get":
            found = [(w, v) for w, v in _walk_strings(call.params.get("arguments"), "/arguments")
                     if looks_like_url(v)] if self.settings.sniff_values else []
        elif method in ("resources/read", "resources/subscribe") and self.settings.check_resource_uris:
            uri = call.params.get("uri")
            found = [("/uri", uri)] if isinstance(uri, str) and looks_like_url(uri) else []
        else:
            return PASS
        if found is None or len(found) > self.settings.max_urls:
            return Reject("too many URL arguments to check", as_tool_error=True,
                          findings=[{"rule": "egress.too_many"}])
        policy = self.policy_for(call.server)
        checked: set[str] = set()
        for where, url in found:
            if url in checked:
                continue
            checked.add(url)
            try:
                await policy.check(url)
            except EgressDenied as exc:
                return Reject(f"URL argument {where}: {exc.message}", as_tool_error=True,
                              data={"path": where, "egress": exc.code},
                              findings=[{"rule": f"egress.{exc.code}", "path": where}])
        return PASS

    def tool_urls(self, call: Call) -> list[tuple[str, str]] | None:
        """(JSON pointer, URL) for every URL-valued argument; None when there are too many nodes."""
        arguments = call.params.get("arguments")
        if not isinstance(arguments, dict):
            return []
        found: list[tuple[str, str]] = []
        for pattern, paths in self.settings.arguments.items():
            if argpaths.tool_matches(pattern, (call.exposed_name, call.target)):
                for path in paths:
                    for where, value in argpaths.strings(arguments, path):
                        url = as_url(value)
                        if url is not None:
                            found.append((where, url))
        schema = (call.definition or {}).get("inputSchema")
        budget = [MAX_WALK_NODES]
        if not self._walk(arguments, schema if isinstance(schema, dict) else None, "/arguments", False,
                          found, budget):
            return None
        return found

    def _walk(self, value: Any, schema: dict[str, Any] | None, where: str, hinted: bool,
              found: list[tuple[str, str]], budget: list[int]) -> bool:
        budget[0] -= 1
        if budget[0] < 0:
            return False
        if isinstance(value, str):
            if hinted or _has_url_format(schema):
                url = _hinted_url(value)
                if url is not None:
                    found.append((where, url))
            elif self.settings.sniff_values and looks_like_url(value):
                found.append((where, value))
            return True
        if isinstance(value, dict):
            properties = schema.get("properties") if schema else None
            extra = schema.get("additionalProperties") if schema else None
            for key, child in value.items():
                sub = properties.get(key) if isinstance(properties, dict) else None
                if not isinstance(sub, dict):
                    sub = extra if isinstance(extra, dict) else None
                named = isinstance(key, str) and self._url_named(key)
                pointer = f"{where}/{str(key).replace('~', '~0').replace('/', '~1')}"
                if not self._walk(child, sub, pointer, named, found, budget):
                    return False
            return True
        if isinstance(value, list):
            items = schema.get("items") if schema else None
            for index, child in enumerate(value):
                sub = items if isinstance(items, dict) else None
                # A URL-named list ("urls": [...]) marks its strings, not nested objects.
                if not self._walk(child, sub, f"{where}/{index}", hinted and isinstance(child, str), found,
                                  budget):
                    return False
        return True


def _has_url_format(schema: dict[str, Any] | None) -> bool:
    if not schema:
        return False
    if schema.get("format") in URL_FORMATS:
        return True
    return any(isinstance(branch, dict) and branch.get("format") in URL_FORMATS
               for keyword in ("anyOf", "oneOf", "allOf") for branch in (schema.get(keyword) or [])
               if isinstance(schema.get(keyword), list))


def _hinted_url(value: str) -> str | None:
    """A URL-marked value as a URL to check: schemeless values only when they look like a host."""
    url = as_url(value)
    if url is None or url == value or value.startswith("//"):
        return url
    head = re.split(r"[/?#]", value.strip(), maxsplit=1)[0]
    if not head or any(ch.isspace() for ch in value.strip()):
        return None
    if "." in head or ":" in head or head.lower() == "localhost" or head.startswith("["):
        return url
    return None


def _walk_strings(value: Any, where: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            if isinstance(child, str):
                out.append((f"{where}/{str(key).replace('~', '~0').replace('/', '~1')}", child))
    return out
