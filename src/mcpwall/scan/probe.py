"""The collection phase of ``mcpwall scan URL``: send the probes, keep what came back.

Probing and judging are separate on purpose. This module decides *what to ask* and records the
answers in an :class:`Evidence`; :mod:`mcpwall.scan.checks` and :mod:`mcpwall.scan.mcp_checks`
decide *what the answers mean*, as pure functions that tests can feed directly.

Passive mode sends a fixed, small set of GETs and harmless POSTs (``initialize``,
``server/discover``, ``tools/list``, ``ping``, malformed bodies that a server must refuse). It
never calls a tool, never writes anything, and uses the reserved ``.invalid`` domain for every
foreign Origin, Host and redirect target it needs. ``active`` mode adds a request burst (rate
limiting) and a session replay after termination.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx

from mcpwall.protocol.versions import LATEST_LEGACY
from mcpwall.scan import wire
from mcpwall.scan.http import BudgetExceeded, Exchange, Prober
from mcpwall.scan.mcp_http import HttpMcpClient, McpView
from mcpwall.scan.tls import TlsInfo, client_context, probe_tls

FOREIGN_HOST = "mcpwall-scan.invalid"
FOREIGN_ORIGIN = f"https://{FOREIGN_HOST}"

ADMIN_PATHS = ("/admin", "/dashboard", "/_internal", "/internal", "/debug", "/metrics", "/console",
               "/server-status", "/actuator", "/api/admin")
SENSITIVE_PATHS = ("/.env", "/.git/HEAD", "/.git/config", "/config.json", "/config.yaml", "/.aws/credentials",
                   "/.npmrc", "/docker-compose.yml")
LISTING_PATHS = ("/static/", "/files/", "/uploads/")
REDIRECT_PARAMS = ("next", "url", "redirect", "redirect_uri", "return_to")
REDIRECT_PATHS = ("/login", "/redirect")


@dataclass(slots=True)
class ScanOptions:
    credentials: dict[str, str] = field(default_factory=dict)
    active: bool = False
    timeout: float = 10.0
    cafile: str | None = None
    plain_port: int | None = None  # where to look for a plaintext listener; default 80 for 443, else same
    allow_loopback_http: bool = False
    max_requests: int = 400
    burst: int = 40
    oversize_bytes: int = 5 * 1024 * 1024


@dataclass(slots=True)
class Evidence:
    target: str
    options: ScanOptions
    exchanges: dict[str, Exchange] = field(default_factory=dict)
    tls: TlsInfo | None = None
    view: McpView = field(default_factory=McpView)
    session_ids: list[str] = field(default_factory=list)
    # A legacy session to probe: (protocol version, session id). Also found on dual-era servers
    # whose main view is modern, since the legacy path is open to attackers just the same.
    legacy: tuple[str, str] | None = None
    burst: list[Exchange] = field(default_factory=list)
    reachable: bool = True
    notes: list[str] = field(default_factory=list)
    requests: int = 0

    def get(self, label: str) -> Exchange | None:
        return self.exchanges.get(label)

    def prefixed(self, prefix: str) -> list[Exchange]:
        return [ex for label, ex in self.exchanges.items() if label.startswith(prefix)]

    @property
    def url(self) -> httpx.URL:
        return httpx.URL(self.target)

    @property
    def authenticated(self) -> bool:
        return bool(self.options.credentials)


def origin_of(url: httpx.URL) -> str:
    default = {"http": 80, "https": 443}.get(url.scheme)
    port = f":{url.port}" if url.port and url.port != default else ""
    return f"{url.scheme}://{url.host}{port}"


class Collector:
    def __init__(self, target: str, options: ScanOptions) -> None:
        self.target = target
        self.url = httpx.URL(target)
        self.options = options
        self.origin = origin_of(self.url)
        self.path = self.url.raw_path.decode("ascii").split("?")[0] or "/"
        self.evidence = Evidence(target=target, options=options)

    def at(self, path: str) -> str:
        return self.origin + path

    async def run(self) -> Evidence:
        ev = self.evidence
        verify: Any = True
        if self.url.scheme == "https":
            ev.tls = await probe_tls(self.url.host, self.url.port or 443, cafile=self.options.cafile,
                                     timeout=self.options.timeout)
            if ev.tls.error and ev.tls.version is None:
                ev.reachable = False
                ev.notes.append(f"TLS connection failed: {ev.tls.error}")
                return ev
            if ev.tls.verified:
                verify = client_context(self.options.cafile)
            else:
                verify = False
                ev.notes.append("certificate not trusted; the remaining probes ran without verification")
        prober = Prober(credentials=self.options.credentials, timeout=self.options.timeout, verify=verify,
                        max_requests=self.options.max_requests)
        try:
            async with prober:
                await self._probe(prober)
        except BudgetExceeded as exc:
            ev.notes.append(str(exc))
        ev.exchanges = prober.exchanges
        ev.requests = prober.count
        return ev

    async def _probe(self, p: Prober) -> None:
        ev = self.evidence
        url = self.target
        await asyncio.gather(
            p.request("init_unauth", "POST", url, headers=wire.legacy_headers(),
                      content=wire.encode(wire.initialize())),
            p.request("discover_unauth", "POST", url, headers=wire.modern_headers("server/discover"),
                      content=wire.encode(wire.discover())),
            p.request("list_modern_unauth", "POST", url, headers=wire.modern_headers("tools/list"),
                      content=wire.encode(wire.tools_list(modern=True))),
            p.request("list_legacy_unauth", "POST", url, headers=wire.legacy_headers(LATEST_LEGACY),
                      content=wire.encode(wire.tools_list(modern=False))),
            p.request("get_endpoint", "GET", url, headers={"Accept": "text/html"}),
            p.request("root", "GET", self.at("/"), headers={"Accept": "text/html"}),
            p.request("notfound", "GET", self.at(f"/mcpwall-scan-{secrets.token_hex(6)}")),
        )
        core = [p.exchanges[k] for k in ("init_unauth", "discover_unauth", "get_endpoint", "root")]
        if all(ex.status is None for ex in core):
            ev.reachable = False
            ev.notes.append(f"target unreachable: {core[0].error}")
            return

        client = HttpMcpClient(p, url, auth=True)
        ev.view = await client.open()
        if ev.view.era is not None:
            await client.list_tools()
        if ev.view.era == "legacy" and ev.view.session_id:
            ev.legacy = (ev.view.version or LATEST_LEGACY, ev.view.session_id)
            ev.session_ids.append(ev.view.session_id)
        elif ev.view.era == "modern":
            await self._legacy_side(p)

        await asyncio.gather(self._metadata(p), self._cors(p), self._rebinding(p))
        await self._sessions(p)
        await asyncio.gather(self._paths(p), self._redirects(p))
        await self._robustness(p, ev.view)
        if self.url.scheme == "https":
            await self._plaintext(p)
        if self.options.active:
            await self._burst(p, ev.view)
            await self._replay(p, ev.view)
        await self._goodbye(p, ev.view)

    async def _legacy_side(self, p: Prober) -> None:
        """On a modern server, see whether the legacy handshake is served too (dual era)."""
        ex = await p.request("legacy_init", "POST", self.target, headers=wire.legacy_headers(),
                             content=wire.encode(wire.initialize()), auth=True)
        result = ex.result_message()
        sid = ex.header("mcp-session-id")
        if not (ex.ok and result is not None and sid):
            return
        body = result.get("result")
        version = body.get("protocolVersion") if isinstance(body, dict) else None
        version = version if isinstance(version, str) else LATEST_LEGACY
        self.evidence.legacy = (version, sid)
        self.evidence.session_ids.append(sid)
        await p.request("legacy_initialized", "POST", self.target, headers=wire.legacy_headers(version, sid),
                        content=wire.encode(wire.initialized()), auth=True)

    async def _metadata(self, p: Prober) -> None:
        challenge = None
        for label in ("init_unauth", "list_modern_unauth", "list_legacy_unauth", "discover_unauth"):
            ex = p.exchanges.get(label)
            if ex is not None and ex.status == 401:
                challenge = resource_metadata_url(ex.header("www-authenticate") or "")
                if challenge:
                    break
        fetches = []
        if challenge and _same_origin(challenge, self.origin):
            fetches.append(p.request("prm_challenge", "GET", challenge, headers={"Accept": "application/json"}))
        elif challenge:
            self.evidence.notes.append("resource_metadata points to another origin; not fetched")
        suffix = "" if self.path == "/" else self.path
        fetches.append(p.request("prm_path", "GET", self.at("/.well-known/oauth-protected-resource" + suffix),
                                 headers={"Accept": "application/json"}))
        if suffix:
            fetches.append(p.request("prm_root", "GET", self.at("/.well-known/oauth-protected-resource"),
                                     headers={"Accept": "application/json"}))
        await asyncio.gather(*fetches)

    async def _cors(self, p: Prober) -> None:
        await asyncio.gather(
            p.request("cors_preflight", "OPTIONS", self.target, headers={
                "Origin": FOREIGN_ORIGIN, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, authorization, mcp-protocol-version"}),
            p.request("cors_get", "GET", self.at("/"), headers={"Origin": FOREIGN_ORIGIN}),
        )

    def _hello(self) -> tuple[dict[str, str], bytes]:
        """A harmless request the server will answer: discover (modern) or initialize (legacy)."""
        if self.evidence.view.era == "modern":
            return wire.modern_headers("server/discover"), wire.encode(wire.discover())
        return wire.legacy_headers(), wire.encode(wire.initialize())

    async def _rebinding(self, p: Prober) -> None:
        headers, body = self._hello()
        await asyncio.gather(
            p.request("hello", "POST", self.target, headers={**headers, "Origin": self.origin}, content=body,
                      auth=True),
            p.request("foreign_origin", "POST", self.target, headers={**headers, "Origin": FOREIGN_ORIGIN},
                      content=body, auth=True),
            p.request("foreign_host", "POST", self.target, headers={**headers, "Host": FOREIGN_HOST},
                      content=body, auth=True),
        )
        for label in ("hello", "foreign_origin", "foreign_host"):
            sid = p.exchanges[label].header("mcp-session-id")
            if sid and self.evidence.view.era == "legacy":
                self.evidence.session_ids.append(sid)

    async def _sessions(self, p: Prober) -> None:
        if self.evidence.legacy is None:
            return
        version, session = self.evidence.legacy
        ex = await p.request("init_second", "POST", self.target, headers=wire.legacy_headers(),
                             content=wire.encode(wire.initialize()), auth=True)
        sid = ex.header("mcp-session-id")
        if sid:
            self.evidence.session_ids.append(sid)
        forged = "mcpwall-" + secrets.token_hex(16)
        await p.request("session_forged", "POST", self.target, headers=wire.legacy_headers(version, forged),
                        content=wire.encode(wire.tools_list(modern=False)), auth=True)
        if self.options.credentials:
            await p.request("session_without_credentials", "POST", self.target,
                            headers=wire.legacy_headers(version, session),
                            content=wire.encode(wire.tools_list(modern=False)), auth=False)

    async def _paths(self, p: Prober) -> None:
        requests = [p.request(f"admin:{path}", "GET", self.at(path)) for path in ADMIN_PATHS]
        requests += [p.request(f"file:{path}", "GET", self.at(path)) for path in SENSITIVE_PATHS]
        requests += [p.request(f"listing:{path}", "GET", self.at(path)) for path in LISTING_PATHS]
        await asyncio.gather(*requests)

    async def _redirects(self, p: Prober) -> None:
        target = FOREIGN_ORIGIN + "/"
        requests = [p.request(f"redirect:{self.path}?{name}=", "GET",
                              str(httpx.URL(self.target).copy_with(query=None).copy_merge_params({name: target})))
                    for name in REDIRECT_PARAMS]
        requests += [p.request(f"redirect:{path}?next=", "GET",
                               str(httpx.URL(self.at(path)).copy_merge_params({"next": target})))
                     for path in REDIRECT_PATHS]
        requests.append(p.request("redirect://", "GET", self.origin + "//" + FOREIGN_HOST + "/%2e%2e"))
        await asyncio.gather(*requests)

    async def _robustness(self, p: Prober, view: McpView) -> None:
        headers = _headers_for(view, "tools/list")
        big = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"pad":"' + \
            b"a" * self.options.oversize_bytes + b'"}}}'
        batch = wire.encode([wire.ping(), wire.ping()])
        batch_headers = dict(headers)
        if view.era != "modern":
            batch_headers["MCP-Protocol-Version"] = view.version or LATEST_LEGACY
        await asyncio.gather(
            p.request("malformed_json", "POST", self.target, headers=headers,
                      content=b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {', auth=True),
            p.request("missing_method", "POST", self.target, headers=headers,
                      content=b'{"jsonrpc": "2.0", "id": 2, "params": []}', auth=True),
            p.request("wrong_types", "POST", self.target, headers=headers,
                      content=wire.encode({"jsonrpc": "2.0", "id": [1], "method": 7, "params": "x"}), auth=True),
            p.request("bad_path", "GET", self.at("/%ff%fe/..%2f..%2f/mcpwall-scan")),
        )
        await p.request("oversized", "POST", self.target, headers=headers, content=big, auth=True, body_cap=64 * 1024)
        await p.request("batch", "POST", self.target, headers=batch_headers, content=batch, auth=True)

    async def _plaintext(self, p: Prober) -> None:
        port = self.options.plain_port or (80 if (self.url.port or 443) == 443 else self.url.port)
        plain = self.url.copy_with(scheme="http", port=None if port == 80 else port)
        await p.request("plaintext", "POST", str(plain), headers=wire.legacy_headers(),
                        content=wire.encode(wire.initialize()))

    async def _burst(self, p: Prober, view: McpView) -> None:
        headers = _headers_for(view, "tools/list")
        count = min(self.options.burst, max(0, p.max_requests - p.count - 4))

        async def one(i: int) -> Exchange:
            return await p.request(f"burst:{i}", "POST", self.target, headers=headers,
                                   content=wire.encode(wire.tools_list(modern=view.era == "modern")), auth=True)

        self.evidence.burst = list(await asyncio.gather(*(one(i) for i in range(count))))

    async def _replay(self, p: Prober, view: McpView) -> None:
        if self.evidence.legacy is None or len(self.evidence.session_ids) < 2:
            return
        version = self.evidence.legacy[0]
        sid = self.evidence.session_ids[-1]
        await p.request("replay_delete", "DELETE", self.target, headers=wire.legacy_headers(version, sid),
                        auth=True)
        await p.request("replay_reuse", "POST", self.target, headers=wire.legacy_headers(version, sid),
                        content=wire.encode(wire.tools_list(modern=False)), auth=True)
        self.evidence.session_ids.pop()

    async def _goodbye(self, p: Prober, view: McpView) -> None:
        if self.evidence.legacy is None:
            return
        version = self.evidence.legacy[0]
        for i, sid in enumerate(self.evidence.session_ids):
            try:
                await p.request(f"goodbye:{i}", "DELETE", self.target, headers=wire.legacy_headers(version, sid),
                                auth=True)
            except BudgetExceeded:
                return


def _headers_for(view: McpView, method: str) -> dict[str, str]:
    if view.era == "modern":
        return wire.modern_headers(method)
    return wire.legacy_headers(view.version, view.session_id)


def _same_origin(url: str, origin: str) -> bool:
    try:
        return origin_of(httpx.URL(url)) == origin
    except (httpx.InvalidURL, TypeError, ValueError):
        return False


def resource_metadata_url(challenge: str) -> str | None:
    """The ``resource_metadata`` parameter of a ``WWW-Authenticate`` challenge, if present."""
    params = auth_params(challenge)
    value = params.get("resource_metadata")
    return value or None


def auth_params(challenge: str) -> dict[str, str]:
    """Parameters of a ``WWW-Authenticate`` header (RFC 9110 auth-param syntax, leniently)."""
    out: dict[str, str] = {}
    i, n = 0, len(challenge)
    while i < n:
        while i < n and challenge[i] in " ,":
            i += 1
        start = i
        while i < n and challenge[i] not in "= ,":
            i += 1
        name = challenge[start:i].strip().lower()
        while i < n and challenge[i] == " ":
            i += 1
        if i >= n or challenge[i] != "=":
            continue  # a scheme name or token68 without a value
        i += 1
        while i < n and challenge[i] == " ":
            i += 1
        if i < n and challenge[i] == '"':
            i += 1
            chars: list[str] = []
            while i < n and challenge[i] != '"':
                if challenge[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(challenge[i])
                i += 1
            i += 1
            value = "".join(chars)
        else:
            start = i
            while i < n and challenge[i] not in ", ":
                i += 1
            value = challenge[start:i]
        if name and name not in out:
            out[name] = value
    return out
