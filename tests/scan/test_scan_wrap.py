"""``scan --clients --wrap``: proposals, backups, and what is never rewritten."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from fixtures.client_configs import build_tree
from mcpwall.scan.clients import find_configs
from mcpwall.scan.clients.model import ConfigFile
from mcpwall.scan.clients.wrap import apply, propose


@pytest.fixture
def files(tmp_path: Path) -> dict[str, ConfigFile]:
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir(parents=True)
    build_tree(home, project)
    found = find_configs(env={"HOME": str(home)}, platform="linux", project=project, include_managed=False)
    return {f"{f.client}:{Path(f.path).name}": f for f in found if f.exists}


def test_json_config_is_rewritten_after_a_backup(files: dict[str, ConfigFile]) -> None:
    config = files["Claude Desktop:claude_desktop_config.json"]
    original = Path(config.path).read_text()
    proposal = propose(config)
    assert proposal is not None and proposal.reason is None
    assert set(proposal.wrapped) == {"filesystem", "github", "notes"}
    assert "+" in proposal.diff and "mcpwall" in proposal.diff
    apply(proposal, now=dt.datetime(2026, 1, 2, 3, 4, 5))
    assert proposal.applied and proposal.backup is not None
    assert Path(proposal.backup).name == "claude_desktop_config.json.mcpwall-backup-20260102T030405"
    assert Path(proposal.backup).read_text() == original
    rewritten = json.loads(Path(config.path).read_text())["mcpServers"]
    assert rewritten["filesystem"]["command"] == "mcpwall"
    assert rewritten["filesystem"]["args"] == ["wrap", "--", "npx", "-y", "@modelcontextprotocol/server-filesystem",
                                               "/"]
    assert rewritten["github"]["env"] == json.loads(original)["mcpServers"]["github"]["env"]  # other fields kept


def test_second_backup_does_not_overwrite_the_first(files: dict[str, ConfigFile]) -> None:
    config = files["Cursor:mcp.json"]
    when = dt.datetime(2026, 1, 2, 3, 4, 5)
    first = apply(propose(config), now=when)  # type: ignore[arg-type]
    second_proposal = propose(config)  # now everything is wrapped already
    assert second_proposal is None
    Path(config.path).write_text(Path(first.backup).read_text())  # type: ignore[arg-type]
    second = apply(propose(config), now=when)  # type: ignore[arg-type]
    assert second.backup != first.backup and Path(first.backup).exists()  # type: ignore[arg-type]


def test_nested_command_shapes_are_rewritten_in_place(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"context_servers": {"git": {"command": {"path": "uvx", "args": ["mcp-server-git"]},
                                                             "settings": {}}}}))
    from mcpwall.scan.clients.discovery import read_file
    from mcpwall.scan.clients.paths import ZED, Location

    config = read_file(Location("Zed", path, "user", ZED))
    apply(propose(config))  # type: ignore[arg-type]
    git = json.loads(path.read_text())["context_servers"]["git"]
    assert git["command"] == {"path": "mcpwall", "args": ["wrap", "--", "uvx", "mcp-server-git"]}
    assert git["settings"] == {}


def test_files_with_comments_and_yaml_are_only_proposed(files: dict[str, ConfigFile]) -> None:
    for key in ("Zed:settings.json", "VS Code:mcp.json", "Continue:config.yaml"):
        config = files[key]
        before = Path(config.path).read_text()
        proposal = propose(config)
        assert proposal is not None and proposal.reason is not None and proposal.new_text is None
        assert "mcpwall" in proposal.diff
        apply(proposal)
        assert not proposal.applied and Path(config.path).read_text() == before


def test_remote_and_already_wrapped_servers_are_left_alone(files: dict[str, ConfigFile]) -> None:
    assert propose(files["Gemini CLI:settings.json"]) is None
    assert propose(files["Windsurf:mcp_config.json"]) is None
    claude_code = propose(files["Claude Code:.claude.json"])
    assert claude_code is not None and claude_code.wrapped == ["time (/home/dev/app)"]
    apply(claude_code)
    doc = json.loads(Path(files["Claude Code:.claude.json"].path).read_text())
    assert doc["mcpServers"]["remote"]["url"] == "http://mcp.example.com/mcp"
    assert doc["projects"]["/home/dev/app"]["mcpServers"]["time"]["args"][:3] == ["wrap", "--", "uvx"]
    assert doc["numStartups"] == 3
