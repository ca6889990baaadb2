"""The dlp guard: secrets and personal data in arguments, results and server→client traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from mcpwall.errors import ConfigError
from mcpwall.gateway.call import ANONYMOUS, Call
from mcpwall.gateway.events import EventBus
from mcpwall.guards.dlp import DlpGuard, DlpSettings
from mcpwall.pipeline.guard import GuardEnv
from mcpwall.pipeline.verdict import PASS, Mutate, Pass, Reject

pytestmark = pytest.mark.anyio

AWS_KEY = "AKIA" + "Q3ZPW5XT7L2M4N6R"
GITHUB = "ghp_" + "k7Qd9Lr2Xv8Zp1Nc4Ty6Mb3Hs5Wf0Ja2Ge9U"
CARD = "4111 1111 1111 1111"


def guard(events: list[dict[str, Any]] | None = None, **settings: Any) -> DlpGuard:
    bus = EventBus()
    if events is not None:
        bus.subscribe(events.append)
    return DlpGuard(DlpSettings(**settings), GuardEnv(events=bus, config_dir=Path(".")))


def tool_call(arguments: Any, *, direction: str = "client", method: str = "tools/call") -> Call:
    c = Call(message={"jsonrpc": "2.0", "id": 7, "method": method, "params": {"name": "s__t", "arguments": arguments}},
             principal=ANONYMOUS, era="modern", protocol_version="2026-07-28", transport="http",
             direction=direction)  # type: ignore[arg-type]
    c.server, c.target = "s", "t"
    return c


def text_result(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": False}


async def test_clean_arguments_pass() -> None:
    assert await guard().on_request(tool_call({"query": "weather in Lisbon"})) is PASS


async def test_secret_in_arguments_is_blocked_before_routing() -> None:
    events: list[dict[str, Any]] = []
    verdict = await guard(events, action="block").on_request(tool_call({"note": f"key={AWS_KEY}"}))
    assert isinstance(verdict, Reject)
    assert verdict.as_tool_error
    assert verdict.findings[0]["rule"] == "secret.aws-access-key-id"
    assert verdict.findings[0]["location"] == "$.params.arguments.note"
    assert AWS_KEY not in orjson.dumps([verdict.reason, verdict.findings, verdict.data]).decode()
    assert events and events[0]["kind"] == "finding" and events[0]["action"] == "block"


async def test_secret_in_arguments_is_redacted_in_place() -> None:
    c = tool_call({"note": f"use {GITHUB} please", "count": 3})
    verdict = await guard().on_request(c)
    assert isinstance(verdict, Mutate)
    arguments = verdict.message["params"]["arguments"]
    assert arguments == {"note": "use [REDACTED:github-pat] please", "count": 3}
    assert verdict.message["id"] == 7 and verdict.message["params"]["name"] == "s__t"


async def test_secret_in_result_is_redacted_and_json_stays_valid() -> None:
    result = {"content": [{"type": "text", "text": f'{{"token": "{GITHUB}"}}'}],
              "structuredContent": {"env": {"AWS": AWS_KEY, "count": 2, "ok": True}}}
    verdict = await guard().on_response(tool_call({}), result)
    assert isinstance(verdict, Mutate)
    out = verdict.message
    assert orjson.loads(orjson.dumps(out)) == out
    assert out["structuredContent"] == {"env": {"AWS": "[REDACTED:aws-access-key-id]", "count": 2, "ok": True}}
    assert orjson.loads(out["content"][0]["text"]) == {"token": "[REDACTED:github-pat]"}
    assert result["structuredContent"]["env"]["AWS"] == AWS_KEY  # the original is not modified


async def test_monitor_records_without_changing() -> None:
    verdict = await guard(action="monitor").on_response(tool_call({}), text_result(f"card {CARD}"))
    assert isinstance(verdict, Pass)
    assert [f["rule"] for f in verdict.findings] == ["pii.credit-card"]
    assert verdict.findings[0]["action"] == "monitor"
    assert CARD not in orjson.dumps(verdict.findings).decode()


async def test_low_severity_pii_is_opt_in_and_then_only_recorded() -> None:
    assert await guard().on_response(tool_call({}), text_result("write to jane.doe@example.org")) is PASS
    verdict = await guard(report_severity="low").on_response(tool_call({}), text_result("write to jane@example.org"))
    assert isinstance(verdict, Pass)
    assert verdict.findings[0]["rule"] == "pii.email" and verdict.findings[0]["action"] == "monitor"


async def test_per_rule_overrides() -> None:
    g = guard(rules={"pii.email": "redact", "aws-access-key-id": "ignore"})
    verdict = await g.on_response(tool_call({}), text_result(f"jane@example.org {AWS_KEY}"))
    assert isinstance(verdict, Mutate)
    assert verdict.message["content"][0]["text"] == f"[REDACTED:email] {AWS_KEY}"


async def test_category_override_blocks_all_pii() -> None:
    verdict = await guard(rules={"pii.*": "block"}).on_response(tool_call({}), text_result("SSN 536-90-4399"))
    assert isinstance(verdict, Reject)
    assert verdict.findings[0]["rule"] == "pii.us-ssn"


async def test_custom_rule() -> None:
    g = guard(custom_rules=[{"id": "employee-id", "pattern": r"\bEMP-[0-9]{6}\b", "category": "pii",
                             "severity": "high"}])
    verdict = await g.on_response(tool_call({}), text_result("owner EMP-123456"))
    assert isinstance(verdict, Mutate)
    assert verdict.message["content"][0]["text"] == "owner [REDACTED:employee-id]"


async def test_sensitive_field_names() -> None:
    verdict = await guard().on_request(tool_call({"db": {"password": "Zq8!vR2#pL9w"}}))
    assert isinstance(verdict, Mutate)
    assert verdict.message["params"]["arguments"]["db"]["password"] == "[REDACTED:sensitive-field]"


async def test_server_to_client_sampling_request_is_scanned() -> None:
    c = Call(message={"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage",
                      "params": {"messages": [{"role": "user", "content": {"type": "text", "text": GITHUB}}],
                                 "maxTokens": 10}},
             principal=ANONYMOUS, era="legacy", protocol_version="2025-11-25", transport="http", direction="server")
    verdict = await guard().on_request(c)
    assert isinstance(verdict, Mutate)
    assert verdict.message["params"]["messages"][0]["content"]["text"] == "[REDACTED:github-pat]"
    assert verdict.message["params"]["maxTokens"] == 10


async def test_client_answer_to_server_request_is_scanned() -> None:
    c = tool_call({}, direction="server", method="elicitation/create")
    answer = {"action": "accept", "content": {"apiKey": GITHUB}}
    verdict = await guard().on_response(c, answer)
    assert isinstance(verdict, Mutate)
    assert verdict.message["content"]["apiKey"] == "[REDACTED:github-pat]"


async def test_directions_can_be_switched_off() -> None:
    g = guard(requests=False, responses=False, server_requests=False)
    assert await g.on_request(tool_call({"k": AWS_KEY})) is PASS
    assert await g.on_response(tool_call({}), text_result(AWS_KEY)) is PASS


async def test_images_are_not_scanned() -> None:
    result = {"content": [{"type": "image", "mimeType": "image/png", "data": AWS_KEY}]}
    assert await guard().on_response(tool_call({}), result) is PASS


async def test_unknown_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        guard(rules={"secret.no-such-rule": "block"})
    assert "no-such-rule" in info.value.problems[0]


async def test_bad_custom_pattern_is_a_settings_error() -> None:
    with pytest.raises(ValidationError) as info:
        DlpSettings(custom_rules=[{"id": "bad", "pattern": "a+", "category": "secret"}])
    assert info.value.errors()[0]["loc"] == ("custom_rules", 0, "pattern")


async def test_missing_pack_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        guard(packs=["secrets", "no/such/pack.yaml"])
    assert info.value.problems[0].startswith("guards.dlp: rule pack no/such/pack.yaml")
