"""The egress guard: URL arguments found by schema, name, config or value, and upstream URLs."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from mcpwall.checks.addresses import IPAddress
from mcpwall.checks.urls import EgressDenied
from mcpwall.gateway.call import ANONYMOUS, Call
from mcpwall.gateway.events import EventBus
from mcpwall.guards.egress import (
    EgressGuard,
    EgressSettings,
    check_redirect,
    check_upstream_url,
    name_words,
    resolve_upstream_url,
)
from mcpwall.pipeline.guard import GuardEnv
from mcpwall.pipeline.verdict import PASS, Reject

pytestmark = pytest.mark.anyio

FETCH = {"name": "fetch", "inputSchema": {"type": "object", "properties": {
    "target": {"type": "string", "format": "uri"},
    "note": {"type": "string"},
    "nested": {"type": "object", "properties": {"link": {"type": "string", "format": "uri-reference"}}},
}}}


async def public(host: str, port: int) -> list[IPAddress]:
    return [ipaddress.ip_address("93.184.215.14")]


def make(**settings: Any) -> EgressGuard:
    guard = EgressGuard(EgressSettings(**settings), GuardEnv(events=EventBus(), config_dir=Path(".")))
    for policy in [guard._default, *guard._policies.values()]:
        object.__setattr__(policy, "resolver", public)  # no real DNS in unit tests
    return guard


def call(arguments: dict[str, Any], definition: dict[str, Any] | None = FETCH, server: str = "web",
         method: str = "tools/call") -> Call:
    c = Call(message={"jsonrpc": "2.0", "id": 1, "method": method,
                      "params": {"name": f"{server}__fetch", "arguments": arguments}},
             principal=ANONYMOUS, era="modern", protocol_version="2026-07-28", transport="http")
    c.server, c.target, c.exposed_name, c.definition = server, "fetch", f"{server}__fetch", definition
    return c


async def refused(guard: EgressGuard, c: Call) -> dict[str, Any]:
    verdict = await guard.on_request(c)
    assert isinstance(verdict, Reject), verdict
    assert verdict.as_tool_error and verdict.data is not None
    return verdict.data


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/admin", "http://2130706433/", "http://0x7f.1/", "http://017700000001/",
    "http://[::ffff:127.0.0.1]/", "http://169.254.169.254/latest/meta-data/iam/",
    "http://metadata.google.internal/", "http://[fd00:ec2::254]/", "http://10.0.0.1/", "http://localhost/",
    "file:///etc/passwd", "http://user@127.0.0.1/", "gopher://127.0.0.1:6379/_FLUSHALL",
])
async def test_ssrf_variants_in_a_uri_argument_are_refused(url: str) -> None:
    data = await refused(make(), call({"target": url}))
    assert data["path"] == "/arguments/target"


async def test_public_urls_pass() -> None:
    assert await make().on_request(call({"target": "https://example.com/page"})) is PASS


@pytest.mark.parametrize(("arguments", "path"), [
    ({"imageUrl": "http://127.0.0.1/"}, "/arguments/imageUrl"),
    ({"callback_uri": "http://10.0.0.1/hook"}, "/arguments/callback_uri"),
    ({"endpoint": "169.254.169.254/latest"}, "/arguments/endpoint"),
    ({"host": "localhost:6379"}, "/arguments/host"),
    ({"urls": ["https://example.com/", "http://0x7f.1/"]}, "/arguments/urls/1"),
    ({"note": "http://[::1]/"}, "/arguments/note"),
    ({"nested": {"link": "//127.0.0.1/x"}}, "/arguments/nested/link"),
    ({"deep": [{"x": {"y": "http://192.168.1.1/"}}]}, "/arguments/deep/0/x/y"),
])
async def test_urls_are_found_by_schema_name_and_value(arguments: dict[str, Any], path: str) -> None:
    data = await refused(make(), call(arguments, definition={"name": "fetch", "inputSchema": FETCH["inputSchema"]}))
    assert data["path"] == path


async def test_plain_text_and_relative_references_are_not_urls() -> None:
    args = {"note": "see http://127.0.0.1 for details", "nested": {"link": "/docs/page"}, "url": "readme"}
    assert await make().on_request(call(args)) is PASS


async def test_configured_argument_paths_are_always_urls() -> None:
    guard = make(arguments={"web__*": ["options.server"]})
    data = await refused(guard, call({"options": {"server": "127.0.0.1"}}, definition=None))
    assert data["path"] == "/arguments/options/server"


async def test_per_upstream_rules_and_allowed_ranges() -> None:
    guard = make(servers={"intranet": {"allow_cidrs": ["10.0.0.0/8"]}}, deny_hosts=["*.evil.test"])
    assert await guard.on_request(call({"target": "http://10.1.2.3/"}, server="intranet")) is PASS
    await refused(guard, call({"target": "http://10.1.2.3/"}, server="web"))
    data = await refused(guard, call({"target": "https://x.evil.test/"}, server="intranet"))
    assert data["egress"] == "denied_host"


async def test_dns_answers_with_a_private_address_are_refused() -> None:
    guard = make()

    async def rebinding(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("127.0.0.1")]

    object.__setattr__(guard._default, "resolver", rebinding)
    data = await refused(guard, call({"target": "http://rebind.example/"}))
    assert data["egress"] == "loopback"


async def test_too_many_urls_fail_closed() -> None:
    verdict = await make(max_urls=3).on_request(call({"urls": [f"https://e{i}.example/" for i in range(5)]}))
    assert isinstance(verdict, Reject)


async def test_prompt_and_resource_uris() -> None:
    guard = make(check_resource_uris=True)
    await refused(guard, call({"who": "http://127.0.0.1/"}, method="prompts/get"))
    read = call({}, method="resources/read")
    read.message["params"] = {"uri": "http://169.254.169.254/"}
    data = await refused(guard, read)
    assert data["path"] == "/uri"
    read.message["params"] = {"uri": "file:///project/readme.md"}
    assert await guard.on_request(read) is PASS


def test_name_words() -> None:
    assert name_words("imageUrl") == ["image", "url"]
    assert name_words("callback_URI") == ["callback", "uri"]
    assert name_words("curl") == ["curl"]


@pytest.mark.parametrize(("url", "problem"), [
    ("http://127.0.0.1:9000/mcp", None),  # operators run local upstreams on purpose
    ("https://mcp.example.com/mcp", None),
    ("http://10.0.0.2/mcp", None),
    ("http://169.254.169.254/mcp", "metadata"),
    ("http://0xA9FEA9FE/", "metadata"),
    ("http://[fe80::1]/mcp", "link-local"),
    ("ftp://example.com/", "scheme"),
])
def test_check_upstream_url_is_a_static_check(url: str, problem: str | None) -> None:
    result = check_upstream_url(url)
    assert (result is None) if problem is None else (result is not None and problem in result)


def test_upstream_rules_can_be_tightened_per_server() -> None:
    settings = EgressSettings(upstream_block=["metadata", "loopback"], servers={"remote": {"allow_hosts": ["*.corp"]}})
    assert check_upstream_url("http://127.0.0.1/mcp", settings) is not None
    assert check_upstream_url("https://mcp.example.com/", settings, "remote") is not None
    assert check_upstream_url("https://mcp.corp/", settings, "remote") is None


async def test_upstream_resolution_and_redirects() -> None:
    assert await resolve_upstream_url("http://127.0.0.1:1/") == [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(EgressDenied):
        await check_redirect("http://127.0.0.1:1/mcp", "http://169.254.169.254/", upstream=True)
    assert await check_redirect("http://127.0.0.1:1/a", "/b", upstream=True) == "http://127.0.0.1:1/b"


async def test_server_to_client_requests_are_not_checked() -> None:
    c = call({"target": "http://127.0.0.1/"})
    c.direction = "server"
    assert await make().on_request(c) is PASS
