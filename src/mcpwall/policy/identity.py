"""Identity propagation upstream without token passthrough.

The client's own credential never leaves the gateway. Instead, an upstream that wants to know
who is calling gets a short-lived assertion signed with a secret it shares with the gateway:
a compact JWT (HS256) in ``X-Mcpwall-Principal`` whose claims are ``sub`` (principal), ``roles``,
``amr`` (auth methods), ``aud`` (the upstream's name in the gateway config), ``iat``/``exp``
and ``jti`` (the gateway's decision id, which ties upstream logs to the audit trail).

Any JWT library verifies it; :func:`verify` is the reference, for Python upstreams.
"""

from __future__ import annotations

import time
from typing import Any

import jwt

from mcpwall.gateway.call import Principal

ALGORITHM = "HS256"


def assertion(principal: Principal, *, secret: str, audience: str, ttl: float, decision_id: str,
              now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    methods = principal.attributes.get("auth_methods") or principal.auth_method
    claims: dict[str, Any] = {
        "iss": "mcpwall", "sub": principal.id, "aud": audience, "iat": issued, "exp": issued + int(ttl),
        "jti": decision_id, "roles": sorted(principal.roles), "amr": methods.split(","),
    }
    for key in ("tenant", "team"):
        if key in principal.attributes:
            claims[key] = principal.attributes[key]
    return jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"typ": "JWT"})


def verify(token: str, *, secret: str, audience: str, leeway: float = 5.0) -> dict[str, Any]:
    """Claims of a valid assertion for ``audience``; raises ``jwt.PyJWTError`` otherwise."""
    claims: dict[str, Any] = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=audience, issuer="mcpwall",
                                        leeway=leeway, options={"require": ["exp", "iat", "sub", "aud"]})
    return claims
