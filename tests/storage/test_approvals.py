"""One contract suite for both approval store backends: memory and SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mcpwall.storage.approvals import ApprovalRecord, ApprovalStore, SqliteApprovalStore, open_approval_store

T0 = 1_800_000_000.0


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApprovalStore]:
    url = "memory://" if request.param == "memory" else "sqlite:///approvals.db"
    backend = open_approval_store(url, tmp_path)
    yield backend
    backend.close()


def record(approval_id: str = "a1", key: str = "k1", principal: str = "alice", created: float = T0) -> ApprovalRecord:
    return ApprovalRecord(id=approval_id, created=created, expires=created + 60, cache_key=key, principal=principal,
                          tool="fs__delete_file", arguments={"path": "/tmp/x", "token": "[redacted]"})


def test_add_get_round_trips_every_field(store: ApprovalStore) -> None:
    original = record()
    original.approvals.append({"approver": "bob", "channel": "admin", "at": T0, "approve": True, "comment": ""})
    store.add(original)
    loaded = store.get("a1")
    assert loaded is not None and loaded.to_dict() == original.to_dict()
    assert store.get("missing") is None
    with pytest.raises(Exception):  # noqa: B017 - each backend raises its own duplicate-key error
        store.add(record())


def test_update_is_compare_and_set(store: ApprovalStore) -> None:
    store.add(record())
    first = store.get("a1")
    second = store.get("a1")
    assert first is not None and second is not None
    first.status = "approved"
    assert store.update(first)
    second.status = "denied"
    assert not store.update(second)  # stale version: someone decided first
    loaded = store.get("a1")
    assert loaded is not None and loaded.status == "approved" and loaded.version == 1


def test_pending_queries(store: ApprovalStore) -> None:
    store.add(record("a1", "k1", "alice"))
    store.add(record("a2", "k2", "alice", created=T0 + 1))
    store.add(record("a3", "k3", "bob", created=T0 + 2))
    assert store.count_pending() == 3 and store.count_pending("alice") == 2
    found = store.find_pending("k2")
    assert found is not None and found.id == "a2"
    assert [r.id for r in store.recent("pending")] == ["a3", "a2", "a1"]
    assert {r.id for r in store.pending()} == {"a1", "a2", "a3"}


def test_find_cached_returns_the_newest_live_human_decision(store: ApprovalStore) -> None:
    for approval_id, status, decided, until in (("a1", "approved", T0, T0 + 100), ("a2", "denied", T0 + 5, T0 + 50),
                                                ("a3", "expired", T0 + 9, T0 + 100)):
        rec = record(approval_id, "same")
        store.add(rec)
        rec.status, rec.decided_at, rec.cache_until = status, decided, until  # type: ignore[assignment]
        assert store.update(rec)
    hit = store.find_cached("same", T0 + 10)
    assert hit is not None and hit.id == "a2"  # expired requests are never a cached decision
    later = store.find_cached("same", T0 + 60)
    assert later is not None and later.id == "a1"
    assert store.find_cached("same", T0 + 200) is None


def test_prune_keeps_pending_and_cached(store: ApprovalStore) -> None:
    old = record("old", "k1")
    store.add(old)
    old.status, old.cache_until = "denied", T0 + 10
    assert store.update(old)
    store.add(record("waiting", "k2"))
    assert store.prune(T0 + 5) == 0  # still cached
    assert store.prune(T0 + 20) == 1
    assert store.get("old") is None and store.get("waiting") is not None


def test_sqlite_records_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "db" / "approvals.db"
    first = SqliteApprovalStore(path)
    first.add(record())
    first.close()
    second = SqliteApprovalStore(path)
    loaded = second.get("a1")
    assert loaded is not None and loaded.pending and loaded.arguments["token"] == "[redacted]"
    second.close()


def test_unsupported_backends_fail_closed() -> None:
    with pytest.raises(ValueError, match="does not support"):
        open_approval_store("redis://127.0.0.1:6379/0")
