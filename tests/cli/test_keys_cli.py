"""``mcpwall keys``: the key is printed once, revocation reaches a running verifier at once."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner

from mcpwall.auth import apikey
from mcpwall.auth.base import AuthFailure
from mcpwall.cli import main
from mcpwall.storage.apikeys import SqliteKeyStore


def run(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["keys", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_create_list_rotate_revoke(tmp_path: Path, monkeypatch: object) -> None:
    config = tmp_path / "mcpwall.yaml"
    config.write_text("storage: {url: 'sqlite:///state/gw.db'}\nguards: {auth: {api_keys: {}}}\n")
    c = ["-c", str(config)]
    code, out, err = run(tmp_path, "create", "--principal", "alice", "--roles", "reader,writer", "--expires", "90d",
                         "--note", "laptop", *c)
    assert code == 0
    key = out.strip()
    assert key.startswith("mcpw_") and "\n" not in key and key not in err
    running = SqliteKeyStore(tmp_path / "state" / "gw.db")  # what a running gateway holds open
    record = apikey.verify(running, key, time.time())
    assert record.roles == ("reader", "writer") and record.expires_at is not None

    code, out, _ = run(tmp_path, "list", "--json", *c)
    listed = json.loads(out)
    assert [row["principal"] for row in listed] == ["alice"] and key.split("_", 2)[2] not in out

    code, out, _ = run(tmp_path, "rotate", record.key_id, *c)
    new_key = out.strip()
    assert code == 0 and new_key != key
    assert apikey.verify(running, new_key, time.time()).principal == "alice"
    try:
        apikey.verify(running, key, time.time())
        raise AssertionError("the rotated key still works")
    except AuthFailure as failure:
        assert failure.reason == "revoked_key"

    new_id = new_key.split("_")[1]
    code, _, _ = run(tmp_path, "revoke", new_id, *c)
    assert code == 0
    try:
        apikey.verify(running, new_key, time.time())
        raise AssertionError("the revoked key still works")
    except AuthFailure as failure:
        assert failure.reason == "revoked_key"
    code, out, _ = run(tmp_path, "list", "--json", *c)
    assert json.loads(out) == []
    code, out, _ = run(tmp_path, "list", "--all", "--json", *c)
    assert {row["status"] for row in json.loads(out)} == {"revoked"}
    running.close()


def test_unknown_key_and_bad_duration(tmp_path: Path) -> None:
    storage = ["--storage", f"sqlite:///{tmp_path}/k.db"]
    result = CliRunner().invoke(main, ["keys", "revoke", "ffffffffffffffff", *storage])
    assert result.exit_code == 1 and "no key" in result.output
    result = CliRunner().invoke(main, ["keys", "create", "--principal", "a", "--expires", "soon", *storage])
    assert result.exit_code == 2
