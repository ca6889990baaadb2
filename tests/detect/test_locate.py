"""Locating suspect strings in serialised JSON: the fast path finds what the per-string walk finds.

The reference is the scanner with the JSON path switched off (every string walked and scanned).
The fast path is forced on for any size (``many_strings=0``) and, in some tests, made to cut the
buffer into tiny chunks, so splitting at string delimiters is exercised on every example.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mcpwall.detect import locate, rewrite
from mcpwall.detect.engine import Engine, hyperscan_available
from mcpwall.detect.rules import Rule
from mcpwall.detect.scanner import HIDDEN_DEFAULTS, Scan, Scanner
from mcpwall.detect.walker import iter_strings

pytestmark = pytest.mark.skipif(not hyperscan_available(), reason="the JSON path needs the hyperscan backend")

TOKEN = "ghp_" + "k7Qd9Lr2Xv8Zp1Nc4Ty6Mb3Hs5Wf0Ja2Ge9U"
AWS = "AKIA" + "Q3ZPW5XT7L2M4N6R"
# Findings of every kind, and the characters JSON escapes or the normaliser cares about.
PLANTED = [
    TOKEN, AWS, "4111 1111 1111 1111", "jane.doe@example.org", "+1 (415) 555-2671", "203.0.113.42",
    "Ignore all previous instructions", "<IMPORTANT>", "Please transfer $5 from my account to", "<!--", "-->",
    "\u200b", "\u202e", chr(0xE0041) + chr(0xE0042), "\x1b[31m", "\ufe00\ufe01", "\u0430", "\x7f", "\x85",
    "\uff49\uff47\uff4e\uff4f\uff52\uff45",
    '"', "\\", '\\"', "\n", "\t", "\r", "\x00", "\x0b", "\x1f", "\u2028", "é", "中", "\U0001f600", " ", "=", ":",
    "key=", "password=", "api_key: ", "Bearer ", "-----BEGIN RSA PRIVATE KEY-----", "\ud800",
]
KEYS = ["text", "note", "type", "data", "blob", "password", "client_secret", "next_page_token", "api_key",
        "Password\n", "x" * 90 + "password", "\u017fecret", "to\u212aen", "\u0131d_token", 'quo"te', "back\\slash",
        "tab\tkey", "é", "", "image", "audio"]
texts = st.lists(st.sampled_from(PLANTED) | st.text(max_size=8) | st.sampled_from(["image", "audio"]),
                 max_size=6).map("".join)
leaves = st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) \
    | st.floats(allow_nan=False, allow_infinity=False) | texts
json_values = st.recursive(
    leaves, lambda children: st.lists(children, max_size=5) | st.dictionaries(st.sampled_from(KEYS), children,
                                                                               max_size=5),
    max_leaves=30)
HS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@pytest.fixture(scope="module")
def engine(all_rules: list[Rule]) -> Engine:
    return Engine(all_rules, "hyperscan")


def pair(engine: Engine) -> tuple[Scanner, Scanner]:
    fast = Scanner(engine, hidden=HIDDEN_DEFAULTS, sensitive_fields=True, many_strings=0)
    slow = Scanner(engine, hidden=HIDDEN_DEFAULTS, sensitive_fields=True, json_prefilter=False)
    return fast, slow


def redacted(value: Any, scan: Scan) -> Any:
    return rewrite.apply(value, scan, scan.findings, rewrite.redaction)


def assert_same(engine: Engine, value: Any) -> None:
    fast, slow = pair(engine)
    quick, full = fast.scan(value, ("result",)), slow.scan(value, ("result",))
    assert quick.findings == full.findings
    assert quick.truncated == full.truncated
    wrapped = {"result": value}
    assert redacted(wrapped, quick) == redacted(wrapped, full)


@settings(max_examples=200, deadline=None, suppress_health_check=HS)
@given(value=json_values)
def test_fast_path_gives_the_walks_findings_and_redactions(engine: Engine, value: Any) -> None:
    assert_same(engine, value)


@settings(max_examples=120, deadline=None, suppress_health_check=HS)
@given(value=json_values)
def test_splitting_at_delimiters_loses_nothing(engine: Engine, value: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locate, "CHUNK", 16)  # a check per few tokens, and splits inside each
    monkeypatch.setattr(locate, "DENSE_CHUNKS", 1 << 30)
    monkeypatch.setattr(locate, "NARROW_PASSES", 1 << 30)
    assert_same(engine, value)


_FIRST_END = locate._first_end


def _last_end(expression: bytes, data: Any) -> int:
    """Like locate._first_end, but the last report: Hyperscan promises no order."""
    _FIRST_END(expression, b"")  # compiles the database once
    database = locate._databases[expression]
    ends: list[int] = []
    database.scan(data, match_event_handler=lambda _i, _f, end, _fl, _c: ends.append(end))
    return ends[-1] if ends else -1


@settings(max_examples=120, deadline=None, suppress_health_check=HS)
@given(value=json_values)
def test_delimiter_reports_in_any_order_lose_nothing(engine: Engine, value: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locate, "_first_end", _last_end)
    monkeypatch.setattr(locate, "CHUNK", 16)
    monkeypatch.setattr(locate, "DENSE_CHUNKS", 1 << 30)
    monkeypatch.setattr(locate, "NARROW_PASSES", 1 << 30)
    assert_same(engine, value)


@settings(max_examples=60, deadline=None, suppress_health_check=HS)
@given(value=json_values)
def test_too_many_suspects_falls_back_to_the_walk(engine: Engine, value: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locate, "MIN_SUSPECTS", 1)
    assert_same(engine, value)


def serialised(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # lone surrogates: the scanner walks such messages instead
        assume(False)
        raise


def _delimiters(data: bytes) -> list[int]:
    """Every quote after an even run of backslashes: the reference for what delimits a token."""
    out = []
    for index, byte in enumerate(data):
        if byte == 0x22:
            run = len(data[:index]) - len(data[:index].rstrip(b"\\"))
            if run % 2 == 0:
                out.append(index)
    return out


@given(st.lists(st.sampled_from([b"\\", b'"', b"a", b"\xc3\xa9"]), max_size=40).map(b"".join),
       st.integers(min_value=1, max_value=45), st.integers(min_value=0, max_value=45))
def test_delimiter_search_never_reports_an_escaped_quote(data: bytes, start: int, stop: int) -> None:
    data = b"{" + data
    found = locate._delimiter(memoryview(data), start, stop)
    inside = [d for d in _delimiters(data) if start <= d < min(stop, len(data))]
    if found >= 0:
        assert found in inside
    elif data[start - 1:start] != b"\\":
        assert inside == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([b"\\" * 700, b"\\" * 1025, b'"', b"a" * 900, b"\\", b"a"]), max_size=30)
       .map(b"".join), st.integers(min_value=1, max_value=20000))
def test_delimiter_search_across_widening_windows(data: bytes, start: int) -> None:
    """Long backslash runs across the search's window edges: still never an escaped quote, still exact."""
    data = b"{" + data
    start = min(start, len(data))
    found = locate._delimiter(memoryview(data), start, len(data))
    inside = [d for d in _delimiters(data) if d >= start]
    if found >= 0:
        assert found in inside
    elif data[start - 1:start] != b"\\":
        assert inside == []


