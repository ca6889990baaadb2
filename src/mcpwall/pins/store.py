"""Where pins live: the lockfile, an SQLite table under the storage URL, or memory (tests).

Every store answers ``version()`` cheaply — a file's stat, SQLite's ``data_version`` — so the
guard can notice an approval made by ``mcpwall pins approve`` in another process on the very
next call, without rereading anything when nothing changed. Writes merge into what is there
now, so a concurrent writer's entries are not lost.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

import orjson

from mcpwall.pins import lockfile
from mcpwall.pins.canonical import Key, Pin
from mcpwall.storage.urls import scheme, sqlite_path


class PinStore(Protocol):
    def version(self) -> object: ...

    def load(self) -> dict[Key, Pin]: ...

    def put(self, pins: Mapping[Key, Pin]) -> None: ...

    def delete(self, keys: Iterable[Key]) -> None: ...


class MemoryStore:
    def __init__(self, pins: Mapping[Key, Pin] | None = None) -> None:
        self._pins: dict[Key, Pin] = dict(pins or {})
        self._version = 0

    def version(self) -> object:
        return self._version

    def load(self) -> dict[Key, Pin]:
        return dict(self._pins)

    def put(self, pins: Mapping[Key, Pin]) -> None:
        self._pins.update(pins)
        self._version += 1

    def delete(self, keys: Iterable[Key]) -> None:
        for key in keys:
            self._pins.pop(key, None)
        self._version += 1


class LockfileStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def version(self) -> object:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def load(self) -> dict[Key, Pin]:
        return lockfile.read(self.path)

    def put(self, pins: Mapping[Key, Pin]) -> None:
        with self._lock:
            current = lockfile.read(self.path)
            current.update(pins)
            lockfile.write(self.path, current)

    def delete(self, keys: Iterable[Key]) -> None:
        with self._lock:
            current = lockfile.read(self.path)
            for key in keys:
                current.pop(key, None)
            lockfile.write(self.path, current)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS pins (
    server TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    hash TEXT NOT NULL,
    definition BLOB NOT NULL,
    PRIMARY KEY (server, kind, name)
)
"""


class SqliteStore:
    """Pins in a ``pins`` table of the gateway's SQLite database (WAL mode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()
        self._writes = 0

    def version(self) -> object:
        with self._lock:
            (data_version,) = self._db.execute("PRAGMA data_version").fetchone()
            return (data_version, self._writes)

    def load(self) -> dict[Key, Pin]:
        with self._lock:
            rows = self._db.execute("SELECT server, kind, name, hash, definition FROM pins").fetchall()
        return {(s, k, n): Pin(h, orjson.loads(d)) for s, k, n, h, d in rows}

    def put(self, pins: Mapping[Key, Pin]) -> None:
        rows = [(s, k, n, p.hash, orjson.dumps(p.definition)) for (s, k, n), p in pins.items()]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO pins VALUES (?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._writes += 1

    def delete(self, keys: Iterable[Key]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM pins WHERE server = ? AND kind = ? AND name = ?", list(keys))
            self._writes += 1

    def close(self) -> None:
        self._db.close()


def storage_store(url: str, base_dir: Path) -> PinStore:
    """The pin store for a ``storage.url``. Only SQLite and memory are built in."""
    if scheme(url) == "memory":
        return MemoryStore()
    path = sqlite_path(url, base_dir)
    if path is None:
        raise ValueError(f"pins: storage scheme {scheme(url)!r} is not supported for pins; "
                         "use store: lockfile or a sqlite:/// storage URL")
    return SqliteStore(path)
