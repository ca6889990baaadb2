"""Identity, access control and rate limits through the real gateway, with real MCP clients.

The gateway runs as ``mcpwall serve``; an identity provider serves its JWKS on loopback; keys
are made with ``mcpwall keys``; clients are the ``mcp`` SDK's, carrying credentials in an
``httpx2.AsyncClient``; the attacks go in as raw HTTP where the SDK would not send them.
"""

from __future__ import annotations

import json
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import yaml
from click.testing import CliRunner
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mcpwall.auth.signing import sign
from mcpwall.cli import main as cli
from support.jwks_server import IdentityProvider
from support.pki import issue, make_ca
from support.procs import ManagedProcess, free_port
from support.waits import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SDK_UPSTREAM = str(Path(__file__).resolve().parents[1] / "fixtures" / "sdk_upstream.py")
MODES = ["legacy", "2026-07-28"]
HMAC_SECRET = "h" * 48
POLICY: dict[str, Any] = {
    "roles": {
        "reader": {"allow": {"tools": ["sdk__echo"], "prompts": ["sdk__*"], "resources": ["test://**"]}},
        "operator": {"allow": {"tools": ["sdk__*"]}, "deny": {"tools": ["sdk__crash"]}},
    },
    "rules": [{"name": "short-echo", "tools": ["sdk__echo"], "args": {"text": {"max_length": 20}},
               "when": '!args.text.startsWith("rm ")'}],
}


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    with IdentityProvider() as provider:
        yield provider


def base_config(tmp_path: Path, idp: IdentityProvider, port: int) -> dict[str, Any]:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    return {
        "listen": {"port": port},
        "storage": {"url": f"sqlite:///{tmp_path}/state.db"},
        "servers": {"sdk": {"command": sys.executable, "args": [SDK_UPSTREAM, "stdio"]}},
        "guards": {
            "auth": {
                "api_keys": {},
                "jwt": {"resource": f"http://127.0.0.1:{port}/mcp", "scopes_supported": ["mcp"],
                        "issuers": [{"issuer": idp.issuer, "jwks_uri": idp.jwks_uri,
                                     "scope_roles": {"mcp:read": ["reader"]}}]},
                "hmac": {"clients": {"batch": {"secret": HMAC_SECRET, "roles": ["operator"]}}},
            },
            "policy": {"file": str(tmp_path / "policy.yaml"), "watch_interval": 0.05},
            "ratelimit": {"rates": [{"name": "metered", "rate": "3/h", "roles": ["metered"],
                                     "methods": ["tools/call"]}]},
        },
    }


def new_key(tmp_path: Path, principal: str, roles: str) -> str:
    result = CliRunner().invoke(cli, ["keys", "create", "--storage", f"sqlite:///{tmp_path}/state.db",
                                      "--principal", principal, "--roles", roles])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


@asynccontextmanager
async def client(url: str, mode: str, headers: dict[str, str], **http: Any) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers=headers, timeout=30, **http) as hc, \
            Client(streamable_http_client(url, http_client=hc), mode=mode, cache=None) as c:  # type: ignore[arg-type]
        yield c


async def until(check: Callable[[], Awaitable[bool]], *, what: str, timeout: float = 20) -> None:
    """Poll the gateway (another process) until ``check`` holds, within ``timeout``."""
    delay = 0.01
    with anyio.fail_after(timeout):
        while not await check():  # the change happens in another process
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.25)


