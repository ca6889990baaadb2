"""Redaction: turn arbitrary (client-supplied) values into audit-safe JSON.

Three rules, applied at any depth:

* values under keys that name a credential (``password``, ``apiKey``, ``Authorization``,
  ``client_secret``, ``session_id``, …) are removed — replaced by a marker, never hashed, because
  a hash of a short secret can be brute-forced;
* substrings that look like credentials wherever they appear (bearer tokens, JWTs, provider API
  keys, private-key blocks, passwords in URLs) are cut out of strings;
* keys the operator lists are hashed (keyed HMAC, so equal values correlate but cannot be
  guessed offline) or removed.

The output is always plain JSON (str keys, finite numbers, 64-bit ints), bounded in depth, in
size per string and in total nodes, so a hostile argument cannot bloat or break the audit trail.
Also used by the JSON log formatter to scrub log lines.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import math
import re
from collections.abc import Iterable
from typing import Any, Literal

REDACTED = "[REDACTED]"
TRUNCATED = "[TRUNCATED]"

# Words that, as a whole token of a key name, mark the value as a credential.
_CREDENTIAL_WORDS = frozenset({
    "password", "passwd", "pwd", "passphrase", "secret", "secrets", "token", "apikey",
    "authorization", "auth", "credential", "credentials", "cookie", "cookies", "bearer",
    "privatekey", "accesskey", "secretkey", "sessionid", "jwt", "otp", "mfa", "signature",
    "xapikey", "proxyauthorization", "setcookie", "sessiontoken", "refreshtoken", "accesstoken",
    "idtoken", "clientsecret", "apitoken", "authtoken", "mcpsessionid",
})
# Pairs of adjacent tokens that together name a credential ("api key", "private key").
_CREDENTIAL_PAIRS = frozenset({
    ("api", "key"), ("private", "key"), ("access", "key"), ("secret", "key"), ("session", "id"),
    ("client", "secret"), ("signing", "key"), ("encryption", "key"), ("master", "key"),
    ("session", "key"), ("shared", "key"),
})
# A credential word followed by one of these names something about the credential, not the
# credential itself ("auth_method", "token_type", "password_policy", "secret_name").
_DESCRIPTIVE = frozenset({
    "method", "methods", "type", "types", "scheme", "mode", "url", "uri", "endpoint", "provider", "server",
    "status", "required", "enabled", "name", "names", "id", "ids", "count", "length", "policy", "expiry",
    "expires", "expiresat", "ttl", "at", "hint", "format", "kind", "version", "source", "location", "path",
    "field", "header", "param", "scope", "scopes",
})
_TOKEN_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")

# Credential-shaped substrings. Conservative on purpose: a false positive costs an audit
# detail, a false negative leaks a secret into a log that is kept for months.
_SECRET_VALUE = re.compile(
    "|".join((
        r"(?i:bearer|basic)\s+[A-Za-z0-9\-._~+/]{8,}=*",
        r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",  # JWT / JWS
        r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key id
        r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",
        r"\bgithub_pat_[A-Za-z0-9_]{20,}\b",
        r"\bsk-[A-Za-z0-9_-]{16,}",  # OpenAI/Anthropic-style keys
        r"\bxox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
        r"\bAIza[0-9A-Za-z_-]{35}\b",  # Google API key
        r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
        r"\bglpat-[A-Za-z0-9_-]{20,}",  # GitLab
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    ))
)
# user:password@ in URLs: keep the user, drop the password.
# The scheme is bounded ({0,31}) so a long run of scheme characters cannot make matching quadratic,
# and so are the user and password parts.
_URL_PASSWORD = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]{0,31}://)(?P<user>[^/\s:@]{0,256}):[^/\s@]{1,512}@")

_INT64 = 2**63
# No pattern above matches fewer characters ("x://u:p@" is 8), so shorter strings skip the regexes.
_SHORTEST_SECRET = 8


@functools.lru_cache(maxsize=4096)
def is_credential_key(key: str) -> bool:
    tokens = [t.lower() for t in _TOKEN_SPLIT.split(key) if t]
    if not tokens:
        return False
    if "".join(tokens) in _CREDENTIAL_WORDS:
        return True
    if len(tokens) > 1 and tokens[-1] in _DESCRIPTIVE:
        return False
    if any(t in _CREDENTIAL_WORDS for t in tokens):
        return True
    return any(pair in _CREDENTIAL_PAIRS for pair in itertools.pairwise(tokens))


def scrub_text(text: str) -> str:
    """Cut credential-shaped substrings out of free text."""
    if len(text) < _SHORTEST_SECRET:
        return text
    text = _SECRET_VALUE.sub(REDACTED, text)
    if "://" not in text:  # the URL pattern needs it; a substring test is far cheaper than the regex
        return text
    return _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{REDACTED}@", text)


class Redactor:
    def __init__(self, *, fields: Iterable[str] = (), action: Literal["hash", "remove"] = "hash",
                 hmac_key: bytes = b"", max_string_bytes: int = 4096, max_depth: int = 16,
                 max_nodes: int = 2000) -> None:
        self.fields = frozenset(f.lower() for f in fields)
        self.action = action
        self._key = hmac_key or b"mcpwall-audit-redaction"
        self.max_string_bytes = max_string_bytes
        self.max_depth = max_depth
        self.max_nodes = max_nodes

    def digest(self, value: Any) -> str:
        data = repr(value).encode("utf-8", "replace") if not isinstance(value, str) else value.encode()
        return "hmac-sha256:" + hmac.new(self._key, data, hashlib.sha256).hexdigest()[:32]

    def redact(self, value: Any) -> Any:
        budget = [self.max_nodes]
        return self._walk(value, 0, budget)

    def _walk(self, value: Any, depth: int, budget: list[int]) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            return TRUNCATED
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value if -_INT64 <= value < _INT64 else str(value)
        if isinstance(value, float):
            return value if math.isfinite(value) else str(value)
        if isinstance(value, str):
            return self._string(value)
        if depth >= self.max_depth:
            return TRUNCATED
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                name = key if isinstance(key, str) else str(key)
                name = self._string(name)
                if is_credential_key(name):
                    out[name] = REDACTED
                elif name.lower() in self.fields:
                    if self.action == "hash":
                        out[name] = self.digest(item)
                    else:
                        out[name] = REDACTED
                else:
                    out[name] = self._walk(item, depth + 1, budget)
                if budget[0] < 0:
                    out["…"] = TRUNCATED
                    break
            return out
        if isinstance(value, list | tuple | set | frozenset):
            items: list[Any] = []
            for item in value:
                items.append(self._walk(item, depth + 1, budget))
                if budget[0] < 0:
                    items.append(TRUNCATED)
                    break
            return items
        return self._string(str(value))

    def _string(self, text: str) -> str:
        text = scrub_text(text)
        if len(text) * 4 <= self.max_string_bytes:  # UTF-8 needs at most 4 bytes a character
            return text
        raw = text.encode("utf-8", "replace")
        if len(raw) <= self.max_string_bytes:
            return text
        digest = hashlib.sha256(raw).hexdigest()[:16]
        head = raw[: self.max_string_bytes].decode("utf-8", "ignore")
        return f"{head}…[{len(raw)} bytes, sha256:{digest}]"
