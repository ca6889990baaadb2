"""MCP-protocol probes: the second, MCP-specific sub-grade.

These look at what only an MCP endpoint has: DNS-rebinding defences, the OAuth challenge and
its metadata, how the JSON-RPC framing copes with malformed, oversized and batched input,
legacy session identifiers, TLS details, and (when the tool list is visible) the tools
themselves. Some need credentials or a particular protocol era to be observable; those report
``unknown`` otherwise and the sub-grade is computed over what was observed.

Pure evaluators over :class:`~mcpwall.scan.probe.Evidence`, like :mod:`mcpwall.scan.checks`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable

from mcpwall.protocol.versions import BATCH_VERSION
from mcpwall.scan.checks import has_result, leak_matches, loopback_http_ok, valid_prm
from mcpwall.scan.http import Exchange
from mcpwall.scan.model import CheckResult, CheckSpec, Finding
from mcpwall.scan.probe import Evidence, auth_params
from mcpwall.scan.tools import ToolReport, analyse_tools

Outcome = tuple[str, str, list[str]]


def _spec(id: str, title: str, weight: int, rationale: str, fix: str, *, active: bool = False) -> CheckSpec:
    return CheckSpec(id=id, title=title, weight=weight, group="mcp", rationale=rationale, fix=fix, active_only=active)


ORIGIN = _spec(
    "mcp-origin-validation", "Origin and Host validated (DNS rebinding)", 20,
    "The transport spec requires servers to validate Origin: without it, a web page can rebind its domain to "
    "the server's address and drive a local or internal MCP server from the victim's browser.",
    "Answer 403 to any Origin outside an allowlist and 421/400 to an unexpected Host (mcpwall: "
    "listen.allowed_origins / allowed_hosts).")
CHALLENGE = _spec(
    "mcp-auth-challenge", "401 challenge names its protected-resource metadata", 10,
    "MCP clients find the authorization server through `WWW-Authenticate: Bearer resource_metadata=...`; a "
    "bare 401 leaves them guessing.",
    "Answer unauthenticated requests with 401 and `WWW-Authenticate: Bearer resource_metadata=\"<url>\"` "
    "pointing at a valid RFC 9728 document.")
MALFORMED = _spec(
    "mcp-malformed-jsonrpc", "Malformed JSON-RPC answered cleanly", 10,
    "Garbage in must produce a JSON-RPC error (-32700/-32600) or a 4xx, never a crash, a hang or a 5xx: "
    "parsers that fall over on bad input are where memory and logic bugs live.",
    "Validate framing before dispatch and map parse errors to 400 with -32700 and shape errors to -32600.")
OVERSIZED = _spec(
    "mcp-oversized-body", "Oversized body refused", 10,
    "Without a body limit one client can exhaust memory with a single request.",
    "Cap request bodies (4 MiB is the SDK default) and answer 413 above it (mcpwall: "
    "guards.limits.max_message_bytes).")
BATCH = _spec(
    "mcp-batch-handling", "JSON-RPC batches handled per protocol version", 5,
    "Batches exist only in protocol 2025-03-26; accepting them elsewhere multiplies work per request and "
    "slips messages past per-request checks.",
    "Reject JSON arrays (400, -32600) unless 2025-03-26 was negotiated.")
SESSION = _spec(
    "mcp-session-ids", "Session ids random and bound (legacy)", 10,
    "Legacy Streamable HTTP sessions must have cryptographically random ids, must not be accepted when "
    "unknown, and must never stand in for credentials (session hijacking).",
    "Mint session ids from a CSPRNG (128 bits or more), answer 404 to unknown ones, and authenticate every "
    "request rather than the session.")
TLS = _spec(
    "mcp-tls", "TLS 1.2+ with a valid, unexpired certificate", 15,
    "Old TLS versions and invalid or expiring certificates make the encrypted channel breakable or teach "
    "clients to click through warnings.",
    "Offer TLS 1.2 and 1.3 only; renew certificates automatically well before expiry.")
POISONING = _spec(
    "mcp-tool-descriptions", "Tool descriptions free of poisoning and hidden text", 15,
    "Tool descriptions go straight into the model's context; hidden instructions there steer the agent "
    "(tool poisoning) and invisible characters hide them from human review.",
    "Remove instructions, concealment and hidden characters from tool text; put the server behind mcpwall's "
    "poisoning guard and pin reviewed definitions.")
ANNOTATIONS = _spec(
    "mcp-destructive-annotations", "Destructive tools annotated", 5,
    "Clients rely on destructiveHint/readOnlyHint to decide when to ask a human; a delete or exec tool that "
    "says nothing is treated as harmless.",
    "Set annotations on every tool; destructive ones `destructiveHint: true`, read-only ones "
    "`readOnlyHint: true`.")
RATE = _spec(
    "mcp-rate-limit", "Rate limiting on bursts", 10,
    "Agents call tools in tight loops; without rate limits one client exhausts the server or runs up "
    "third-party costs.",
    "Limit requests per client and answer 429 with Retry-After (mcpwall: guards.ratelimit).", active=True)
REPLAY = _spec(
    "mcp-session-replay", "Terminated sessions cannot be replayed", 5,
    "A session id that still works after DELETE lets a captured id be replayed indefinitely.",
    "Forget session ids on DELETE and expiry; answer 404 to them afterwards.", active=True)


def _accepted(ex: Exchange | None) -> bool:
    return ex is not None and ex.ok and (ex.result_message() is not None or ex.header("mcp-session-id") is not None)


def _refused(ex: Exchange | None, baseline: Exchange | None) -> bool:
    if ex is None or ex.status is None or not 400 <= ex.status < 500:
        return False
    if baseline is None or baseline.status is None:
        return True
    return baseline.ok or baseline.status != ex.status


def check_origin(ev: Evidence) -> Outcome:
    base, origin, host = ev.get("hello"), ev.get("foreign_origin"), ev.get("foreign_host")
    evidence = [f"{name}: {ex.brief()}" for name, ex in (("own Origin", base), ("foreign Origin", origin),
                                                          ("foreign Host", host)) if ex is not None]
    accepted = [name for name, ex in (("foreign Origin", origin), ("foreign Host", host)) if _accepted(ex)]
    if accepted:
        return "fail", f"request with a {' and a '.join(accepted)} was served", evidence
    refused_origin, refused_host = _refused(origin, base), _refused(host, base)
    if refused_origin and refused_host:
        return "pass", "foreign Origin and Host are refused", evidence
    if refused_origin:
        return "pass", "foreign Origin is refused (Host check not observable)", evidence
    return "unknown", "could not tell: the same answer came back with and without a foreign Origin", evidence


def check_challenge(ev: Evidence) -> Outcome:
    challenged = [ev.get(x) for x in ("init_unauth", "list_modern_unauth", "list_legacy_unauth", "discover_unauth")]
    fours = [ex for ex in challenged if ex is not None and ex.status == 401]
    if not fours:
        statuses = sorted({str(ex.status or ex.error) for ex in challenged if ex is not None})
        return "fail", "no 401 challenge to unauthenticated requests", [f"statuses seen: {', '.join(statuses)}"]
    header = fours[0].header("www-authenticate") or ""
    if not header.lower().startswith("bearer"):
        return "fail", "401 without a Bearer WWW-Authenticate challenge", [f"WWW-Authenticate: {header[:120]}"]
    if "resource_metadata" not in auth_params(header[6:]):
        return "fail", "challenge has no resource_metadata parameter", [f"WWW-Authenticate: {header[:120]}"]
    ok, why = valid_prm(ev.get("prm_challenge"), ev.target)
    if not ok:
        return "fail", f"resource_metadata document is not valid ({why})", [f"WWW-Authenticate: {header[:120]}"]
    return "pass", "401 challenge points at valid protected-resource metadata", [why]


def _clean(ex: Exchange | None) -> tuple[bool | None, str]:
    if ex is None:
        return None, "not sent"
    if ex.status is None:
        return False, f"{ex.brief()} (no clean answer)"
    if ex.status >= 500:
        return False, ex.brief()
    if leak_matches(ex.text[:65536]):
        return False, f"{ex.brief()} with internals in the body"
    if ex.ok and has_result(ex):
        return False, f"{ex.brief()} accepted as a valid request"
    if ex.ok and ex.error_message() is None and ex.status != 202:
        return False, f"{ex.brief()} without a JSON-RPC error"
    return True, ex.brief()


def check_malformed(ev: Evidence) -> Outcome:
    results = [_clean(ev.get(x)) for x in ("malformed_json", "missing_method", "wrong_types")]
    bad = [why for ok, why in results if ok is False]
    if bad:
        return "fail", "malformed JSON-RPC was not refused cleanly", bad
    if all(ok is None for ok, _ in results):
        return "unknown", "not probed", []
    return "pass", "malformed JSON-RPC gets a clean refusal", [why for _, why in results]


def check_oversized(ev: Evidence) -> Outcome:
    ex = ev.get("oversized")
    size = f"{ev.options.oversize_bytes // (1024 * 1024)} MiB"
    if ex is None:
        return "unknown", "not probed", []
    if ex.status is None:
        if ex.error and ex.error.startswith("connection closed"):
            return "pass", f"the server cut off a {size} body", [ex.brief()]
        return "fail", f"no answer to a {size} body ({ex.error})", [ex.brief()]
    if ex.status == 413 or 400 <= ex.status < 500:
        return "pass", f"a {size} body is refused", [ex.brief()]
    return "fail", f"a {size} body was accepted", [ex.brief()]


def check_batch(ev: Evidence) -> Outcome:
    ex = ev.get("batch")
    if ex is None or ex.status is None:
        return "unknown", "not probed", [ex.brief()] if ex else []
    if ex.status in (401, 403) and not ev.authenticated:
        return "unknown", "refused before parsing (supply credentials to observe)", [ex.brief()]
    body = ex.json()
    answered = [m for m in ex.messages() if isinstance(m, dict) and "result" in m]
    accepted = ex.ok and (isinstance(body, list) or len(answered) >= 1)
    if ev.view.version == BATCH_VERSION:
        if accepted:
            return "pass", "batch accepted under 2025-03-26, as that version requires", [ex.brief()]
        return "fail", "2025-03-26 was negotiated but a batch was refused", [ex.brief()]
    if accepted:
        return "fail", "a batch was processed on a version that forbids batches", [ex.brief()]
    return "pass", "batch refused outside 2025-03-26", [ex.brief()]


_HEX = re.compile(r"^[0-9a-fA-F-]+$")
_DIGITS = re.compile(r"^[0-9]+$")


def id_entropy_bits(sid: str) -> float:
    """A generous upper bound on the entropy of an id, from its length and alphabet."""
    if not sid:
        return 0.0
    if _DIGITS.match(sid):
        alphabet = 10
    elif _HEX.match(sid):
        alphabet = 16
        sid = sid.replace("-", "")
        if len(sid) == 32 and sid[12:13] == "4":
            return 122.0  # a UUIDv4 carries 122 random bits
    elif re.match(r"^[A-Za-z0-9_-]+$", sid):
        alphabet = 64
    else:
        alphabet = 94
    return len(sid) * math.log2(alphabet)


def check_session(ev: Evidence) -> Outcome:
    if ev.view.era is None:
        return "unknown", "could not open an MCP session (supply credentials to observe)", []
    if ev.legacy is None:
        return "na", ("no legacy sessions (modern stateless server)" if ev.view.era == "modern"
                      else "legacy server without session ids (stateless)"), []
    ids = list(dict.fromkeys(ev.session_ids))
    problems: list[str] = []
    evidence = [f"{len(ids)} session id(s) sampled, length {min(map(len, ids))}-{max(map(len, ids))}"]
    if any(not s or any(not 0x21 <= ord(c) <= 0x7E for c in s) for s in ids):
        problems.append("session id has characters outside visible ASCII")
    bits = min(id_entropy_bits(s) for s in ids)
    evidence.append(f"estimated entropy at most {bits:.0f} bits")
    if bits < 120:
        problems.append(f"session ids carry at most {bits:.0f} bits (need 120+)")
    if len(ids) >= 2:
        prefix = len(os.path.commonprefix(ids))  # noqa: RUF071 - a character prefix is exactly what is meant
        if prefix > min(map(len, ids)) // 2:
            problems.append(f"session ids share a {prefix}-character prefix")
        numbers = [int(s) for s in ids if _DIGITS.match(s)]
        if len(numbers) >= 2 and max(numbers) - min(numbers) < 1_000_000:
            problems.append("session ids look sequential")
    forged = ev.get("session_forged")
    if forged is not None:
        evidence.append(f"unknown id: {forged.brief()}")
        if forged.ok:
            problems.append("an unknown session id was accepted")
    bare = ev.get("session_without_credentials")
    if bare is not None:
        evidence.append(f"session id without credentials: {bare.brief()}")
        if bare.ok:
            problems.append("a session id alone, without credentials, was accepted")
    if problems:
        return "fail", "; ".join(problems), evidence
    return "pass", "session ids random, unknown ids refused, not usable as credentials", evidence


def check_tls(ev: Evidence) -> Outcome:
    if ev.url.scheme == "http":
        if loopback_http_ok(ev):
            return "na", "plain HTTP on a loopback address (accepted by --allow-loopback-http)", []
        return "fail", "no TLS at all", []
    tls = ev.tls
    if tls is None or tls.version is None:
        return "unknown", f"no TLS handshake ({tls.error if tls else 'not attempted'})", []
    problems: list[str] = []
    evidence = [f"negotiated {tls.version}"]
    if tls.version not in ("TLSv1.2", "TLSv1.3"):
        problems.append(f"negotiated {tls.version}")
    if not tls.verified:
        problems.append(f"certificate not trusted ({tls.verify_error})")
    days = tls.days_left
    if days is not None:
        evidence.append(f"certificate valid for {days:.0f} more day(s)")
        if days < 0:
            problems.append("certificate expired")
        elif days < 14:
            problems.append(f"certificate expires in {days:.0f} day(s)")
    if tls.legacy_accepted:
        problems.append("TLS 1.0/1.1 still accepted")
    elif tls.legacy_accepted is None:
        evidence.append("TLS 1.0/1.1 refusal not testable from this machine")
    else:
        evidence.append("TLS 1.0/1.1 refused")
    if problems:
        return "fail", "; ".join(problems), evidence
    return "pass", f"{tls.version}, trusted certificate", evidence


def tool_reports(ev: Evidence) -> list[ToolReport] | None:
    if ev.view.tools is None:
        return None
    return analyse_tools(ev.view.tools, location=ev.target)


def check_descriptions(ev: Evidence, reports: list[ToolReport] | None) -> Outcome:
    if reports is None:
        return "unknown", "tool list not visible (supply --bearer or --header)", []
    bad = [f for r in reports for f in r.findings if f.rule in ("tool-poisoning", "tool-hidden-unicode")]
    if bad:
        return "fail", f"{len({f.subject for f in bad})} tool(s) with suspicious text", [f.detail for f in bad][:8]
    return "pass", f"{len(reports)} tool description(s) clean", []


def check_annotations(ev: Evidence, reports: list[ToolReport] | None) -> Outcome:
    if reports is None:
        return "unknown", "tool list not visible (supply --bearer or --header)", []
    destructive = [r for r in reports if r.destructive]
    bad = [f for r in reports for f in r.findings if f.rule == "tool-destructive-unannotated"]
    if not destructive:
        return "na", "no destructive-looking tools", []
    if bad:
        return "fail", f"{len(bad)} of {len(destructive)} destructive tool(s) unannotated or mislabelled", \
            [f.detail for f in bad][:8]
    return "pass", f"all {len(destructive)} destructive tool(s) annotated", []


def check_rate(ev: Evidence) -> Outcome:
    if not ev.burst:
        return "unknown", "burst not sent", []
    limited = [ex for ex in ev.burst if ex.status == 429]
    statuses = sorted({str(ex.status or ex.error) for ex in ev.burst})
    evidence = [f"{len(ev.burst)} requests, statuses {', '.join(statuses)}"]
    if not limited and not ev.authenticated and all(ex.status in (401, 403) for ex in ev.burst):
        return "unknown", "the burst was refused by authentication (supply credentials to measure)", evidence
    if not limited:
        return "fail", f"{len(ev.burst)} rapid requests, none limited", evidence
    if not any(ex.header("retry-after") for ex in limited):
        return "pass", "burst limited (429), but without Retry-After", evidence
    return "pass", "burst limited with 429 and Retry-After", evidence


def check_replay(ev: Evidence) -> Outcome:
    if ev.view.era is None:
        return "unknown", "could not open an MCP session (supply credentials to observe)", []
    if ev.legacy is None:
        return "na", "no sessions to replay", []
    delete, reuse = ev.get("replay_delete"), ev.get("replay_reuse")
    if delete is None or reuse is None:
        return "unknown", "replay not attempted (needs a legacy session)", []
    if delete.status == 405:
        return "na", "the server does not let clients end sessions (405)", [delete.brief()]
    if reuse.ok:
        return "fail", "a terminated session id still works", [delete.brief(), reuse.brief()]
    return "pass", "terminated session ids are refused", [delete.brief(), reuse.brief()]


Evaluator = Callable[[Evidence, list[ToolReport] | None], Outcome]


def _plain(fn: Callable[[Evidence], Outcome]) -> Evaluator:
    return lambda ev, _reports: fn(ev)


MCP: tuple[tuple[CheckSpec, Evaluator], ...] = (
    (ORIGIN, _plain(check_origin)),
    (CHALLENGE, _plain(check_challenge)),
    (MALFORMED, _plain(check_malformed)),
    (OVERSIZED, _plain(check_oversized)),
    (BATCH, _plain(check_batch)),
    (SESSION, _plain(check_session)),
    (TLS, _plain(check_tls)),
    (POISONING, check_descriptions),
    (ANNOTATIONS, check_annotations),
    (RATE, _plain(check_rate)),
    (REPLAY, _plain(check_replay)),
)


def evaluate(ev: Evidence) -> tuple[list[CheckResult], list[Finding], list[ToolReport]]:
    reports = tool_reports(ev) if ev.reachable else None
    results: list[CheckResult] = []
    for spec, fn in MCP:
        if spec.active_only and not ev.options.active:
            continue
        if not ev.reachable:
            results.append(CheckResult(spec, "unknown", "target unreachable", []))
            continue
        status, summary, evidence = fn(ev, reports)
        results.append(CheckResult(spec, status, summary, [e for e in evidence if e]))  # type: ignore[arg-type]
    findings = [f for r in (reports or []) for f in r.findings]
    return results, findings, reports or []
