"""Property tests for every parser the scanner points at untrusted bytes."""

from __future__ import annotations

import contextlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from mcpwall.scan.clients import jsonc
from mcpwall.scan.probe import auth_params, resource_metadata_url
from mcpwall.scan.rules import find_poisoning, find_secrets, hidden_characters, visible
from mcpwall.scan.wire import parse_body, parse_sse

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


@given(st.binary(max_size=2000), st.sampled_from(["application/json", "text/event-stream", "text/html", ""]))
def test_parse_body_never_raises(body: bytes, content_type: str) -> None:
    assert isinstance(parse_body(content_type, body), list)


@given(st.lists(json_values, min_size=1, max_size=4))
def test_sse_round_trip(messages: list[object]) -> None:
    stream = "".join(f"event: message\nid: {i}\ndata: {json.dumps(m)}\n\n" for i, m in enumerate(messages))
    assert parse_body("text/event-stream", stream.encode()) == messages


@given(st.text(max_size=500))
def test_parse_sse_never_raises(text: str) -> None:
    assert all(isinstance(e, str) for e in parse_sse(text))


def test_sse_multiline_data_and_comments() -> None:
    assert parse_sse(": keepalive\ndata: {\"a\":\ndata: 1}\n\n") == ['{"a":\n1}']


@given(st.text(max_size=300))
def test_auth_params_never_raises(header: str) -> None:
    assert isinstance(auth_params(header), dict)


@given(st.text(alphabet=st.characters(blacklist_characters='"\\', blacklist_categories=("Cs",)), max_size=60))
def test_auth_params_reads_quoted_values(value: str) -> None:
    header = f'Bearer realm="mcp", resource_metadata="{value}", scope="a b"'
    params = auth_params(header)
    assert params["resource_metadata"] == value and params["scope"] == "a b"


def test_resource_metadata_url_variants() -> None:
    assert resource_metadata_url('Bearer resource_metadata="https://x/.well-known/oauth-protected-resource"') == \
        "https://x/.well-known/oauth-protected-resource"
    assert resource_metadata_url("Bearer resource_metadata=https://x/prm, scope=a") == "https://x/prm"
    assert resource_metadata_url('Bearer realm="x"') is None


@given(json_values)
def test_jsonc_reads_plain_json(value: object) -> None:
    assert jsonc.loads(json.dumps(value)) == value


@given(json_values)
def test_jsonc_ignores_comments_and_trailing_commas(value: object) -> None:
    text = json.dumps({"k": value, "s": "// not a comment /* nor this */"}, indent=1)
    noisy = "// head\n" + text.replace("\n", " /* c */\n", 3).rstrip("}") + ",\n}"
    assert jsonc.loads(noisy) == {"k": value, "s": "// not a comment /* nor this */"}


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_jsonc_raises_only_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        jsonc.loads(text)


@given(st.text(max_size=400))
def test_text_rules_never_raise_and_never_echo_long_secrets(text: str) -> None:
    for match in find_secrets(text):
        assert len(match.excerpt) < 40
    find_poisoning(text)
    hidden_characters(text)
    assert len(visible(text, 50)) <= 50
