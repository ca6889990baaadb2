"""The pin book: approved pins (the lockfile) laid over first-use pins (the TOFU store).

An operator's approval always wins over trust-on-first-use: when both hold an entry for the
same definition, the lockfile's counts. With ``store: lockfile`` both layers are the same file.
``current()`` is called on every list and every call, so it only rereads a store whose
``version()`` moved.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from mcpwall.pins.canonical import Key, Pin
from mcpwall.pins.store import LockfileStore, PinStore, storage_store


class PinBook:
    def __init__(self, lock: PinStore, tofu: PinStore | None = None) -> None:
        self.lock = lock
        self.tofu = tofu if tofu is not None and tofu is not lock else None
        self._guard = threading.Lock()
        self._versions: tuple[object, object] | None = None
        self._merged: dict[Key, Pin] = {}
        self._sources: dict[Key, str] = {}

    def current(self) -> dict[Key, Pin]:
        """Every pin in force. Do not mutate the returned mapping."""
        versions = (self.lock.version(), self.tofu.version() if self.tofu is not None else None)
        if versions != self._versions:
            with self._guard:
                first_use = self.tofu.load() if self.tofu is not None else {}
                approved = self.lock.load()
                self._sources = {**dict.fromkeys(first_use, "tofu"), **dict.fromkeys(approved, "lock")}
                self._merged = {**first_use, **approved}
                self._versions = versions
        return self._merged

    def source(self, key: Key) -> str | None:
        """``lock`` (approved), ``tofu`` (trusted on first use) or None."""
        self.current()
        return self._sources.get(key)

    def add_first_seen(self, pins: Mapping[Key, Pin]) -> None:
        (self.tofu or self.lock).put(pins)

    def approve(self, pins: Mapping[Key, Pin], removed: Iterable[Key] = ()) -> None:
        """Record approvals in the lockfile and drop what they supersede in the TOFU store."""
        gone = list(removed)
        if pins:
            self.lock.put(pins)
        if gone:
            self.lock.delete(gone)
        if self.tofu is not None and (pins or gone):
            self.tofu.delete([*pins, *gone])

    def replace_servers(self, servers: Iterable[str], pins: Mapping[Key, Pin]) -> None:
        """Make the lockfile hold exactly ``pins`` for ``servers`` (``mcpwall pins lock``)."""
        names = set(servers)
        stale = [key for key in self.lock.load() if key[0] in names and key not in pins]
        self.approve(pins, stale)


def open_book(lockfile_path: Path, store: str, storage_url: str, base_dir: Path) -> PinBook:
    lock = LockfileStore(lockfile_path)
    if store == "lockfile":
        return PinBook(lock)
    return PinBook(lock, storage_store(storage_url, base_dir))
