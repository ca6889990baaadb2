"""``mcpwall scan``: formats, exit codes for CI, consent and --wrap --apply through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from fixtures.client_configs import FAKE_GITHUB_TOKEN, build_tree
from fixtures.scan_servers import TOKEN, Fleet
from mcpwall.cli import main


def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["scan", *args], env=env, input=input, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_fail_under_sets_the_exit_code(fleet: Fleet) -> None:
    base = ["--cacert", str(fleet.certs.ca), "--bearer", TOKEN]
    code, out, _ = run(fleet.urls["hardened"], *base, "--fail-under", "A", "--format", "json")
    assert code == 0 and orjson.loads(out)["grade"]["letter"] == "A"
    code, out, err = run(fleet.urls["no_auth"], *base, "--fail-under", "A", "--format", "json")
    assert code == 1 and orjson.loads(out)["grade"]["score"] == 85
    assert "below --fail-under A" in err
    code, _, _ = run(fleet.urls["no_auth"], *base, "--fail-under", "b")
    assert code == 0


def test_headers_are_sent_and_never_printed(fleet: Fleet) -> None:
    _code, out, _ = run(fleet.urls["hardened"], "--cacert", str(fleet.certs.ca), "-H", f"Authorization: Bearer {TOKEN}",
                       "--format", "json")
    data = orjson.loads(out)
    assert data["authenticated"] and data["era"] == "legacy" and len(data["tools"]) == 2
    assert TOKEN not in out


def test_sarif_to_a_file(fleet: Fleet, tmp_path: Path) -> None:
    target = tmp_path / "scan.sarif"
    code, _, err = run(fleet.urls["all"], "--format", "sarif", "-o", str(target))
    assert code == 0 and "report written" in err
    assert json.loads(target.read_text())["version"] == "2.1.0"


def test_unreachable_target_exits_2() -> None:
    code, out, _ = run("http://127.0.0.1:9/mcp", "--timeout", "2")
    assert code == 2 and "unreachable" in out


@pytest.mark.parametrize("args", [[], ["http://x/mcp", "--clients"], ["ftp://x/"], ["https://u:p@x/mcp"],
                                  ["--clients", "--apply"], ["http://x/mcp", "-H", "no-colon"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    code, _, _ = run(*args)
    assert code == 2


def test_clients_text_and_fail_on(tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir(parents=True)
    build_tree(home, project)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": "", "APPDATA": ""}
    code, out, _ = run("--clients", "--project", str(project), env=env)
    assert code == 0
    assert "Claude Desktop" in out and "~/.cursor/mcp.json" in out and FAKE_GITHUB_TOKEN not in out
    code, _, err = run("--clients", "--project", str(project), "--fail-on", "high", env=env)
    assert code == 1 and "at or above high" in err


def test_connect_asks_before_starting_each_server(tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir(parents=True)
    marker = tmp_path / "started"
    build_tree(home, project, marker=marker)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": "", "APPDATA": ""}
    code, out, err = run("--clients", "--project", str(project), "--connect", "--format", "json", env=env,
                         input="n\n" * 20)
    assert code == 0
    assert "will run: npx -y @modelcontextprotocol/server-filesystem /" in err
    assert "start it and list its tools?" in err
    assert not marker.exists()
    assert all(s["tools"] is None for s in orjson.loads(out)["servers"])


def test_wrap_then_apply_with_backup(tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir(parents=True)
    files = build_tree(home, project)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": "", "APPDATA": ""}
    before = files["cursor"].read_text()
    code, out, err = run("--clients", "--project", str(project), "--wrap", "--format", "json", env=env)
    assert code == 0 and "--apply" in err and files["cursor"].read_text() == before
    assert "cannot be written automatically" in out  # the JSONC and YAML files
    code, _, err = run("--clients", "--project", str(project), "--wrap", "--apply", "--yes", env=env)
    assert code == 0
    assert json.loads(files["cursor"].read_text())["mcpServers"]["notes"]["command"] == "mcpwall"
    backups = list(files["cursor"].parent.glob("mcp.json.mcpwall-backup-*"))
    assert len(backups) == 1 and backups[0].read_text() == before
