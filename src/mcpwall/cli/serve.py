"""``mcpwall serve|stdio|wrap|demo``: run the gateway over HTTP or stdio."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from mcpwall.cli.common import exit_with_problems, load_or_exit
from mcpwall.config.model import Config, ServerConfig
from mcpwall.config.types import is_loopback
from mcpwall.errors import ConfigError
from mcpwall.gateway.core import Gateway

log = logging.getLogger("mcpwall")


def setup_logging(config: Config) -> None:
    """Structured logs to stderr (stdout belongs to MCP on the stdio front), and tracing when the
    standard OTEL_* variables ask for it."""
    from mcpwall import tracing
    from mcpwall.logs import configure

    configure(config.log)
    tracing.setup_from_env()


def _has_authentication(gateway: Gateway) -> bool:
    from mcpwall.pipeline.guard import Guard

    return any(type(g).authenticate is not Guard.authenticate for g in gateway.chain.guards)


def _warn_weakened(config: Config) -> None:
    """Say at start-up which defaults the config weakens, so nothing is weaker by accident."""
    if config.listen.allowed_origins:
        log.warning("extra allowed Origins: %s", ", ".join(config.listen.allowed_origins))
    if config.listen.allowed_hosts:
        log.warning("extra allowed Host names: %s", ", ".join(config.listen.allowed_hosts))
    for name in config.configured_guards():
        settings = config.guard_settings(name)
        if settings.mode == "shadow":
            log.warning("guard %s runs in shadow mode: its refusals are recorded, not enforced", name)


def _build_gateway(config: Config, config_dir: Path) -> Gateway:
    """Build the gateway; guard settings that only fail when compiled (a policy file, a CA bundle)
    are reported like config errors, never as a traceback."""
    try:
        return Gateway(config, config_dir)
    except ConfigError as exc:
        exit_with_problems(exc)


def _on_sighup(gateway: Gateway, config_path: Path | None) -> None:
    if config_path is None:
        return
    from mcpwall.gateway.reload import reload_config

    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, reload_config, gateway, config_path)


async def run_http(config: Config, config_dir: Path, config_path: Path | None = None) -> None:
    import uvicorn

    from mcpwall.transports.http_front import HttpFront

    gateway = _build_gateway(config, config_dir)
    if not is_loopback(config.listen.host) and not _has_authentication(gateway):
        raise click.ClickException(
            f"refusing to listen on non-loopback address {config.listen.host} without client authentication; "
            "configure the auth guard first")
    _warn_weakened(config)
    routes = [route for guard in gateway.chain.guards for route in guard.http_routes()]
    app: Any = HttpFront(gateway, routes)
    app = _wrap_http(app, config)
    http = "httptools" if _has("httptools") else "h11"
    server_kwargs: dict[str, Any] = {"http": http, **_tls_kwargs(config, config_dir, http)}
    uv_config = uvicorn.Config(app, host=config.listen.host, port=config.listen.port, lifespan="on",
                               log_level="warning", access_log=False, server_header=False, date_header=True,
                               log_config=None, loop="uvloop" if _has("uvloop") else "asyncio",
                               # X-Forwarded-* must not let a local client choose the source address
                               # the audit trail records.
                               proxy_headers=False, **server_kwargs)
    server = uvicorn.Server(uv_config)
    _on_sighup(gateway, config_path)
    admin = _admin_server(gateway, config)
    admin_task = asyncio.create_task(admin.serve()) if admin is not None else None
    scheme = "https" if config.listen.tls is not None else "http"
    log.info("mcpwall listening on %s://%s:%s%s", scheme, config.listen.host, config.listen.port, config.listen.path)
    try:
        await server.serve()
    finally:
        await _stop(admin, admin_task)


async def _stop(admin: Any, task: asyncio.Task[Any] | None) -> None:
    if admin is None or task is None:
        return
    admin.should_exit = True
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(task, 5)


def _wrap_http(app: Any, config: Config) -> Any:
    """Transport hygiene middleware (security headers, CORS, HTTPS-only), when available."""
    from mcpwall.transports.http_hygiene import wrap

    return wrap(app, config)


def _tls_kwargs(config: Config, config_dir: Path, http: str) -> dict[str, Any]:
    if config.listen.tls is None:
        return {}
    from mcpwall.transports.tls import uvicorn_kwargs

    return uvicorn_kwargs(config.listen.tls, config_dir, http=http)  # certificate paths are config-relative


def _admin_server(gateway: Gateway, config: Config) -> Any:
    if not config.admin.enabled:
        return None
    import uvicorn

    from mcpwall.admin.app import create_admin_app

    class _AdminServer(uvicorn.Server):
        # The MCP server (or the stdio loop) owns the process signals; the admin port follows it.
        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield

    app = create_admin_app(gateway)
    return _AdminServer(uvicorn.Config(app, host=config.admin.host, port=config.admin.port, lifespan="off",
                                       log_level="warning", access_log=False, server_header=False, log_config=None,
                                       proxy_headers=False))


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


async def run_stdio(config: Config, config_dir: Path, config_path: Path | None = None) -> None:
    from mcpwall.transports.stdio_front import StdioFront, stdio_streams

    gateway = _build_gateway(config, config_dir)
    _on_sighup(gateway, config_path)
    _warn_weakened(config)
    reader, writer = await stdio_streams()
    await gateway.start()
    admin = _admin_server(gateway, config) if config.admin.enabled else None
    admin_task = asyncio.create_task(admin.serve()) if admin is not None else None
    front = asyncio.create_task(StdioFront(gateway, reader, writer).run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, front.cancel)  # stop cleanly: upstream processes must not outlive us
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await front
    finally:
        await _stop(admin, admin_task)
        await gateway.aclose()


def _run(coro: Any) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)
    except KeyboardInterrupt:
        pass


@click.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False, exists=True),
              help="mcpwall.yaml, or a Claude-Desktop-style mcpServers JSON file.")
def serve(config_path: str) -> None:
    """Serve the MCP Streamable HTTP endpoint in front of every configured upstream."""
    config = load_or_exit(config_path)
    setup_logging(config)
    path = Path(config_path).resolve()
    _run(run_http(config, path.parent, path))


@click.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False, exists=True))
def stdio(config_path: str) -> None:
    """Serve MCP on stdin/stdout (for desktop clients that launch their servers)."""
    config = load_or_exit(config_path)
    config.admin.enabled = False if os.environ.get("MCPWALL_ADMIN") != "1" else config.admin.enabled
    setup_logging(config)
    path = Path(config_path).resolve()
    _run(run_stdio(config, path.parent, path))


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Optional config for guards and storage; its servers are replaced by the wrapped command.")
@click.option("--name", default=None, help="Upstream name used in logs and audit (default: the command).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def wrap(config_path: str | None, name: str | None, command: tuple[str, ...]) -> None:
    """Put mcpwall in front of one stdio server: mcpwall wrap -- npx -y @modelcontextprotocol/server-filesystem /tmp"""
    base = load_or_exit(config_path) if config_path else Config()
    upstream_name = name or _name_for(command)
    config = base.model_copy(update={"servers": {upstream_name: ServerConfig(
        command=command[0], args=list(command[1:]), env=_passthrough_env(), prefix=False)}})
    config.admin.enabled = False
    setup_logging(config)
    _run(run_stdio(config, Path(config_path).resolve().parent if config_path else _state_dir(upstream_name)))


def _state_dir(name: str) -> Path:
    """Where ``wrap`` without a config keeps its state (audit trail, pins): per user, per server,
    never the directory the client happened to start it in."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "mcpwall" / f"wrap-{name}"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    return base


