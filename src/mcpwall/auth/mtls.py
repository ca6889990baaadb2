"""Mutual TLS: the client certificate, already verified against the configured CA during the
TLS handshake (:mod:`mcpwall.transports.tls`), mapped to a principal.

The identity is the first of the configured certificate fields that is present — by default a
URI SAN (SPIFFE IDs), then a DNS SAN, an e-mail SAN, the subject CN. ``principals`` maps an
identity (or ``sha256:<fingerprint>``) to a principal name and roles; with
``require_mapping`` an unmapped certificate is refused even though the CA signed it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from mcpwall.auth.base import AuthFailure, AuthMethod
from mcpwall.config.types import Strict
from mcpwall.gateway.call import Call, Principal

IdentityField = Literal["san_uri", "san_dns", "san_email", "subject_cn"]
_DEFAULT_IDENTITY: tuple[IdentityField, ...] = ("san_uri", "san_dns", "san_email", "subject_cn")


class CertPrincipal(Strict):
    id: str | None = Field(None, description="Principal name; default: the certificate identity.")
    roles: list[str] = Field(default_factory=list)


class MtlsSettings(Strict):
    identity: list[IdentityField] = Field(
        default_factory=lambda: list(_DEFAULT_IDENTITY), min_length=1,
        description="Certificate fields tried in order for the identity.")
    principals: dict[str, CertPrincipal] = Field(
        default_factory=dict, description="Identity (or sha256:<hex fingerprint>) → principal and roles.")
    require_mapping: bool = Field(False, description="Refuse certificates whose identity is not in `principals`.")
    default_roles: list[str] = Field(default_factory=list, description="Roles for unmapped certificates.")


class MtlsMethod(AuthMethod):
    name: ClassVar[str] = "mtls"

    def __init__(self, settings: MtlsSettings) -> None:
        self.settings = settings

    async def authenticate(self, call: Call) -> Principal | None:
        tls = call.transport_info.get("tls")
        peer = tls.get("peer") if isinstance(tls, dict) else None
        if not isinstance(peer, dict):
            return None
        identity = self._identity(peer)
        fingerprint = str(peer.get("fingerprint_sha256", ""))
        mapping = self.settings.principals.get(f"sha256:{fingerprint}") if fingerprint else None
        if mapping is None and identity is not None:
            mapping = self.settings.principals.get(identity)
        if identity is None and mapping is None:
            raise AuthFailure("certificate_without_identity", method=self.name, hint=fingerprint[:16])
        if mapping is None and self.settings.require_mapping:
            raise AuthFailure("unmapped_certificate", method=self.name, hint=fingerprint[:16])
        principal_id = (mapping.id if mapping and mapping.id else identity) or f"sha256:{fingerprint}"
        roles = mapping.roles if mapping is not None else self.settings.default_roles
        attributes = {"cert_fingerprint": fingerprint}
        if isinstance(peer.get("subject"), str):
            attributes["cert_subject"] = peer["subject"]
        if isinstance(peer.get("issuer"), str):
            attributes["cert_issuer"] = peer["issuer"]
        return Principal(id=principal_id, roles=frozenset(roles), auth_method=self.name, attributes=attributes)

    def _identity(self, peer: dict[str, Any]) -> str | None:
        for field in self.settings.identity:
            value = peer.get(field)
            if isinstance(value, list):
                value = next((v for v in value if isinstance(v, str) and v), None)
            if isinstance(value, str) and value:
                return value
        return None
