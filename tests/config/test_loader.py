"""Config loading: every error at once with file:line, env interpolation, mcpServers files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcpwall.config.loader import load, load_text
from mcpwall.errors import ConfigError


def test_every_error_reported_with_its_line() -> None:
    text = "listen:\n  port: 99999\n  bogus: 1\nservers:\n  bad:\n    command: x\n    url: http://x\nx: ${NOPE}\n"
    with pytest.raises(ConfigError) as err:
        load_text(text, "f.yaml", env={})
    problems = err.value.problems
    assert "f.yaml:8: x: environment variable NOPE is not set (use ${NOPE:-default})" in problems
    assert any(p.startswith("f.yaml:2: listen.port:") for p in problems)
    assert any(p.startswith("f.yaml:3: listen.bogus:") for p in problems)
    assert any(p.startswith("f.yaml:5: servers.bad:") for p in problems)
    assert len(problems) == 5


def test_env_interpolation_and_defaults() -> None:
    config = load_text("servers:\n  s:\n    url: ${URL:-http://127.0.0.1:1/mcp}\n    headers: {a: '${TOKEN}'}\n",
                       env={"TOKEN": "t0k"})
    server = config.servers["s"]
    assert server.url == "http://127.0.0.1:1/mcp" and server.headers == {"a": "t0k"}
    assert server.transport == "http" and server.session_scope == "session"


def test_durations_sizes_and_limits() -> None:
    config = load_text("servers:\n  s: {command: x, timeout: 1500ms}\nguards:\n  limits: {max_message_bytes: 2MiB}\n")
    assert config.servers["s"].timeout == 1.5
    assert config.guard_settings("limits").max_message_bytes == 2 * 1024 * 1024  # type: ignore[attr-defined]
    with pytest.raises(ConfigError):
        load_text("servers:\n  s: {command: x, timeout: 3h}\n")


def test_invalid_yaml_is_located() -> None:
    with pytest.raises(ConfigError) as err:
        load_text("a: [1,\n", "c.yaml")
    assert err.value.problems[0].startswith("c.yaml:")


def test_claude_desktop_file(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(json.dumps({"mcpServers": {
        "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]},
        "remote api": {"url": "https://example.com/mcp", "type": "http"},
    }}))
    config = load(path)
    assert config.servers["files"].command == "npx"
    assert config.servers["remote-api"].transport == "http"
    yaml_path = tmp_path / "mcpwall.yaml"
    yaml_path.write_text("servers_from: [claude_desktop_config.json]\n")
    assert set(load(yaml_path).servers) == {"files", "remote-api"}


def test_unknown_guard_is_an_error() -> None:
    with pytest.raises(ConfigError) as err:
        load_text("guards:\n  nope: {}\n", "g.yaml")
    assert err.value.problems == ["g.yaml:2: guards.nope: Extra inputs are not permitted"]
