"""The audit store interface and the SQL both backends share.

One table of records (the chain), one of signed checkpoints, a one-row *head* (chain id, last
sequence number and hash, latest signed head, how far the chain was pruned) and a set of
"seen" keys the alert rules use for first-time detection. :meth:`AuditStore.append` links a
batch onto the head, writes it, moves the head and (when asked, or when a checkpoint is due)
signs the head and stores a checkpoint in **one transaction**: a crash at any instant leaves
either the whole batch or none of it, so the stored chain always verifies. The head row is
locked for the transaction, so several writers (gateway replicas sharing PostgreSQL, or a CLI
prune next to a running gateway) serialise safely.

Stores are synchronous and used from one thread at a time (the audit writer's thread, or the
CLI). Backends: :mod:`mcpwall.audit.sqlite` and :mod:`mcpwall.audit.postgres`.
"""

from __future__ import annotations

import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcpwall.audit.record import Sealed, genesis_hash, link, timestamp
from mcpwall.audit.signing import Checkpoint, Signer

COLUMNS = ("ts", "kind", "principal", "upstream", "method", "tool", "decision")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class StoreError(Exception):
    """The audit store cannot be opened, read or written."""


@dataclass(slots=True)
class Head:
    chain: str
    seq: int
    hash: str
    checkpoint: Checkpoint | None = None
    pruned_through: int = 0
    last_checkpoint_seq: int = 0
    fresh: bool = False  # ``checkpoint`` was signed by the append that returned this head

    @property
    def unsigned(self) -> int:
        """How many records at the end of the chain no signed head covers yet."""
        return self.seq - (self.checkpoint.seq if self.checkpoint is not None else 0)


@dataclass(slots=True)
class Row:
    seq: int
    hash: str
    body: str
    columns: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Filters:
    principal: str | None = None
    tool: str | None = None
    decision: str | None = None
    kind: str | None = None
    upstream: str | None = None
    since: str | None = None  # record timestamps (fixed-width text, see record.timestamp)
    until: str | None = None
    after_seq: int | None = None
    limit: int | None = None
    newest_first: bool = False


