"""The writer's cost controls: batches that form, heads signed per interval (not per batch), an
idle writer without a timer — and what that means for the unsigned tail, end to end."""

from __future__ import annotations

import asyncio

import pytest

from mcpwall.audit.signing import Checkpoint
from mcpwall.audit.store import Head
from mcpwall.audit.verify import read_head_file
from mcpwall.audit.writer import AuditWriter
from support.audit_helpers import Chain, call
from support.waits import eventually

pytestmark = pytest.mark.anyio

NEVER = 3600.0  # an interval no test run reaches: only counts and shutdown sign


async def _durable(writer: AuditWriter, n: int, start: int = 0) -> list[int]:
    """Write ``n`` records one transaction each: every submit waits for its commit."""
    seqs = []
    for i in range(start, start + n):
        future = writer.submit(call(i), wait=True)
        assert future is not None
        seqs.append(await asyncio.wait_for(future, 30))
    return seqs


def _head(chain: Chain) -> Head:
    store = chain.store()
    try:
        head = store.head()
    finally:
        store.close()
    assert head is not None
    return head


def _head_file(chain: Chain) -> Checkpoint:
    cp = read_head_file(chain.head)
    assert cp is not None
    return cp


# -- signing ----------------------------------------------------------------------------------------


async def test_the_head_is_signed_once_per_interval_not_per_batch(chain_dir: Chain) -> None:
    writer = chain_dir.writer(head_interval=NEVER, checkpoint_every=1_000_000, checkpoint_interval=NEVER,
                              batch_wait=0)
    await writer.start()
    assert await _durable(writer, 40) == list(range(1, 41))
    stats = writer.stats()
    assert stats.batches == 40
    assert stats.signatures == 1  # the run's first batch only
    head = _head(chain_dir)
    assert (head.seq, head.checkpoint.seq if head.checkpoint else None, head.unsigned) == (40, 1, 39)
    assert _head_file(chain_dir).seq == 1  # the head file is rewritten only when the head is signed
    report = chain_dir.verify()
    assert report.ok, report.as_dict()
    assert report.unsigned == 39

    await writer.aclose()  # shutdown signs what is left
    assert writer.stats().signatures == 2
    assert _head_file(chain_dir).seq == 40
    report = chain_dir.verify()
    assert report.ok and report.unsigned == 0 and not report.warnings, report.as_dict()


async def test_every_stored_checkpoint_signs_the_head(chain_dir: Chain) -> None:
    writer = chain_dir.writer(head_interval=NEVER, checkpoint_every=10, checkpoint_interval=NEVER, batch_wait=0)
    await writer.start()
    await _durable(writer, 50)
    # N records, a checkpoint every 10: at most N/10 + 1 signatures (the +1 is the run's first batch).
    assert writer.stats().signatures == 50 // 10 + 1
    assert [s for (s,) in chain_dir.sql("SELECT seq FROM audit_checkpoints ORDER BY seq")] == [10, 20, 30, 40, 50]
    assert _head(chain_dir).unsigned == 0 and _head_file(chain_dir).seq == 50
    await writer.aclose()
    assert chain_dir.verify().ok


async def test_head_interval_zero_signs_every_batch(chain_dir: Chain) -> None:
    writer = chain_dir.writer(head_interval=0, checkpoint_every=1_000_000, checkpoint_interval=NEVER, batch_wait=0)
    await writer.start()
    await _durable(writer, 10)
    stats = writer.stats()
    assert stats.batches == stats.signatures == 10
    assert _head(chain_dir).unsigned == 0
    await writer.aclose()


# -- batching ---------------------------------------------------------------------------------------


async def test_a_partial_batch_waits_and_a_waiting_caller_flushes_it(chain_dir: Chain) -> None:
    writer = chain_dir.writer(batch_wait=NEVER, batch_max=1000, head_interval=NEVER)
    await writer.start()
    for i in range(20):
        writer.submit(call(i))
    future = writer.submit(call(20), wait=True)  # durability: sync — written at once, with the rest
    assert future is not None
    assert await asyncio.wait_for(future, 30) == 21
    assert writer.stats().batches == 1 and writer.stats().written == 21
    await writer.aclose()
    assert chain_dir.verify().ok


async def test_concurrent_waiters_share_transactions(chain_dir: Chain) -> None:
    writer = chain_dir.writer(batch_wait=NEVER, batch_max=1000, head_interval=NEVER)
    await writer.start()
    futures = [writer.submit(call(i), wait=True) for i in range(20)]
    seqs = await asyncio.wait_for(asyncio.gather(*[f for f in futures if f is not None]), 30)
    assert sorted(seqs) == list(range(1, 21))
    assert writer.stats().batches < 20  # grouped: not one commit per waiter
    await writer.aclose()


