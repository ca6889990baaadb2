"""Real TLS through uvicorn: the server context, client-certificate verification, and the
peer certificate reaching the ASGI scope (and from there a principal)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
import uvicorn

from mcpwall.auth.mtls import MtlsMethod, MtlsSettings
from mcpwall.config.model import TlsConfig
from mcpwall.gateway.call import ANONYMOUS, Call
from mcpwall.transports.tls import build_server_context, describe_certificate, tls_info, uvicorn_kwargs
from support.pki import Issued, issue, make_ca


async def echo_tls(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    info = tls_info(scope)
    principal = None
    if info is not None and info.get("peer"):
        call = Call(message={}, principal=ANONYMOUS, era="modern", protocol_version="2026-07-28",
                    transport="http", transport_info={"tls": info})
        found = await MtlsMethod(MtlsSettings()).authenticate(call)
        principal = found.id if found else None
    body = orjson.dumps({"scheme": scope["scheme"], "tls": info is not None,
                         "version": info and info["version"], "peer": info and info["peer"],
                         "principal": principal})
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


class Pki:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = make_ca()
        self.rogue_ca = make_ca("rogue CA")
        self.server = issue(self.ca, "localhost", server=True, dns=("localhost",), ips=("127.0.0.1",))
        self.client = issue(self.ca, "billing", uris=("spiffe://acme/billing",), dns=("billing.acme",))
        self.rogue = issue(self.rogue_ca, "billing", uris=("spiffe://acme/billing",))
        self.expired = issue(self.ca, "old", expired=True)
        (directory / "ca.pem").write_bytes(self.ca.cert_pem())
        self.server.write(directory, "server")

    def tls(self, **extra: Any) -> TlsConfig:
        return TlsConfig.model_validate({"cert": "server.crt", "key": "server.key", "client_ca": "ca.pem", **extra})

    def client_context(self, cert: Issued | None, *, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.dir / "ca.pem"))
        if max_version is not None:
            ctx.maximum_version = max_version
        if cert is not None:
            name = f"client-{id(cert)}"
            cert_file, key_file = cert.write(self.dir, name)
            ctx.load_cert_chain(str(cert_file), str(key_file))
        return ctx


async def serve(tls: TlsConfig, base: Path, http: str = "h11") -> AsyncIterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(echo_tls, log_level="warning", lifespan="on", server_header=False,
                            **uvicorn_kwargs(tls, base, http=http))
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
                await anyio.sleep(0.01)
        try:
            yield f"https://127.0.0.1:{port}/"
        finally:
            server.should_exit = True


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest.fixture(params=["h11", "httptools"])
async def url(request: pytest.FixtureRequest, pki: Pki) -> AsyncIterator[str]:
    async for address in serve(pki.tls(), pki.dir, request.param):
        yield address


async def get(url: str, ctx: ssl.SSLContext) -> dict[str, Any]:
    async with httpx.AsyncClient(verify=ctx, timeout=10) as client:
        response = await client.get(url)
        result: dict[str, Any] = response.json()
        return result


@pytest.mark.anyio
async def test_verified_client_certificate_reaches_the_scope_and_maps_to_a_principal(pki: Pki, url: str) -> None:
    seen = await get(url, pki.client_context(pki.client))
    assert seen["scheme"] == "https" and seen["tls"] is True
    assert seen["version"] in ("TLSv1.2", "TLSv1.3")
    peer = seen["peer"]
    assert peer["subject_cn"] == "billing" and peer["san_uri"] == ["spiffe://acme/billing"]
    assert peer["fingerprint_sha256"] == describe_certificate(pki.client.der())["fingerprint_sha256"]
    assert seen["principal"] == "spiffe://acme/billing"


@pytest.mark.anyio
async def test_certificate_from_another_ca_is_refused_in_the_handshake(pki: Pki, url: str) -> None:
    with pytest.raises((httpx.TransportError, ssl.SSLError)):
        await get(url, pki.client_context(pki.rogue))


@pytest.mark.anyio
async def test_expired_client_certificate_is_refused(pki: Pki, url: str) -> None:
    with pytest.raises((httpx.TransportError, ssl.SSLError)):
        await get(url, pki.client_context(pki.expired))


@pytest.mark.anyio
async def test_missing_client_certificate_is_refused_when_required(pki: Pki, url: str) -> None:
    with pytest.raises((httpx.TransportError, ssl.SSLError)):
        await get(url, pki.client_context(None))


@pytest.mark.anyio
async def test_optional_client_certificates(pki: Pki) -> None:
    async for address in serve(pki.tls(client_cert="optional"), pki.dir):
        anonymous = await get(address, pki.client_context(None))
        assert anonymous["tls"] is True and anonymous["peer"] is None
        known = await get(address, pki.client_context(pki.client))
        assert known["principal"] == "spiffe://acme/billing"
        with pytest.raises((httpx.TransportError, ssl.SSLError)):
            await get(address, pki.client_context(pki.rogue))  # presented certificates are still verified


@pytest.mark.anyio
async def test_minimum_version_is_enforced(pki: Pki) -> None:
    async for address in serve(pki.tls(min_version="1.3"), pki.dir):
        with pytest.raises((httpx.TransportError, ssl.SSLError)):
            await get(address, pki.client_context(pki.client, max_version=ssl.TLSVersion.TLSv1_2))
        assert (await get(address, pki.client_context(pki.client)))["version"] == "TLSv1.3"


def test_server_context_is_hardened(pki: Pki) -> None:
    ctx = build_server_context(pki.tls(), pki.dir)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.options & ssl.OP_NO_COMPRESSION
    names = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names and all("ECDHE" in n and ("GCM" in n or "CHACHA20" in n) for n in names)
    plain = build_server_context(TlsConfig(cert="server.crt", key="server.key"), pki.dir)
    assert plain.verify_mode == ssl.CERT_NONE


def test_describe_certificate_reads_every_san_kind(pki: Pki) -> None:
    cert = issue(pki.ca, "multi", dns=("a.example",), uris=("spiffe://x/y",), emails=("ops@example.com",),
                 ips=("10.0.0.1",))
    info = describe_certificate(cert.der())
    assert info["subject_cn"] == "multi"
    assert info["san_dns"] == ["a.example"] and info["san_uri"] == ["spiffe://x/y"]
    assert info["san_email"] == ["ops@example.com"] and info["san_ip"] == ["10.0.0.1"]
    assert "CN=multi" in info["subject"] and "CN=mcpwall test CA" in info["issuer"]


def test_tls_config_needs_a_ca_for_client_certificates() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="client_ca"):
        TlsConfig.model_validate({"cert": "c", "key": "k", "client_cert": "required"})
