"""``mcpwall check``: exit codes and the file:line: path: message format."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from mcpwall.cli import main


def test_valid_config(tmp_path: Path) -> None:
    path = tmp_path / "mcpwall.yaml"
    path.write_text("servers:\n  s: {command: echo}\n")
    result = CliRunner().invoke(main, ["check", "-c", str(path)])
    assert result.exit_code == 0
    assert "ok (1 servers" in result.output


def test_every_problem_is_listed_and_exit_is_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("listen:\n  port: -1\nservers:\n  s: {url: 'ftp://x'}\n  t: {}\n")
    result = CliRunner().invoke(main, ["check", "-c", str(path)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line]
    assert [line.split(": ")[0].rsplit(":", 1)[1] for line in lines] == ["2", "4", "5"]
    assert all(line.startswith(f"{path}:") for line in lines)


def test_claude_desktop_file_is_a_config(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(json.dumps({"mcpServers": {"fs": {"command": "npx", "args": ["-y", "pkg"]}}}))
    result = CliRunner().invoke(main, ["check", "-c", str(path)])
    assert result.exit_code == 0, result.output
