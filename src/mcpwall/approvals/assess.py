"""Does this call need a person? Rules, risk score, and the facts an approver sees.

Pure functions over a :class:`~mcpwall.gateway.call.Call`: no I/O, no state. The risk score
(0-100) adds up what is known about the call — the tool's labels, the taint the session
carries, findings earlier guards recorded on this call, and a few argument checks (destructive
shell or SQL, paths that escape or touch credentials, known exfiltration endpoints). It is
always computed and shown to approvers; it decides only when ``risk_threshold`` is set.

Arguments are redacted before anyone sees them: values under credential-looking keys and
credential-shaped strings are masked. Digests are taken over the unredacted arguments, so a
cached approval covers exactly the call that was approved.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import orjson

from mcpwall.approvals.settings import ApprovalRule, ApprovalSettings, UserConfirmation

if TYPE_CHECKING:
    from mcpwall.gateway.call import Call

MASK = "[redacted]"
_MAX_STRING = 16_384  # characters of one argument value kept for approvers
_SCAN_BUDGET = 262_144  # characters of argument text the risk checks look at

_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?$|secret|token|api[_-]?key|apikey|authorization|^auth$|credential|private[_-]?key"
    r"|cookie|session[_-]?id|bearer|access[_-]?key|signature|^pin$|^otp$|^cvv$|^ssn$|card[_-]?number",
    re.IGNORECASE)
_SECRET_VALUE = re.compile(
    r"(?:AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"  # OpenAI / Anthropic style
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWT
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"
    r"|(?<=://)[^/\s:@]+:[^/\s@]+(?=@)")  # user:password@ in URLs

# (weight, why, pattern) — argument checks that raise the risk score.
_ARGUMENT_CHECKS: tuple[tuple[int, str, re.Pattern[str]], ...] = (
    (40, "destructive shell command in the arguments", re.compile(
        r"\brm\s+-[a-zA-Z]*[rR][a-zA-Z]*\b|\bmkfs\b|\bdd\s+if=|:\(\)\s*\{|\bchmod\s+(?:-R\s+)?777"
        r"|\b(?:curl|wget)\b[^|\n]*\|\s*(?:ba|z)?sh\b|\bshutdown\b|\breboot\b", re.IGNORECASE)),
    (35, "destructive SQL in the arguments", re.compile(
        r"\bdrop\s+(?:table|database|schema|user)\b|\btruncate\s+(?:table\s+)?\w+|\bdelete\s+from\s+[\w.\"`]+\s*(?:;|$)"
        r"|\bgrant\s+all\b|\balter\s+user\b", re.IGNORECASE)),
    (25, "a path that escapes its directory or touches credentials", re.compile(
        r"(?:^|[/\\])\.\.(?:[/\\]|$)|^/etc/(?:shadow|passwd|sudoers)|~?/?\.ssh/|id_(?:rsa|ed25519)|\.aws/credentials"
        r"|(?:^|/)\.env(?:$|\.)|\.kube/config|\.git-credentials|\.npmrc|\.netrc")),
    (30, "a known data-collection endpoint", re.compile(
        r"https?://[^/\s]*(?:ngrok|pastebin|requestbin|webhook\.site|pipedream|burpcollaborator|interact\.sh"
        r"|oast\.|canarytokens|transfer\.sh)", re.IGNORECASE)),
    (15, "a URL with a raw IP address", re.compile(r"https?://(?:\d{1,3}\.){3}\d{1,3}|https?://\[[0-9a-f:]+\]",
                                                   re.IGNORECASE)),
)
_LABEL_WEIGHTS = {"destructive": 40, "admin": 40, "egress": 20, "write": 15, "secret": 15}
_TAINT_WEIGHTS = {"untrusted": 15, "private": 10, "secret": 15}
_FINDING_WEIGHT = 25
_CREDENTIAL_WEIGHT = 20


@dataclass(frozen=True, slots=True)
class Risk:
    score: int
    reasons: tuple[str, ...] = ()

    @property
    def level(self) -> str:
        if self.score >= 75:
            return "critical"
        if self.score >= 50:
            return "high"
        if self.score >= 25:
            return "medium"
        return "low"

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "level": self.level, "reasons": list(self.reasons)}


NO_RISK = Risk(0)


@dataclass(slots=True)
class Assessment:
    """The verdict of the assessment, and everything an approval request needs from it."""

    needed: bool
    risk: Risk
    labels: frozenset[str] = frozenset()
    reasons: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    rule: str | None = None
    timeout: float = 60.0
    approvers: int = 1
    user_confirmation: UserConfirmation = "off"

    def merge(self, other: Assessment) -> Assessment:
        """Both assessments in one request: the stricter of each requirement."""
        if not self.needed:
            return replace(other, risk=self.risk if self.risk.score > other.risk.score else other.risk,
                           labels=self.labels | other.labels)
        if not other.needed:
            return self
        strict = {"off": 0, "either": 1, "both": 2}
        return Assessment(
            needed=True, risk=self.risk if self.risk.score >= other.risk.score else other.risk,
            labels=self.labels | other.labels,
            reasons=_unique([*self.reasons, *other.reasons]), sources=_unique([*self.sources, *other.sources]),
            rule=self.rule or other.rule, timeout=min(self.timeout, other.timeout),
            approvers=max(self.approvers, other.approvers),
            user_confirmation=max(self.user_confirmation, other.user_confirmation, key=strict.__getitem__))


def assess(settings: ApprovalSettings, call: Call, labels: frozenset[str]) -> Assessment:
    """Apply the rules (first match decides), then the risk threshold. The risk score is only
    computed when it matters (a held call, or a threshold to compare with): most calls skip it."""
    base = Assessment(needed=False, risk=NO_RISK, labels=labels, timeout=settings.timeout,
                      approvers=settings.approvers, user_confirmation=settings.user_confirmation)
    rule = first_rule(settings.rules, call.exposed_name, call.target, labels, call.principal.id,
                      call.principal.roles)
    if rule is not None:
        if rule.action == "allow":
            return base
        why = rule.reason or _rule_reason(rule, labels)
        return replace(base, needed=True, risk=score(call, labels), reasons=[why], sources=["approval"],
                       rule=rule.label, timeout=rule.timeout or settings.timeout,
                       approvers=rule.approvers or settings.approvers,
                       user_confirmation=rule.user_confirmation or settings.user_confirmation)
    if settings.risk_threshold is None:
        return base
    risk = score(call, labels)
    base.risk = risk
    if risk.score >= settings.risk_threshold:
        why = f"risk score {risk.score} reaches the threshold {settings.risk_threshold}"
        return replace(base, needed=True, reasons=[why], sources=["approval"], rule="risk_threshold")
    return base


def first_rule(rules: Iterable[ApprovalRule], exposed: str | None, target: str | None, labels: Iterable[str],
               principal: str, roles: Iterable[str]) -> ApprovalRule | None:
    names = [n for n in (exposed, target) if n]
    label_set = set(labels)
    role_set = set(roles)
    for rule in rules:
        if not any(fnmatchcase(n, g) for g in rule.tools for n in names):
            continue
        if rule.capabilities and not label_set & set(rule.capabilities):
            continue
        if rule.principals and not any(fnmatchcase(principal, g) for g in rule.principals):
            continue
        if rule.roles and not role_set & set(rule.roles):
            continue
        return rule
    return None


def required_approvers(settings: ApprovalSettings, *, tool: str, target: str | None, labels: Iterable[str],
                       principal: str, roles: Iterable[str], risk_score: int) -> int:
    """How many approvers today's settings ask for this call (0: none). Used to re-evaluate a
    request at decision time and a cached approval at reuse time."""
    rule = first_rule(settings.rules, tool, target, labels, principal, roles)
    if rule is not None:
        return 0 if rule.action == "allow" else (rule.approvers or settings.approvers)
    if settings.risk_threshold is not None and risk_score >= settings.risk_threshold:
        return settings.approvers
    return 0


def score(call: Call, labels: frozenset[str]) -> Risk:
    total = 0
    reasons: list[str] = []
    for label, weight in _LABEL_WEIGHTS.items():
        if label in labels:
            total += weight
            reasons.append(f"the tool is labelled {label}")
    for label, weight in _TAINT_WEIGHTS.items():
        if label in call.labels:
            total += weight
            reasons.append(f"the session carries {label} data")
    flagged = sorted({r.guard for r in call.records
                      if r.findings and r.guard not in ("approval", "flow")})
    for guard in flagged[:2]:
        total += _FINDING_WEIGHT
        reasons.append(f"the {guard} guard reported findings on this call")
    if _has_credential_key(call.arguments):
        total += _CREDENTIAL_WEIGHT
        reasons.append("the arguments carry a credential")
    text = "\n".join(_strings(call.arguments, _SCAN_BUDGET))
    for weight, why, pattern in _ARGUMENT_CHECKS:
        if pattern.search(text):
            total += weight
            reasons.append(why)
    return Risk(min(total, 100), tuple(reasons))


def redact(value: Any, *, key: str = "") -> Any:
    """A copy of ``value`` safe to store and show: credential keys and credential-shaped strings
    masked, very long strings shortened."""
    if key and _SECRET_KEY.search(key) and value not in (None, "", [], {}):
        return MASK
    if isinstance(value, Mapping):
        return {str(k): redact(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        masked = _SECRET_VALUE.sub(MASK, value)
        if len(masked) > _MAX_STRING:
            masked = f"{masked[:_MAX_STRING]}…[{len(masked) - _MAX_STRING} more characters]"
        return masked
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return str(value)  # keep the record storable as JSON
    return value


def digest(value: Any) -> str:
    """SHA-256 over canonical JSON (sorted keys)."""
    try:
        blob = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        blob = repr(value).encode()
    return hashlib.sha256(blob).hexdigest()


def definition_digest(definition: Mapping[str, Any] | None) -> str:
    if not definition:
        return ""
    return digest({k: definition.get(k) for k in ("name", "description", "inputSchema", "outputSchema",
                                                  "annotations")})


def cache_key(principal: str, tool: str, arguments_digest: str) -> str:
    return hashlib.sha256(f"{principal}\x00{tool}\x00{arguments_digest}".encode()).hexdigest()


def _rule_reason(rule: ApprovalRule, labels: frozenset[str]) -> str:
    if rule.capabilities:
        hit = sorted(labels & set(rule.capabilities))
        return f"rule {rule.label!r}: {', '.join(hit)} tools need approval"
    return f"rule {rule.label!r}: this tool needs approval"


def _has_credential_key(value: Any, depth: int = 0) -> bool:
    if depth > 32:
        return False
    if isinstance(value, Mapping):
        return any((_SECRET_KEY.search(str(k)) and v not in (None, "", [], {})) or _has_credential_key(v, depth + 1)
                   for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_credential_key(v, depth + 1) for v in value)
    if isinstance(value, str):
        return bool(_SECRET_VALUE.search(value[:_MAX_STRING]))
    return False


def _strings(value: Any, budget: int) -> list[str]:
    out: list[str] = []
    stack = [value]
    while stack and budget > 0:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node[:budget])
            budget -= len(node)
        elif isinstance(node, Mapping):
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return out


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
