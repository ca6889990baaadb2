"""The one signature scheme of every webhook mcpwall sends (approvals, alerts).

Each delivery carries ``X-Mcpwall-Timestamp`` (Unix seconds) and ``X-Mcpwall-Signature``:
``sha256=`` + hex HMAC-SHA256(secret, timestamp + "." + body). Receivers recompute it, compare
in constant time and reject stale timestamps, which defeats replays; :func:`verify_signature`
is that check, for receivers written in Python and for the tests.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Mcpwall-Signature"
TIMESTAMP_HEADER = "X-Mcpwall-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str, *,
                     max_age: float = 300.0, now: float | None = None) -> bool:
    """True when ``signature`` is valid for ``body`` and ``timestamp`` is within ``max_age`` seconds."""
    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except ValueError:
        return False
    return age <= max_age and hmac.compare_digest(sign(secret, timestamp, body), signature)