async def test_a_full_batch_does_not_wait(chain_dir: Chain) -> None:
    writer = chain_dir.writer(batch_wait=NEVER, batch_max=10)
    for i in range(30):  # queued before the thread starts: three full batches, nobody waiting
        writer.submit(call(i))
    await writer.start()
    await eventually(lambda: writer.stats().written == 30, timeout=30, what="three full batches written")
    assert writer.stats().batches == 3
    await writer.aclose()


# -- an idle writer sleeps --------------------------------------------------------------------------


async def test_an_idle_writer_sets_no_timer_once_everything_is_signed(chain_dir: Chain) -> None:
    # A checkpoint per record: after each commit nothing is unsigned and nothing is uncheckpointed.
    writer = chain_dir.writer(checkpoint_every=1, checkpoint_interval=0.001, head_interval=0.001)
    await writer.start()
    assert writer._next_periodic() is None  # empty chain: sleeps until a record arrives
    await _durable(writer, 3)
    assert writer._next_periodic() is None  # an overdue interval with nothing new is not work
    await writer.aclose()


async def test_an_unsigned_tail_sets_a_timer_for_its_signature(chain_dir: Chain) -> None:
    writer = chain_dir.writer(checkpoint_every=1_000_000, checkpoint_interval=NEVER, head_interval=NEVER)
    await writer.start()
    await _durable(writer, 2)  # the first batch is signed, the second is not
    due = writer._next_periodic()
    assert due is not None and writer.stats().unsigned == 1
    await writer.aclose()


# -- the unsigned tail ------------------------------------------------------------------------------


def _with_unsigned_tail(chain: Chain, signed: int, unsigned: int) -> None:
    """``signed`` records closed cleanly, then ``unsigned`` more committed without a signature
    (what a writer killed between two signatures leaves)."""
    chain.write([call(i) for i in range(signed)])
    store = chain.store()
    try:
        store.append([call(signed + i) for i in range(unsigned)], chain.signer, sign=False)
    finally:
        store.close()


def test_an_unsigned_tail_verifies_and_is_counted(chain_dir: Chain) -> None:
    _with_unsigned_tail(chain_dir, 10, 5)
    report = chain_dir.verify()
    assert report.ok, report.as_dict()
    assert (report.last_seq, report.unsigned) == (15, 5)


def test_an_edit_in_the_unsigned_tail_is_still_caught_by_the_hash_chain(chain_dir: Chain) -> None:
    _with_unsigned_tail(chain_dir, 10, 5)
    chain_dir.sql("UPDATE audit_records SET body = replace(body, '\"allow\"', '\"deny\"') WHERE seq = 12")
    report = chain_dir.verify()
    problem = report.first_of("edited")
    assert problem is not None and problem.seq == 12


def test_cutting_the_unsigned_tail_is_named_from_the_head_row(chain_dir: Chain) -> None:
    _with_unsigned_tail(chain_dir, 10, 5)
    chain_dir.sql("DELETE FROM audit_records WHERE seq > 13")
    problem = chain_dir.verify().first_of("truncated")
    assert problem is not None and (problem.seq, problem.until_seq) == (14, 15)


def test_cutting_the_unsigned_tail_and_the_head_row_goes_unseen_down_to_the_signed_head(chain_dir: Chain) -> None:
    # The documented limit: with the head row moved back too, only signatures can tell, and
    # none covers records 11..15 yet.
    _with_unsigned_tail(chain_dir, 10, 5)
    (hash13,) = chain_dir.sql("SELECT hash FROM audit_records WHERE seq = 13")[0]
    chain_dir.sql("DELETE FROM audit_records WHERE seq > 13")
    chain_dir.sql("UPDATE audit_head SET seq = 13, hash = ?", (hash13,))
    report = chain_dir.verify()
    assert report.ok and (report.last_seq, report.unsigned) == (13, 3)
    # Past the signed head, the same cut is caught by the signature.
    (hash9,) = chain_dir.sql("SELECT hash FROM audit_records WHERE seq = 9")[0]
    chain_dir.sql("DELETE FROM audit_records WHERE seq > 9")
    chain_dir.sql("UPDATE audit_head SET seq = 9, hash = ?", (hash9,))
    problem = chain_dir.verify().first_of("truncated")
    assert problem is not None and (problem.seq, problem.until_seq) == (10, 10)


async def test_the_next_start_signs_an_unsigned_tail_first(chain_dir: Chain) -> None:
    _with_unsigned_tail(chain_dir, 10, 5)
    writer = chain_dir.writer(head_interval=NEVER, checkpoint_interval=NEVER)
    await writer.start()
    await _durable(writer, 1, start=100)
    # Signed before or with the first new record, whichever the writer reached first.
    cp = _head(chain_dir).checkpoint
    assert cp is not None and cp.seq >= 15
    await writer.aclose()
    report = chain_dir.verify()
    assert report.ok and report.unsigned == 0, report.as_dict()
