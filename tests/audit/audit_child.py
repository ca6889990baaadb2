"""A writer process for the crash test: appends records forever, printing each durable seq.

Usage: python audit_child.py DB KEY HEAD [HEAD_INTERVAL CHECKPOINT_EVERY]. It never exits on its
own; the test kills it with SIGKILL while batches are being written.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from mcpwall.audit.record import timestamp
from mcpwall.audit.signing import load_or_create
from mcpwall.audit.sqlite import SqliteStore
from mcpwall.audit.writer import AuditWriter, WriterOptions


async def main(db: Path, key: Path, head: Path, head_interval: float = 1.0, checkpoint_every: int = 100) -> None:
    writer = AuditWriter(SqliteStore(db), load_or_create(key),
                         WriterOptions(head_file=head, retention=0, checkpoint_every=checkpoint_every, batch_max=64,
                                       head_interval=head_interval))
    await writer.start()
    i = 0
    while True:
        for _ in range(49):
            i += 1
            writer.submit({"kind": "call", "ts": timestamp(), "id": f"c{i}", "method": "tools/call",
                           "arguments": {"n": i, "pad": "x" * 200}, "decision": "allow"})
        i += 1
        future = writer.submit({"kind": "call", "ts": timestamp(), "id": f"c{i}", "decision": "allow"}, wait=True)
        assert future is not None
        print(await future, flush=True)


if __name__ == "__main__":
    tuning = (float(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 5 else ()
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), *tuning))
