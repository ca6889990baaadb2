"""Transport hygiene: bad Origins, CORS allowlists, HTTPS-only, security headers, no server banner."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mcpwall.config.model import Config, ListenConfig
from mcpwall.transports.http_hygiene import HttpHygiene, wrap


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"server", b"framework/1.2.3"),
                            (b"x-powered-by", b"something")]})
    await send({"type": "http.response.body", "body": b"{}"})


def client(listen: dict[str, Any], scheme: str = "https") -> httpx.AsyncClient:
    middleware = HttpHygiene(app, ListenConfig.model_validate(listen))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url=f"{scheme}://127.0.0.1:8765")


@pytest.mark.anyio
async def test_security_headers_and_no_banner() -> None:
    async with client({}) as c:
        response = await c.post("/mcp", json={})
    h = response.headers
    assert h["strict-transport-security"].startswith("max-age=63072000")
    assert h["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
    assert h["referrer-policy"] == "no-referrer"
    assert "server" not in h and "x-powered-by" not in h


@pytest.mark.anyio
async def test_no_hsts_over_plain_http() -> None:
    async with client({}, scheme="http") as c:
        response = await c.post("/mcp", json={})
    assert response.status_code == 200 and "strict-transport-security" not in response.headers


@pytest.mark.anyio
async def test_bad_origin_is_refused_before_the_app() -> None:
    async with client({"allowed_origins": ["https://ok.example"]}) as c:
        for origin in ("https://evil.example", "null", "https://ok.example.evil.example", "file://"):
            response = await c.post("/mcp", json={}, headers={"origin": origin})
            assert response.status_code == 403, origin
            assert response.json()["error"]["code"] == -31403
        for origin in ("https://ok.example", "http://localhost:3000", "http://127.0.0.1"):
            assert (await c.post("/mcp", json={}, headers={"origin": origin})).status_code == 200


@pytest.mark.anyio
async def test_cors_allowlist_echoes_origin_never_a_wildcard() -> None:
    listen = {"cors": {"allow_origins": ["https://app.example"], "allow_credentials": True}}
    async with client(listen) as c:
        response = await c.post("/mcp", json={}, headers={"origin": "https://app.example"})
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        assert response.headers["access-control-allow-credentials"] == "true"
        assert "mcp-session-id" in response.headers["access-control-expose-headers"]
        preflight = await c.options("/mcp", headers={
            "origin": "https://app.example", "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type, x-evil"})
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-headers"] == "authorization, content-type"
        refused = await c.options("/mcp", headers={"origin": "https://evil.example",
                                                    "access-control-request-method": "POST"})
        assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
        local = await c.post("/mcp", json={}, headers={"origin": "http://localhost:1234"})
        assert "access-control-allow-origin" not in local.headers  # allowed, but not cross-origin readable


def test_cors_wildcard_is_rejected_by_config() -> None:
    from pydantic import ValidationError

    for origin in ("*", "https://*.example.com", "app.example"):
        with pytest.raises(ValidationError):
            ListenConfig.model_validate({"cors": {"allow_origins": [origin], "allow_credentials": True}})


@pytest.mark.anyio
async def test_https_only_refuses_or_redirects_plain_http() -> None:
    async with client({"https_only": "refuse"}, scheme="http") as c:
        response = await c.post("/mcp", json={})
        assert response.status_code == 403
    async with client({"https_only": "redirect", "allowed_hosts": ["mcp.example.com"]}, scheme="http") as c:
        response = await c.get("/mcp?x=1", headers={"host": "mcp.example.com:8765"})
        assert response.status_code == 308
        assert response.headers["location"] == "https://mcp.example.com/mcp?x=1"
        evil = await c.get("/mcp", headers={"host": "evil.example"})
        assert evil.status_code == 403  # never redirect to a Host we do not serve
    async with client({"https_only": "refuse"}) as c:
        assert (await c.post("/mcp", json={})).status_code == 200


@pytest.mark.anyio
async def test_wrap_uses_the_listen_section() -> None:
    wrapped = wrap(app, Config.model_validate({"listen": {"https_only": "refuse"}}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://127.0.0.1") as c:
        assert (await c.get("/")).status_code == 403