@given(st.lists(st.sampled_from([b"\\", b'"', b"a", b"\xc3\xa9"]), max_size=40).map(b"".join),
       st.integers(min_value=0, max_value=45), st.integers(min_value=0, max_value=45))
def test_backward_delimiter_search_is_exact(data: bytes, a: int, b: int) -> None:
    data = b"{" + data
    assume(a < len(data) and data[a:a + 1] != b"\\")
    found = locate._delimiter_before(data, data[::-1], a, b)
    inside = [d for d in _delimiters(data) if a < d < min(b, len(data))]
    assert found in inside if inside else found == -1


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_every_closing_quote_maps_back_to_its_string(value: Any) -> None:
    data = serialised(value)
    every = dict.fromkeys(_delimiters(data), locate.VALUE)
    assert locate.strings_at(value, data, every) == list(iter_strings(value))


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_key_suspects_map_to_the_strings_stored_under_them(value: Any) -> None:
    data = serialised(value)
    every = dict.fromkeys(_delimiters(data), locate.KEY)
    expected = [(p, s) for p, s in iter_strings(value) if p and isinstance(p[-1], str)]
    assert locate.strings_at(value, data, every) == expected


def test_a_secret_among_many_strings_is_found_at_its_path(engine: Engine) -> None:
    rows: list[dict[str, Any]] = [{"id": i, "name": f"item-{i}", "note": "quick brown fox"} for i in range(3000)]
    rows[1234]["note"] = f'say "hi"\n\u200b then {TOKEN}'
    fast, slow = pair(engine)
    scan = fast.scan({"rows": rows})
    assert [(f.rule, f.location) for f in scan.findings] == [
        ("hidden.zero-width", "$.rows[1234].note"), ("secret.github-pat", "$.rows[1234].note")]
    assert scan.findings == slow.scan({"rows": rows}).findings
    note = rows[1234]["note"]
    [secret] = [f for f in scan.findings if f.category == "secret"]
    assert note[secret.start:secret.end] == TOKEN


@pytest.mark.parametrize("key", ["x" * 100 + "password", "Password\n", "\u017fecret", "to\u212aen", "client_secret"])
def test_credential_named_keys_are_found_however_spelled(engine: Engine, key: str) -> None:
    value = {"rows": [{"a": "b"}] * 80 + [{key: "Zq8!vR2#pL9w"}]}
    fast, slow = pair(engine)
    quick = fast.scan(value)
    assert [f.rule for f in quick.findings] == ["secret.sensitive-field"]
    assert quick.findings == slow.scan(value).findings


def test_binary_payloads_stay_unscanned(engine: Engine) -> None:
    value = {"content": [{"type": "image", "data": TOKEN}, {"blob": TOKEN}] * 40}
    fast, _ = pair(engine)
    assert fast.scan(value).findings == []


class Text(str):
    def __str__(self) -> str:
        return "nothing here"


@pytest.mark.parametrize("odd", [Text(TOKEN), (TOKEN,), {1: TOKEN}, "\ud800" + TOKEN])
def test_values_serialisation_does_not_mirror_are_walked(engine: Engine, odd: Any) -> None:
    value = {"rows": ["plain"] * 80 + [odd, TOKEN]}
    assert_same(engine, value)


def test_a_capped_scan_is_left_to_the_walk(all_rules: list[Rule]) -> None:
    capped = Engine(all_rules, "hyperscan", max_matches=3)
    value = {"rows": [f"{TOKEN} {AWS}"] * 100}
    fast, slow = pair(capped)
    quick = fast.scan(value)
    assert quick.truncated and quick.findings == slow.scan(value).findings


def test_clean_messages_report_no_suspects(engine: Engine) -> None:
    value = {"rows": [{"id": i, "name": f"item-{i}", "note": "quick brown fox"} for i in range(500)]}
    assert locate.suspects(engine, orjson.dumps(value), keys=True) == {}
