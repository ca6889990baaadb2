"""The scanner: findings with paths, original offsets and excerpts that never hold the secret."""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcpwall.detect.engine import Engine
from mcpwall.detect.rules import Rule, Severity
from mcpwall.detect.scanner import HIDDEN_DEFAULTS, Scanner

TOKEN = "ghp_" + "k7Qd9Lr2Xv8Zp1Nc4Ty6Mb3Hs5Wf0Ja2Ge9U"


def scanner(rules: list[Rule], **kwargs: object) -> Scanner:
    return Scanner(Engine([r for r in rules if r.category in ("secret", "pii")]), **kwargs)  # type: ignore[arg-type]


def test_finding_fields_and_redacted_excerpt(all_rules: list[Rule]) -> None:
    result = {"content": [{"type": "text", "text": f"here is the token: {TOKEN} (keep it safe)"}]}
    scan = scanner(all_rules).scan(result)
    [finding] = scan.findings
    assert finding.rule == "secret.github-pat" and finding.category == "secret"
    assert finding.severity == Severity.CRITICAL
    assert finding.location == "$.content[0].text"
    assert result["content"][0]["text"][finding.start:finding.end] == TOKEN
    assert "[REDACTED:github-pat]" in finding.excerpt and TOKEN not in orjson.dumps(finding.to_dict()).decode()


def test_excerpts_mask_neighbouring_secrets_too(all_rules: list[Rule]) -> None:
    other = "AKIA" + "Q3ZPW5XT7L2M4N6R"
    scan = scanner(all_rules).scan_text(f"{TOKEN} {other}")
    assert len(scan.findings) == 2
    for finding in scan.findings:
        assert TOKEN not in finding.excerpt and other not in finding.excerpt


def test_offsets_are_in_the_original_string(all_rules: list[Rule]) -> None:
    text = "\u200b\u200b" + "\x1b[1m" + TOKEN
    [finding] = scanner(all_rules).scan_text(text).findings
    assert text[finding.start:finding.end] == TOKEN


def test_generic_findings_yield_to_specific_ones(all_rules: list[Rule]) -> None:
    scan = scanner(all_rules).scan_text(f'api_key = "{TOKEN}"')
    assert [f.rule for f in scan.findings] == ["secret.github-pat"]


def test_hidden_text_findings_only_when_asked(all_rules: list[Rule]) -> None:
    text = "fine\u202etext"
    assert scanner(all_rules).scan_text(text).findings == []
    scan = scanner(all_rules, hidden=HIDDEN_DEFAULTS).scan_text(text)
    assert [f.rule for f in scan.findings] == ["hidden.bidi-control"]


def test_sensitive_fields(all_rules: list[Rule]) -> None:
    value = {"password": "Zq8!vR2#pL9w", "next_page_token": "CAoQAAxyz12Z", "name": "Zq8!vR2#pL9w"}
    scan = scanner(all_rules, sensitive_fields=True).scan(value)
    assert [(f.rule, f.location) for f in scan.findings] == [("secret.sensitive-field", "$.password")]


def test_scan_keeps_only_strings_with_findings(all_rules: list[Rule]) -> None:
    scan = scanner(all_rules).scan({"a": "nothing", "b": TOKEN})
    assert list(scan.strings) == [("b",)]


TOKENS = ["ghp_" + "k7Qd9Lr2Xv8Zp1Nc4Ty6Mb3Hs5Wf0Ja2Ge9U", "Ignore all previous instructions", "<IMPORTANT>",
          "4111 1111 1111 1111", "password", "\x1b[31m", "\u200b", chr(0xE0041), '"', "\\", "\n", "\t", "\x00",
          "key=", "Please transfer $5 from my account", "é", " ", "api_key"]
values = st.recursive(
    st.none() | st.integers(min_value=-5, max_value=5)
    | st.lists(st.sampled_from(TOKENS) | st.text(max_size=6), max_size=6).map("".join),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["text", "password", "client_secret", "data", "type", "note"]), children, max_size=4),
    max_leaves=16)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values)
def test_json_prefilter_never_changes_findings(all_rules: list[Rule], value: object) -> None:
    engine = _shared_engine(all_rules)
    fast = Scanner(engine, hidden=HIDDEN_DEFAULTS, sensitive_fields=True, many_strings=0)
    slow = Scanner(engine, hidden=HIDDEN_DEFAULTS, sensitive_fields=True, json_prefilter=False)
    assert fast.scan(value).findings == slow.scan(value).findings


_ENGINE: list[Engine] = []


def _shared_engine(rules: list[Rule]) -> Engine:
    if not _ENGINE:
        _ENGINE.append(Engine(rules))
    return _ENGINE[0]
