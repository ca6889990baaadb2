"""Edits at finding spans: redaction never breaks the JSON or the message's shape."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpwall.detect import rewrite
from mcpwall.detect.engine import Engine
from mcpwall.detect.rules import Rule, load_pack
from mcpwall.detect.samples import examples
from mcpwall.detect.scanner import Scanner
from mcpwall.detect.walker import iter_strings

RULES: list[Rule] = load_pack("secrets") + load_pack("pii")
SCANNER = Scanner(Engine(RULES), sensitive_fields=True)
SECRETS = [text for rule in RULES[::7] for template in rule.examples[:1] for text in examples(template, 1)]

texts = st.lists(st.one_of(st.sampled_from(SECRETS), st.text(max_size=16),
                           st.sampled_from(['"', "\\", "\n", "\u200b", "{", "}", " "])), max_size=8).map("".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["text", "password", "data", "type", "k", "token"]), children, max_size=4),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_redaction_never_breaks_json(value: Any) -> None:
    scan = SCANNER.scan(value)
    redacted = rewrite.apply(value, scan, scan.findings, rewrite.redaction)
    assert orjson.loads(orjson.dumps(redacted)) == redacted
    assert [p for p, _ in iter_strings(redacted)] == [p for p, _ in iter_strings(value)]
    for finding in scan.findings:
        original = scan.strings[finding.path]
        secret = original[finding.start:finding.end]
        after = redacted
        for part in finding.path:
            after = after[part]
        assert after.count(secret) < original.count(secret)  # this occurrence is gone


def test_overlapping_spans_are_merged_once() -> None:
    scan = SCANNER.scan_text("postgres://app:" + "Tq9zLm2Xv8Rw4Kp7" + "@db.internal/app")
    out = rewrite.edit_string(scan.strings[()], scan.findings, rewrite.redaction)
    assert out.count("[REDACTED:") == 1
