"""Reading the conformance suite's results directory into scenario verdicts."""

from __future__ import annotations

import json
from pathlib import Path

from support.conformance import parse_results


def _write(root: Path, dirname: str, checks: list[dict[str, str]]) -> None:
    (root / dirname).mkdir(parents=True)
    (root / dirname / "checks.json").write_text(json.dumps(checks))


def test_a_scenario_passes_when_no_check_failed(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "server-tools-list-2026-11-21T10-00-00-000Z",
        [{"id": "tools-list", "status": "SUCCESS"}, {"id": "note", "status": "INFO"}],
    )
    result = parse_results(tmp_path, scored={"tools-list"})["tools-list"]
    assert result.passed and result.scored
    assert result.check_counts == {"SUCCESS": 1, "INFO": 1}


def test_one_failed_check_fails_the_scenario_and_is_reported(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "server-server-stateless-2026-11-21T10-00-00-000Z",
        [{"id": "a", "status": "SUCCESS"}, {"id": "b", "status": "FAILURE", "errorMessage": "bad id"}],
    )
    result = parse_results(tmp_path, scored=set())["server-stateless"]
    assert not result.passed and not result.scored
    assert result.failed_checks == [{"id": "b", "message": "bad id"}]


def test_warnings_are_kept_but_do_not_fail(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "server-sep-2164-resource-not-found-2026-11-21T10-00-00-000Z",
        [{"id": "x", "status": "WARNING", "errorMessage": "SHOULD"}],
    )
    result = parse_results(tmp_path, scored=set())["sep-2164-resource-not-found"]
    assert result.passed
    assert [w["id"] for w in result.warnings] == ["x"]


def test_unreadable_results_count_as_failed(tmp_path: Path) -> None:
    (tmp_path / "server-ping-2026-11-21T10-00-00-000Z").mkdir()
    (tmp_path / "server-ping-2026-11-21T10-00-00-000Z" / "checks.json").write_text("{not json")
    result = parse_results(tmp_path, scored={"ping"})["ping"]
    assert not result.passed
    assert result.failed_checks[0]["id"] == "unreadable-results"


def test_directories_that_are_not_scenario_results_are_ignored(tmp_path: Path) -> None:
    _write(tmp_path, "something-else", [{"id": "a", "status": "FAILURE"}])
    assert parse_results(tmp_path, scored=set()) == {}
