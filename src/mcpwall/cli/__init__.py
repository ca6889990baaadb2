"""The ``mcpwall`` command line: one module per subcommand, gathered here."""

from __future__ import annotations

import click

from mcpwall import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mcpwall")
def main() -> None:
    """mcpwall — an MCP security gateway."""


def _register() -> None:
    # One line per subcommand module; each module defines a click command named like the module.
    from mcpwall.cli import approvals, audit, check, keys, pins, policy, scan, serve

    for command in (serve.serve, serve.stdio, serve.wrap, serve.demo, check.check, audit.audit,
                    keys.keys, policy.policy, approvals.approvals, pins.pins, scan.scan):
        main.add_command(command)


_register()
