"""The fourteen posture checks: published weights (summing to 100) and their evaluators.

Each evaluator is a pure function of the collected :class:`~mcpwall.scan.probe.Evidence` and
returns a status, a one-line summary and the evidence lines that justify it. The table
:data:`POSTURE` is the single source of the weights, the rationale and the fix text that every
report format and ``docs/scan.md`` show.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

import httpx
import yaml

from mcpwall.scan.http import Exchange
from mcpwall.scan.model import CheckResult, CheckSpec, Status
from mcpwall.scan.probe import FOREIGN_HOST, FOREIGN_ORIGIN, Evidence, origin_of
from mcpwall.scan.rules import text_scanner

Outcome = tuple[Status, str, list[str]]


def _spec(id: str, title: str, weight: int, rationale: str, fix: str) -> CheckSpec:
    return CheckSpec(id=id, title=title, weight=weight, group="posture", rationale=rationale, fix=fix)


HTTPS = _spec(
    "https-enforced", "HTTPS enforced", 20,
    "MCP traffic carries tool arguments, results and bearer tokens; on plain HTTP anyone on the path reads "
    "and rewrites it. Every other control assumes an encrypted, authenticated channel.",
    "Serve the endpoint only over HTTPS with a certificate clients trust, and refuse or redirect (301/308) "
    "plain HTTP. Behind a proxy: `return 301 https://$host$request_uri;` on port 80.")
AUTH = _spec(
    "auth-required", "Authentication required", 15,
    "An endpoint that answers initialize, server/discover or tools/list without credentials lets anyone who "
    "can reach it enumerate and call its tools.",
    "Require a bearer token (OAuth 2.1 or an API key) on every request and answer 401 with a "
    "WWW-Authenticate challenge when it is missing; in mcpwall, enable the auth guard.")
ADMIN = _spec(
    "no-admin-paths", "No admin, dashboard or internal paths exposed", 10,
    "Admin panels, debug consoles and metrics at predictable paths are scanned for constantly; sharing a port "
    "with the MCP endpoint puts both behind the weakest one.",
    "Move admin, dashboard, metrics and debug routes to a separate internal-only port or host (mcpwall keeps "
    "its admin API on its own port) and return 404 for them on the public one.")
CREDS = _spec(
    "no-credentials-in-responses", "No credentials in responses", 10,
    "A key, token or password in a response hands an attacker access to everything that credential reaches, "
    "often far beyond the server itself.",
    "Remove secrets from responses, error messages and tool descriptions; load them from the environment or a "
    "secret store and rotate any that were exposed. mcpwall's dlp guard redacts them in transit.")
CORS = _spec(
    "no-wildcard-cors", "No wildcard CORS", 8,
    "`Access-Control-Allow-Origin: *` (or echoing any Origin) lets every web page a user visits call the "
    "server from their browser, turning the endpoint into a tool for any site.",
    "Drop the CORS headers, or allow only the exact origins of your own web clients; never reflect the "
    "request's Origin unchecked.")
CSP = _spec(
    "csp", "Content-Security-Policy header", 3,
    "A restrictive CSP stops responses from being rendered as active content if a browser ever loads them.",
    "Send `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'` on every response.")
HSTS = _spec(
    "hsts", "Strict-Transport-Security header", 3,
    "HSTS tells browsers and many HTTP clients never to downgrade to plain HTTP, closing the window a "
    "first plaintext request leaves open.",
    "Send `Strict-Transport-Security: max-age=31536000; includeSubDomains` on every HTTPS response.")
XFO = _spec(
    "x-frame-options", "X-Frame-Options header", 3,
    "Prevents pages served from the host (consent screens, login forms) from being framed for clickjacking.",
    "Send `X-Frame-Options: DENY` (or a CSP with `frame-ancestors 'none'`).")
XCTO = _spec(
    "x-content-type-options", "X-Content-Type-Options header", 3,
    "`nosniff` stops browsers from reinterpreting JSON or text responses as script or HTML.",
    "Send `X-Content-Type-Options: nosniff` on every response.")
VERSION = _spec(
    "no-version-disclosure", "No server or framework version disclosure", 5,
    "Version strings and framework names tell an attacker which published exploits to try first.",
    "Remove `X-Powered-By` and version numbers from `Server` (uvicorn: `--no-server-header`; nginx: "
    "`server_tokens off;`) and from error pages.")
REDIRECT = _spec(
    "no-open-redirect", "No open redirect", 5,
    "A redirect to any URL taken from a parameter lets attackers borrow the server's name for phishing and "
    "steal OAuth codes and tokens.",
    "Redirect only to relative paths or to an allowlist of exact URLs; validate redirect_uri exactly.")
FILES = _spec(
    "no-sensitive-files", "No directory listing or sensitive files", 5,
    "`.env`, `.git/` and configuration files leak credentials and source; directory listings map the server "
    "for an attacker.",
    "Serve only an explicit allowlist of static paths, turn off directory listing, and keep `.env`, `.git` and "
    "config files outside the served tree.")
ERRORS = _spec(
    "no-error-leak", "No error-information leak", 5,
    "Stack traces, file paths and SQL errors reveal the internal architecture and help an attacker pick "
    "targeted exploits.",
    "Return generic JSON-RPC errors (-32700, -32600, -32603) to clients and log the details on the server; "
    "turn off debug mode in production.")
PRM = _spec(
    "protected-resource-metadata", "Protected-resource metadata (RFC 9728)", 5,
    "MCP clients discover where to obtain tokens from the protected-resource metadata; without it they cannot "
    "authorize properly, and operators fall back to long-lived static keys.",
    "Publish `/.well-known/oauth-protected-resource` (path-inserted for the endpoint) with `resource` equal to "
    "the endpoint URL and at least one `authorization_servers` entry.")


# --- helpers ------------------------------------------------------------------------------------

def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def loopback_http_ok(ev: Evidence) -> bool:
    url = ev.url
    return url.scheme == "http" and ev.options.allow_loopback_http and _is_loopback(url.host)


def has_result(ex: Exchange | None) -> bool:
    return ex is not None and ex.ok and ex.result_message() is not None


def _challenged(ex: Exchange | None) -> bool:
    return ex is not None and ex.status in (401, 403)


def primary(ev: Evidence) -> Exchange | None:
    """The response a first-time client sees from the endpoint; headers are judged on it."""
    for label in ("init_unauth", "discover_unauth", "hello", "get_endpoint"):
        ex = ev.get(label)
        if ex is not None and ex.status is not None:
            return ex
    return None


def _endpoint_exchanges(ev: Evidence) -> list[Exchange]:
    return [ex for label, ex in ev.exchanges.items() if not label.startswith("prm_") and ex.status is not None]


# --- evaluators ---------------------------------------------------------------------------------

def check_https(ev: Evidence) -> Outcome:
    url = ev.url
    if url.scheme == "http":
        if loopback_http_ok(ev):
            return "na", "plain HTTP on a loopback address (accepted by --allow-loopback-http)", []
        return "fail", "the endpoint is served over plain HTTP", [f"target scheme is http ({url.host})"]
    tls = ev.tls
    if tls is None or tls.version is None:
        return "unknown", "no TLS session could be established", [tls.error or "" if tls else ""]
    if not tls.verified:
        return "fail", f"certificate not trusted: {tls.verify_error}", [f"handshake {tls.version}, unverified"]
    plain = ev.get("plaintext")
    if plain is None:
        return "unknown", "plaintext listener not probed", []
    if plain.status is None:
        return "pass", "HTTPS with a trusted certificate; plain HTTP is not served", [plain.brief()]
    if plain.status in (301, 302, 303, 307, 308):
        location = plain.header("location") or ""
        if location.lower().startswith("https://"):
            return "pass", "plain HTTP redirects to HTTPS", [plain.brief(), f"Location: {location[:120]}"]
        return "fail", "plain HTTP redirects, but not to HTTPS", [plain.brief(), f"Location: {location[:120]}"]
    if plain.ok or plain.status in (401, 403) or plain.messages():
        return "fail", "the MCP endpoint also answers over plain HTTP", [plain.brief()]
    return "pass", "HTTPS with a trusted certificate; plain HTTP is refused", [plain.brief()]


def check_auth(ev: Evidence) -> Outcome:
    labels = {"initialize": "init_unauth", "server/discover": "discover_unauth",
              "tools/list (modern)": "list_modern_unauth", "tools/list (legacy)": "list_legacy_unauth"}
    exchanges = {name: ev.get(label) for name, label in labels.items()}
    evidence = [f"{name}: {ex.brief()}" for name, ex in exchanges.items() if ex is not None]
    open_ = [name for name, ex in exchanges.items() if has_result(ex)]
    if open_:
        return "fail", f"answered {', '.join(open_)} without credentials", evidence
    if all(ex is None or ex.status is None for ex in exchanges.values()):
        return "unknown", "the endpoint did not answer", evidence
    handshake = _challenged(exchanges["initialize"]) or _challenged(exchanges["server/discover"])
    listing = _challenged(exchanges["tools/list (modern)"]) or _challenged(exchanges["tools/list (legacy)"])
    if handshake and listing:
        return "pass", "401/403 without credentials on the handshake and on tools/list", evidence
    return "fail", "no 401/403 challenge for unauthenticated requests", evidence


def _exists(ex: Exchange, baseline: Exchange | None) -> bool:
    """Whether a path answered differently from a path that certainly does not exist."""
    if ex.status is None:
        return False
    if baseline is not None and baseline.status == ex.status and baseline.body == ex.body:
        return False
    if ex.ok:
        return bool(ex.body.strip()) or ex.status != (baseline.status if baseline else None)
    if ex.status in (301, 302, 303, 307, 308, 401, 403):
        return baseline is None or baseline.status in (404, 410) or (baseline.status or 0) >= 500
    return False


def check_admin(ev: Evidence) -> Outcome:
    baseline = ev.get("notfound")
    exposed = [ex for ex in ev.prefixed("admin:") if _exists(ex, baseline)]
    if not ev.prefixed("admin:"):
        return "unknown", "admin paths not probed", []
    if exposed:
        return "fail", f"{len(exposed)} admin/internal path(s) answer on the MCP port", [ex.brief() for ex in exposed]
    return "pass", "no admin, dashboard or internal path answers", [f"{len(ev.prefixed('admin:'))} paths probed"]


def check_credentials(ev: Evidence) -> Outcome:
    scanner = text_scanner()
    # The scanner's own credentials echoed back are not a leak of the server's secrets.
    ours = sorted({part for v in ev.options.credentials.values() if v
                   for part in (v, re.sub(r"(?i)^(?:bearer|basic|token)\s+", "", v)) if len(part) >= 8},
                  key=len, reverse=True)
    hits: dict[str, str] = {}  # redacted value -> first place it was seen
    for ex in ev.exchanges.values():
        if ex.status is None:
            continue
        texts = [ex.text] + [f"{k}: {v}" for k, v in ex.headers if k not in ("set-cookie", "www-authenticate")]
        for text in texts:
            for value in ours:
                text = text.replace(value, "")
            for match in scanner.secrets(text):
                hits.setdefault(f"{match.rule} {match.excerpt}", ex.brief())
    if hits:
        return "fail", f"{len(hits)} distinct credential-like value(s) in responses", \
            [f"{value} in {where}" for value, where in list(hits.items())[:10]]
    return "pass", "no credential-like values in any response", []


def check_cors(ev: Evidence) -> Outcome:
    bad: list[str] = []
    for ex in _endpoint_exchanges(ev):
        allow = (ex.header("access-control-allow-origin") or "").strip()
        if allow == "*":
            bad.append(f"{ex.brief()}: Access-Control-Allow-Origin: *")
        elif allow.rstrip("/") == FOREIGN_ORIGIN:
            cred = (ex.header("access-control-allow-credentials") or "").lower() == "true"
            bad.append(f"{ex.brief()}: reflects a foreign Origin{' with credentials' if cred else ''}")
    if bad:
        return "fail", "cross-origin requests from any web page are allowed", sorted(set(bad))[:6]
    return "pass", "no wildcard or reflected CORS origin", []


def _header_check(ev: Evidence, name: str, good: Callable[[str, Exchange], bool], what: str) -> Outcome:
    ex = primary(ev)
    if ex is None:
        return "unknown", "the endpoint did not answer", []
    value = ex.header(name)
    if value is not None and good(value, ex):
        return "pass", f"{name}: {value[:80]}", [ex.brief()]
    if value is None:
        return "fail", f"no {name} header on the endpoint's responses", [ex.brief()]
    return "fail", f"{name} is set but {what}: {value[:80]}", [ex.brief()]


def check_csp(ev: Evidence) -> Outcome:
    return _header_check(ev, "Content-Security-Policy", lambda v, _: bool(v.strip()), "empty")


def check_hsts(ev: Evidence) -> Outcome:
    if ev.url.scheme == "http":
        if loopback_http_ok(ev):
            return "na", "plain HTTP on a loopback address (accepted by --allow-loopback-http)", []
        return "fail", "served over plain HTTP, where HSTS cannot apply", []

    def good(value: str, _: Exchange) -> bool:
        match = re.search(r"max-age\s*=\s*\"?(\d+)", value, re.I)
        return match is not None and int(match.group(1)) >= 15552000  # 180 days

    return _header_check(ev, "Strict-Transport-Security", good, "max-age is under 180 days")


def check_xfo(ev: Evidence) -> Outcome:
    ex = primary(ev)
    csp = (ex.header("content-security-policy") or "") if ex else ""
    if ex is not None and re.search(r"frame-ancestors\s+'none'|frame-ancestors\s+'self'", csp, re.I):
        return "pass", "framing forbidden by CSP frame-ancestors", [ex.brief()]
    return _header_check(ev, "X-Frame-Options", lambda v, _: v.strip().upper() in ("DENY", "SAMEORIGIN"),
                         "not DENY or SAMEORIGIN")


def check_xcto(ev: Evidence) -> Outcome:
    return _header_check(ev, "X-Content-Type-Options", lambda v, _: v.strip().lower() == "nosniff", "not nosniff")


_FRAMEWORKS = re.compile(r"\b(?:uvicorn|gunicorn|hypercorn|granian|werkzeug|express|kestrel|jetty|tomcat|tornado|"
                         r"daphne|waitress|php|asp\.net|openresty|node\.js|python|fastapi|starlette|flask|django)\b",
                         re.I)
_VERSIONED = re.compile(r"\b[A-Za-z][\w.-]*/v?\d+(?:\.\d+)+|\b\d+\.\d+\.\d+\b")
_BODY_BANNER = re.compile(r"\b(?:nginx|apache|microsoft-iis|jetty|tomcat|werkzeug|gunicorn|uvicorn|openresty|"
                          r"litespeed|caddy|express|python|php)/\d+(?:\.\d+)+", re.I)
_DISCLOSING_HEADERS = ("x-powered-by", "x-aspnet-version", "x-aspnetmvc-version", "x-generator", "x-runtime-version")


def check_version(ev: Evidence) -> Outcome:
    found: list[str] = []
    for ex in _endpoint_exchanges(ev):
        for name in _DISCLOSING_HEADERS:
            value = ex.header(name)
            if value:
                found.append(f"{name}: {value[:60]}")
        server = ex.header("server")
        if server and (_VERSIONED.search(server) or _FRAMEWORKS.search(server)):
            found.append(f"server: {server[:60]}")
        if ex.status is not None and ex.status >= 400:
            match = _BODY_BANNER.search(ex.text[:65536])
            if match:
                found.append(f"{ex.brief()}: body names {match.group(0)}")
    if found:
        return "fail", "responses disclose server software or versions", sorted(set(found))[:6]
    return "pass", "no server, framework or version string disclosed", []


def _redirect_target_host(ex: Exchange) -> str | None:
    location = ex.header("location")
    if not location:
        return None
    location = location.strip().replace("\\", "/")
    absolute = urljoin(ex.url, location)
    try:
        return (urlsplit(absolute).hostname or "").lower()
    except ValueError:
        return None


def check_redirect(ev: Evidence) -> Outcome:
    probes = ev.prefixed("redirect")
    if not probes:
        return "unknown", "redirect parameters not probed", []
    bad = [ex for ex in probes
           if ex.status in (301, 302, 303, 307, 308) and _redirect_target_host(ex) == FOREIGN_HOST]
    if bad:
        return "fail", "redirects to an arbitrary external URL", [f"{ex.brief()} Location: "
                                                                   f"{(ex.header('location') or '')[:100]}"
                                                                   for ex in bad]
    return "pass", "no parameter or path redirects off-site", [f"{len(probes)} redirect probes"]


_FILE_SIGNATURES: dict[str, Callable[[str], bool]] = {
    "/.env": lambda t: bool(re.search(r"(?m)^\s*(?:export\s+)?[A-Z][A-Z0-9_]{1,60}\s*=\s*\S", t))
    and "<html" not in t.lower(),
    "/.git/HEAD": lambda t: bool(re.match(r"\s*(?:ref:\s*refs/|[0-9a-f]{40}\s*$)", t)),
    "/.git/config": lambda t: "[core]" in t,
    "/.aws/credentials": lambda t: "aws_access_key_id" in t.lower(),
    "/.npmrc": lambda t: bool(re.search(r"_auth|registry\s*=", t)),
}
_LISTING = re.compile(r"<title>\s*Index of /|<h1>\s*Index of /|Directory listing for /|<title>Directory listing",
                      re.I)


def _looks_structured(text: str, path: str) -> bool:
    if "<html" in text[:2000].lower():
        return False
    try:
        value = yaml.safe_load(text) if not path.endswith(".json") else None
        if path.endswith(".json"):
            import orjson

            value = orjson.loads(text)
    except Exception:  # any parse failure means "not a config file"
        return False
    return isinstance(value, dict) and bool(value)


def check_files(ev: Evidence) -> Outcome:
    baseline = ev.get("notfound")
    found: list[str] = []
    for ex in ev.prefixed("file:"):
        if not ex.ok or (baseline is not None and baseline.body == ex.body and baseline.status == ex.status):
            continue
        path = ex.label.split(":", 1)[1]
        text = ex.text
        signature = _FILE_SIGNATURES.get(path)
        if (signature(text) if signature else _looks_structured(text, path)):
            found.append(f"{ex.brief()} ({len(ex.body)} bytes)")
    for ex in [*ev.prefixed("listing:"), *(x for x in (ev.get("root"),) if x is not None)]:
        if ex.ok and _LISTING.search(ex.text[:65536]):
            found.append(f"{ex.brief()}: directory listing")
    if found:
        return "fail", "sensitive files or directory listings are served", found
    return "pass", "no sensitive file or directory listing served", []


_LEAKS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((name, re.compile(rx)) for name, rx in (
    ("python traceback", r"Traceback \(most recent call last\)|File \"[^\"]+\.py\", line \d+"),
    ("javascript stack", r"\n\s+at [\w$.<>\[\] ]+ \(?(?:/|[A-Za-z]:\\|file:|node:)[^)\n]*:\d+:\d+"),
    ("java stack", r"\bat [\w$.]+\([\w$]+\.java:\d+\)|Exception in thread \"|java\.lang\.\w+(?:Exception|Error)"),
    (".NET stack", r"System\.\w+Exception|   at [\w.]+\(.*\) in .*:line \d+"),
    ("go panic", r"panic: .*\n\s*goroutine \d+ \["),
    ("filesystem path", r"(?:/(?:home|Users|usr/lib|usr/local/lib|opt|srv|var/www|app)/[\w.-]+/[\w./-]+\.(?:py|js|ts|"
                        r"rb|java|go|php|cs)\b|[A-Za-z]:\\(?:Users|inetpub|Program Files)\\)"),
    ("package path", r"site-packages/|node_modules/|dist-packages/"),
    ("SQL error", r"SQLSTATE\[|syntax error at or near|You have an error in your SQL syntax|ORA-\d{5}|"
                  r"sqlite3\.\w+Error|psycopg2?\.\w+Error"),
    ("debug page", r"Werkzeug Debugger|DEBUG = True|<title>[^<]*(?:Traceback|Exception|Error at /)"),
))


def leak_matches(text: str) -> list[str]:
    return [name for name, pattern in _LEAKS if pattern.search(text)]


def check_errors(ev: Evidence) -> Outcome:
    found: list[str] = []
    for ex in ev.exchanges.values():
        if ex.status is None or (has_result(ex) and ex.status < 400):
            continue
        if not (ex.status >= 400 or ex.error_message() is not None):
            continue
        names = leak_matches(ex.text[:262144])
        if names:
            found.append(f"{ex.brief()}: {', '.join(names)}")
    if found:
        return "fail", "error responses reveal internals", found[:8]
    provoked = [ev.get(x) for x in ("malformed_json", "missing_method", "wrong_types", "bad_path", "notfound")]
    answered = [ex for ex in provoked if ex is not None and ex.status is not None]
    if not answered:
        return "unknown", "no error response could be provoked", []
    return "pass", "error responses are generic", [ex.brief() for ex in answered]


def valid_prm(ex: Exchange | None, target: str) -> tuple[bool, str]:
    if ex is None or ex.status is None:
        return False, "not fetched"
    if not ex.ok:
        return False, f"HTTP {ex.status}"
    doc = ex.json()
    if not isinstance(doc, dict):
        return False, "not a JSON object"
    resource = doc.get("resource")
    url = httpx.URL(target)
    accepted = {target.rstrip("/"), origin_of(url)}
    if not isinstance(resource, str) or resource.rstrip("/") not in accepted:
        return False, f"resource {str(resource)[:80]!r} does not name this endpoint"
    servers = doc.get("authorization_servers")
    if not (isinstance(servers, list) and servers and all(isinstance(s, str) for s in servers)):
        return False, "no authorization_servers"
    for server in servers:
        parts = urlsplit(server)
        if parts.scheme != "https" and not (parts.scheme == "http" and _is_loopback(parts.hostname or "")):
            return False, f"authorization server {server[:80]!r} is not an https URL"
    return True, f"resource {resource}, {len(servers)} authorization server(s)"


def check_prm(ev: Evidence) -> Outcome:
    reasons: list[str] = []
    for label in ("prm_challenge", "prm_path", "prm_root"):
        ex = ev.get(label)
        if ex is None:
            continue
        ok, why = valid_prm(ex, ev.target)
        if ok:
            return "pass", f"valid metadata at {httpx.URL(ex.url).path}", [why]
        reasons.append(f"{ex.brief()}: {why}")
    if not reasons:
        return "unknown", "metadata not probed", []
    return "fail", "no valid protected-resource metadata document", reasons


POSTURE: tuple[tuple[CheckSpec, Callable[[Evidence], Outcome]], ...] = (
    (HTTPS, check_https),
    (AUTH, check_auth),
    (ADMIN, check_admin),
    (CREDS, check_credentials),
    (CORS, check_cors),
    (CSP, check_csp),
    (HSTS, check_hsts),
    (XFO, check_xfo),
    (XCTO, check_xcto),
    (VERSION, check_version),
    (REDIRECT, check_redirect),
    (FILES, check_files),
    (ERRORS, check_errors),
    (PRM, check_prm),
)


def evaluate(ev: Evidence) -> list[CheckResult]:
    results = []
    for spec, fn in POSTURE:
        if not ev.reachable:
            results.append(CheckResult(spec, "unknown", "target unreachable", list(ev.notes)))
            continue
        status, summary, evidence = fn(ev)
        results.append(CheckResult(spec, status, summary, [e for e in evidence if e]))
    return results
