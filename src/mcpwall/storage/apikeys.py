"""API key records: who a key belongs to, its roles, expiry and revocation — never the key.

Only a SHA-256 digest of the key's secret part is stored. Keys carry 256 bits of randomness,
so a fast hash is enough (a slow password hash protects guessable secrets, which these are
not). Lookups are by the key's public id.

Revocation is immediate everywhere: the SQLite store caches records for speed but asks SQLite
on every lookup whether any connection — another gateway process, the ``mcpwall keys`` CLI —
has committed a change since (``PRAGMA data_version``, a read of a counter in memory), and
drops its cache when one has.
"""

from __future__ import annotations

import sqlite3
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path

from mcpwall.storage.urls import scheme, sqlite_path

_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    principal: str
    roles: tuple[str, ...]
    digest: str  # hex SHA-256 of the secret part
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    note: str = ""

    def status(self, now: float) -> str:
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


class KeyStore(ABC):
    """Storage of key records. Lookups are synchronous: they sit on the hot path and must be cheap."""

    @abstractmethod
    def add(self, record: KeyRecord) -> None: ...

    @abstractmethod
    def lookup(self, key_id: str) -> KeyRecord | None: ...

    @abstractmethod
    def list(self) -> list[KeyRecord]: ...

    @abstractmethod
    def update(self, record: KeyRecord) -> None: ...

    def revoke(self, key_id: str, at: float | None = None) -> bool:
        record = self.lookup(key_id)
        if record is None:
            return False
        when = time.time() if at is None else at
        if record.revoked_at is None or record.revoked_at > when:
            self.update(replace(record, revoked_at=when))
        return True

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection."""


class MemoryKeyStore(KeyStore):
    def __init__(self) -> None:
        self._records: dict[str, KeyRecord] = {}

    def add(self, record: KeyRecord) -> None:
        if record.key_id in self._records:
            raise ValueError("duplicate key id")
        self._records[record.key_id] = record

    def lookup(self, key_id: str) -> KeyRecord | None:
        return self._records.get(key_id)

    def list(self) -> list[KeyRecord]:
        return sorted(self._records.values(), key=lambda r: r.created_at)

    def update(self, record: KeyRecord) -> None:
        self._records[record.key_id] = record


_SCHEMA = """
CREATE TABLE IF NOT EXISTS mcpwall_api_keys (
    key_id     TEXT PRIMARY KEY,
    principal  TEXT NOT NULL,
    roles      TEXT NOT NULL,   -- comma-separated
    digest     TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL,
    note       TEXT NOT NULL DEFAULT ''
);
"""


class SqliteKeyStore(KeyStore):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(_SCHEMA)
        self._cache: dict[str, KeyRecord | None] = {}
        self._version = self._data_version()

    def _data_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def add(self, record: KeyRecord) -> None:
        try:
            self._db.execute("INSERT INTO mcpwall_api_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _row(record))
        except sqlite3.IntegrityError:
            raise ValueError("duplicate key id") from None
        self._cache.clear()

    def update(self, record: KeyRecord) -> None:
        self._db.execute("INSERT OR REPLACE INTO mcpwall_api_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _row(record))
        self._cache.clear()

    def lookup(self, key_id: str) -> KeyRecord | None:
        version = self._data_version()
        if version != self._version:
            self._cache.clear()
            self._version = version
        if key_id in self._cache:
            return self._cache[key_id]
        row = self._db.execute("SELECT * FROM mcpwall_api_keys WHERE key_id = ?", (key_id,)).fetchone()
        record = _record(row) if row is not None else None
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()  # unknown ids from a guessing client must not grow memory
        self._cache[key_id] = record
        return record

    def list(self) -> list[KeyRecord]:
        rows = self._db.execute("SELECT * FROM mcpwall_api_keys ORDER BY created_at").fetchall()
        return [_record(row) for row in rows]

    def close(self) -> None:
        self._db.close()


def _row(r: KeyRecord) -> tuple[object, ...]:
    return (r.key_id, r.principal, ",".join(r.roles), r.digest, r.created_at, r.expires_at, r.revoked_at, r.note)


def _record(row: tuple[object, ...]) -> KeyRecord:
    key_id, principal, roles, digest, created, expires, revoked, note = row
    return KeyRecord(
        key_id=str(key_id), principal=str(principal),
        roles=tuple(r for r in str(roles).split(",") if r), digest=str(digest),
        created_at=float(created),  # type: ignore[arg-type]
        expires_at=None if expires is None else float(expires),  # type: ignore[arg-type]
        revoked_at=None if revoked is None else float(revoked),  # type: ignore[arg-type]
        note=str(note or ""))


def open_key_store(url: str, base_dir: Path | None = None) -> KeyStore:
    """The key store for a storage URL. Other backends plug in here behind :class:`KeyStore`."""
    kind = scheme(url)
    if kind == "memory":
        return MemoryKeyStore()
    if kind == "sqlite":
        path = sqlite_path(url, base_dir)
        if path is None:
            raise ValueError("a SQLite storage URL looks like sqlite:///path/to/file.db")
        return SqliteKeyStore(path)
    raise ValueError(f"API keys are not yet stored in {kind!r}; set guards.auth.api_keys.store to a sqlite:/// URL")
