"""``scan --clients``: discovery per client and OS, static rules, connecting, redaction."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import orjson
import pytest

from fixtures.client_configs import FAKE_BEARER, FAKE_GITHUB_TOKEN, NOTES_TOOLS, build_tree, stdio_entry
from mcpwall.scan.clients import find_configs, scan_clients
from mcpwall.scan.clients.audit import audit_entry, redact_args
from mcpwall.scan.clients.discovery import read_explicit
from mcpwall.scan.clients.model import ClientsReport, ServerEntry
from mcpwall.scan.clients.paths import locations
from mcpwall.scan.report import render_clients


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    home, project = tmp_path / "home" / "alice", tmp_path / "work" / "app"
    project.mkdir(parents=True)
    build_tree(home, project, marker=tmp_path / "started")
    return home, project, {"HOME": str(home)}


def servers_by_client(report: ClientsReport) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for s in report.servers:
        out.setdefault(s.client, set()).add(s.name)
    return out


def rules_of(report: ClientsReport, name: str, client: str | None = None) -> set[str]:
    return {f.rule for s in report.servers if s.name == name and (client is None or s.client == client)
            for f in s.findings}


@pytest.mark.anyio
async def test_every_client_config_is_found_in_a_linux_home(tree: tuple[Path, Path, dict[str, str]]) -> None:
    _home, project, env = tree
    report = await scan_clients(env=env, platform="linux", project=project, include_managed=False)
    assert servers_by_client(report) == {
        "Claude Desktop": {"filesystem", "github", "notes"},
        "Claude Code": {"remote", "time (/home/dev/app)", "build"},
        "Cursor": {"notes", "mailer"},
        "VS Code": {"fetch"},
        "Windsurf": {"docs"},
        "Gemini CLI": {"memory"},
        "Zed": {"git"},
        "Continue": {"sqlite"},
    }
    zed = next(s for s in report.servers if s.client == "Zed")
    assert (zed.command, zed.args) == ("uvx", ["mcp-server-git", "--repository", "~"])
    windsurf = next(s for s in report.servers if s.client == "Windsurf")
    assert windsurf.transport == "http" and windsurf.url == "https://docs.example.com/mcp"
    desktop = next(s for s in report.servers if s.name == "github")
    assert desktop.line is not None and desktop.line > 1


@pytest.mark.parametrize(("platform", "relative"), [
    ("darwin", "Library/Application Support/Claude/claude_desktop_config.json"),
    ("win32", "AppData/Roaming/Claude/claude_desktop_config.json"),
    ("linux", ".config/Claude/claude_desktop_config.json"),
])
def test_documented_paths_per_os(tmp_path: Path, platform: str, relative: str) -> None:
    env = {"HOME": str(tmp_path), "USERPROFILE": str(tmp_path)}
    paths = {(loc.client, loc.path) for loc in locations(env=env, platform=platform, project=tmp_path,
                                                         include_managed=False)}
    assert ("Claude Desktop", tmp_path / relative) in paths
    assert ("Cursor", tmp_path / ".cursor" / "mcp.json") in paths
    assert ("Windsurf", tmp_path / ".codeium" / "windsurf" / "mcp_config.json") in paths
    assert ("Gemini CLI", tmp_path / ".gemini" / "settings.json") in paths
    assert ("Claude Code", tmp_path / ".claude.json") in paths


def test_appdata_and_xdg_are_honoured(tmp_path: Path) -> None:
    win = locations(env={"USERPROFILE": str(tmp_path), "APPDATA": str(tmp_path / "Roam")}, platform="win32",
                    project=tmp_path, include_managed=False)
    assert any(loc.path == tmp_path / "Roam" / "Code" / "User" / "mcp.json" for loc in win)
    assert any(loc.path == tmp_path / "Roam" / "Zed" / "settings.json" for loc in win)
    xdg = locations(env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}, platform="linux",
                    project=tmp_path, include_managed=False)
    assert any(loc.path == tmp_path / "cfg" / "zed" / "settings.json" for loc in xdg)


def test_malformed_and_odd_files_do_not_stop_discovery(tmp_path: Path) -> None:
    (tmp_path / ".cursor").mkdir()
    (tmp_path / ".cursor" / "mcp.json").write_text("{not json")
    (tmp_path / ".gemini").mkdir()
    (tmp_path / ".gemini" / "settings.json").write_text(json.dumps({"mcpServers": {"bad": "x", "ok": {"url": 5},
                                                                                    "fine": {"command": "x"}}}))
    files = find_configs(env={"HOME": str(tmp_path)}, platform="linux", project=tmp_path, include_managed=False)
    cursor = next(f for f in files if f.client == "Cursor" and f.exists)
    assert cursor.error is not None and cursor.servers == []
    gemini = next(f for f in files if f.client == "Gemini CLI" and f.exists)
    assert [s.name for s in gemini.servers] == ["fine"]


def test_explicit_config_file_in_any_known_shape(tmp_path: Path) -> None:
    vscode = tmp_path / "a.json"
    vscode.write_text(json.dumps({"servers": {"x": {"command": "npx", "args": ["-y", "pkg"]}}}))
    assert [s.name for s in read_explicit(vscode).servers] == ["x"]
    wall = tmp_path / "mcpwall.yaml"
    wall.write_text("servers:\n  up:\n    url: https://up.example.com/mcp\n")
    assert [s.url for s in read_explicit(wall).servers] == ["https://up.example.com/mcp"]


@pytest.mark.anyio
async def test_static_rules_fire_where_expected(tree: tuple[Path, Path, dict[str, str]]) -> None:
    _home, project, env = tree
    report = await scan_clients(env=env, platform="linux", project=project, include_managed=False)
    assert {"broad-filesystem-root", "unpinned-package"} <= rules_of(report, "filesystem")
    assert {"container-isolation", "inline-secret", "unpinned-package"} <= rules_of(report, "github")
    assert {"plain-http-remote", "inline-secret"} <= rules_of(report, "remote")
    assert "unpinned-package" in rules_of(report, "time (/home/dev/app)")
    assert "unpinned-package" in rules_of(report, "sqlite")
    assert {"broad-filesystem-root", "unpinned-package"} <= rules_of(report, "git")
    assert "remote-script" in rules_of(report, "build")
    assert rules_of(report, "fetch") == {"not-behind-mcpwall"}  # pinned, secret comes from an input
    assert rules_of(report, "memory") == set()  # already wrapped by mcpwall, pinned
    assert rules_of(report, "docs") == {"not-behind-mcpwall"}
    assert {f.rule for f in report.findings} == {"inconsistent-server"}  # notes differs between two clients


def entry(command: str, *args: str, env: dict[str, str] | None = None, url: str | None = None,
          headers: dict[str, str] | None = None) -> ServerEntry:
    return ServerEntry(name="s", client="c", config_path="/x", scope="user",
                       transport="stdio" if command else "http", command=command or None, args=list(args),
                       env=env or {}, url=url, headers=headers or {})


@pytest.mark.parametrize(("server", "pinned"), [
    (entry("npx", "-y", "@modelcontextprotocol/server-memory"), False),
    (entry("npx", "-y", "@modelcontextprotocol/server-memory@2026.8.31"), True),
    (entry("npx", "-y", "some-server@latest"), False),
    (entry("npx", "-y", "some-server@^1.2.0"), False),
    (entry("pnpm", "dlx", "some-server@1.2.3"), True),
    (entry("uvx", "mcp-server-time"), False),
    (entry("uvx", "mcp-server-time==2026.10.19"), True),
    (entry("uvx", "--from", "mcp-server-git==2026.10.19", "mcp-server-git"), True),
    (entry("docker", "run", "-i", "--rm", "image/name"), False),
    (entry("docker", "run", "-i", "image/name:1.4.2"), True),
    (entry("docker", "run", "image/name@sha256:" + "a" * 64), True),
    (entry("node", "/opt/server/index.js"), True),
])
def test_unpinned_packages(server: ServerEntry, pinned: bool) -> None:
    assert ("unpinned-package" not in {f.rule for f in audit_entry(server, home="/home/u")}) is pinned


@pytest.mark.parametrize(("server", "flagged"), [
    (entry("docker", "run", "--network", "host", "img:1"), True),
    (entry("docker", "run", "--net=host", "img:1"), True),
    (entry("docker", "run", "-v", "/:/host", "img:1"), True),
    (entry("docker", "run", "--mount", "type=bind,source=/,target=/h", "img:1"), True),
    (entry("docker", "run", "--cap-add", "SYS_ADMIN", "img:1"), True),
    (entry("podman", "run", "--pid=host", "img:1"), True),
    (entry("docker", "run", "-v", "/home/u:/data", "img:1"), True),
    (entry("docker", "run", "-v", "/home/u/project:/data:ro", "img:1"), False),
])
def test_container_isolation(server: ServerEntry, flagged: bool) -> None:
    assert ("container-isolation" in {f.rule for f in audit_entry(server, home="/home/u")}) is flagged


@pytest.mark.parametrize(("server", "flagged"), [
    (entry("x", env={"API_KEY": "k8Jd92LmQp0xZr7Tn4Vb"}), True),
    (entry("x", env={"API_KEY": "${API_KEY}"}), False),
    (entry("x", env={"API_KEY": "${env:API_KEY}"}), False),
    (entry("x", env={"LOG_LEVEL": "debug"}), False),
    (entry("x", "--token", "k8Jd92LmQp0xZr7Tn4Vb"), True),
    (entry("x", "--api-key=k8Jd92LmQp0xZr7Tn4Vb"), True),
    (entry("", url="https://h/mcp", headers={"Authorization": "Bearer k8Jd92LmQp0xZr7Tn4Vb"}), True),
    (entry("", url="https://h/mcp", headers={"Authorization": "Bearer ${input:token}"}), False),
    (entry("", url="https://h/mcp?api_key=k8Jd92LmQp0xZr7Tn4Vb"), True),
])
def test_inline_secrets(server: ServerEntry, flagged: bool) -> None:
    assert ("inline-secret" in {f.rule for f in audit_entry(server, home="/home/u")}) is flagged


@pytest.mark.parametrize(("args", "flagged"), [
    (["/"], True), (["/home/u"], True), (["~"], True), (["--root=/"], True), (["/home/u/projects"], False),
])
def test_broad_roots(args: list[str], flagged: bool) -> None:
    server = entry("npx", "-y", "@modelcontextprotocol/server-filesystem@1.0.0", *args)
    assert ("broad-filesystem-root" in {f.rule for f in audit_entry(server, home="/home/u")}) is flagged


def test_loopback_http_is_not_plain_http_remote() -> None:
    assert "plain-http-remote" not in {f.rule for f in audit_entry(entry("", url="http://127.0.0.1:8000/mcp"),
                                                                     home="/h")}


def test_gateway_urls_count_as_behind_mcpwall() -> None:
    server = entry("", url="http://127.0.0.1:8765/mcp")
    assert "not-behind-mcpwall" not in {f.rule for f in audit_entry(server, home="/h")}
    other = entry("", url="https://gw.internal/mcp")
    assert "not-behind-mcpwall" in {f.rule for f in audit_entry(other, home="/h")}
    assert "not-behind-mcpwall" not in {f.rule for f in audit_entry(other, home="/h",
                                                                    gateways=["https://gw.internal/mcp"])}


def test_redact_args_hides_values_but_keeps_the_shape() -> None:
    shown = redact_args(["--token", "k8Jd92LmQp0xZr7Tn4Vb", "--api-key=k8Jd92LmQp0xZr7Tn4Vb", "plain",
                         "https://u:p4ssw0rd@h/x?token=abc123456"])
    assert shown[0] == "--token" and shown[3] == "plain"
    assert all("k8Jd92LmQp0xZr7Tn4Vb" not in s for s in shown)
    assert "p4ssw0rd" not in shown[4] and "abc123456" not in shown[4]


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "markdown", "html"])
async def test_no_report_format_contains_a_secret_from_the_configs(tree: tuple[Path, Path, dict[str, str]],
                                                                   fmt: str) -> None:
    home, project, env = tree
    report = await scan_clients(env=env, platform="linux", project=project, include_managed=False)
    out = render_clients(report, fmt, home=str(home))
    assert FAKE_GITHUB_TOKEN not in out and FAKE_BEARER not in out
    assert "github" in out


@pytest.mark.anyio
async def test_connect_lists_tools_and_finds_poisoning_shadowing_and_collisions(
        tree: tuple[Path, Path, dict[str, str]]) -> None:
    _home, project, env = tree
    asked: list[str] = []

    def confirm(server: ServerEntry, shown: str) -> bool:
        asked.append(shown)
        return server.client == "Cursor"  # only the two fixture servers in Cursor

    report = await scan_clients(env={**env, "PATH": "/usr/bin:/bin"}, platform="linux", project=project,
                                include_managed=False, connect=True, confirm=confirm)
    assert any("stdio_mcp_server.py" in a for a in asked)
    assert any(a.startswith("npx -y @modelcontextprotocol/server-filesystem /") for a in asked)
    cursor = {s.name: s for s in report.servers if s.client == "Cursor"}
    assert cursor["notes"].tools is not None and [t.name for t in cursor["notes"].tools] == \
        [t["name"] for t in NOTES_TOOLS]  # three tools over two pages
    assert "tool-destructive-unannotated" in {f.rule for f in cursor["notes"].findings}
    mailer = cursor["mailer"]
    assert "network-egress" in mailer.capabilities
    assert "tool-poisoning" in {f.rule for f in mailer.findings}
    cross = {f.rule for f in report.findings}
    assert {"tool-shadowing", "tool-name-collision"} <= cross
    declined = next(s for s in report.servers if s.name == "filesystem")
    assert declined.tools is None and declined.connect_error == "not started (no consent)"


@pytest.mark.anyio
async def test_declined_servers_are_never_started(tree: tuple[Path, Path, dict[str, str]], tmp_path: Path) -> None:
    _home, project, env = tree
    report = await scan_clients(env=env, platform="linux", project=project, include_managed=False, connect=True,
                                confirm=lambda s, shown: False)
    assert not (tmp_path / "started").exists()  # the Claude Desktop "notes" server writes this when it starts
    assert all(s.tools is None for s in report.servers)


@pytest.mark.anyio
async def test_connect_falls_back_to_the_modern_era_and_reports_failures(tmp_path: Path) -> None:
    tools = tmp_path / "t.json"
    tools.write_text(json.dumps(NOTES_TOOLS[:1]))
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {
        "modern": stdio_entry(tools, "--modern"),
        "broken": {"command": sys.executable, "args": ["-c", "import sys; sys.exit(3)"]},
        "missing": {"command": str(tmp_path / "no-such-binary")},
    }}))
    report = await scan_clients(env={"HOME": str(tmp_path / "empty")}, platform="linux", project=tmp_path / "none",
                                extra=[config], include_managed=False, connect=True, confirm=lambda s, shown: True,
                                timeout=10)
    by_name = {s.name: s for s in report.servers}
    assert [t.name for t in by_name["modern"].tools or []] == ["read_note"]
    assert by_name["broken"].tools is None and by_name["broken"].connect_error
    assert by_name["missing"].connect_error is not None and "could not start" in by_name["missing"].connect_error


def test_json_report_shape(tmp_path: Path) -> None:
    report = ClientsReport(scanner="s", started_at="t", files=[])
    data = orjson.loads(render_clients(report, "json"))
    assert data["format"] == "mcpwall-clients-report" and data["servers"] == []
