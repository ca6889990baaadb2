"""Helpers for the audit trail tests: SQLite chains built through the real writer, a flaky store."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcpwall.audit.record import timestamp
from mcpwall.audit.signing import Signer, load_public_keys
from mcpwall.audit.sqlite import SqliteStore
from mcpwall.audit.store import StoreError
from mcpwall.audit.verify import Report, read_head_file, verify_store
from mcpwall.audit.writer import AuditWriter, WriterOptions

PG_URL = os.environ.get("MCPWALL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def call(i: int, **extra: Any) -> dict[str, Any]:
    record = {"kind": "call", "ts": timestamp(), "id": f"d{i:06d}",
              "principal": {"id": f"user{i % 7}", "auth": "apikey"}, "method": "tools/call", "upstream": "demo",
              "target": "echo" if i % 3 else "write_file",
              "decision": "deny" if i % 5 == 0 else "allow", "arguments": {"i": i}, "latency_ms": 0.5}
    record.update(extra)
    return record


@dataclass
class Chain:
    dir: Path
    db: Path
    key: Path
    head: Path
    signer: Signer

    def store(self) -> SqliteStore:
        store = SqliteStore(self.db)
        store.open(create=False)
        return store

    def verify(self, *, use_head_file: bool = True) -> Report:
        store = self.store()
        try:
            keys = load_public_keys([self.key.with_name(self.key.name + ".pub")])
            outside = read_head_file(self.head) if use_head_file else None
            return verify_store(store, keys, head_file=outside)
        finally:
            store.close()

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.db, isolation_level=None)
        try:
            return db.execute(statement, params).fetchall()
        finally:
            db.close()

    def writer(self, **options: Any) -> AuditWriter:
        opts = WriterOptions(head_file=self.head, retention=0, **options)
        return AuditWriter(SqliteStore(self.db), self.signer, opts)

    def write(self, records: list[dict[str, Any]], **options: Any) -> None:
        writer = self.writer(**options)
        for record in records:  # queued before the thread starts, so batches are exactly batch_max
            writer.submit(record)
        writer.start_thread()
        writer.close_sync()


class FlakyStore(SqliteStore):
    """A SQLite store whose writes fail while ``broken`` is set (a sink outage)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.broken = False

    def append(self, *args: Any, **kwargs: Any) -> Any:
        if self.broken:
            raise StoreError("simulated outage")
        return super().append(*args, **kwargs)