class AuditStore(ABC):
    """Common logic; subclasses supply the connection, placeholders and locking."""

    placeholder = "?"

    def __init__(self, prefix: str = "") -> None:
        self.t_records = f"{prefix}audit_records"
        self.t_checkpoints = f"{prefix}audit_checkpoints"
        self.t_head = f"{prefix}audit_head"
        self.t_seen = f"{prefix}audit_seen"
        self._head_cp: tuple[str, Checkpoint] | None = None

    # -- backend hooks -------------------------------------------------------------------------

    @abstractmethod
    def _connect(self, create: bool) -> None: ...

    @abstractmethod
    def _ddl(self) -> list[str]: ...

    @abstractmethod
    def _begin_write(self) -> None:
        """Start a transaction that serialises with every other writer."""

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    @abstractmethod
    def _exec(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    def _exec_many(self, sql: str, rows: list[Sequence[Any]]) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @property
    def location(self) -> str:
        """Where the store is, for messages (no credentials)."""
        return "audit store"

    def _q(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    # -- lifecycle ----------------------------------------------------------------------------

    def open(self, *, create: bool = True) -> Head | None:
        """Connect; with ``create``, make the tables and the chain if missing. Returns the head."""
        self._connect(create)
        if not create:
            try:
                return self.head()
            except StoreError:
                return None
        self._begin_write()
        try:
            for statement in self._ddl():
                self._exec(statement)
            if not self._exec(self._q(f"SELECT chain FROM {self.t_head} WHERE id = 1")):
                chain = uuid.uuid4().hex
                self._exec(self._q(f"INSERT INTO {self.t_head} (id, chain, seq, hash, pruned_through, last_cp_seq) "
                                   "VALUES (1, ?, 0, ?, 0, 0) ON CONFLICT (id) DO NOTHING"),
                           (chain, genesis_hash(chain)))
            self._commit()
        except Exception:
            self._rollback()
            raise
        return self.head()

    # -- reads ---------------------------------------------------------------------------------

    def head(self) -> Head | None:
        try:
            rows = self._exec(self._q(f"SELECT chain, seq, hash, checkpoint, pruned_through, last_cp_seq "
                                      f"FROM {self.t_head} WHERE id = 1"))
        except Exception as exc:
            raise StoreError(f"cannot read the audit head: {type(exc).__name__}") from None
        if not rows:
            return None
        chain, seq, hash_, cp, pruned, last_cp = rows[0]
        checkpoint = Checkpoint.from_json(cp) if cp else None
        return Head(chain, int(seq), hash_, checkpoint, int(pruned), int(last_cp))

    def rows(self, after_seq: int = 0, *, page: int = 2000) -> Iterator[Row]:
        """Every record in sequence order, fetched in pages (bounded memory)."""
        cursor = after_seq
        while True:
            batch = self._exec(self._q(f"SELECT seq, hash, body, {', '.join(COLUMNS)} FROM {self.t_records} "
                                       "WHERE seq > ? ORDER BY seq LIMIT ?"), (cursor, page))
            for raw in batch:
                yield _row(raw)
            if len(batch) < page:
                return
            cursor = int(batch[-1][0])

    def checkpoints(self) -> list[Checkpoint]:
        rows = self._exec(self._q(f"SELECT body FROM {self.t_checkpoints} ORDER BY seq"))
        return [Checkpoint.from_json(body) for (body,) in rows]

    def query(self, filters: Filters) -> list[Row]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("principal", filters.principal), ("decision", filters.decision),
                              ("kind", filters.kind), ("upstream", filters.upstream)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if filters.tool is not None:
            where.append("tool = ?")
            params.append(filters.tool)
        if filters.since is not None:
            where.append("ts >= ?")
            params.append(filters.since)
        if filters.until is not None:
            where.append("ts < ?")
            params.append(filters.until)
        if filters.after_seq is not None:
            where.append("seq > ?")
            params.append(filters.after_seq)
        sql = f"SELECT seq, hash, body, {', '.join(COLUMNS)} FROM {self.t_records}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC" if filters.newest_first else " ORDER BY seq"
        if filters.limit is not None:
            sql += " LIMIT ?"
            params.append(filters.limit)
        return [_row(raw) for raw in self._exec(self._q(sql), params)]

    def seen_keys(self) -> set[str]:
        return {key for (key,) in self._exec(self._q(f"SELECT key FROM {self.t_seen}"))}

    def prune_point(self, cutoff: str) -> int | None:
        """The newest checkpoint whose record is older than ``cutoff``: records up to it can go,
        and the checkpoint stays as the signed anchor of what remains."""
        rows = self._exec(self._q(
            f"SELECT MAX(c.seq) FROM {self.t_checkpoints} c JOIN {self.t_records} r ON r.seq = c.seq "
            "WHERE r.ts < ?"), (cutoff,))
        value = rows[0][0] if rows else None
        return int(value) if value is not None else None

    # -- the one write path --------------------------------------------------------------------

    def append(self, records: list[dict[str, Any]], signer: Signer, *, checkpoint: bool = False,
               checkpoint_every: int = 0, sign: bool = True, prune_through: int | None = None,
               seen: Iterable[str] = ()) -> tuple[Head, list[Sealed]]:
        """Link ``records`` onto the chain and write them and the new head atomically.

        With ``sign`` the head is signed (the signature goes into the head row; the caller
        copies it to the head file). A *stored* checkpoint is added when ``checkpoint`` is set
        or ``checkpoint_every`` records have passed since the last one; storing one always signs.
        Without a signature the head row's ``seq``/``hash`` move on and its signature stays the
        previous one. With ``prune_through``, records up to that checkpoint are deleted in the
        same transaction (the caller passes a record announcing the prune)."""
        self._begin_write()
        try:
            rows = self._exec(self._q(f"SELECT chain, seq, hash, pruned_through, last_cp_seq, checkpoint "
                                      f"FROM {self.t_head} WHERE id = 1{self._lock_suffix()}"))
            if not rows:
                raise StoreError("the audit store has no chain; open it with create=True")
            chain, seq, prev, pruned, last_cp, current = rows[0]
            seq, pruned, last_cp = int(seq), int(pruned), int(last_cp)
            sealed = link(records, seq, prev)
            if sealed:
                self._exec_many(
                    self._q(f"INSERT INTO {self.t_records} (seq, hash, body, {', '.join(COLUMNS)}) "
                            f"VALUES (?, ?, ?, {', '.join('?' for _ in COLUMNS)})"),
                    [(s.seq, s.hash, s.body.decode(), *(s.columns[c] for c in COLUMNS)) for s in sealed])
                seq, prev = sealed[-1].seq, sealed[-1].hash
            now = timestamp()
            due = (checkpoint or (checkpoint_every > 0 and seq - last_cp >= checkpoint_every)) and seq > last_cp
            signed: Checkpoint | None = None
            if sign or due:
                signed = signer.checkpoint(chain, seq, prev, now)
            if due and signed is not None:
                self._exec(self._q(f"INSERT INTO {self.t_checkpoints} (seq, ts, body) VALUES (?, ?, ?) "
                                   "ON CONFLICT (seq) DO NOTHING"), (seq, now, signed.to_json().decode()))
                last_cp = seq
            if prune_through is not None and prune_through > pruned:
                self._exec(self._q(f"DELETE FROM {self.t_records} WHERE seq <= ?"), (prune_through,))
                self._exec(self._q(f"DELETE FROM {self.t_checkpoints} WHERE seq < ?"), (prune_through,))
                pruned = prune_through
            if signed is not None:
                self._exec(self._q(f"UPDATE {self.t_head} SET seq = ?, hash = ?, checkpoint = ?, "
                                   "pruned_through = ?, last_cp_seq = ? WHERE id = 1"),
                           (seq, prev, signed.to_json().decode(), pruned, last_cp))
            else:
                self._exec(self._q(f"UPDATE {self.t_head} SET seq = ?, hash = ?, pruned_through = ?, "
                                   "last_cp_seq = ? WHERE id = 1"), (seq, prev, pruned, last_cp))
            keys = sorted(set(seen))
            if keys:
                self._exec_many(self._q(f"INSERT INTO {self.t_seen} (key, ts) VALUES (?, ?) "
                                        "ON CONFLICT (key) DO NOTHING"), [(k, now) for k in keys])
            self._commit()
        except Exception:
            self._rollback()
            raise
        head_cp = signed if signed is not None else self._parsed_checkpoint(current)
        return Head(chain, seq, prev, head_cp, pruned, last_cp, fresh=signed is not None), sealed

    def _parsed_checkpoint(self, body: str | bytes | None) -> Checkpoint | None:
        """The head row's signature, parsed once per distinct value (unsigned batches reuse it)."""
        if not body:
            return None
        text = body if isinstance(body, str) else bytes(body).decode()
        cached = self._head_cp
        if cached is not None and cached[0] == text:
            return cached[1]
        cp = Checkpoint.from_json(text)
        self._head_cp = (text, cp)
        return cp

    def _lock_suffix(self) -> str:
        return ""


def _row(raw: tuple[Any, ...]) -> Row:
    seq, hash_, body, *cols = raw
    return Row(int(seq), hash_, body if isinstance(body, str) else bytes(body).decode(), dict(zip(COLUMNS, cols,
                                                                                                  strict=True)))


def check_identifier(name: str) -> str:
    if not _IDENT.match(name):
        raise StoreError(f"{name!r} is not a valid SQL identifier")
    return name


def open_store(url: str, *, base_dir: Path | None = None, schema: str | None = None,
               sync: bool = False) -> AuditStore:
    """A store for ``url``: ``sqlite:///path``, ``memory://`` (tests) or ``postgresql://…``."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from mcpwall.audit.sqlite import SqliteStore
        from mcpwall.storage.urls import sqlite_path

        path = sqlite_path(url, base_dir)
        if path is None:
            raise StoreError("sqlite URLs look like sqlite:///relative/path.db or sqlite:////absolute/path.db")
        return SqliteStore(path, sync=sync)
    if scheme == "memory":
        from mcpwall.audit.sqlite import SqliteStore

        return SqliteStore(None, sync=sync)
    if scheme in ("postgresql", "postgres"):
        from mcpwall.audit.postgres import PostgresStore

        return PostgresStore(url, schema=schema)
    raise StoreError(f"unsupported audit store scheme {scheme!r} (use sqlite, postgresql or memory)")
