"""Text rules the scanner applies: secrets in responses, poisoning and hidden Unicode in tool text.

The scanner talks to a :class:`TextScanner`, never to a pattern library directly. The default is
the shared content-security engine in :mod:`mcpwall.detect` when that package provides a usable
engine; otherwise it is the small local rule set below, which is deliberately compact: it
exists so the scanner works on its own, not to compete with the gateway's detectors.
``set_text_scanner`` lets the gateway (or a test) install another implementation.

Everything here is pure: strings in, matches out. Matched secrets are redacted before they
leave this module so that no report or log ever carries a credential.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal, Protocol

from mcpwall.scan.model import Severity

Category = Literal["secret", "poisoning", "hidden_unicode"]


@dataclass(frozen=True, slots=True)
class TextMatch:
    rule: str
    category: Category
    severity: Severity
    excerpt: str  # safe to print: secrets are redacted, control characters escaped


class TextScanner(Protocol):
    def secrets(self, text: str) -> list[TextMatch]: ...

    def poisoning(self, text: str) -> list[TextMatch]: ...


# --- secrets -------------------------------------------------------------------------------

Rule = tuple[str, Severity, re.Pattern[str]]


def _rules(specs: tuple[tuple[str, Severity, str], ...], flags: int = 0) -> tuple[Rule, ...]:
    return tuple((name, severity, re.compile(rx, flags)) for name, severity, rx in specs)


_SECRET_RULES: tuple[Rule, ...] = _rules((
        ("private-key", "critical",
         r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----\s*[A-Za-z0-9+/=\s]{64,}"),
        ("aws-access-key-id", "critical", r"\b(?:AKIA|ASIA)[A-Z2-7]{16}\b"),
        ("aws-secret-access-key", "critical",
         r"(?i)aws_?secret_?access_?key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+=]{40}\b"),
        ("github-token", "critical", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{40,255})\b"),
        ("gitlab-token", "critical", r"\bglpat-[A-Za-z0-9_-]{20,}\b"),
        ("slack-token", "critical", r"\bxox[abposr]-\d{6,}-[A-Za-z0-9-]{10,}\b"),
        ("stripe-live-key", "critical", r"\b[rs]k_live_[0-9A-Za-z]{20,}\b"),
        ("anthropic-key", "critical", r"\bsk-ant-[A-Za-z0-9_-]{20,}\b"),
        ("openai-key", "critical", r"\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}\b"),
        ("google-api-key", "high", r"\bAIza[0-9A-Za-z_-]{35}\b"),
        ("npm-token", "critical", r"\bnpm_[A-Za-z0-9]{36}\b"),
        ("jwt", "high", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"),
        ("url-credentials", "high",
         r"\b(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|redis|rediss|amqps?|mssql|ftp)://[^:@/\s\"']+:[^@/\s\"']{3,}@"),
        ("assigned-secret", "medium",
         r"(?i)\b(?:api[_-]?key|secret[_-]?key|client[_-]?secret|access[_-]?token|auth[_-]?token|password|passwd)"
         r"[\"']?\s*[:=]\s*[\"']?(?=[A-Za-z0-9_\-/+=.]*\d)(?=[A-Za-z0-9_\-/+=.]*[A-Za-z])[A-Za-z0-9_\-/+=.]{12,}"),
))
# Values that are obviously placeholders are not credentials.
_PLACEHOLDER = re.compile(r"(?i)x{4,}|example|changeme|placeholder|your[_-]|<[^>]+>|\$\{|\*{4,}|redacted|dummy")


def _low_variety(value: str) -> bool:
    # Real keys are random; "AIzaaaaa…" and "111111…" are test fixtures and documentation.
    tail = value[-24:]
    return len(set(tail)) < 8


def redact(value: str) -> str:
    """Show only enough of a secret to recognise it: a short prefix and the length."""
    value = value.strip()
    keep = 4 if len(value) > 12 else 0
    return f"{value[:keep]}…[{len(value)} chars]"


def find_secrets(text: str) -> list[TextMatch]:
    out: list[TextMatch] = []
    for name, severity, pattern in _SECRET_RULES:
        for match in pattern.finditer(text):
            value = match.group(0)
            if _PLACEHOLDER.search(value) or _low_variety(value):
                continue
            out.append(TextMatch(name, "secret", severity, redact(value)))
            break  # one match per rule is enough to report; never echo them all
    return out


# --- hidden Unicode ------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def hidden_characters(text: str) -> list[str]:
    """Names of invisible or direction-changing characters in ``text`` (deduplicated, ordered)."""
    seen: dict[str, None] = {}
    for ch in text:
        code = ord(ch)
        if 0xE0000 <= code <= 0xE007F:
            seen["TAG CHARACTER"] = None
        elif unicodedata.category(ch) == "Cf" or 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF:
            seen[unicodedata.name(ch, f"U+{code:04X}")] = None
        elif code < 0x20 and ch not in "\t\n\r" and ch != "\x1b":
            seen[f"CONTROL U+{code:04X}"] = None
    if _ANSI.search(text):
        seen["ANSI ESCAPE SEQUENCE"] = None
    return list(seen)


def visible(text: str, limit: int = 160) -> str:
    """``text`` with control and format characters escaped, cut to ``limit`` characters."""
    out = []
    for ch in text:
        if ch in "\n\t":
            out.append(" ")
        elif unicodedata.category(ch) in ("Cf", "Cc") or 0xE0000 <= ord(ch) <= 0xE007F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    flat = re.sub(r"\s+", " ", "".join(out)).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --- poisoning -----------------------------------------------------------------------------

_POISON_RULES: tuple[Rule, ...] = _rules((
        ("instruction-tag", "high",
         r"<\s*/?\s*(?:important|system|instructions?|secret|hidden|admin|override|critical)\b[^>]*>"
         r"|\[\s*(?:system|important|admin)(?:\s+(?:override|note|message|instructions?))?\s*\]"),
        ("override-instructions", "high",
         r"\b(?:ignore|disregard|forget|override)\b.{0,30}\b(?:previous|prior|above|earlier|all|other|system)\b"
         r".{0,20}\b(?:instructions?|rules|prompts?|guidelines|directives)\b"),
        ("conceal-from-user", "high",
         r"\b(?:do\s*n[o']t|never|without)\b.{0,25}\b(?:tell(?:ing)?|mention(?:ing)?|inform(?:ing)?|reveal(?:ing)?|"
         r"notify(?:ing)?|show(?:ing)?|alert(?:ing)?)\b.{0,25}\b(?:the\s+)?user\b"),
        ("sensitive-file", "high",
         r"(?:~|\$HOME|%USERPROFILE%)?/?\.(?:ssh|aws|gnupg|kube|docker)/|\bid_(?:rsa|ed25519|ecdsa)\b|"
         r"/etc/(?:passwd|shadow)\b|\bmcp\.json\b|claude_desktop_config|\.env\b|\.npmrc\b|\.netrc\b"),
        ("exfiltration", "high",
         r"\b(?:send|upload|post|forward|transmit|exfiltrate|leak|copy)\b.{0,60}\b(?:to|into)\b.{0,40}"
         r"(?:https?://|webhook|attacker|remote server|external server|this url|the following (?:url|address|email))"),
        ("hidden-parameter", "medium",
         r"\b(?:pass|put|include|add|append|insert)\b.{0,50}\b(?:as|in|into)\b.{0,15}"
         r"(?:['\"`][a-z_]+['\"`]\s*)?(?:parameter|param|argument|field)\b.{0,40}"
         r"\b(?:contents?|secret|key|token|password|credential|conversation|history|file)\b"),
        ("cross-tool-instruction", "medium",
         r"\b(?:before|after|instead of|rather than|whenever you|when(?:ever)? (?:the user|you) (?:call|use|run))\b"
         r".{0,40}\b(?:using|calling|call|use|run|invoking)\b.{0,30}\b(?:any other|another|other|the)?\s*"
         r"(?:tools?|functions?|servers?)\b"),
        ("role-hijack", "medium",
         r"\byou are now\b|\bact as (?:an? )?(?:system|administrator|developer mode)\b|\bnew instructions?\s*:"),
        ("html-comment", "medium", r"<!--.*?-->"),
        ("coercion", "low", r"\b(?:very|extremely|critically) important\b|\byou must always\b|\bthis is mandatory\b"),
        ("encoded-blob", "low", r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{120,}={0,2}(?![A-Za-z0-9+/])"),
), re.IGNORECASE | re.DOTALL)


def find_poisoning(text: str) -> list[TextMatch]:
    out: list[TextMatch] = []
    for name, severity, pattern in _POISON_RULES:
        match = pattern.search(text)
        if match:
            out.append(TextMatch(name, "poisoning", severity, visible(match.group(0), 100)))
    hidden = hidden_characters(text)
    if hidden:
        out.append(TextMatch("hidden-unicode", "hidden_unicode", "high", ", ".join(hidden[:5])))
    return out


class LocalRules:
    """The built-in rule set; used when the shared pattern engine is not available."""

    name = "local"

    def secrets(self, text: str) -> list[TextMatch]:
        return find_secrets(text)

    def poisoning(self, text: str) -> list[TextMatch]:
        return find_poisoning(text)


_installed: TextScanner | None = None


def set_text_scanner(scanner: TextScanner | None) -> None:
    """Install the scanner every scan uses (``None`` restores the default)."""
    global _installed
    _installed = scanner


def text_scanner() -> TextScanner:
    if _installed is not None:
        return _installed
    try:
        from mcpwall.scan.detect_adapter import engine_scanner
    except ImportError:
        return LocalRules()
    scanner = engine_scanner()
    return scanner if scanner is not None else LocalRules()
