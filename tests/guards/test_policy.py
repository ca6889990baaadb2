"""The policy guard: list filtering, hidden targets, visible refusals, step-up, identity
propagation, and reloads (file watcher, invalid policy, reload during traffic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import yaml

from mcpwall.errors import ConfigError
from mcpwall.gateway.call import Call, Principal
from mcpwall.gateway.events import EventBus
from mcpwall.guards.policy import PolicyGuard
from mcpwall.pipeline.guard import GuardEnv
from mcpwall.pipeline.verdict import Pass, Reject
from mcpwall.policy import identity
from mcpwall.policy.model import PolicySettings

POLICY: dict[str, Any] = {
    "roles": {"reader": {"allow": {"tools": ["fs__read_*"], "resources": ["file:///srv/**"], "prompts": ["fs__*"]}},
              "admin": {"allow": {"tools": ["*"], "prompts": ["*"], "resources": ["**"]}}},
    "rules": [{"name": "roots", "tools": ["fs__*"], "args": {"path": {"roots": ["/srv"]}}},
              {"name": "scoped", "tools": ["fs__write_*"], "require_scopes": ["files:write"]}],
}
SECRET = "i" * 40


def make(tmp_path: Path, raw: dict[str, Any] | None = None) -> tuple[PolicyGuard, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    bus = EventBus()
    bus.subscribe(events.append)
    env = GuardEnv(events=bus, config_dir=tmp_path, storage_url="memory://")
    return PolicyGuard(PolicySettings.model_validate(raw if raw is not None else POLICY), env), events


def call(method: str, params: dict[str, Any], *roles: str, auth: str = "api_key", scopes: tuple[str, ...] = (),
         server: str | None = "fs") -> Call:
    c = Call(message={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
             principal=Principal(id="alice", roles=frozenset(roles), scopes=frozenset(scopes), auth_method=auth),
             era="modern", protocol_version="2026-07-28", transport="http")
    c.server = server
    if method == "tools/call":
        c.exposed_name = params["name"]
    return c


TOOLS = [{"name": "fs__read_file", "inputSchema": {}}, {"name": "fs__write_file", "inputSchema": {}},
         {"name": "shell__exec", "inputSchema": {}}]


@pytest.mark.anyio
async def test_lists_are_filtered_per_principal(tmp_path: Path) -> None:
    guard, _ = make(tmp_path)
    reader = call("tools/list", {}, "reader")
    assert [t["name"] for t in await guard.on_list(reader, "tools", TOOLS)] == ["fs__read_file"]
    assert len(await guard.on_list(call("tools/list", {}, "admin"), "tools", TOOLS)) == 3
    assert await guard.on_list(call("tools/list", {}), "tools", TOOLS) == []
    resources = [{"uri": "file:///srv/a.md"}, {"uri": "file:///etc/passwd"}]
    assert await guard.on_list(reader, "resources", resources) == [{"uri": "file:///srv/a.md"}]
    templates = [{"uriTemplate": "file:///srv/{name}"}, {"uriTemplate": "db://{table}"}]
    assert await guard.on_list(reader, "resourceTemplates", templates) == [{"uriTemplate": "file:///srv/{name}"}]
    prompts = [{"name": "fs__summarise"}, {"name": "shell__danger"}]
    assert await guard.on_list(reader, "prompts", prompts) == [{"name": "fs__summarise"}]


@pytest.mark.anyio
async def test_a_hidden_tool_called_by_name_looks_like_an_unknown_tool(tmp_path: Path) -> None:
    guard, _ = make(tmp_path)
    verdict = await guard.on_request(call("tools/call", {"name": "shell__exec", "arguments": {}}, "reader"))
    assert isinstance(verdict, Reject) and verdict.hidden and not verdict.as_tool_error
    unknown = await guard.on_request(call("tools/call", {"name": "nope__nothing", "arguments": {}}, "reader"))
    assert isinstance(unknown, Reject) and unknown.hidden
    for method, params in [("resources/read", {"uri": "file:///etc/passwd"}), ("prompts/get", {"name": "x__y"}),
                           ("completion/complete", {"ref": {"type": "ref/prompt", "name": "x__y"}}),
                           ("resources/subscribe", {"uri": "db://secrets"})]:
        refused = await guard.on_request(call(method, params, "reader"))
        assert isinstance(refused, Reject) and refused.hidden, method


@pytest.mark.anyio
async def test_rule_failures_are_visible_tool_errors(tmp_path: Path) -> None:
    guard, _ = make(tmp_path)
    verdict = await guard.on_request(call("tools/call", {"name": "fs__read_file",
                                                         "arguments": {"path": "/etc/shadow"}}, "reader"))
    assert isinstance(verdict, Reject) and verdict.as_tool_error and not verdict.hidden
    assert verdict.data == {"rule": "rules.roots.args.path"}
    ok = await guard.on_request(call("tools/call", {"name": "fs__read_file", "arguments": {"path": "/srv/a"}},
                                     "reader"))
    assert isinstance(ok, Pass)


@pytest.mark.anyio
async def test_missing_scope_gets_a_403_step_up_challenge(tmp_path: Path) -> None:
    guard, _ = make(tmp_path)
    c = call("tools/call", {"name": "fs__write_file", "arguments": {"path": "/srv/x"}}, "admin", auth="bearer",
             scopes=("files:read",))
    c.scratch["auth.resource_metadata"] = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
    verdict = await guard.on_request(c)
    assert isinstance(verdict, Reject) and verdict.http_status == 403 and not verdict.as_tool_error
    header = (verdict.headers or {})["WWW-Authenticate"]
    assert header == ('Bearer error="insufficient_scope", scope="files:write", '
                      'resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"')
    non_oauth = call("tools/call", {"name": "fs__write_file", "arguments": {"path": "/srv/x"}}, "admin")
    plain = await guard.on_request(non_oauth)
    assert isinstance(plain, Reject) and plain.http_status is None and plain.as_tool_error


@pytest.mark.anyio
async def test_signed_identity_header_for_upstreams(tmp_path: Path) -> None:
    raw = {**POLICY, "identity_header": {"secret": SECRET, "servers": ["fs"]}}
    guard, _ = make(tmp_path, raw)
    c = call("tools/call", {"name": "fs__read_file", "arguments": {"path": "/srv/a"}}, "reader")
    assert isinstance(await guard.on_request(c), Pass)
    token = c.scratch["upstream_headers"]["X-Mcpwall-Principal"]
    claims = identity.verify(token, secret=SECRET, audience="fs")
    assert claims["sub"] == "alice" and claims["roles"] == ["reader"] and claims["jti"] == c.decision_id
    import jwt

    with pytest.raises(jwt.PyJWTError):
        identity.verify(token, secret=SECRET, audience="other-upstream")
    with pytest.raises(jwt.PyJWTError):
        identity.verify(token, secret="j" * 40, audience="fs")
    elsewhere = call("tools/list", {}, "reader", server="search")
    await guard.on_request(elsewhere)
    assert "upstream_headers" not in elsewhere.scratch


@pytest.mark.anyio
async def test_reload_swaps_policy_and_refuses_invalid_ones(tmp_path: Path) -> None:
    guard, events = make(tmp_path)
    read = call("tools/call", {"name": "shell__exec", "arguments": {}}, "reader")
    assert isinstance(await guard.on_request(read), Reject)
    guard.reload(PolicySettings.model_validate({"roles": {"reader": {"allow": {"tools": ["*"]}}}}))
    assert isinstance(await guard.on_request(read), Pass)
    bad = tmp_path / "bad.yaml"
    bad.write_text("roles: {reader: {allow: {tools: 5}}}\n")
    with pytest.raises(ConfigError):
        guard.reload(PolicySettings.model_validate({"file": str(bad)}))
    assert isinstance(await guard.on_request(read), Pass)  # the old policy stayed
    assert [e["ok"] for e in events if e["kind"] == "policy.reload"] == [True, False]


@pytest.mark.anyio
async def test_policy_file_changes_are_picked_up_and_bad_edits_ignored(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"roles": {"reader": {"allow": {"tools": ["fs__*"]}}}}))
    guard, _ = make(tmp_path, {"file": "policy.yaml", "watch_interval": 0.01})
    reloads: dict[bool, anyio.Event] = {True: anyio.Event(), False: anyio.Event()}
    guard.env.events.subscribe(lambda e: reloads[e["ok"]].set() if e["kind"] == "policy.reload" else None)
    await guard.start()
    try:
        probe = call("tools/call", {"name": "shell__exec", "arguments": {}}, "reader")
        assert isinstance(await guard.on_request(probe), Reject)
        path.write_text(yaml.safe_dump({"roles": {"reader": {"allow": {"tools": ["*"]}}}}))
        with anyio.fail_after(10):
            await reloads[True].wait()
        assert isinstance(await guard.on_request(probe), Pass)
        path.write_text("roles: [not, a, mapping]\n")
        with anyio.fail_after(10):
            await reloads[False].wait()
        assert isinstance(await guard.on_request(probe), Pass)  # the last good policy stays
    finally:
        await guard.aclose()


@pytest.mark.anyio
async def test_reload_during_traffic_gives_every_call_one_consistent_policy(tmp_path: Path) -> None:
    """Calls in flight while policies flip decide under the old or the new policy, never a mix, never an error."""
    narrow = PolicySettings.model_validate({"roles": {"reader": {"allow": {"tools": ["fs__read_*"]}}}})
    wide = PolicySettings.model_validate({"roles": {"reader": {"allow": {"tools": ["*"]}}}})
    guard, _ = make(tmp_path, narrow.model_dump())
    outcomes: list[tuple[bool, bool]] = []

    async def traffic() -> None:
        for _ in range(300):
            read = await guard.on_request(call("tools/call", {"name": "fs__read_x", "arguments": {}}, "reader"))
            other = await guard.on_request(call("tools/call", {"name": "shell__exec", "arguments": {}}, "reader"))
            outcomes.append((isinstance(read, Pass), isinstance(other, Pass)))
            await anyio.lowlevel.checkpoint()

    async def flipper() -> None:
        for i in range(200):
            guard.reload(wide if i % 2 == 0 else narrow)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(traffic)
        tg.start_soon(flipper)
    assert len(outcomes) == 1500
    assert all(read for read, _ in outcomes)  # allowed under both policies
    assert {other for _, other in outcomes} == {True, False}  # both policies were really in force


def test_inline_and_file_policies_are_exclusive(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not both"):
        PolicySettings.model_validate({"file": "p.yaml", "roles": {"r": {}}})
    with pytest.raises(ValidationError):
        PolicySettings.model_validate({"identity_header": {"secret": "short"}})
