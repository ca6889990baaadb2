"""SQLite counters: the embedded default, exact across every process that shares the file.

Each decision is one ``BEGIN IMMEDIATE`` transaction, which takes SQLite's write lock before
reading, so two processes cannot both see the last token. Statements run on the event loop
thread: a transaction over a handful of rows in WAL mode costs tens of microseconds, far less
than a hop to a worker thread. Under contention from another process the ``busy_timeout``
bounds the wait; deployments with several replicas should use Redis instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from mcpwall.storage.counters import Bucket, CounterStore, Decision, Limit, decide

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mcpwall_counters (
    key     TEXT PRIMARY KEY,
    value   REAL NOT NULL,
    stamp   REAL NOT NULL,   -- buckets: last refill time; others: expiry time
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mcpwall_counters_expires ON mcpwall_counters (expires);
"""
_SWEEP_EVERY = 2048


class SqliteCounterStore(CounterStore):
    def __init__(self, path: Path, *, busy_timeout_ms: int = 5000) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._db: sqlite3.Connection | None = None
        self._ops = 0

    async def start(self) -> None:
        self._connect()

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    async def aclose(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def acquire(self, limits: Sequence[Limit], now: float) -> Decision:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            states: list[tuple[float, float] | None] = []
            for limit in limits:
                row = db.execute("SELECT value, stamp, expires FROM mcpwall_counters WHERE key = ?",
                                 (limit.key,)).fetchone()
                states.append((row[0], row[1]) if row is not None and row[2] > now else None)
            decision, values = decide(limits, states, now)
            if decision.allowed:
                rows = []
                for limit, value in zip(limits, values, strict=True):
                    if isinstance(limit, Bucket):
                        rows.append((limit.key, value, now, now + limit.idle_ttl()))
                    else:
                        rows.append((limit.key, value, limit.resets_at, limit.resets_at))
                db.executemany("INSERT OR REPLACE INTO mcpwall_counters VALUES (?, ?, ?, ?)", rows)
            self._maybe_sweep(db, now)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return decision

    async def claim(self, key: str, ttl: float, now: float) -> bool:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM mcpwall_counters WHERE key = ? AND expires <= ?", (key, now))
            cursor = db.execute("INSERT OR IGNORE INTO mcpwall_counters VALUES (?, 1, ?, ?)",
                                (key, now + ttl, now + ttl))
            self._maybe_sweep(db, now)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return cursor.rowcount == 1

    async def incr(self, key: str, amount: float, ttl: float, now: float) -> float:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM mcpwall_counters WHERE key = ? AND expires <= ?", (key, now))
            db.execute(
                "INSERT INTO mcpwall_counters VALUES (?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
                (key, amount, now + ttl, now + ttl))
            row = db.execute("SELECT value FROM mcpwall_counters WHERE key = ?", (key,)).fetchone()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return float(row[0])

    async def get(self, key: str, now: float) -> float:
        row = self._connect().execute(
            "SELECT value FROM mcpwall_counters WHERE key = ? AND expires > ?", (key, now)).fetchone()
        return float(row[0]) if row is not None else 0.0

    async def reset(self, key: str) -> None:
        self._connect().execute("DELETE FROM mcpwall_counters WHERE key = ?", (key,))

    def _maybe_sweep(self, db: sqlite3.Connection, now: float) -> None:
        self._ops += 1
        if self._ops % _SWEEP_EVERY == 0:
            db.execute("DELETE FROM mcpwall_counters WHERE expires <= ?", (now,))
