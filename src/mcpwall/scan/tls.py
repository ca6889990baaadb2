"""TLS observations: negotiated version, certificate validity and expiry, old-protocol refusal.

Uses plain ``ssl`` sockets rather than the HTTP client so the scanner sees the handshake itself.
Two handshakes at most: one with normal verification (what a careful client sees), and one
limited to TLS 1.0/1.1 to learn whether the server still accepts them. If this machine's TLS
library cannot even offer the old versions, that second answer is "not tested", never a guess.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import warnings
from dataclasses import dataclass

from cryptography import x509


@dataclass(slots=True)
class TlsInfo:
    version: str | None = None  # e.g. "TLSv1.3"
    verified: bool = False
    verify_error: str | None = None
    not_after: dt.datetime | None = None
    subject: str | None = None
    legacy_accepted: bool | None = None  # None: could not be tested from here
    error: str | None = None

    @property
    def days_left(self) -> float | None:
        if self.not_after is None:
            return None
        return (self.not_after - dt.datetime.now(dt.UTC)).total_seconds() / 86400


def client_context(cafile: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def _handshake(host: str, port: int, context: ssl.SSLContext, timeout: float,
                     server_name: str | None) -> ssl.SSLObject:
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=context, server_hostname=server_name), timeout)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        if not isinstance(ssl_object, ssl.SSLObject):
            raise ssl.SSLError("no TLS session")
        return ssl_object
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), timeout)


def _describe(cert_der: bytes | None, info: TlsInfo) -> None:
    if not cert_der:
        return
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError:
        return
    info.not_after = cert.not_valid_after_utc
    info.subject = cert.subject.rfc4514_string()


async def probe_tls(host: str, port: int, *, cafile: str | None = None, timeout: float = 10.0) -> TlsInfo:
    info = TlsInfo()
    server_name = None if _is_ip(host) else host
    try:
        obj = await _handshake(host, port, client_context(cafile), timeout, server_name or host)
        info.verified = True
        info.version = obj.version()
        _describe(obj.getpeercert(binary_form=True), info)
    except ssl.SSLCertVerificationError as exc:
        info.verify_error = exc.verify_message or "certificate verification failed"
        insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        try:
            obj = await _handshake(host, port, insecure, timeout, server_name)
            info.version = obj.version()
            _describe(obj.getpeercert(binary_form=True), info)
        except (OSError, TimeoutError, ssl.SSLError) as again:
            info.error = type(again).__name__
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        info.error = _reason(exc)
        return info
    info.legacy_accepted = await _legacy_accepted(host, port, timeout, server_name)
    return info


async def _legacy_accepted(host: str, port: int, timeout: float, server_name: str | None) -> bool | None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # offering them is the point of this probe
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        return None
    try:
        await _handshake(host, port, context, timeout, server_name)
        return True
    except ssl.SSLError as exc:
        # Our own library refusing to offer the old versions says nothing about the server.
        if "NO_PROTOCOLS_AVAILABLE" in (exc.reason or "") or "no protocols available" in str(exc).lower():
            return None
        return False
    except (OSError, TimeoutError):
        return False


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or type(exc).__name__})"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return type(exc).__name__


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False
