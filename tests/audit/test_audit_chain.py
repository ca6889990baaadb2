"""The hash chain end to end: the writer builds it, the verifier proves it, tampering is named."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import orjson
import pytest

from mcpwall.audit.record import canonical, genesis_hash, record_hash
from mcpwall.audit.signing import Checkpoint, Signer, load_public_keys
from mcpwall.audit.sqlite import SqliteStore
from mcpwall.audit.verify import verify_store
from mcpwall.audit.writer import AuditWriter, WriterOptions
from support.audit_helpers import Chain, FlakyStore, call


def _body(chain: Chain, seq: int) -> dict:
    (body,) = chain.sql("SELECT body FROM audit_records WHERE seq = ?", (seq,))[0]
    return orjson.loads(body)


def _rewrite(chain: Chain, seq: int, record: dict) -> str:
    """Store ``record`` at ``seq`` with a correctly recomputed hash (what a careful attacker does)."""
    record = {k: v for k, v in record.items() if k != "hash"}
    new_hash = record_hash(record)
    chain.sql("UPDATE audit_records SET body = ?, hash = ? WHERE seq = ?", (canonical(record).decode(), new_hash, seq))
    return new_hash


# -- a healthy chain ------------------------------------------------------------------------------


def test_fresh_chain_verifies(chain100: Chain) -> None:
    report = chain100.verify()
    assert report.ok, report.as_dict()
    assert (report.records, report.first_seq, report.last_seq) == (100, 1, 100)
    assert report.checkpoints >= 10


def test_first_record_links_to_the_chain_genesis(chain100: Chain) -> None:
    (chain_id,) = chain100.sql("SELECT chain FROM audit_head")[0]
    assert _body(chain100, 1)["prev_hash"] == genesis_hash(chain_id)
    assert _body(chain100, 2)["prev_hash"] == chain100.sql("SELECT hash FROM audit_records WHERE seq = 1")[0][0]


@pytest.mark.anyio
async def test_chain_verifies_after_heavy_concurrent_traffic(chain_dir: Chain) -> None:
    writer = chain_dir.writer(checkpoint_every=500, buffer_size=100_000, batch_max=256)
    await writer.start()
    tasks, per_task = 40, 150

    async def client(n: int) -> None:
        for i in range(per_task):
            writer.submit(call(n * per_task + i, id=f"t{n}-{i}"))
            if i % 10 == 0:
                await asyncio.sleep(0)  # interleave with the other tasks

    async def durable_client(n: int) -> None:
        for i in range(20):
            future = writer.submit(call(i, id=f"sync{n}-{i}"), wait=True)
            assert future is not None
            assert await asyncio.wait_for(future, 30) > 0

    await asyncio.gather(*(client(n) for n in range(tasks)), *(durable_client(n) for n in range(5)))
    await writer.aclose()

    report = chain_dir.verify()
    assert report.ok, report.as_dict()
    expected = tasks * per_task + 5 * 20
    assert report.records == expected
    ids = [orjson.loads(b)["id"] for (b,) in chain_dir.sql("SELECT body FROM audit_records")]
    assert len(set(ids)) == expected  # every record exactly once
    seqs = [s for (s,) in chain_dir.sql("SELECT seq FROM audit_records ORDER BY seq")]
    assert seqs == list(range(1, expected + 1))


def test_two_writers_on_one_database_share_one_chain(chain_dir: Chain) -> None:
    first, second = chain_dir.writer(batch_max=13), chain_dir.writer(batch_max=17)
    first.start_thread()
    second.start_thread()
    for i in range(1500):
        (first if i % 2 else second).submit(call(i))
    first.close_sync()
    second.close_sync()
    report = chain_dir.verify(use_head_file=False)  # one head file cannot follow two writers
    assert report.ok, report.as_dict()
    assert report.records == 1500


@pytest.mark.anyio
async def test_sync_durability_resolves_after_commit(chain_dir: Chain) -> None:
    writer = chain_dir.writer()
    await writer.start()
    future = writer.submit(call(1), wait=True)
    assert future is not None
    seq = await asyncio.wait_for(future, 30)
    # Committed: another connection sees it before the writer is closed.
    assert chain_dir.sql("SELECT seq FROM audit_records WHERE seq = ?", (seq,)) == [(seq,)]
    await writer.aclose()


def test_restart_continues_the_chain(chain100: Chain) -> None:
    chain100.write([call(i) for i in range(100, 150)], checkpoint_every=10)
    report = chain100.verify()
    assert report.ok, report.as_dict()
    assert report.last_seq == 150


# -- each tampering kind, named -------------------------------------------------------------------


def test_edited_record_is_named(chain100: Chain) -> None:
    record = _body(chain100, 42)
    record["decision"] = "allow" if record["decision"] == "deny" else "deny"
    chain100.sql("UPDATE audit_records SET body = ? WHERE seq = 42", (canonical(record).decode(),))
    report = chain100.verify()
    assert not report.ok
    assert report.first_bad is not None
    assert (report.first_bad.kind, report.first_bad.seq) == ("edited", 42)


def test_edited_and_rehashed_record_is_named(chain100: Chain) -> None:
    record = _body(chain100, 42)
    record["arguments"] = {"i": "forged"}
    _rewrite(chain100, 42, record)
    report = chain100.verify()
    problem = report.first_of("edited")
    assert problem is not None and problem.seq == 42


def test_edited_index_column_is_named(chain100: Chain) -> None:
    chain100.sql("UPDATE audit_records SET principal = 'someone-else' WHERE seq = 17")
    report = chain100.verify()
    assert report.first_bad is not None
    assert (report.first_bad.kind, report.first_bad.seq) == ("edited", 17)


def test_rewritten_tail_is_caught_by_signed_checkpoints(chain100: Chain) -> None:
    # Rewrite 55..100 and relink every later record: hashes and links are all consistent,
    # so only the signatures (which the attacker cannot make) expose it.
    prev = chain100.sql("SELECT hash FROM audit_records WHERE seq = 54")[0][0]
    for seq in range(55, 101):
        record = _body(chain100, seq)
        if seq == 55:
            record["decision"] = "allow"
            record["arguments"] = {"i": "rewritten"}
        record["prev_hash"] = prev
        prev = _rewrite(chain100, seq, record)
    chain100.sql("UPDATE audit_head SET hash = ?", (prev,))
    report = chain100.verify()
    problem = report.first_of("edited")
    assert problem is not None and problem.seq is not None and problem.until_seq is not None
    assert problem.seq <= 55 <= problem.until_seq
    assert problem.seq == 51  # the record after the last checkpoint (seq 50) that still matches


def test_deleted_record_is_named(chain100: Chain) -> None:
    chain100.sql("DELETE FROM audit_records WHERE seq IN (63, 64)")
    report = chain100.verify()
    assert report.first_bad is not None
    assert (report.first_bad.kind, report.first_bad.seq, report.first_bad.until_seq) == ("deleted", 63, 64)


def test_deleted_start_without_prune_record_is_named(chain100: Chain) -> None:
    chain100.sql("DELETE FROM audit_records WHERE seq <= 10")  # 10 has a checkpoint, but no prune record
    report = chain100.verify()
    problem = report.first_of("deleted")
    assert problem is not None and problem.seq == 1


def test_reordered_records_are_named(chain100: Chain) -> None:
    a = chain100.sql("SELECT hash, body FROM audit_records WHERE seq = 30")[0]
    b = chain100.sql("SELECT hash, body FROM audit_records WHERE seq = 31")[0]
    chain100.sql("UPDATE audit_records SET hash = ?, body = ? WHERE seq = 30", b)
    chain100.sql("UPDATE audit_records SET hash = ?, body = ? WHERE seq = 31", a)
    report = chain100.verify()
    assert report.first_bad is not None
    assert (report.first_bad.kind, report.first_bad.seq) == ("reordered", 30)


def test_truncated_tail_is_named_from_the_signed_head(chain100: Chain) -> None:
    chain100.sql("DELETE FROM audit_records WHERE seq > 90")
    report = chain100.verify(use_head_file=False)
    problem = report.first_of("truncated")
    assert problem is not None and (problem.seq, problem.until_seq) == (91, 100)


def test_truncation_hidden_inside_the_store_is_named_from_the_head_file(chain100: Chain) -> None:
    # The attacker cuts records, checkpoints and the head back to a consistent, signed state at 90.
    (cp_body,) = chain100.sql("SELECT body FROM audit_checkpoints WHERE seq = 90")[0]
    cp = Checkpoint.from_json(cp_body)
    chain100.sql("DELETE FROM audit_records WHERE seq > 90")
    chain100.sql("DELETE FROM audit_checkpoints WHERE seq > 90")
    chain100.sql("UPDATE audit_head SET seq = 90, hash = ?, checkpoint = ?, last_cp_seq = 90", (cp.hash, cp_body))
    assert chain100.verify(use_head_file=False).ok  # undetectable from inside the store…
    report = chain100.verify()  # …but not against the head file kept outside it
    problem = report.first_of("truncated")
    assert problem is not None and (problem.seq, problem.until_seq) == (91, 100)


def test_forged_signature_is_named(chain100: Chain) -> None:
    (cp_body,) = chain100.sql("SELECT body FROM audit_checkpoints WHERE seq = 50")[0]
    forged = orjson.loads(cp_body)
    forged["sig"] = base64.b64encode(b"\x00" * 64).decode()
    chain100.sql("UPDATE audit_checkpoints SET body = ? WHERE seq = 50", (orjson.dumps(forged).decode(),))
    report = chain100.verify()
    problem = report.first_of("signature")
    assert problem is not None and problem.seq == 50


def test_checkpoints_signed_by_another_key_are_refused(chain100: Chain) -> None:
    other = Signer.generate()
    (chain_id,) = chain100.sql("SELECT chain FROM audit_head")[0]
    head_hash = chain100.sql("SELECT hash FROM audit_records WHERE seq = 100")[0][0]
    cp = other.checkpoint(chain_id, 100, head_hash, "2030-01-01T00:00:00.000000Z")
    chain100.sql("UPDATE audit_head SET checkpoint = ?", (cp.to_json().decode(),))
    report = chain100.verify()
    problem = report.first_of("signature")
    assert problem is not None and "unknown key" in problem.detail


def test_records_appended_after_the_signed_head_are_named(chain100: Chain) -> None:
    last = _body(chain100, 100)
    forged = dict(last, seq=101, prev_hash=chain100.sql("SELECT hash FROM audit_records WHERE seq = 100")[0][0],
                  id="forged")
    forged_hash = record_hash(forged)
    chain100.sql("INSERT INTO audit_records (seq, hash, body, ts, kind, principal, upstream, method, tool, decision) "
                 "VALUES (101, ?, ?, ?, 'call', ?, 'demo', 'tools/call', ?, ?)",
                 (forged_hash, canonical(forged).decode(), forged["ts"], forged["principal"]["id"], forged["target"],
                  forged["decision"]))
    report = chain100.verify()
    problem = report.first_of("signature")
    assert problem is not None and problem.seq == 101


def test_every_kind_is_reported_once_with_its_first_record(chain100: Chain) -> None:
    chain100.sql("UPDATE audit_records SET principal = 'x' WHERE seq = 20")
    chain100.sql("UPDATE audit_records SET principal = 'y' WHERE seq = 25")
    chain100.sql("DELETE FROM audit_records WHERE seq = 70")
    chain100.sql("DELETE FROM audit_records WHERE seq = 80")
    chain100.sql("DELETE FROM audit_records WHERE seq > 95")
    report = chain100.verify()
    kinds = {p.kind: p.seq for p in report.problems}
    assert kinds == {"edited": 20, "deleted": 70, "truncated": 96}


# -- retention -------------------------------------------------------------------------------------


def test_pruning_keeps_the_remaining_chain_verifiable(chain100: Chain) -> None:
    writer = chain100.writer(checkpoint_every=10)
    writer.options.retention = 1.0
    writer.open_sync()
    through = writer.prune_now(now=time.time() + 10)  # everything is older than the cutoff
    writer.store.close()
    assert through == 100  # the newest checkpoint older than the cutoff
    report = chain100.verify()
    assert report.ok, report.as_dict()
    assert (report.first_seq, report.records) == (101, 1)  # only the prune record remains
    chain100.write([call(i) for i in range(200, 230)], checkpoint_every=10)
    report = chain100.verify()
    assert report.ok, report.as_dict()
    assert (report.first_seq, report.last_seq) == (101, 131)


def test_pruning_stops_at_a_checkpoint_older_than_the_cutoff(chain100: Chain) -> None:
    old = "2000-01-01T00:00:00.000000Z"
    chain100.sql("UPDATE audit_records SET ts = ? WHERE seq <= 35", (old,))  # indexed column only
    writer = chain100.writer()
    writer.options.retention = 86400.0
    writer.open_sync()
    store = writer.store
    assert store.prune_point("2001-01-01T00:00:00.000000Z") == 30
    writer.store.close()


def test_deleting_beyond_the_prune_point_is_named(chain100: Chain) -> None:
    writer = chain100.writer()
    writer.options.retention = 1.0
    writer.open_sync()
    writer.store.append([{"kind": "audit.pruned", "ts": "2030-01-01T00:00:00.000000Z", "through_seq": 50}],
                        writer.signer, checkpoint=True, prune_through=50)
    writer.store.close()
    assert chain100.verify().ok
    chain100.sql("DELETE FROM audit_records WHERE seq <= 60")  # more than was pruned
    report = chain100.verify()
    problem = report.first_of("deleted")
    assert problem is not None and problem.seq == 51


# -- failures: never silent -------------------------------------------------------------------------


class Notes:
    """Collects the writer's notifications; lets a test await one (bounded)."""

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self._events: dict[str, asyncio.Event] = {}

    def __call__(self, kind: str, fields: dict) -> None:
        self.kinds.append(kind)
        self._events.setdefault(kind, asyncio.Event()).set()

    async def wait(self, kind: str, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            await self._events.setdefault(kind, asyncio.Event()).wait()


def _flaky_writer(chain: Chain, notes: Notes, **options: object) -> tuple[FlakyStore, AuditWriter]:
    store = FlakyStore(chain.db)
    opts = WriterOptions(head_file=chain.head, retention=0, max_backoff=0.05, **options)  # type: ignore[arg-type]
    return store, AuditWriter(store, chain.signer, opts, notify=notes)


@pytest.mark.anyio
async def test_outage_buffers_then_writes_everything(chain_dir: Chain) -> None:
    notes = Notes()
    store, writer = _flaky_writer(chain_dir, notes)
    await writer.start()
    store.broken = True
    futures = [writer.submit(call(i), wait=True) for i in range(50)]
    await notes.wait("audit.sink_down")
    assert not writer.accepting
    store.broken = False
    await asyncio.wait_for(asyncio.gather(*[f for f in futures if f is not None]), 30)
    await notes.wait("audit.sink_up")
    assert writer.healthy and writer.accepting
    await writer.aclose()
    assert notes.kinds[:2] == ["audit.sink_down", "audit.sink_up"]
    report = chain_dir.verify()
    assert report.ok and report.records == 50


@pytest.mark.anyio
async def test_full_buffer_drops_are_counted_and_put_on_the_chain(chain_dir: Chain) -> None:
    notes = Notes()
    store, writer = _flaky_writer(chain_dir, notes, buffer_size=20)
    store.broken = True
    for i in range(30):  # queued before the writer runs: 20 fit, 10 do not
        writer.submit(call(i))
    assert writer.stats().dropped == 10 and writer.backlog == 20
    await notes.wait("audit.dropped")
    await writer.start()
    await notes.wait("audit.sink_down")
    store.broken = False
    # Wait for the queue to drain: the buffer is FIFO, so this record is written last.
    await notes.wait("audit.sink_up")
    last = writer.submit(call(99), wait=True)
    assert last is not None
    await asyncio.wait_for(last, 30)
    await writer.aclose()
    records = [orjson.loads(b) for (b,) in chain_dir.sql("SELECT body FROM audit_records ORDER BY seq")]
    gaps = [r for r in records if r["kind"] == "audit.gap"]
    assert len(gaps) == 1 and gaps[0]["dropped"] == 10
    assert len(records) == 20 + 1 + 1
    assert chain_dir.verify().ok


def test_head_file_ahead_of_the_store_is_recorded_on_the_chain(chain100: Chain) -> None:
    chain100.sql("DELETE FROM audit_records WHERE seq > 90")
    (cp_body,) = chain100.sql("SELECT body FROM audit_checkpoints WHERE seq = 90")[0]
    chain100.sql("DELETE FROM audit_checkpoints WHERE seq > 90")
    cp = Checkpoint.from_json(cp_body)
    chain100.sql("UPDATE audit_head SET seq = 90, hash = ?, checkpoint = ?, last_cp_seq = 90", (cp.hash, cp_body))
    events: list[str] = []
    writer = AuditWriter(SqliteStore(chain100.db), chain100.signer, WriterOptions(head_file=chain100.head, retention=0),
                         notify=lambda kind, fields: events.append(kind))
    writer.start_thread()
    writer.close_sync()
    assert events == ["audit.anomaly"]
    kinds = [orjson.loads(b)["kind"] for (b,) in chain100.sql("SELECT body FROM audit_records WHERE seq > 90")]
    assert kinds == ["audit.anomaly"]
    assert list(chain100.dir.glob("audit.db.head.mismatch-*"))  # the old head is kept as evidence


def test_public_key_is_exported_and_key_is_private(chain_dir: Chain) -> None:
    assert chain_dir.key.stat().st_mode & 0o777 == 0o600
    keys = load_public_keys([chain_dir.key.with_name(chain_dir.key.name + ".pub")])
    assert list(keys) == [chain_dir.signer.key_id]


def test_group_readable_key_is_refused(tmp_path: Path) -> None:
    from mcpwall.audit.signing import SigningKeyError, load_or_create

    key = tmp_path / "k.key"
    load_or_create(key)
    key.chmod(0o640)
    with pytest.raises(SigningKeyError):
        load_or_create(key)


def test_verify_store_without_chain_reports_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "empty.db")
    store._connect(True)
    report = verify_store(store, {})
    store.close()
    assert not report.ok
