"""``mcpwall check``: validate a config file without starting anything."""

from __future__ import annotations

from pathlib import Path

import click

from mcpwall.cli.common import exit_with_problems
from mcpwall.config.loader import load
from mcpwall.errors import ConfigError
from mcpwall.gateway.core import Gateway


@click.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="mcpwall.yaml, or a Claude-Desktop-style mcpServers JSON file.")
def check(config_path: str) -> None:
    """Validate the configuration; print every problem as file:line: path: message."""
    try:
        config = load(config_path)
        # Building the gateway compiles what only fails when used (policy files, CA bundles,
        # rule packs) without starting anything: no process, no socket, no store.
        Gateway(config, Path(config_path).resolve().parent)
    except ConfigError as exc:
        exit_with_problems(exc)
    click.echo(f"{config_path}: ok ({len(config.servers)} servers, guards: {', '.join(config.guard_order())})")
