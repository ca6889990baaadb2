"""The scanner: findings with paths, original offsets and excerpts that never hold the secret."""

from __future__ import annotations

import orjson

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
