"""PostgreSQL audit store (psycopg 3), for scale-out: several gateway replicas share one chain.

The head row is locked with ``SELECT … FOR UPDATE`` inside each append transaction, so replicas
take turns extending the chain and sequence numbers never fork. Record bodies are stored as
``text``, not ``jsonb``: the hash is over exact bytes, and ``jsonb`` would reorder keys and
rewrite numbers. A lost connection is reopened on the next write (the writer retries).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mcpwall.audit.store import AuditStore, StoreError, check_identifier

try:
    import psycopg
except ImportError:  # pragma: no cover - exercised only without the dependency
    psycopg = None  # type: ignore[assignment]


class PostgresStore(AuditStore):
    placeholder = "%s"

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self.schema = check_identifier(schema) if schema else None
        super().__init__(prefix=f"{self.schema}." if self.schema else "")
        self.url = url
        self._conn: Any = None

    @property
    def location(self) -> str:
        # Never echo credentials: host and database only.
        try:
            info = psycopg.conninfo.conninfo_to_dict(self.url) if psycopg is not None else {}
        except Exception:
            info = {}
        return f"postgresql://{info.get('host', '')}:{info.get('port', '')}/{info.get('dbname', '')}"

    def _connect(self, create: bool) -> None:
        if self._conn is not None and not self._conn.closed:
            return
        if psycopg is None:
            raise StoreError("the PostgreSQL audit store needs psycopg: pip install 'psycopg[binary]'")
        try:
            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the audit database {self.location}: "
                             f"{type(exc).__name__}") from None

    def _ddl(self) -> list[str]:
        statements = ["SELECT pg_advisory_xact_lock(7262307417563191)"]  # one DDL runner at a time
        if self.schema:
            statements.append(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
        statements += [
            f"CREATE TABLE IF NOT EXISTS {self.t_head} (id INTEGER PRIMARY KEY CHECK (id = 1), chain TEXT NOT NULL, "
            "seq BIGINT NOT NULL, hash TEXT NOT NULL, checkpoint TEXT, pruned_through BIGINT NOT NULL, "
            "last_cp_seq BIGINT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.t_records} (seq BIGINT PRIMARY KEY, hash TEXT NOT NULL, "
            "body TEXT NOT NULL, ts TEXT, kind TEXT, principal TEXT, upstream TEXT, method TEXT, tool TEXT, "
            "decision TEXT)",
            f"CREATE INDEX IF NOT EXISTS audit_records_ts ON {self.t_records} (ts)",
            f"CREATE INDEX IF NOT EXISTS audit_records_principal ON {self.t_records} (principal, seq)",
            f"CREATE INDEX IF NOT EXISTS audit_records_tool ON {self.t_records} (tool, seq)",
            f"CREATE TABLE IF NOT EXISTS {self.t_checkpoints} (seq BIGINT PRIMARY KEY, ts TEXT NOT NULL, "
            "body TEXT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.t_seen} (key TEXT PRIMARY KEY, ts TEXT NOT NULL)",
        ]
        return statements

    def _lock_suffix(self) -> str:
        return " FOR UPDATE"

    def _begin_write(self) -> None:
        self._connect(False)
        self._exec("BEGIN")

    def _commit(self) -> None:
        self._exec("COMMIT")

    def _rollback(self) -> None:
        if self._conn is None or self._conn.closed:
            return
        try:
            self._conn.execute("ROLLBACK")
        except Exception:
            self._drop()

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._connect(False)
        try:
            cursor = self._conn.execute(sql, params or None)
            return list(cursor.fetchall()) if cursor.description is not None else []
        except psycopg.Error as exc:
            if self._conn.closed or self._conn.broken:
                self._drop()
            raise StoreError(f"audit database error: {type(exc).__name__}: {exc.diag.message_primary or ''}") \
                from None

    def _exec_many(self, sql: str, rows: list[Sequence[Any]]) -> None:
        self._connect(False)
        try:
            with self._conn.cursor() as cursor:
                cursor.executemany(sql, rows)
        except psycopg.Error as exc:
            if self._conn.closed or self._conn.broken:
                self._drop()
            raise StoreError(f"audit database error: {type(exc).__name__}") from None

    def _drop(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()
        finally:
            self._conn = None

    def close(self) -> None:
        self._drop()
