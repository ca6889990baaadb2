"""The approvals store: pending and decided approval requests, kept across restarts.

One narrow interface (:class:`ApprovalStore`) with two backends: memory (tests, ``memory://``)
and SQLite (``sqlite:///path``, the embedded default; WAL mode). A record is written once
when a call is held and updated when approvers act or it expires; updates are compare-and-set
on a version number, so two gateway processes sharing one database file cannot both decide
the same request. Decided records double as the approval cache: a record with
``cache_until`` in the future answers a retry of the same call (same principal, tool and
arguments) without asking again.

The store holds only redacted arguments and digests; it never sees a credential.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson

from mcpwall.storage.urls import scheme, sqlite_path

Status = Literal["pending", "approved", "denied", "expired"]
STATUSES: tuple[str, ...] = ("pending", "approved", "denied", "expired")


@dataclass(slots=True)
class ApprovalRecord:
    """One approval request: who asked for what, why it was held, and what people said."""

    id: str
    created: float
    expires: float
    cache_key: str
    principal: str
    tool: str
    status: Status = "pending"
    auth_method: str = "anonymous"
    roles: list[str] = field(default_factory=list)
    session: str | None = None
    server: str | None = None
    target: str | None = None
    method: str = "tools/call"
    arguments: dict[str, Any] = field(default_factory=dict)  # redacted
    arguments_digest: str = ""
    definition_digest: str = ""
    labels: list[str] = field(default_factory=list)  # the tool's labels
    session_labels: list[str] = field(default_factory=list)  # taint the session carried
    risk: dict[str, Any] = field(default_factory=dict)  # {"score", "level", "reasons"}
    reasons: list[str] = field(default_factory=list)  # why approval is needed
    sources: list[str] = field(default_factory=list)  # which guards asked (approval, flow, policy)
    rule: str | None = None
    approvers_required: int = 1
    user_confirmation: str = "off"  # off | either | both (elicitation channel)
    user_confirmed: bool = False
    approvals: list[dict[str, Any]] = field(default_factory=list)  # {"approver", "channel", "at", "comment"}
    decided_at: float | None = None
    decided_by: str | None = None
    decision_reason: str = ""
    cache_until: float | None = None
    decision_id: str = ""  # the decision id of the call that opened the request
    version: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ApprovalRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @property
    def pending(self) -> bool:
        return self.status == "pending"


class ApprovalStore(Protocol):
    def add(self, record: ApprovalRecord) -> None: ...

    def get(self, approval_id: str) -> ApprovalRecord | None: ...

    def update(self, record: ApprovalRecord) -> bool:
        """Write ``record`` if the stored version equals ``record.version``; bumps the version.
        Returns False (and writes nothing) when someone else changed it first."""
        ...

    def recent(self, status: str | None = None, limit: int = 100) -> list[ApprovalRecord]: ...

    def pending(self) -> list[ApprovalRecord]: ...

    def find_pending(self, cache_key: str) -> ApprovalRecord | None: ...

    def find_cached(self, cache_key: str, now: float) -> ApprovalRecord | None:
        """The newest human decision for ``cache_key`` whose cache lifetime has not ended."""
        ...

    def count_pending(self, principal: str | None = None) -> int: ...

    def prune(self, before: float) -> int:
        """Delete decided records created before ``before``; returns how many."""
        ...

    def close(self) -> None: ...


class MemoryApprovalStore:
    def __init__(self) -> None:
        self._records: dict[str, dict[str, Any]] = {}

    def add(self, record: ApprovalRecord) -> None:
        if record.id in self._records:
            raise KeyError(f"approval {record.id} exists")
        self._records[record.id] = record.to_dict()

    def get(self, approval_id: str) -> ApprovalRecord | None:
        data = self._records.get(approval_id)
        return ApprovalRecord.from_dict(data) if data is not None else None

    def update(self, record: ApprovalRecord) -> bool:
        current = self._records.get(record.id)
        if current is None or current["version"] != record.version:
            return False
        record.version += 1
        self._records[record.id] = record.to_dict()
        return True

    def recent(self, status: str | None = None, limit: int = 100) -> list[ApprovalRecord]:
        rows = [r for r in self._records.values() if status is None or r["status"] == status]
        rows.sort(key=lambda r: r["created"], reverse=True)
        return [ApprovalRecord.from_dict(r) for r in rows[:limit]]

    def pending(self) -> list[ApprovalRecord]:
        return [ApprovalRecord.from_dict(r) for r in self._records.values() if r["status"] == "pending"]

    def find_pending(self, cache_key: str) -> ApprovalRecord | None:
        for data in self._records.values():
            if data["cache_key"] == cache_key and data["status"] == "pending":
                return ApprovalRecord.from_dict(data)
        return None

    def find_cached(self, cache_key: str, now: float) -> ApprovalRecord | None:
        best: dict[str, Any] | None = None
        for data in self._records.values():
            if (data["cache_key"] == cache_key and data["status"] in ("approved", "denied")
                    and (data["cache_until"] or 0) > now
                    and (best is None or (data["decided_at"] or 0) > (best["decided_at"] or 0))):
                best = data
        return ApprovalRecord.from_dict(best) if best is not None else None

    def count_pending(self, principal: str | None = None) -> int:
        return sum(1 for r in self._records.values()
                   if r["status"] == "pending" and (principal is None or r["principal"] == principal))

    def prune(self, before: float) -> int:
        doomed = [k for k, r in self._records.items() if r["status"] != "pending" and r["created"] < before
                  and (r["cache_until"] or 0) < before]
        for key in doomed:
            del self._records[key]
        return len(doomed)

    def close(self) -> None:
        return None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    id          TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    cache_key   TEXT NOT NULL,
    principal   TEXT NOT NULL,
    created     REAL NOT NULL,
    expires     REAL NOT NULL,
    decided_at  REAL,
    cache_until REAL,
    version     INTEGER NOT NULL,
    data        BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS approvals_status ON approvals (status, created);
CREATE INDEX IF NOT EXISTS approvals_key ON approvals (cache_key, status);
"""


