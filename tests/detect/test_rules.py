"""Rule packs: they load, they are big enough, and every rule detects its examples but not its negatives."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from mcpwall.detect.engine import Engine
from mcpwall.detect.rules import BUILTIN_PACKS, Rule, RuleError, RuleSpec, load_pack, load_rules, matches_id
from mcpwall.detect.samples import examples


def test_every_builtin_pack_loads() -> None:
    for pack in BUILTIN_PACKS:
        assert load_pack(pack)


def test_secret_pack_has_at_least_150_provider_detectors() -> None:
    rules = load_pack("secrets")
    specific = [r for r in rules if not r.generic]
    assert len(specific) >= 150
    assert len({r.id for r in rules}) == len(rules)


def test_every_rule_has_an_example(all_rules: list[Rule]) -> None:
    missing = [r.id for r in all_rules if not r.examples]
    assert missing == []


def test_examples_match_and_negatives_do_not(all_rules: list[Rule]) -> None:
    engine = Engine(all_rules)
    misses: list[str] = []
    for rule in all_rules:
        for template in rule.examples:
            for text in examples(template, 3):
                if rule.id not in {m.rule.id for m in engine.scan([text]).matches}:
                    misses.append(f"{rule.id}: {text[:60]!r}")
        for text in rule.negatives:
            if rule.id in {m.rule.id for m in engine.scan([text]).matches}:
                misses.append(f"{rule.id} fires on negative {text[:60]!r}")
    assert misses == []


def test_categories_are_consistent(all_rules: list[Rule]) -> None:
    counts = Counter(r.category for r in all_rules)
    assert set(counts) == {"secret", "pii", "poisoning", "injection"}
    assert all(r.id.startswith(f"{r.category}.") for r in all_rules)


def test_custom_rules_and_pack_files(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(
        "pack: mine\ncategory: secret\nrules:\n"
        "  - {id: acme-key, pattern: '\\bacme_[a-z0-9]{16}\\b', severity: high}\n")
    rules = load_rules(["mine.yaml"], [RuleSpec(id="order-ref", pattern=r"\bORD-[0-9]{8}\b", category="pii")],
                       base_dir=tmp_path)
    assert [r.id for r in rules] == ["secret.acme-key", "custom.order-ref"]
    assert rules[1].category == "pii"
    assert matches_id(rules[0], "acme-key") and matches_id(rules[0], "secret.*")


def test_broken_pack_reports_pack_and_reason(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("pack: bad\ncategory: secret\nrules:\n  - {id: x, pattern: 'a+'}\n")
    with pytest.raises(RuleError, match=r"bad\.yaml"):
        load_rules(["bad.yaml"], base_dir=tmp_path)


def test_duplicate_ids_are_refused() -> None:
    spec = RuleSpec(id="dup", pattern=r"\bdup[0-9]{3}\b")
    with pytest.raises(RuleError, match="duplicate"):
        load_rules([], [spec, spec])


def test_category_filter() -> None:
    assert {r.category for r in load_rules(list(BUILTIN_PACKS), categories=["pii"])} == {"pii"}