def _name_for(command: tuple[str, ...]) -> str:
    import re

    meaningful = [a for a in command if not a.startswith("-")]
    candidate = Path(meaningful[-1] if len(meaningful) > 1 and meaningful[0] in ("npx", "uvx", "node", "python",
                                                                                   "python3") else command[0]).name
    candidate = candidate.split("@")[-1] if candidate.startswith("@") else candidate
    return re.sub(r"[^A-Za-z0-9_.-]", "-", candidate).strip("-")[:64] or "upstream"


def _passthrough_env() -> dict[str, str]:
    """``wrap`` is a drop-in for a client's server command: it passes the variables the client set
    for that server (MCPWALL_PASS_ENV=A,B) on to the wrapped process, and nothing else."""
    names = [n.strip() for n in os.environ.get("MCPWALL_PASS_ENV", "").split(",") if n.strip()]
    return {n: os.environ[n] for n in names if n in os.environ}


@click.command()
@click.option("--port", default=8765, show_default=True)
@click.option("--dir", "state_dir", default=".mcpwall-demo", show_default=True, type=click.Path(file_okay=False),
              help="Where the demo keeps its SQLite database and lockfile.")
def demo(port: int, state_dir: str) -> None:
    """Run the gateway on embedded defaults in front of the bundled demo upstream."""
    import secrets

    from mcpwall.demo.config import demo_config

    directory = Path(state_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    token = os.environ.get("MCPWALL_ADMIN_TOKEN") or secrets.token_urlsafe(24)
    try:
        config = demo_config(port, directory, admin_token=token)
    except ValidationError as exc:  # e.g. an MCPWALL_ADMIN_TOKEN that is too short
        for error in exc.errors():
            click.echo(f"demo: {'.'.join(str(p) for p in error['loc'])}: {error['msg']}", err=True)
        sys.exit(1)
    setup_logging(config)
    url = f"http://127.0.0.1:{port}{config.listen.path}"
    admin = f"http://127.0.0.1:{config.admin.port}"
    click.echo(f"""mcpwall demo — gateway on {url} in front of the bundled demo server

  Connect a client:
    Claude Code:   claude mcp add --transport http mcpwall-demo {url}
    Inspector:     npx @modelcontextprotocol/inspector --cli {url} --transport http --method tools/list
    Python (mcp):  async with Client("{url}") as c: print(await c.list_tools())

  Try: demo__get_config (its secret is redacted), demo__fetch_page (injected text is flagged),
       demo__delete_records (held for approval), and read_file → fetch_page → send_email (stopped).
  Approve held calls:
    export MCPWALL_ADMIN_URL={admin} MCPWALL_ADMIN_TOKEN={token}
    mcpwall approvals list && mcpwall approvals approve <id> --approver you
  Verify the audit trail:  mcpwall audit verify --dir {directory}
  State (database, audit, pins) lives in {directory}. Stop with Ctrl-C.
""", err=True)
    _run(run_http(config, directory))
