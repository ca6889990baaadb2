"""TLS termination for the MCP port: the server context, and the client certificate handed to
the guards.

:func:`build_server_context` makes the ``ssl.SSLContext`` from ``listen.tls``: TLS 1.2 at the
least (1.3 if configured), ECDHE key exchange with AEAD ciphers only, no compression, no
renegotiation, and — when ``client_ca`` is set — client certificates verified against that CA
during the handshake (a wrong certificate never reaches the application).

uvicorn does not put the peer certificate in the ASGI scope, so :func:`peer_cert_protocol`
returns a subclass of uvicorn's HTTP protocol that reads the verified certificate once per
connection and adds it to every request's scope as ``scope["extensions"]["tls"]`` (the ASGI TLS
extension's keys, plus a parsed ``peer`` mapping). :func:`tls_info` reads it back for
``Call.transport_info["tls"]``. :func:`uvicorn_kwargs` bundles both for ``uvicorn.Config``.
"""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from mcpwall.config.model import TlsConfig

# ECDHE only (forward secrecy), AEAD only. TLS 1.3 suites are always AEAD and set by OpenSSL.
DEFAULT_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!RC4:!3DES"
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_CLIENT_CERT = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def build_server_context(tls: TlsConfig, base_dir: Path | None = None) -> ssl.SSLContext:
    """The server context for ``listen.tls``. Raises ``OSError``/``ssl.SSLError`` on bad files."""
    def resolve(name: str) -> str:
        path = Path(name)
        return str(path if path.is_absolute() or base_dir is None else base_dir / path)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[tls.min_version]
    ctx.set_ciphers(tls.ciphers or DEFAULT_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_SINGLE_ECDH_USE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    ctx.load_cert_chain(resolve(tls.cert), resolve(tls.key), password=tls.key_password)
    mode = tls.client_cert or ("required" if tls.client_ca else "none")
    if mode != "none":
        if not tls.client_ca:
            raise ValueError("client certificates need listen.tls.client_ca")
        ctx.load_verify_locations(cafile=resolve(tls.client_ca))
        ctx.verify_mode = _CLIENT_CERT[mode]
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def describe_certificate(der: bytes) -> dict[str, Any]:
    """The facts about a certificate that guards map to a principal."""
    cert = x509.load_der_x509_certificate(der)
    info: dict[str, Any] = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "fingerprint_sha256": hashlib.sha256(der).hexdigest(),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "subject_cn": None, "san_dns": [], "san_uri": [], "san_email": [], "san_ip": [],
    }
    common_names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if common_names:
        info["subject_cn"] = str(common_names[0].value)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return info
    info["san_dns"] = san.get_values_for_type(x509.DNSName)
    info["san_uri"] = san.get_values_for_type(x509.UniformResourceIdentifier)
    info["san_email"] = san.get_values_for_type(x509.RFC822Name)
    info["san_ip"] = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return info


def connection_tls(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> dict[str, Any] | None:
    """The ASGI TLS extension mapping for one connection, with the parsed ``peer`` certificate
    (None when the client sent none). The certificate was verified in the handshake."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    peer = describe_certificate(der) if der else None
    cipher = ssl_object.cipher()
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": peer["subject"] if peer else None,
        "client_cert_error": None,
        "tls_version": {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}.get(ssl_object.version() or ""),
        "cipher_suite": None,
        "version": ssl_object.version(),
        "cipher": cipher[0] if cipher else None,
        "peer": peer,
    }


def peer_cert_protocol(base: str = "auto") -> type[Any]:
    """A uvicorn HTTP protocol class that adds ``scope["extensions"]["tls"]`` to every request.

    ``base`` is ``"h11"``, ``"httptools"`` or ``"auto"`` (httptools when installed, like uvicorn).
    """
    if base == "auto":
        try:
            import httptools  # noqa: F401
            base = "httptools"
        except ImportError:
            base = "h11"
    parent: type[Any]
    if base == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as parent
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as parent

    class PeerCertProtocol(parent):  # type: ignore[misc]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            info = connection_tls(transport.get_extra_info("ssl_object"))
            if info is not None:
                app: Any = self.app  # type: ignore[has-type]
                self.app = _with_tls(app, info)

    PeerCertProtocol.__name__ = PeerCertProtocol.__qualname__ = f"PeerCert{parent.__name__}"
    return PeerCertProtocol


def _with_tls(app: Any, info: dict[str, Any]) -> Any:
    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") in ("http", "websocket"):
            extensions = dict(scope.get("extensions") or {})
            extensions["tls"] = info
            scope["extensions"] = extensions
        await app(scope, receive, send)
    return wrapped


def tls_info(scope: Any) -> dict[str, Any] | None:
    """What :func:`peer_cert_protocol` put in the scope, for ``Call.transport_info["tls"]``."""
    extensions = scope.get("extensions") if isinstance(scope, dict) else None
    info = extensions.get("tls") if isinstance(extensions, dict) else None
    return info if isinstance(info, dict) else None


def uvicorn_kwargs(tls: TlsConfig | None, base_dir: Path | None = None, *, http: str = "auto"
                   ) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config``: the SSL context and the peer-certificate protocol.
    Empty when TLS is not configured. Builds the context now, so bad files fail at startup."""
    if tls is None:
        return {}
    context = build_server_context(tls, base_dir)
    return {"ssl_context_factory": lambda _config, _default: context, "http": peer_cert_protocol(http)}
