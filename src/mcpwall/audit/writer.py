"""The background audit writer: batches records off the hot path into the store.

The event loop only appends a dict to a queue (:meth:`AuditWriter.submit`); one writer thread
drains the queue in batches, links and stores each batch in one transaction (see
:meth:`AuditStore.append`). The same thread signs the head, stores periodic checkpoints and
prunes records past retention.

Cost control, because the writer shares the gateway's cores:

* *batches form*: after the first record of a batch arrives the writer waits ``batch_wait``
  (default 2 ms) or until ``batch_max`` records are queued, so one transaction carries every
  record of that moment. A record someone waits for (``durability: sync``) is written at once,
  together with everything queued; callers that arrive while a commit is running form the next
  batch (group commit), so concurrent waiters still share transactions;
* *signing is rate-limited*: the head is signed — and the *head file*, the copy kept outside the
  store, rewritten — at most every ``head_interval`` (default 1 s) while records flow, whenever a
  checkpoint is stored (every ``checkpoint_every`` records or ``checkpoint_interval``), and at
  shutdown; not per batch. Records after the last signed head are covered by the hash chain
  only until the next signature (docs/audit.md, "The unsigned tail");
* *an idle writer sleeps*: it wakes when a record arrives or when a signature, checkpoint or
  prune is due — never on a poll.

Failure handling, never silent:

* a failed write keeps the batch at the front of the queue and retries with backoff; the sink
  is reported down (``audit.sink_down``) and up again (``audit.sink_up``) through ``notify``;
* the queue is bounded (``buffer_size``): a record that does not fit is dropped, counted, and
  reported (``audit.dropped``); the next successful batch starts with an ``audit.gap`` record
  saying how many records were lost and when, so the loss is itself on the chain;
* ``submit(wait=True)`` returns a future resolved once the record is committed (``durability:
  sync``).

The guard refuses new calls while :attr:`accepting` is false when configured to fail closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcpwall.audit.record import timestamp
from mcpwall.audit.signing import Checkpoint, Signer
from mcpwall.audit.store import AuditStore, Head
from mcpwall.audit.verify import PRUNE_EVENT, read_head_file

log = logging.getLogger("mcpwall.audit")

_NOW = float("-inf")  # a monotonic time that is always in the past
_MIN_PERIOD = 0.01  # seconds between two attempts at the same periodic work, whatever the settings

Notify = Callable[[str, dict[str, Any]], None]


@dataclass(slots=True)
class WriterOptions:
    batch_max: int = 500
    batch_wait: float = 0.002  # after a batch's first record, wait this long for more (0: no wait)
    buffer_size: int = 10_000
    checkpoint_every: int = 1000
    checkpoint_interval: float = 60.0
    head_interval: float = 1.0  # sign the head at most this often while records flow (0: every batch)
    retention: float = 90 * 86400.0  # 0 keeps everything
    prune_interval: float = 3600.0
    head_file: Path | None = None
    max_backoff: float = 5.0
    close_timeout: float = 10.0


@dataclass(slots=True)
class WriterStats:
    backlog: int
    written: int
    dropped: int
    failures: int
    batches: int
    batch_seconds: float
    healthy: bool
    seq: int
    signatures: int = 0  # heads signed by this writer (each also rewrites the head file)
    unsigned: int = 0  # records at the end of the chain not yet covered by a signed head


class AuditWriter:
    def __init__(self, store: AuditStore, signer: Signer, options: WriterOptions | None = None, *,
                 notify: Notify | None = None) -> None:
        self.store = store
        self.signer = signer
        self.options = options or WriterOptions()
        self._notify = notify
        self._queue: deque[tuple[dict[str, Any], asyncio.Future[int] | None]] = deque()
        # A plain lock: nothing re-enters it, and it is cheaper than the default RLock on the hot path.
        self._cond = threading.Condition(threading.Lock())
        self._waiters = 0  # queued records someone awaits (durability: sync): write without delay
        self._first_at = _NOW  # when the oldest queued record arrived (monotonic); _NOW: write at once
        self._seen: set[str] = set()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.head: Head | None = None
        self.healthy = False
        self._written = 0
        self._dropped_total = 0
        self._dropped_pending = 0
        self._dropped_first = ""
        self._dropped_last = ""
        self._failures = 0
        self._batches = 0
        self._batch_seconds = 0.0
        self._signatures = 0
        self._last_checkpoint = time.monotonic()
        self._last_signed = _NOW  # the first write of every run signs (and so does an unsigned tail at start)
        self._next_prune = time.monotonic()
        self.seen_at_start: set[str] = set()
        self._held: list[tuple[str, dict[str, Any]]] | None = None

    # -- life cycle (event loop side) ---------------------------------------------------------

    async def start(self, *, hold_notifications: bool = False) -> None:
        """Open the store and start the writer thread. With ``hold_notifications``, what start-up
        finds (a head-file anomaly) is reported only at :meth:`release_notifications`, once the
        caller's listeners are in place."""
        self._loop = asyncio.get_running_loop()
        if hold_notifications:
            self._held = []
        await asyncio.to_thread(self.open_sync)
        self._thread = threading.Thread(target=self._run, name="mcpwall-audit-writer", daemon=True)
        self._thread.start()

    def release_notifications(self) -> None:
        held, self._held = self._held, None
        for kind, fields in held or ():
            self._emit(kind, fields)

    def open_sync(self) -> None:
        """Open the store, read the head and the seen keys, and compare the head file."""
        head = self.store.open(create=True)
        assert head is not None
        self.head = head
        self.seen_at_start = self.store.seen_keys()
        self.healthy = True
        if head.unsigned:
            # Normal after a kill or power cut (or while another replica writes): the writer thread
            # signs them as its first act, so the window closes now rather than at the next record.
            log.warning("audit records %d..%d are not covered by a signed head yet (the previous run stopped "
                        "without its final checkpoint, or another writer has not signed them); signing them now",
                        head.seq - head.unsigned + 1, head.seq)
        self._check_head_file(head)

    def start_thread(self) -> None:
        """Start without an event loop (tests, the CLI, subprocess writers)."""
        self.open_sync()
        self._thread = threading.Thread(target=self._run, name="mcpwall-audit-writer", daemon=True)
        self._thread.start()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close_sync)

    def close_sync(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self.options.close_timeout + 1.0)
            if self._thread.is_alive():
                log.error("audit writer did not finish within %.0fs; %d records not written",
                          self.options.close_timeout, len(self._queue))
        self.store.close()

    # -- producer side ------------------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        """Whether a new call's record can be expected to be written (fail-closed check)."""
        return self.healthy and not self._stopping and len(self._queue) < self.options.buffer_size

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def submit(self, record: dict[str, Any], *, wait: bool = False) -> asyncio.Future[int] | None:
        """Queue ``record``. With ``wait``, returns a future resolved with its sequence number
        once committed. Returns None (and counts the drop) when the buffer is full."""
        future: asyncio.Future[int] | None = None
        if wait:
            loop = self._loop or asyncio.get_running_loop()
            future = loop.create_future()
        with self._cond:
            queue = self._queue
            queued = len(queue)
            if queued >= self.options.buffer_size or self._stopping:
                self._count_drop(record)
                dropped = True
            else:
                if not queued:
                    self._first_at = time.monotonic()
                queue.append((record, future))
                # Wake the writer only when that changes what it waits for: a new batch begins, a
                # batch is full, or someone awaits the commit. Otherwise it is already counting down.
                if future is not None:
                    self._waiters += 1
                    self._cond.notify()
                elif not queued or queued + 1 >= self.options.batch_max:
                    self._cond.notify()
                dropped = False
        if dropped:
            self._emit("audit.dropped", {"dropped_total": self._dropped_total})
            if future is not None:
                future.set_exception(RuntimeError("audit buffer full"))
            return None
        return future

    def note_seen(self, key: str) -> None:
        with self._cond:
            self._seen.add(key)

    def stats(self) -> WriterStats:
        head = self.head
        return WriterStats(backlog=len(self._queue), written=self._written, dropped=self._dropped_total,
                           failures=self._failures, batches=self._batches, batch_seconds=self._batch_seconds,
                           healthy=self.healthy, seq=head.seq if head else 0, signatures=self._signatures,
                           unsigned=head.unsigned if head else 0)

    def _count_drop(self, record: dict[str, Any]) -> None:
        self._dropped_total += 1
        self._dropped_pending += 1
        ts = record.get("ts") if isinstance(record.get("ts"), str) else timestamp()
        self._dropped_first = self._dropped_first or str(ts)
        self._dropped_last = str(ts)

    # -- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.0
        give_up_at: float | None = None
        while True:
            with self._cond:
                self._wait_for_work()
                stopping = self._stopping
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.options.batch_max))]
                self._waiters -= sum(1 for _, future in batch if future is not None)
                if self._queue:
                    self._first_at = _NOW  # the rest has waited long enough already
                seen, self._seen = self._seen, set()
                gap = self._take_gap()
            if stopping and give_up_at is None:
                give_up_at = time.monotonic() + self.options.close_timeout
            records = ([gap] if gap else []) + [item[0] for item in batch]
            try:
                if records or seen:
                    final = stopping and not self._queue
                    # Evidence of lost records is signed at once, like a shutdown.
                    self._write(records, seen, checkpoint=final, sign=final or gap is not None)
                elif stopping:
                    self._write([], set(), checkpoint=True, sign=True)
            except Exception as exc:
                self._failed(exc, batch, seen, gap)
                if give_up_at is not None and time.monotonic() >= give_up_at:
                    self._abandon()
                    return
                backoff = min(self.options.max_backoff, backoff * 2 or 0.05)
                with self._cond:
                    self._cond.wait(timeout=backoff)
                continue
            backoff = 0.0
            self._resolve(batch, None)
            if not self.healthy:
                self.healthy = True
                log.warning("audit store is writable again")
                self._emit("audit.sink_up", {})
            if stopping and not self._queue:
                return
            try:
                self._periodic()
            except Exception as exc:
                # Checkpoints and pruning are retried on the next round; records are unaffected.
                self._failures += 1
                log.error("audit checkpoint or prune failed: %s", exc)

    def _wait_for_work(self) -> None:
        """With the lock held: sleep until a batch is ready, periodic work is due, or stop."""
        options = self.options
        while not self._stopping:
            now = time.monotonic()
            if self._queue:
                if self._waiters or len(self._queue) >= options.batch_max:
                    return
                ready = self._first_at + options.batch_wait
                if now >= ready:
                    return
                self._cond.wait(ready - now)
                continue
            due = self._next_periodic()
            if due is not None and now >= due:
                return
            self._cond.wait(None if due is None else due - now)

    def _write(self, records: list[dict[str, Any]], seen: set[str], *, checkpoint: bool = False,
               sign: bool = False, prune_through: int | None = None) -> None:
        started = time.perf_counter()
        now = time.monotonic()
        sign = sign or checkpoint or now - self._last_signed >= self.options.head_interval
        head, sealed = self.store.append(records, self.signer, checkpoint=checkpoint,
                                         checkpoint_every=self.options.checkpoint_every, sign=sign,
                                         prune_through=prune_through, seen=seen)
        if head.last_checkpoint_seq != (self.head.last_checkpoint_seq if self.head else 0):
            self._last_checkpoint = now
        self.head = head
        if head.fresh and head.checkpoint is not None:
            self._last_signed = now
            self._signatures += 1
            self._write_head_file(head.checkpoint)
        self._written += len(sealed)
        self._batches += 1
        self._batch_seconds += time.perf_counter() - started
        for item, sealed_record in zip(records, sealed, strict=True):
            item["seq"] = sealed_record.seq

    def _failed(self, exc: Exception, batch: list[tuple[dict[str, Any], asyncio.Future[int] | None]],
                seen: set[str], gap: dict[str, Any] | None) -> None:
        self._failures += 1
        with self._cond:
            self._queue.extendleft(reversed(batch))
            self._waiters += sum(1 for _, future in batch if future is not None)
            self._first_at = _NOW
            self._seen |= seen
            if gap is not None:
                self._dropped_pending += int(gap["dropped"])
                self._dropped_first = str(gap["first_ts"])
        if self.healthy:
            self.healthy = False
            log.error("audit store write failed: %s", exc)
            self._emit("audit.sink_down", {"error": type(exc).__name__})

    def _abandon(self) -> None:
        with self._cond:
            lost = list(self._queue)
            self._queue.clear()
            self._waiters = 0
        for record, _ in lost:
            self._count_drop(record)
        self._resolve(lost, RuntimeError("audit store unavailable at shutdown"))
        log.error("audit writer stopped with the store unavailable; %d records were not written", len(lost))

    def _take_gap(self) -> dict[str, Any] | None:
        if not self._dropped_pending:
            return None
        gap = {"kind": "audit.gap", "ts": timestamp(), "dropped": self._dropped_pending,
               "first_ts": self._dropped_first, "last_ts": self._dropped_last}
        self._dropped_pending = 0
        self._dropped_first = self._dropped_last = ""
        return gap

    def _resolve(self, batch: list[tuple[dict[str, Any], asyncio.Future[int] | None]],
                 error: Exception | None) -> None:
        loop = self._loop
        if loop is None:
            return
        if error is None:
            settled = [(future, int(record.get("seq", 0))) for record, future in batch if future is not None]
            if settled:  # one wake-up of the event loop per batch, not per waiter
                loop.call_soon_threadsafe(_set_results, settled)
        else:
            for _, future in batch:
                if future is not None:
                    loop.call_soon_threadsafe(_set_exception, future, error)

    # -- periodic work ------------------------------------------------------------------------

    def _next_periodic(self) -> float | None:
        """When the next signature, checkpoint or prune is due (monotonic), or None: nothing to do
        until a record arrives. Only work that exists counts, so an idle writer sleeps."""
        head, options = self.head, self.options
        due: list[float] = []
        # Intervals of 0 still leave _MIN_PERIOD between attempts: a store that keeps failing
        # must not turn a retry into a busy loop.
        if head is not None and head.unsigned:
            due.append(self._last_signed + max(options.head_interval, _MIN_PERIOD))
        if head is not None and head.seq > head.last_checkpoint_seq:
            due.append(self._last_checkpoint + max(options.checkpoint_interval, _MIN_PERIOD))
        if options.retention > 0:
            due.append(self._next_prune)
        return min(due) if due else None

    def _periodic(self) -> None:
        now = time.monotonic()
        head = self.head
        if head is not None and head.seq > head.last_checkpoint_seq \
                and now - self._last_checkpoint >= self.options.checkpoint_interval:
            # Marked before writing: a failing store must not turn this into a busy loop.
            self._last_checkpoint = self._last_signed = now
            self._write([], set(), checkpoint=True)
        elif head is not None and head.unsigned and now - self._last_signed >= self.options.head_interval:
            self._last_signed = now
            self._write([], set(), sign=True)
        if self.options.retention > 0 and now >= self._next_prune:
            self._next_prune = now + max(self.options.prune_interval, _MIN_PERIOD)
            self.prune_now()

    def prune_now(self, now: float | None = None) -> int | None:
        """Delete records older than the retention period up to the newest checkpoint that is
        older, keeping that checkpoint as the signed anchor. Returns the new start, if pruned."""
        cutoff = timestamp((time.time() if now is None else now) - self.options.retention)
        through = self.store.prune_point(cutoff)
        head = self.head
        if through is None or head is None or through <= head.pruned_through:
            return None
        anchor = next((cp for cp in self.store.checkpoints() if cp.seq == through), None)
        record = {"kind": PRUNE_EVENT, "ts": timestamp(), "through_seq": through, "cutoff": cutoff,
                  "anchor_hash": anchor.hash if anchor else None}
        self._write([record], set(), checkpoint=True, prune_through=through)
        log.info("audit trail pruned through seq %d (older than %s)", through, cutoff)
        return through

    # -- head file ----------------------------------------------------------------------------

    def _write_head_file(self, checkpoint: Checkpoint) -> None:
        path = self.options.head_file
        if path is None:
            return
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_bytes(checkpoint.to_json())
            os.replace(tmp, path)
        except OSError as exc:
            log.error("cannot write the audit head file: %s", exc.strerror)

    def _check_head_file(self, head: Head) -> None:
        path = self.options.head_file
        if path is None:
            return
        try:
            outside = read_head_file(path)
        except (OSError, ValueError):
            outside = None
            problem = "the head file is unreadable"
        else:
            problem = ""
        if outside is not None:
            if outside.chain != head.chain:
                problem = "the head file belongs to another chain"
            elif outside.seq > head.seq:
                problem = f"the store ends at seq {head.seq} but the head file says {outside.seq}"
            elif outside.seq > 0:
                row = next(iter(self.store.rows(outside.seq - 1, page=1)), None)
                if row is None or row.seq != outside.seq or row.hash != outside.hash:
                    problem = f"record {outside.seq} does not match the head file"
        if not problem:
            return
        keep = path.with_name(f"{path.name}.mismatch-{int(time.time())}")
        try:
            os.replace(path, keep)
        except OSError:
            keep = path
        log.critical("audit chain anomaly at start-up: %s (kept as %s)", problem, keep.name)
        # Put the evidence on the chain itself before anything else, so a new head cannot hide it.
        self._queue.appendleft(({"kind": "audit.anomaly", "ts": timestamp(), "detail": problem,
                                 "head_file": outside.to_json().decode() if outside else None}, None))
        self._emit("audit.anomaly", {"detail": problem})

    def _emit(self, kind: str, fields: dict[str, Any]) -> None:
        if self._notify is None:
            return
        held = self._held
        if held is not None:
            held.append((kind, fields))
            return
        loop = self._loop
        if loop is not None and not _in_loop(loop):
            try:
                loop.call_soon_threadsafe(self._notify, kind, fields)
                return
            except RuntimeError:  # the loop is closed: report synchronously instead
                pass
        self._notify(kind, fields)


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _set_results(settled: list[tuple[asyncio.Future[int], int]]) -> None:
    for future, value in settled:
        if not future.done():
            future.set_result(value)


def _set_exception(future: asyncio.Future[int], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
