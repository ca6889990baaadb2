"""Record format v1: canonical encoding, hashing, linking, and parsing of untrusted stored bytes."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpwall.audit.record import (
    canonical,
    genesis_hash,
    link,
    parse_timestamp,
    record_hash,
    seal,
    timestamp,
)
from mcpwall.audit.signing import Checkpoint, Signer, verify_checkpoint
from mcpwall.audit.store import Head, Row
from mcpwall.audit.verify import verify_export, verify_rows

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20) | st.floats(
    allow_nan=False, allow_infinity=False)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


def test_canonical_encoding_sorts_keys_without_whitespace() -> None:
    assert canonical({"b": 1, "a": [1, {"d": 2, "c": "é"}]}) == '{"a":[1,{"c":"é","d":2}],"b":1}'.encode()


@given(json_values)
def test_canonical_encoding_is_stable_through_a_round_trip(value: Any) -> None:
    once = canonical(value)
    assert canonical(orjson.loads(once)) == once


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_any_change_to_a_record_changes_its_hash(record: dict[str, Any]) -> None:
    sealed = seal(record, 5, "p" * 64)
    assert sealed.hash == record_hash(sealed.record) == record_hash({**sealed.record, "hash": "ignored"})
    changed = dict(sealed.record, extra_field=True)
    assert record_hash(changed) != sealed.hash


def test_link_chains_prev_hashes_in_order() -> None:
    first, second, third = link([{"kind": "a"}, {"kind": "b"}, {"kind": "c"}], 0, genesis_hash("chain"))
    assert [s.seq for s in (first, second, third)] == [1, 2, 3]
    assert first.record["prev_hash"] == genesis_hash("chain")
    assert second.record["prev_hash"] == first.hash and third.record["prev_hash"] == second.hash
    assert first.record["v"] == 1


def test_genesis_depends_on_the_chain_id() -> None:
    assert genesis_hash("a") != genesis_hash("b")


def test_timestamps_are_fixed_width_and_round_trip() -> None:
    text = timestamp(1_700_000_000.123456)
    assert text == "2023-11-14T22:13:20.123456Z"
    assert math.isclose(parse_timestamp(text), 1_700_000_000.123456, abs_tol=1e-6)
    assert len(timestamp(0.5)) == len(text)


def test_checkpoint_signatures_cover_every_field() -> None:
    signer = Signer.generate()
    keys = {signer.key_id: signer.public}
    cp = signer.checkpoint("chain", 10, "h" * 64, timestamp())
    assert verify_checkpoint(cp, keys) is None
    for field_name, value in (("seq", 11), ("hash", "x" * 64), ("chain", "other"), ("ts", timestamp(0))):
        forged = Checkpoint.from_obj({**orjson.loads(cp.to_json()), field_name: value})
        assert verify_checkpoint(forged, keys) == "bad signature"


@given(st.binary(max_size=200))
@settings(max_examples=200)
def test_checkpoint_parser_only_raises_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        Checkpoint.from_json(data)


@given(st.lists(st.tuples(st.integers(-5, 50), st.text(max_size=70), st.binary(max_size=120)), max_size=12))
@settings(max_examples=150)
def test_verifier_never_crashes_on_arbitrary_stored_rows(raw: list[tuple[int, str, bytes]]) -> None:
    rows = [Row(seq, hash_, body.decode("utf-8", "replace")) for seq, hash_, body in sorted(raw, key=lambda r: r[0])]
    report = verify_rows(rows, Head("chain", 0, genesis_hash("chain")), [], {})
    assert report.records == len(rows)
    if rows:
        assert not report.ok


@pytest.mark.parametrize("body", ['[1,2]', '{"seq": "1"}', '{"seq": true}', "not json", '{"seq": 1}'])
def test_malformed_bodies_are_reported_as_edited(body: str) -> None:
    report = verify_rows([Row(1, "0" * 64, body)], Head("chain", 1, "0" * 64), [], {})
    assert report.first_of("edited") is not None


@given(st.lists(st.binary(max_size=80) | st.builds(lambda d: orjson.dumps(d), json_values), max_size=10))
@settings(max_examples=150)
def test_export_verifier_never_crashes_on_arbitrary_lines(lines: list[bytes]) -> None:
    report = verify_export(lines, {})
    assert not report.ok or not [line for line in lines if line.strip()]
