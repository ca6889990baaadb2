"""The configurations under test and how to start each one on loopback.

* ``direct``   — the load generator talks to the upstream itself (the physical limit).
* ``mcpwall``  — ``mcpwall serve`` with no optional guard (only those the config always adds).
* ``+<guard>`` — the same plus one guard with default settings, for every guard in
  ``mcpwall.pipeline.registry.GUARDS``, so a new guard shows up without edits here.
* ``default``  — the full default policy (a packaged default-policy file if the project has
  one, else every registered guard with default settings).
* ``fastmcp``  — FastMCP 4 ``create_proxy`` in its best configuration (see fastmcp_proxy.py).

Every gateway gets a generated config file, its own state directory and free ports. The
limits guard's in-flight cap is raised to 4096 in every gateway config so that runs at 256
concurrent clients measure speed, not the cap (the default, 64 per principal, would answer
429 to an anonymous load generator above that).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench import fastmcp_env
from bench.payloads import CALL_TOOLS
from bench.procs import Managed, StartError, Supervisor, free_port, http_ok, read_port_line, tcp_open, wait_until

REPO = Path(__file__).resolve().parent.parent
EVERYTHING_VERSION = "2026.8.31"
LIMITS_OVERRIDE = {"max_in_flight": 4096}
READY_TIMEOUT = 30.0
# Guards whose defaults refuse the anonymous loopback load generator outright get these
# settings instead (wherever a config would give them defaults), so that what is measured is
# the guard's cost on an allowed call, not the cost of a refusal. Reported with the results.
BENCH_SETTINGS: dict[str, dict[str, Any]] = {
    "auth": {"anonymous": {"enabled": True}},
    "policy": {"roles": {"*": {"allow": {"tools": ["*"], "prompts": ["*"], "resources": ["*"]}}},
               "rules": [{"name": "bench-args", "tools": ["*"],
                          "args": {"tag": {"type": "string", "max_length": 64}}}]},
}


@dataclass
class Endpoint:
    key: str
    host: str
    port: int
    path: str
    managed: Managed
    ready_s: float | None = None
    notes: list[str] = field(default_factory=list)
    admin_port: int | None = None  # mcpwall only: where /metrics is served

    @property
    def pid(self) -> int:
        return self.managed.pid


def label(key: str) -> str:
    if key.startswith("+") and key[1:] in BENCH_SETTINGS:
        return f"mcpwall {key}*"
    return {"direct": "direct", "mcpwall": "mcpwall (no guards)", "default": "mcpwall (default policy)",
            "fastmcp": f"FastMCP {fastmcp_env.VERSION} proxy"}.get(key, f"mcpwall {key}")


def bench_settings_note() -> str:
    return ("* and in the default policy: " + "; ".join(
        f"{name}: {settings}" for name, settings in BENCH_SETTINGS.items())
        + " (their defaults refuse an anonymous client, so the refusal, not the guard, would be measured)")


# --- what mcpwall offers ----------------------------------------------------------------------


def registered_guards() -> list[str]:
    from mcpwall.pipeline.registry import GUARDS

    return list(GUARDS)


def forced_guards() -> list[str]:
    """Guards every config gets whether it lists them or not (e.g. limits, audit)."""
    from mcpwall.config.model import Config

    return list(Config.model_validate({}).guard_order())


def optional_guards() -> list[str]:
    forced = set(forced_guards())
    return [g for g in registered_guards() if g not in forced]


def default_policy() -> tuple[dict[str, Any], str]:
    """(guards section, where it came from) of the full default policy."""
    import mcpwall.config

    folder = Path(mcpwall.config.__file__).parent
    for candidate in sorted([*folder.rglob("*.yaml"), *folder.rglob("*.yml")]):
        try:
            data = yaml.safe_load(candidate.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and isinstance(data.get("guards"), (dict, list)):
            guards = data["guards"]
            if isinstance(guards, list):
                guards = {g if isinstance(g, str) else next(iter(g)): ({} if isinstance(g, str) else g[next(iter(g))])
                          for g in guards}
            return dict(guards), str(candidate.relative_to(REPO) if candidate.is_relative_to(REPO) else candidate)
    return {name: {} for name in registered_guards()}, "every registered guard with default settings"


def mcpwall_argv(subcommand: str, config: Path) -> list[str]:
    script = Path(sys.executable).with_name("mcpwall")
    if script.exists():
        return [str(script), subcommand, "-c", str(config)]
    return [sys.executable, "-c", "import sys; from mcpwall.cli import main; sys.exit(main())",
            subcommand, "-c", str(config)]


def gateway_config(port: int, servers: dict[str, Any], guards: dict[str, Any], response_mode: str,
                   state_dir: Path) -> dict[str, Any]:
    guards = {name: (BENCH_SETTINGS[name] if not settings and name in BENCH_SETTINGS else settings)
              for name, settings in guards.items()}
    limits = dict(guards.get("limits") or {})
    limits.update(LIMITS_OVERRIDE)
    guards["limits"] = limits
    return {
        "listen": {"host": "127.0.0.1", "port": port, "path": "/mcp", "response_mode": response_mode},
        "admin": {"host": "127.0.0.1", "port": free_port()},
        "servers": servers,
        "guards": guards,
        "storage": {"url": f"sqlite:///{state_dir / 'mcpwall.db'}"},
    }


def guards_for(key: str) -> dict[str, Any]:
    if key == "mcpwall":
        return {}
    if key == "default":
        return default_policy()[0]
    if key.startswith("+"):
        return {key[1:]: {}}
    raise KeyError(key)


# --- starting things -----------------------------------------------------------------------------


class Fleet:
    """Starts configurations for one run directory; the supervisor stops them."""

    def __init__(self, supervisor: Supervisor, run_dir: Path) -> None:
        self.supervisor = supervisor
        self.run_dir = run_dir
        self.upstream: Endpoint | None = None

    def start_upstream(self) -> Endpoint:
        if self.upstream is None or not self.upstream.managed.alive():
            managed = self.supervisor.spawn("upstream", [sys.executable, "-m", "bench.upstream", "--port", "0"],
                                            cwd=str(REPO), stdout_pipe=True)
            port = read_port_line(managed)
            self.upstream = Endpoint("upstream", "127.0.0.1", port, "/mcp", managed)
        return self.upstream

    @staticmethod
    def upstream_path(mode: str, tools: int) -> str:
        return f"{'/mcp-sse' if mode == 'sse' else '/mcp'}?tools={tools}"

    def upstream_url(self, mode: str, tools: int) -> str:
        up = self.start_upstream()
        return f"http://127.0.0.1:{up.port}{self.upstream_path(mode, tools)}"

    def direct(self, mode: str, tools: int) -> Endpoint:
        up = self.start_upstream()
        return Endpoint("direct", "127.0.0.1", up.port, self.upstream_path(mode, tools), up.managed)

    def gateway(self, key: str, mode: str, tools: int, servers: dict[str, Any] | None = None,
                tag: str = "") -> Endpoint:
        name = f"mcpwall{key if key.startswith('+') else '-' + key}-{mode}-{tools}{tag}".replace("+", "plus-")
        state_dir = self.run_dir / "state" / name
        state_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        if servers is None:
            servers = {"fast": {"url": self.upstream_url(mode, tools), "prefix": False}}
        config = gateway_config(port, servers, guards_for(key), "sse" if mode == "sse" else "json", state_dir)
        config_path = self.run_dir / "configs" / f"{name}.yaml"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        managed = self.supervisor.spawn(name, mcpwall_argv("serve", config_path), cwd=str(state_dir))
        try:
            ready = wait_until(http_ok(f"http://127.0.0.1:{port}/healthz"), managed, READY_TIMEOUT, "ready")
        except StartError:
            self.supervisor.stop(managed)
            raise
        return Endpoint(key, "127.0.0.1", port, "/mcp", managed, ready_s=ready, admin_port=config["admin"]["port"])

    def fastmcp(self, mode: str, tools: int, upstream_url: str | None = None, tag: str = "") -> Endpoint:
        python = fastmcp_env.ensure(self.run_dir / "fastmcp-install.log")
        argv = [str(python), str(REPO / "bench" / "fastmcp_proxy.py"),
                "--upstream", upstream_url or self.upstream_url(mode, tools), "--port", "0"]
        if mode == "sse":
            argv.append("--sse")
        managed = self.supervisor.spawn(f"fastmcp-{mode}-{tools}{tag}", argv, stdout_pipe=True)
        try:
            port = read_port_line(managed, timeout=READY_TIMEOUT)
            ready = wait_until(http_ok(f"http://127.0.0.1:{port}/healthz"), managed, READY_TIMEOUT, "ready")
        except StartError:
            self.supervisor.stop(managed)
            raise
        return Endpoint("fastmcp", "127.0.0.1", port, "/mcp", managed, ready_s=ready)

    def start(self, key: str, mode: str, tools: int) -> Endpoint:
        if key == "direct":
            return self.direct(mode, tools)
        if key == "fastmcp":
            return self.fastmcp(mode, tools)
        return self.gateway(key, mode, tools)

    # --- the realistic upstream -------------------------------------------------------------

    def everything(self) -> Endpoint:
        """``@modelcontextprotocol/server-everything`` over Streamable HTTP (legacy era only)."""
        local = REPO / "tests" / "node" / "node_modules" / ".bin" / "mcp-server-everything"
        if local.exists():
            argv = [str(local), "streamableHttp"]
        elif shutil.which("npx"):
            argv = ["npx", "-y", f"@modelcontextprotocol/server-everything@{EVERYTHING_VERSION}", "streamableHttp"]
        else:
            raise StartError("neither tests/node/node_modules nor npx is available for server-everything")
        port = free_port()
        managed = self.supervisor.spawn("everything", argv, env={"PORT": str(port)}, cwd=str(self.run_dir))
        try:
            ready = wait_until(tcp_open("127.0.0.1", port), managed, 120.0, "listening")
        except StartError:
            self.supervisor.stop(managed)
            raise
        return Endpoint("direct", "127.0.0.1", port, "/mcp", managed, ready_s=ready)


def stdio_argv(key: str, run_dir: Path) -> list[str]:
    """How to spawn the stdio upstream directly or behind ``mcpwall stdio``."""
    upstream = [sys.executable, "-m", "bench.upstream", "--stdio", "--tools", str(CALL_TOOLS)]
    if key == "direct":
        return upstream
    state_dir = run_dir / "state" / f"stdio-{key}"
    state_dir.mkdir(parents=True, exist_ok=True)
    servers = {"fast": {"command": upstream[0], "args": upstream[1:], "cwd": str(REPO), "prefix": False}}
    config = gateway_config(free_port(), servers, guards_for(key), "json", state_dir)
    config_path = run_dir / "configs" / f"stdio-{key}.yaml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return mcpwall_argv("stdio", config_path)
