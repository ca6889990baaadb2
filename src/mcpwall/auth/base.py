"""What every authentication method shares: its answer types and small setting types.

A method returns ``None`` when the request carries no credential of its kind, a
:class:`Principal` when it verified one, or raises :class:`AuthFailure` when the credential is
present but not acceptable. Failures carry a short machine reason for the audit trail
(``expired``, ``bad_signature``…) and what the client may be told — never the credential.
"""

from __future__ import annotations

import ipaddress
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from mcpwall.gateway.call import Call, Principal


class AuthFailure(Exception):
    """A credential was presented and refused.

    ``reason`` is a short code for audit and metrics. ``status`` is the HTTP status (401, or
    403 for ``insufficient_scope``). ``error`` is the RFC 6750 error code for the challenge, and
    ``scopes`` the scopes a step-up needs. The message shown to clients is fixed per status.
    """

    def __init__(self, reason: str, *, method: str, status: int = 401, error: str = "invalid_token",
                 scopes: tuple[str, ...] = (), hint: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.method = method
        self.status = status
        self.error = error
        self.scopes = scopes
        self.hint = hint  # non-secret detail for the audit trail (a key id, an issuer)


class AuthMethod(ABC):
    name: ClassVar[str]

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open stores, fetch keys. Called once before traffic."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    @abstractmethod
    async def authenticate(self, call: Call) -> Principal | None:
        """The verified principal, None when no credential of this kind is present, or raise
        :class:`AuthFailure`."""


def bearer_token(call: Call) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if any (scheme case-insensitive)."""
    value = call.headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def claim_path(claims: dict[str, Any], path: str) -> Any:
    """Follow a dotted path (``realm_access.roles``) through nested claims; None if absent.
    A claim whose own name contains dots (``https://example.com/roles``) is tried whole first."""
    if path in claims:
        return claims[path]
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (IPv4, IPv6, IPv4-mapped IPv6)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
