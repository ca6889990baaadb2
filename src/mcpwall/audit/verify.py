"""Verify an audit chain: every hash, every link, every signature, and the signed anchors.

What each tampering looks like, and the kind :func:`verify` names for it:

* ``edited`` — a record's bytes no longer hash to its stored hash; or an indexed column was
  changed; or a record was rewritten *and* rehashed, so its successor no longer links to it
  (named: the rewritten record); or a whole stretch was rewritten and relinked, which only a
  signed checkpoint can expose (named: the first record after the last checkpoint that still
  matches, with the range in ``until_seq``).
* ``deleted`` — a gap in the sequence numbers, or records missing from the start of the chain
  without a signed anchor and an in-chain prune record that account for them.
* ``reordered`` — a record stored at another record's place (its own ``seq`` differs from the
  position it is stored under), or a record that appears after a later one.
* ``truncated`` — records missing from the end: a signed checkpoint, the signed head, the head
  file kept outside the store, or the head row says the chain went further.
* ``signature`` — a checkpoint or head whose signature does not verify against the trusted keys,
  or records appended after the head row.

The writer signs the head at most every ``head_interval``, not per batch, so the records between
the last signed head and the head row — the *unsigned tail* — are normal (a gateway killed
mid-run leaves one until its next start). They are reported as a warning, not a problem: the hash
chain and the head row still tie them together, but no signature vouches for them, so a
truncation of them is detectable only down to the last signed head (docs/audit.md).

Checking continues after a problem, so the report names the first bad record of each kind.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mcpwall.audit.record import canonical, genesis_hash, index_columns, record_hash
from mcpwall.audit.signing import Checkpoint, verify_checkpoint
from mcpwall.audit.store import COLUMNS, AuditStore, Head, Row, StoreError

Kind = Literal["edited", "deleted", "reordered", "truncated", "signature"]
PRUNE_EVENT = "audit.pruned"


@dataclass(slots=True)
class Problem:
    kind: Kind
    seq: int | None
    detail: str
    until_seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "seq": self.seq, "detail": self.detail}
        if self.until_seq is not None:
            out["until_seq"] = self.until_seq
        return out


@dataclass(slots=True)
class Report:
    chain: str = ""
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints: int = 0
    unsigned: int = 0  # records after the last signed head (the unsigned tail); not a problem by itself
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad(self) -> Problem | None:
        located = [p for p in self.problems if p.seq is not None]
        return min(located, key=lambda p: p.seq or 0) if located else (self.problems[0] if self.problems else None)

    def first_of(self, kind: Kind) -> Problem | None:
        return next((p for p in self.problems if p.kind == kind), None)

    def as_dict(self) -> dict[str, Any]:
        first = self.first_bad
        return {
            "ok": self.ok, "chain": self.chain, "records": self.records, "first_seq": self.first_seq,
            "last_seq": self.last_seq, "checkpoints": self.checkpoints, "unsigned": self.unsigned,
            "first_bad": first.as_dict() if first else None,
            "problems": [p.as_dict() for p in self.problems], "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
        }


class _Findings:
    """Keeps the first problem of each kind (plus signature problems, which are per object)."""

    def __init__(self) -> None:
        self.items: list[Problem] = []
        self._kinds: set[str] = set()

    def add(self, problem: Problem) -> None:
        if problem.kind in self._kinds and problem.kind != "signature":
            return
        self._kinds.add(problem.kind)
        self.items.append(problem)


def read_head_file(path: Path) -> Checkpoint | None:
    try:
        return Checkpoint.from_json(path.read_bytes())
    except FileNotFoundError:
        return None


def verify_store(store: AuditStore, keys: dict[str, Ed25519PublicKey], *,
                 head_file: Checkpoint | None = None, head_file_name: str = "head file") -> Report:
    started = time.perf_counter()
    try:
        head = store.head()
    except StoreError:
        head = None
    if head is None:
        report = Report()
        report.problems.append(Problem("truncated", None, "the store holds no audit chain"))
        return report
    report = verify_rows(store.rows(), head, store.checkpoints(), keys, head_file=head_file,
                         head_file_name=head_file_name)
    report.seconds = time.perf_counter() - started
    return report


def verify_rows(rows: Iterable[Row], head: Head, checkpoints: list[Checkpoint],
                keys: dict[str, Ed25519PublicKey], *, head_file: Checkpoint | None = None,
                head_file_name: str = "head file") -> Report:
    report = Report(chain=head.chain, checkpoints=len(checkpoints))
    found = _Findings()

    # Signed claims about the chain: (seq, hash, where the claim came from).
    anchors: dict[int, tuple[str, str]] = {}
    for cp in checkpoints:
        problem = _check_signed(cp, head.chain, keys, f"checkpoint at seq {cp.seq}")
        if problem:
            found.add(problem)
        else:
            anchors[cp.seq] = (cp.hash, f"signed checkpoint at seq {cp.seq}")
    signed_head: Checkpoint | None = None
    if head.checkpoint is None:
        if head.seq > 0:
            found.add(Problem("signature", None, "the head is not signed"))
    else:
        problem = _check_signed(head.checkpoint, head.chain, keys, "signed head")
        if problem:
            found.add(problem)
        else:
            signed_head = head.checkpoint
    external: Checkpoint | None = None
    if head_file is None:
        report.warnings.append(f"no {head_file_name}: truncation after the last stored checkpoint can only be "
                               "detected from the signed head inside the store")
    else:
        problem = _check_signed(head_file, head.chain, keys, head_file_name)
        if problem:
            found.add(problem)
        else:
            external = head_file

    prev_hash: str | None = None
    expected: int | None = None
    last_good_anchor = 0
    latest_prune: int | None = None
    hashes_at: dict[int, str] = {}
    wanted = set(anchors) | {c.seq for c in (signed_head, external) if c is not None} | {head.seq}
    for row in rows:
        report.records += 1
        try:
            record = orjson.loads(row.body)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except (orjson.JSONDecodeError, ValueError):
            found.add(Problem("edited", row.seq, f"record {row.seq} is not a valid record"))
            prev_hash, expected = row.hash, row.seq + 1
            continue
        seq = record.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            found.add(Problem("edited", row.seq, f"record {row.seq} has no sequence number"))
            prev_hash, expected = row.hash, row.seq + 1
            continue
        actual_hash = record_hash(record)
        if seq != row.seq:
            if actual_hash == row.hash:
                found.add(Problem("reordered", row.seq, f"record {seq} is stored in the place of record {row.seq}"))
            else:
                found.add(Problem("edited", row.seq, f"record {row.seq} was changed (its sequence number reads {seq})"))
        elif actual_hash != row.hash:
            found.add(Problem("edited", seq, f"record {seq} was changed after it was written (hash mismatch)"))
        else:
            columns = index_columns(record)
            changed = [c for c in COLUMNS if row.columns.get(c) != columns[c]]
            if changed:
                found.add(Problem("edited", seq, f"record {seq}: column {changed[0]} differs from the record"))
        if report.first_seq is None:
            report.first_seq = seq
            _check_start(record, seq, head.chain, anchors, found)
        elif expected is not None:
            if seq > expected:
                found.add(Problem("deleted", expected, f"records {expected}..{seq - 1} are missing",
                                  until_seq=seq - 1))
            elif seq < expected:
                found.add(Problem("reordered", seq, f"record {seq} appears after record {expected - 1}"))
            elif record.get("prev_hash") != prev_hash:
                found.add(Problem("edited", seq - 1, f"record {seq} does not link to record {seq - 1}: record "
                                  f"{seq - 1} was rewritten (or {seq} forged)"))
        if seq in wanted:
            hashes_at[seq] = row.hash
        if seq in anchors:
            if anchors[seq][0] == row.hash:
                last_good_anchor = seq
            else:
                found.add(Problem("edited", last_good_anchor + 1,
                                  f"the chain was rewritten between seq {last_good_anchor + 1} and {seq}: record {seq} "
                                  f"does not match the {anchors[seq][1]}", until_seq=seq))
                last_good_anchor = seq
        if record.get("kind") == PRUNE_EVENT:
            through = record.get("through_seq")
            if isinstance(through, int):
                latest_prune = through
        prev_hash, expected = row.hash, seq + 1
        report.last_seq = seq

    last = report.last_seq or 0
    # The chain's start: records before the first one must have been pruned, on the record.
    if report.first_seq is not None and report.first_seq > 1 and latest_prune != report.first_seq - 1:
        found.add(Problem("deleted", (latest_prune or 0) + 1,
                          f"records {(latest_prune or 0) + 1}..{report.first_seq - 1} are missing from the start "
                          "and no prune record accounts for them", until_seq=report.first_seq - 1))
    # The chain's end, against every signed claim.
    claims: list[tuple[int, str, str]] = [(s, h, src) for s, (h, src) in anchors.items()]
    if signed_head is not None:
        claims.append((signed_head.seq, signed_head.hash, "signed head"))
    if external is not None:
        claims.append((external.seq, external.hash, head_file_name))
    signed_seq = signed_head.seq if signed_head is not None else 0
    if signed_head is None or head.seq != signed_seq:
        claims.append((head.seq, head.hash, "head row"))  # unsigned, but evidence all the same
    beyond = [c for c in claims if c[0] > last]
    if beyond:
        seq, _, source = max(beyond)
        found.add(Problem("truncated", last + 1, f"records {last + 1}..{seq} are missing from the end: the {source} "
                          f"says the chain reached seq {seq}", until_seq=seq))
    for seq, hash_, source in claims:
        if seq <= last and seq in hashes_at and hashes_at[seq] != hash_ and seq not in anchors:
            found.add(Problem("edited", last_good_anchor + 1,
                              f"the chain was rewritten: record {seq} does not match the {source}", until_seq=seq))
    if last > head.seq:
        found.add(Problem("signature", head.seq + 1, f"records {head.seq + 1}..{last} were added after the last "
                          f"{'signed ' if signed_head is not None and signed_seq == head.seq else ''}head",
                          until_seq=last))
    if signed_head is not None and (signed_seq > head.seq
                                    or (signed_seq == head.seq and signed_head.hash != head.hash)):
        found.add(Problem("signature", None, "the head row does not match its own signature"))
    if signed_head is not None and signed_seq < min(head.seq, last):
        report.unsigned = min(head.seq, last) - signed_seq
        report.warnings.append(
            f"records {signed_seq + 1}..{min(head.seq, last)} follow the last signed head (seq {signed_seq}): the hash "
            "chain links them, but no signature covers them yet, so removing them from the end would be detectable "
            "only down to that head (normal while the gateway runs, or after it was killed; it signs them at start)")

    report.problems = found.items
    return report


def verify_export(lines: Iterable[str | bytes], keys: dict[str, Ed25519PublicKey], *,
                  head_file: Checkpoint | None = None) -> Report:
    """Verify a JSON-lines export made with ``--proof``: records (each with its ``hash``), then
    ``{"checkpoint": {...}}`` lines and one ``{"head": {...}}`` line, all signed."""
    started = time.perf_counter()
    rows: list[Row] = []
    checkpoints: list[Checkpoint] = []
    head_cp: Checkpoint | None = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not an object")
            if "checkpoint" in obj:
                checkpoints.append(Checkpoint.from_obj(obj["checkpoint"]))
            elif "head" in obj:
                head_cp = Checkpoint.from_obj(obj["head"])
            else:
                stored = obj.pop("hash", "")
                seq = obj.get("seq")
                rows.append(Row(seq if isinstance(seq, int) and not isinstance(seq, bool) else -number,
                                stored if isinstance(stored, str) else "", canonical(obj).decode(), index_columns(obj)))
        except ValueError:
            rows.append(Row(-number, "", "", {}))
    if head_cp is None:
        report = Report()
        report.problems.append(Problem("truncated", None, "the export carries no signed head (export it with --proof)"))
        return report
    head = Head(head_cp.chain, head_cp.seq, head_cp.hash, head_cp)
    report = verify_rows(rows, head, checkpoints, keys, head_file=head_file)
    report.seconds = time.perf_counter() - started
    return report


def _check_signed(cp: Checkpoint, chain: str, keys: dict[str, Ed25519PublicKey], what: str) -> Problem | None:
    error = verify_checkpoint(cp, keys)
    if error:
        return Problem("signature", cp.seq, f"{what}: {error}")
    if cp.chain != chain:
        return Problem("signature", cp.seq, f"{what} belongs to another chain")
    return None


def _check_start(record: dict[str, Any], seq: int, chain: str, anchors: dict[int, tuple[str, str]],
                 found: _Findings) -> None:
    prev = record.get("prev_hash")
    if seq == 1:
        if prev != genesis_hash(chain):
            found.add(Problem("edited", 1, "the first record does not link to this chain's genesis"))
        return
    anchor = anchors.get(seq - 1)
    if anchor is None:
        found.add(Problem("deleted", 1, f"records before {seq} are missing and no signed checkpoint anchors "
                          f"record {seq}", until_seq=seq - 1))
    elif anchor[0] != prev:
        found.add(Problem("edited", seq, f"record {seq} does not link to the signed checkpoint at seq {seq - 1}"))
