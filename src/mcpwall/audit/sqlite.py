"""SQLite audit store: one file in WAL mode, the embedded default.

WAL lets the CLI read (tail, query, verify) while the gateway writes. ``BEGIN IMMEDIATE`` takes
the write lock up front so two writers (a gateway and a CLI prune, say) serialise instead of
deadlocking. ``synchronous=NORMAL`` survives a killed process (a committed transaction is in the
WAL); ``durability: sync`` switches to ``FULL`` so a commit also survives power loss.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcpwall.audit.store import AuditStore, StoreError


class SqliteStore(AuditStore):
    def __init__(self, path: Path | None, *, sync: bool = False, busy_timeout_ms: int = 10_000) -> None:
        super().__init__()
        self.path = path
        self.sync = sync
        self.busy_timeout_ms = busy_timeout_ms
        self._db: sqlite3.Connection | None = None

    @property
    def location(self) -> str:
        return str(self.path) if self.path is not None else "memory"

    def _connect(self, create: bool) -> None:
        if self._db is not None:
            return
        if not create and self.path is not None and not self.path.exists():
            raise StoreError(f"there is no audit database at {self.path}")
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            target = str(self.path) if self.path is not None else ":memory:"
            # The writer thread owns the connection after start-up; check_same_thread is off
            # because start-up runs on a worker thread first. Only one thread uses it at a time.
            db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            if self.path is not None:
                db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {'FULL' if self.sync else 'NORMAL'}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the audit database {self.location}: {exc}") from None
        self._db = db

    def _ddl(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self.t_head} (id INTEGER PRIMARY KEY CHECK (id = 1), chain TEXT NOT NULL, "
            "seq INTEGER NOT NULL, hash TEXT NOT NULL, checkpoint TEXT, pruned_through INTEGER NOT NULL, "
            "last_cp_seq INTEGER NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.t_records} (seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, "
            "body TEXT NOT NULL, ts TEXT, kind TEXT, principal TEXT, upstream TEXT, method TEXT, tool TEXT, "
            "decision TEXT)",
            f"CREATE INDEX IF NOT EXISTS {self.t_records}_ts ON {self.t_records} (ts)",
            f"CREATE INDEX IF NOT EXISTS {self.t_records}_principal ON {self.t_records} (principal, seq)",
            f"CREATE INDEX IF NOT EXISTS {self.t_records}_tool ON {self.t_records} (tool, seq)",
            f"CREATE TABLE IF NOT EXISTS {self.t_checkpoints} (seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, "
            "body TEXT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.t_seen} (key TEXT PRIMARY KEY, ts TEXT NOT NULL)",
        ]

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the audit store is not open")
        return self._db

    def _begin_write(self) -> None:
        self._exec("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._exec("COMMIT")

    def _rollback(self) -> None:
        if self._db is not None and self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"audit database error: {exc}") from None

    def _exec_many(self, sql: str, rows: list[Sequence[Any]]) -> None:
        try:
            self.db.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise StoreError(f"audit database error: {exc}") from None

    def close(self) -> None:
        if self._db is not None:
            self._rollback()
            self._db.close()
            self._db = None
