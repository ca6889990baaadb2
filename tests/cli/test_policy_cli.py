"""``mcpwall policy test`` and ``mcpwall policy explain``."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from mcpwall.cli import main

POLICY = {
    "roles": {"reader": {"allow": {"tools": ["fs__read_*"]}}},
    "rules": [{"name": "roots", "tools": ["fs__*"], "args": {"path": {"roots": ["/srv"]}}},
              {"name": "hours", "tools": ["fs__read_log"],
               "during": [{"days": ["mon-fri"], "start": "09:00", "end": "17:00", "tz": "Europe/Berlin"}]}],
}


def write(tmp_path: Path, cases: list[dict[str, object]]) -> Path:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    tests = tmp_path / "policy_test.yaml"
    tests.write_text(yaml.safe_dump({"policy": "policy.yaml", "cases": cases}))
    return tests


READER = {"id": "alice", "roles": ["reader"]}


def test_passing_and_failing_cases(tmp_path: Path) -> None:
    tests = write(tmp_path, [
        {"name": "read docs", "input": {"principal": READER, "tool": "fs__read_file", "args": {"path": "/srv/a"}},
         "expect": "allow", "decided_by": "roles.reader"},
        {"name": "no shell", "input": {"principal": READER, "tool": "shell__exec"}, "expect": "hidden"},
        {"name": "escape", "input": {"principal": READER, "tool": "fs__read_file", "args": {"path": "/srv/../etc"}},
         "expect": "deny", "decided_by": "rules.roots.args.path"},
        {"name": "after hours", "input": {"principal": READER, "tool": "fs__read_log",
                                          "time": "2026-05-04T20:00:00+02:00"}, "expect": "deny"},
    ])
    result = CliRunner().invoke(main, ["policy", "test", str(tests), "-v"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "4 passed, 0 failed"

    wrong = write(tmp_path, [{"name": "wrong expectation", "input": {"principal": READER, "tool": "shell__exec"},
                              "expect": "allow"}])
    result = CliRunner().invoke(main, ["policy", "test", str(wrong)])
    assert result.exit_code == 1
    assert "FAIL policy_test.yaml: wrong expectation: expected allow, got hidden by default" in result.output
    assert result.output.strip().splitlines()[-1] == "0 passed, 1 failed"


def test_invalid_test_file_or_policy(tmp_path: Path) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text(yaml.safe_dump({"policy": "missing.yaml", "cases": [
        {"name": "x", "input": {"tool": "a"}, "expect": "allow"}]}))
    result = CliRunner().invoke(main, ["policy", "test", str(bad)])
    assert result.exit_code == 2 and "cannot read the policy file" in result.output
    bad.write_text(yaml.safe_dump({"policy": "p.yaml", "cases": [{"name": "x", "input": {}, "expect": "maybe"}]}))
    result = CliRunner().invoke(main, ["policy", "test", str(bad)])
    assert result.exit_code == 2 and "cases.0" in result.output


def test_explain_names_the_rule(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    args = ["policy", "explain", "-p", str(tmp_path / "policy.yaml"), "--principal", "alice", "--roles", "reader",
            "--tool", "fs__read_file", "--args", '{"path": "/etc/passwd"}', "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    explained = json.loads(result.output)
    assert explained["decision"] == "deny" and explained["decided_by"] == "rules.roots.args.path"
    assert any("allow tools 'fs__read_*'" in line for line in explained["trace"])
    text = CliRunner().invoke(main, args[:-1])
    assert "decided by: rules.roots.args.path" in text.output


def test_explain_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "mcpwall.yaml"
    config.write_text(yaml.safe_dump({"guards": {"policy": POLICY}}))
    result = CliRunner().invoke(main, ["policy", "explain", "-c", str(config), "--roles", "reader",
                                       "--tool", "shell__exec"])
    assert result.exit_code == 0 and "decision:   hidden" in result.output
