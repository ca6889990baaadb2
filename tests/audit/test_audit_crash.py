"""A gateway killed with SIGKILL mid-write never leaves a chain that fails verification."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.audit_helpers import Chain

CHILD = Path(__file__).with_name("audit_child.py")


def _run_until(chain: Chain, durable_seq: int, timeout: float = 60.0, tuning: tuple[str, ...] = ()) -> int:
    """Start a writer process, wait until it reports ``durable_seq`` committed, SIGKILL it."""
    proc = subprocess.Popen([sys.executable, str(CHILD), str(chain.db), str(chain.key), str(chain.head), *tuning],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    last = 0
    buffer = b""
    try:
        while last < durable_seq:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"writer did not reach seq {durable_seq}: {proc.stderr.read() if proc.stderr else ''}"
            ready, _, _ = select.select([proc.stdout], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, f"writer exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            if lines:
                last = int(lines[-1])
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: more batches are in flight
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return last


def test_kill_9_mid_stream_leaves_a_verifiable_chain(chain_dir: Chain) -> None:
    target = 0
    for round_ in range(3):
        target += 1500 + 700 * round_
        durable = _run_until(chain_dir, target)
        report = chain_dir.verify()
        assert report.ok, (round_, report.as_dict())
        assert report.last_seq is not None and report.last_seq >= durable  # nothing acknowledged was lost
        target = report.last_seq



def test_kill_9_with_an_unsigned_tail_leaves_a_verifiable_chain(chain_dir: Chain) -> None:
    # Sign only the first batch (interval and count never reached), so the kill leaves a long unsigned tail.
    durable = _run_until(chain_dir, 1500, tuning=("3600", "1000000"))
    report = chain_dir.verify()
    assert report.ok, report.as_dict()
    assert report.last_seq is not None and report.last_seq >= durable
    store = chain_dir.store()
    head = store.head()
    store.close()
    assert head is not None and head.checkpoint is not None and head.unsigned > 0
    assert report.unsigned == head.unsigned  # reported, not hidden