class SqliteApprovalStore:
    """SQLite backend. Calls are short single-row statements on an indexed table, made from
    the event loop: only held calls and approvers touch this store, never the hot path."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), timeout=5.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def _row(self, record: ApprovalRecord) -> tuple[Any, ...]:
        return (record.id, record.status, record.cache_key, record.principal, record.created, record.expires,
                record.decided_at, record.cache_until, record.version, orjson.dumps(record.to_dict()))

    def add(self, record: ApprovalRecord) -> None:
        with self._lock:
            self._db.execute("INSERT INTO approvals (id, status, cache_key, principal, created, expires, "
                             "decided_at, cache_until, version, data) VALUES (?,?,?,?,?,?,?,?,?,?)",
                             self._row(record))

    def get(self, approval_id: str) -> ApprovalRecord | None:
        with self._lock:
            row = self._db.execute("SELECT data FROM approvals WHERE id = ?", (approval_id,)).fetchone()
        return _load(row[0]) if row else None

    def update(self, record: ApprovalRecord) -> bool:
        expected = record.version
        record.version = expected + 1
        row = self._row(record)
        with self._lock:
            cursor = self._db.execute(
                "UPDATE approvals SET status=?, cache_key=?, principal=?, created=?, expires=?, decided_at=?, "
                "cache_until=?, version=?, data=? WHERE id=? AND version=?",
                (*row[1:], record.id, expected))
        if cursor.rowcount != 1:
            record.version = expected
            return False
        return True

    def recent(self, status: str | None = None, limit: int = 100) -> list[ApprovalRecord]:
        with self._lock:
            if status is None:
                rows = self._db.execute("SELECT data FROM approvals ORDER BY created DESC LIMIT ?",
                                        (limit,)).fetchall()
            else:
                rows = self._db.execute("SELECT data FROM approvals WHERE status = ? ORDER BY created DESC "
                                        "LIMIT ?", (status, limit)).fetchall()
        return [_load(r[0]) for r in rows]

    def pending(self) -> list[ApprovalRecord]:
        with self._lock:
            rows = self._db.execute("SELECT data FROM approvals WHERE status = 'pending'").fetchall()
        return [_load(r[0]) for r in rows]

    def find_pending(self, cache_key: str) -> ApprovalRecord | None:
        with self._lock:
            row = self._db.execute("SELECT data FROM approvals WHERE cache_key = ? AND status = 'pending' "
                                   "ORDER BY created DESC LIMIT 1", (cache_key,)).fetchone()
        return _load(row[0]) if row else None

    def find_cached(self, cache_key: str, now: float) -> ApprovalRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM approvals WHERE cache_key = ? AND status IN ('approved', 'denied') "
                "AND cache_until > ? ORDER BY decided_at DESC LIMIT 1", (cache_key, now)).fetchone()
        return _load(row[0]) if row else None

    def count_pending(self, principal: str | None = None) -> int:
        with self._lock:
            if principal is None:
                row = self._db.execute("SELECT COUNT(*) FROM approvals WHERE status = 'pending'").fetchone()
            else:
                row = self._db.execute("SELECT COUNT(*) FROM approvals WHERE status = 'pending' AND principal = ?",
                                       (principal,)).fetchone()
        return int(row[0])

    def prune(self, before: float) -> int:
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM approvals WHERE status != 'pending' AND created < ? AND COALESCE(cache_until, 0) < ?",
                (before, before))
        return cursor.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _load(blob: bytes | str) -> ApprovalRecord:
    return ApprovalRecord.from_dict(orjson.loads(blob))


def open_approval_store(url: str, base_dir: Path | None = None) -> ApprovalStore:
    """The store for ``storage.url``. Unsupported schemes raise ``ValueError`` (fail closed:
    a gateway that cannot keep approvals must not start holding calls)."""
    if scheme(url) == "memory":
        return MemoryApprovalStore()
    path = sqlite_path(url, base_dir)
    if path is not None:
        return SqliteApprovalStore(path)
    raise ValueError(f"the approval store does not support {scheme(url)}:// storage yet")
