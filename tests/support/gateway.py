"""Run the real gateway (``python -m mcpwall serve -c FILE``) as a subprocess for end-to-end tests.

The contract this relies on is the CLI's public one: ``serve -c FILE`` reads the YAML config and
``GET /healthz`` on the MCP port answers 200 once the gateway is ready. The helper writes the
config into a private directory (which is also the gateway's working directory, so relative
paths such as the default SQLite file stay out of the repository), picks free ports for the MCP
and admin listeners unless the config names them, waits for readiness with a deadline, and stops
the process with SIGTERM then SIGKILL. Failure messages carry the gateway's own output.
"""

from __future__ import annotations

import copy
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.procs import READY_TIMEOUT, ManagedProcess, free_port


@dataclass
class Gateway:
    """A running gateway: where to reach it and what it said."""

    process: ManagedProcess
    config: dict[str, Any]
    config_path: Path
    workdir: Path
    host: str
    port: int
    path: str

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The MCP endpoint, e.g. ``http://127.0.0.1:41234/mcp``."""
        return f"{self.base_url}{self.path}"

    @property
    def admin_url(self) -> str:
        admin = self.config.get("admin") or {}
        return f"http://{admin.get('host', '127.0.0.1')}:{admin['port']}"

    def output(self, limit: int = 20_000) -> str:
        """What the gateway wrote to stdout/stderr so far (its log)."""
        return self.process.output(limit)


def _with_ports(config: Mapping[str, Any]) -> dict[str, Any]:
    full: dict[str, Any] = copy.deepcopy(dict(config))
    listen = full.setdefault("listen", {})
    if not listen.get("port"):
        listen["port"] = free_port()
    admin = full.setdefault("admin", {})
    if not admin.get("port"):
        # A fixed default admin port would collide between gateways running side by side.
        admin["port"] = free_port()
    return full


@contextmanager
def run_gateway(
    config: Mapping[str, Any],
    *,
    workdir: Path | None = None,
    env: dict[str, str] | None = None,
    ready_timeout: float = READY_TIMEOUT,
    extra_args: tuple[str, ...] = (),
) -> Iterator[Gateway]:
    """Start ``mcpwall serve`` on ``config``; yields a :class:`Gateway`, always stops it.

    ``config`` is the YAML document as a mapping. Missing ``listen.port``/``admin.port`` are
    filled with free ports. ``workdir`` defaults to a fresh temporary directory.
    """
    owned = None
    if workdir is None:
        owned = tempfile.TemporaryDirectory(prefix="mcpwall-gw-")
        workdir = Path(owned.name)
    try:
        full = _with_ports(config)
        config_path = workdir / "mcpwall.yaml"
        config_path.write_text(yaml.safe_dump(full, sort_keys=False))
        listen = full["listen"]
        gateway = Gateway(
            process=ManagedProcess(
                [sys.executable, "-m", "mcpwall", "serve", "-c", str(config_path), *extra_args],
                log_path=workdir / "gateway.log",
                cwd=workdir,
                env=env,
                name="mcpwall serve",
            ),
            config=full,
            config_path=config_path,
            workdir=workdir,
            host=listen.get("host", "127.0.0.1"),
            port=int(listen["port"]),
            path=listen.get("path", "/mcp"),
        )
        with gateway.process:
            gateway.process.wait_http(f"{gateway.base_url}/healthz", timeout=ready_timeout)
            yield gateway
    finally:
        if owned is not None:
            owned.cleanup()


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Any]:
    """A pytest fixture form: ``gw = gateway_factory({...})`` starts one; all stop at teardown."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        count = 0

        def start(config: Mapping[str, Any], **kwargs: Any) -> Gateway:
            nonlocal count
            count += 1
            workdir = tmp_path / f"gateway-{count}"
            workdir.mkdir()
            return stack.enter_context(run_gateway(config, workdir=workdir, **kwargs))

        yield start
