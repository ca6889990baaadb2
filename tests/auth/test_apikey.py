"""API keys: only a digest stored, immediate revocation across processes, expiry and rotation."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpwall.auth import apikey
from mcpwall.auth.base import AuthFailure
from mcpwall.storage.apikeys import MemoryKeyStore, SqliteKeyStore, open_key_store


def reason(store: object, key: str, now: float | None = None) -> str:
    with pytest.raises(AuthFailure) as info:
        apikey.verify(store, key, time.time() if now is None else now)  # type: ignore[arg-type]
    return info.value.reason


def test_only_the_digest_is_stored(tmp_path: Path) -> None:
    store = SqliteKeyStore(tmp_path / "keys.db")
    record, key = apikey.mint(store, "alice", ("reader",))
    store.close()
    secret = key.split("_", 2)[2]
    files = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert secret.encode() not in files
    row = sqlite3.connect(tmp_path / "keys.db").execute("SELECT * FROM mcpwall_api_keys").fetchone()
    assert secret not in repr(row)
    assert record.digest == row[3] == hashlib.sha256(secret.encode()).hexdigest()


def test_verify_accepts_the_key_and_names_the_principal() -> None:
    store = MemoryKeyStore()
    record, key = apikey.mint(store, "alice", ("reader", "writer"))
    assert key.startswith("mcpw_") and len(key) == 5 + 16 + 1 + 43
    assert apikey.verify(store, key, time.time()) == record


def test_wrong_secret_unknown_id_and_malformed_keys_are_refused() -> None:
    store = MemoryKeyStore()
    _, key = apikey.mint(store, "alice", ())
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert reason(store, tampered) == "unknown_key"
    assert reason(store, "mcpw_" + "0" * 16 + "_" + "a" * 43) == "unknown_key"
    for bad in ("", "mcpw_", key + "x", key.upper(), "Bearer " + key, key.replace("mcpw_", "mcpx_")):
        assert reason(store, bad) in ("malformed_key", "unknown_key")


def test_revocation_is_immediate_even_from_another_process(tmp_path: Path) -> None:
    gateway_view = SqliteKeyStore(tmp_path / "keys.db")
    cli_view = SqliteKeyStore(tmp_path / "keys.db")  # a second connection, like `mcpwall keys revoke`
    record, key = apikey.mint(cli_view, "alice", ("reader",))
    assert apikey.verify(gateway_view, key, time.time()).principal == "alice"  # now cached
    assert cli_view.revoke(record.key_id)
    assert reason(gateway_view, key) == "revoked_key"
    gateway_view.close()
    cli_view.close()


def test_expired_keys_are_refused() -> None:
    store = MemoryKeyStore()
    now = time.time()
    _, key = apikey.mint(store, "alice", (), expires_in=60, now=now)
    assert apikey.verify(store, key, now + 59)
    assert reason(store, key, now + 61) == "expired_key"


def test_rotation_issues_a_new_key_and_retires_the_old_after_grace() -> None:
    store = MemoryKeyStore()
    now = time.time()
    old, old_key = apikey.mint(store, "svc", ("billing",), now=now)
    new, new_key = apikey.rotate(store, old.key_id, grace=3600, now=now)
    assert new.principal == "svc" and new.roles == ("billing",) and new.key_id != old.key_id
    assert apikey.verify(store, old_key, now + 10)
    assert reason(store, old_key, now + 3601) == "revoked_key"
    assert apikey.verify(store, new_key, now + 3601)
    with pytest.raises(KeyError):
        apikey.rotate(store, "ffffffffffffffff")


def test_rotation_without_grace_revokes_at_once() -> None:
    store = MemoryKeyStore()
    old, old_key = apikey.mint(store, "svc", ())
    apikey.rotate(store, old.key_id)
    assert reason(store, old_key) == "revoked_key"
    with pytest.raises(ValueError, match="revoked"):
        apikey.rotate(store, old.key_id)


def test_open_key_store_schemes(tmp_path: Path) -> None:
    assert isinstance(open_key_store("memory://"), MemoryKeyStore)
    assert isinstance(open_key_store("sqlite:///k.db", tmp_path), SqliteKeyStore)
    with pytest.raises(ValueError):
        open_key_store("redis://127.0.0.1:6379/0")


@given(st.text(max_size=120))
def test_verify_never_fails_with_anything_but_auth_failure(text: str) -> None:
    store = MemoryKeyStore()
    with contextlib.suppress(AuthFailure):
        apikey.verify(store, text, 0.0)
