"""What every subcommand shares: reading the config and reporting its problems the same way."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from mcpwall.config.loader import load
from mcpwall.config.model import Config
from mcpwall.errors import ConfigError


def exit_with_problems(exc: ConfigError, code: int = 1) -> NoReturn:
    """Print every ``file:line: path: message`` problem to stderr and exit with ``code``."""
    for problem in exc.problems:
        click.echo(problem, err=True)
    sys.exit(code)


def load_or_exit(path: str | Path, *, code: int = 1) -> Config:
    try:
        return load(path)
    except ConfigError as exc:
        exit_with_problems(exc, code)
