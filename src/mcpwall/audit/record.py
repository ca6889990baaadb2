"""The audit record format (version 1): canonical encoding, hashing and chain linking.

A record is a flat JSON object. Its *canonical encoding* is UTF-8 JSON with keys sorted and no
insignificant whitespace (what ``orjson`` produces with ``OPT_SORT_KEYS``). The record's hash is
SHA-256 over the canonical encoding of every field except ``hash`` itself; ``prev_hash`` is the
hash of the record before it, and the first record links to a genesis value derived from the
chain id. ``docs/audit.md`` is the normative description; this module is the only code that
encodes or hashes records, so writers and verifiers cannot drift apart.

Nothing here touches storage, threads or the network.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

FORMAT_VERSION = 1
GENESIS_PREFIX = b"mcpwall-audit/1 genesis "
_CANONICAL = orjson.OPT_SORT_KEYS


def canonical(value: Any) -> bytes:
    """The canonical encoding: sorted keys, compact separators, UTF-8."""
    return orjson.dumps(value, option=_CANONICAL)


def genesis_hash(chain_id: str) -> str:
    """The ``prev_hash`` of a chain's first record. Binding it to the chain id means records
    cannot be spliced from one chain into another without breaking the link."""
    return hashlib.sha256(GENESIS_PREFIX + chain_id.encode()).hexdigest()


def record_hash(record: dict[str, Any]) -> str:
    """SHA-256 (hex) over the canonical encoding of ``record`` without its ``hash`` field."""
    if "hash" in record:
        record = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical(record)).hexdigest()


_prefixes: dict[int, str] = {}


def timestamp(epoch: float | None = None) -> str:
    """RFC 3339 UTC with microseconds and a ``Z``: fixed width, so it sorts as text."""
    value = time.time() if epoch is None else epoch
    second, fraction = divmod(round(value * 1_000_000), 1_000_000)
    prefix = _prefixes.get(second)
    if prefix is None:  # formatting the date part is the slow bit, and it changes once a second
        if len(_prefixes) > 64:
            _prefixes.clear()
        prefix = _prefixes[second] = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{prefix}.{fraction:06d}Z"


def parse_timestamp(text: str) -> float:
    """Inverse of :func:`timestamp`; also accepts plain ISO dates and times with offsets."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class Sealed:
    """A record linked into the chain, ready to store."""

    seq: int
    hash: str
    body: bytes  # canonical encoding of the record without ``hash``
    record: dict[str, Any]  # the record without ``hash``

    @property
    def columns(self) -> dict[str, Any]:
        return index_columns(self.record)


def seal(record: dict[str, Any], seq: int, prev_hash: str) -> Sealed:
    """Give ``record`` its place in the chain: version, sequence number and ``prev_hash``."""
    linked = dict(record)
    linked["v"] = FORMAT_VERSION
    linked["seq"] = seq
    linked["prev_hash"] = prev_hash
    linked.pop("hash", None)
    body = canonical(linked)
    return Sealed(seq, hashlib.sha256(body).hexdigest(), body, linked)


def link(records: list[dict[str, Any]], seq: int, prev_hash: str) -> list[Sealed]:
    """Seal ``records`` in order after the record ``seq`` whose hash is ``prev_hash``."""
    out: list[Sealed] = []
    for record in records:
        seq += 1
        sealed = seal(record, seq, prev_hash)
        prev_hash = sealed.hash
        out.append(sealed)
    return out


def index_columns(record: dict[str, Any]) -> dict[str, Any]:
    """The fields stores keep in their own columns for filtering. They are copies: verification
    checks they still equal the record, so editing a column is caught like editing the body."""
    principal = record.get("principal")
    return {
        "ts": _text(record.get("ts")),
        "kind": _text(record.get("kind")),
        "principal": _text(principal.get("id")) if isinstance(principal, dict) else None,
        "upstream": _text(record.get("upstream")),
        "method": _text(record.get("method")),
        "tool": _text(record.get("target")),
        "decision": _text(record.get("decision")),
    }


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