def text(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


def raw_call(name: str, arguments: dict[str, Any], call_id: int = 1) -> tuple[dict[str, str], bytes]:
    """A modern tools/call as raw HTTP, for requests the SDK would never send."""
    body = json.dumps({"jsonrpc": "2.0", "id": call_id, "method": "tools/call", "params": {
        "name": name, "arguments": arguments,
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}}).encode()
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": name}
    return headers, body


@pytest.fixture
def gateway(gateway_factory: Any, tmp_path: Path, idp: IdentityProvider) -> Any:
    return gateway_factory(base_config(tmp_path, idp, free_port()))


async def test_unauthenticated_requests_get_a_401_challenge_and_metadata(gateway: Any) -> None:
    headers, body = raw_call("sdk__echo", {"text": "hi"})
    async with httpx.AsyncClient(trust_env=False) as h:
        response = await h.post(gateway.url, headers=headers, content=body)
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        metadata_url = f"{gateway.base_url}/.well-known/oauth-protected-resource/mcp"
        assert f'resource_metadata="{metadata_url}"' in challenge
        document = (await h.get(metadata_url)).json()
        assert document["resource"] == gateway.url
        assert document["authorization_servers"] and document["bearer_methods_supported"] == ["header"]
        assert (await h.get(f"{gateway.base_url}/.well-known/oauth-protected-resource")).json() == document


@pytest.mark.parametrize("mode", MODES)
async def test_api_key_principal_sees_only_what_it_may_call(gateway: Any, tmp_path: Path, mode: str) -> None:
    key = new_key(tmp_path, "alice", "reader")
    async with client(gateway.url, mode, {"x-api-key": key}) as c:
        assert [t.name for t in (await c.list_tools()).tools] == ["sdk__echo"]
        assert text(await c.call_tool("sdk__echo", {"text": "hello"})) == "hello"
        with pytest.raises(MCPError) as hidden:
            await c.call_tool("sdk__env", {"name": "PATH"})  # exists upstream, not granted
        with pytest.raises(MCPError) as missing:
            await c.call_tool("sdk__nothing", {})  # does not exist at all
        assert hidden.value.error.code == missing.value.error.code == -32602
        assert hidden.value.error.message.replace("sdk__env", "X") == missing.value.error.message.replace(
            "sdk__nothing", "X")


@pytest.mark.parametrize("mode", MODES)
async def test_argument_rules_refuse_with_a_visible_tool_error(gateway: Any, tmp_path: Path, mode: str) -> None:
    key = new_key(tmp_path, "alice", "reader")
    async with client(gateway.url, mode, {"authorization": f"Bearer {key}"}) as c:
        for arguments in ({"text": "x" * 21}, {"text": "rm -rf /"}):
            result = await c.call_tool("sdk__echo", arguments)
            assert result.is_error
            decision = (result.meta or {})["dev.mcpwall/decision"]
            assert decision["guard"] == "policy"


async def test_revocation_takes_effect_on_the_next_request(gateway: Any, tmp_path: Path) -> None:
    key = new_key(tmp_path, "alice", "reader")
    headers, body = raw_call("sdk__echo", {"text": "hi"})
    async with httpx.AsyncClient(trust_env=False, headers={"x-api-key": key}) as h:
        assert (await h.post(gateway.url, headers=headers, content=body)).status_code == 200
        key_id = key.split("_")[1]
        result = CliRunner().invoke(cli, ["keys", "revoke", key_id, "--storage", f"sqlite:///{tmp_path}/state.db"])
        assert result.exit_code == 0
        assert (await h.post(gateway.url, headers=headers, content=body)).status_code == 401


@pytest.mark.parametrize("mode", MODES)
async def test_jwt_bearer_tokens(gateway: Any, idp: IdentityProvider, mode: str) -> None:
    token = idp.token(audience=gateway.url, scope="mcp mcp:read")
    async with client(gateway.url, mode, {"authorization": f"Bearer {token}"}) as c:
        assert [t.name for t in (await c.list_tools()).tools] == ["sdk__echo"]
        assert text(await c.call_tool("sdk__echo", {"text": "via oauth"})) == "via oauth"


async def test_bad_tokens_are_refused_over_http(gateway: Any, idp: IdentityProvider) -> None:
    headers, body = raw_call("sdk__echo", {"text": "hi"})
    bad = {
        "expired": idp.token(audience=gateway.url, lifetime=-120, scope="mcp:read"),
        "other audience": idp.token(audience="http://127.0.0.1:1/other", scope="mcp:read"),
        "other issuer": idp.token(audience=gateway.url, issuer="http://127.0.0.1:2", scope="mcp:read"),
        "unsigned": idp.token(audience=gateway.url).rsplit(".", 1)[0] + ".",
    }
    async with httpx.AsyncClient(trust_env=False) as h:
        for what, token in bad.items():
            response = await h.post(gateway.url, headers={**headers, "authorization": f"Bearer {token}"},
                                    content=body)
            assert response.status_code == 401, what
            assert 'error="invalid_token"' in response.headers["www-authenticate"], what
            assert token not in response.text


async def test_rate_limit_answers_429_with_retry_after(gateway: Any, tmp_path: Path) -> None:
    key = new_key(tmp_path, "meter", "reader,metered")
    async with client(gateway.url, "2026-07-28", {"x-api-key": key}) as c:
        for _ in range(3):
            assert not (await c.call_tool("sdk__echo", {"text": "ok"})).is_error
        with pytest.raises(MCPError) as refused:
            await c.call_tool("sdk__echo", {"text": "one too many"})
        assert refused.value.error.code == -31429
        assert isinstance(refused.value.error.data, dict) and refused.value.error.data["retryAfter"] > 0
    headers, body = raw_call("sdk__echo", {"text": "raw"})
    async with httpx.AsyncClient(trust_env=False, headers={"x-api-key": key}) as h:
        response = await h.post(gateway.url, headers=headers, content=body)
    assert response.status_code == 429 and int(response.headers["retry-after"]) > 0


async def test_hmac_signed_requests_and_replays(gateway: Any) -> None:
    headers, body = raw_call("sdk__echo", {"text": "signed"})
    signed = sign(HMAC_SECRET, "POST", "/mcp", body, key_id="batch")
    async with httpx.AsyncClient(trust_env=False) as h:
        first = await h.post(gateway.url, headers={**headers, **signed}, content=body)
        assert first.status_code == 200 and first.json()["result"]["content"][0]["text"] == "signed"
        replay = await h.post(gateway.url, headers={**headers, **signed}, content=body)
        assert replay.status_code == 401
        stale = sign(HMAC_SECRET, "POST", "/mcp", body, key_id="batch", now=time.time() - 600)
        assert (await h.post(gateway.url, headers={**headers, **stale}, content=body)).status_code == 401
        tampered = sign(HMAC_SECRET, "POST", "/mcp", body, key_id="batch")
        other_headers, other_body = raw_call("sdk__env", {"name": "HOME"})
        response = await h.post(gateway.url, headers={**other_headers, **tampered}, content=other_body)
        assert response.status_code == 401


async def test_bad_origin_is_refused(gateway: Any, tmp_path: Path) -> None:
    key = new_key(tmp_path, "alice", "reader")
    headers, body = raw_call("sdk__echo", {"text": "hi"})
    async with httpx.AsyncClient(trust_env=False, headers={"x-api-key": key}) as h:
        response = await h.post(gateway.url, headers={**headers, "origin": "https://evil.example"}, content=body)
        assert response.status_code == 403
        ok = await h.post(gateway.url, headers={**headers, "origin": "http://localhost:5173"}, content=body)
        assert ok.status_code == 200


async def test_policy_reload_keeps_the_session(gateway: Any, tmp_path: Path) -> None:
    key = new_key(tmp_path, "alice", "reader")
    async with client(gateway.url, "legacy", {"x-api-key": key}) as c:
        assert [t.name for t in (await c.list_tools()).tools] == ["sdk__echo"]
        wider = {**POLICY, "roles": {**POLICY["roles"], "reader": {"allow": {"tools": ["sdk__echo", "sdk__env"]}}}}
        (tmp_path / "policy.yaml").write_text(yaml.safe_dump(wider))

        async def env_listed() -> bool:
            return "sdk__env" in [t.name for t in (await c.list_tools()).tools]

        await until(env_listed, what="the widened policy to be in force")
        assert not (await c.call_tool("sdk__env", {"name": "PATH"})).is_error
        (tmp_path / "policy.yaml").write_text("roles: {reader: {allow: {tools: 7}}}\n")  # invalid: ignored
        await eventually(lambda: "policy file changed but is invalid" in gateway.output(), timeout=20,
                         what="the gateway to refuse the invalid policy")
        assert text(await c.call_tool("sdk__echo", {"text": "still here"})) == "still here"


async def test_policy_reload_during_traffic(gateway: Any, tmp_path: Path) -> None:
    key = new_key(tmp_path, "alice", "reader")
    failures: list[BaseException] = []

    async def traffic(c: Client) -> None:
        for i in range(15):
            try:
                assert text(await c.call_tool("sdk__echo", {"text": f"n{i}"})) == f"n{i}"
            except BaseException as exc:
                failures.append(exc)

    async with client(gateway.url, "2026-07-28", {"x-api-key": key}) as c, anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(traffic, c)
        for i in range(10):
            roles = {**POLICY["roles"], "spare": {"allow": {"tools": [f"sdk__x{i}"]}}}
            (tmp_path / "policy.yaml").write_text(yaml.safe_dump({**POLICY, "roles": roles}))
            await anyio.sleep(0.06)  # pacing, so the watcher sees several versions while calls run
    assert failures == []
    await eventually(lambda: "policy reloaded" in gateway.output(), timeout=20, what="a policy reload")


# -- mutual TLS: a gateway that terminates TLS itself -------------------------------------------

async def test_mutual_tls_end_to_end(tmp_path: Path) -> None:
    ca, rogue_ca = make_ca(), make_ca("rogue")
    issue(ca, "localhost", server=True, dns=("localhost",), ips=("127.0.0.1",)).write(tmp_path, "server")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem())
    good = issue(ca, "ops", uris=("spiffe://acme/ops",)).write(tmp_path, "good")
    bad = issue(rogue_ca, "ops", uris=("spiffe://acme/ops",)).write(tmp_path, "bad")
    port = free_port()
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    config = {
        "listen": {"port": port, "tls": {"cert": str(tmp_path / "server.crt"), "key": str(tmp_path / "server.key"),
                                         "client_ca": str(tmp_path / "ca.pem")}},
        "admin": {"port": free_port()},
        "storage": {"url": f"sqlite:///{tmp_path}/state.db"},
        "servers": {"sdk": {"command": sys.executable, "args": [SDK_UPSTREAM, "stdio"]}},
        "guards": {"auth": {"mtls": {"principals": {"spiffe://acme/ops": {"id": "ops", "roles": ["operator"]}},
                                     "require_mapping": True}},
                   "policy": {"file": str(tmp_path / "policy.yaml")}},
    }
    (tmp_path / "mcpwall.yaml").write_text(yaml.safe_dump(config))

    def context(cert: tuple[Path, Path]) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        return ctx

    url = f"https://127.0.0.1:{port}/mcp"
    process = ManagedProcess([sys.executable, "-m", "mcpwall", "serve", "-c", str(tmp_path / "mcpwall.yaml")],
                             log_path=tmp_path / "gateway.log", cwd=tmp_path, name="mcpwall serve (TLS)")
    with process:
        with httpx.Client(verify=context(good), trust_env=False, timeout=2) as probe:
            def ready() -> bool:
                try:
                    return probe.get(f"https://127.0.0.1:{port}/healthz").status_code == 200
                except httpx.TransportError:
                    return False

            process.wait_until(ready, timeout=30, what="the TLS gateway answering /healthz")
        async with client(url, "2026-07-28", {}, verify=context(good)) as c:
            names = [t.name for t in (await c.list_tools()).tools]
            assert "sdk__env" in names and "sdk__crash" not in names
            assert text(await c.call_tool("sdk__echo", {"text": "over mTLS"})) == "over mTLS"
        headers, body = raw_call("sdk__echo", {"text": "x"})
        with pytest.raises(httpx.TransportError):
            async with httpx.AsyncClient(verify=context(bad), trust_env=False) as h:
                await h.post(url, headers=headers, content=body)
        assert process.proc is not None and process.proc.poll() is None
        process.proc.send_signal(signal.SIGTERM)
