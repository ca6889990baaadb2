"""``mcpwall scan``: grade an MCP server A to F, or map the MCP attack surface of this machine.

``mcpwall scan URL`` runs the posture checks and MCP-protocol probes against one endpoint.
``mcpwall scan --clients`` reads the MCP configurations of the local clients, and with
``--connect`` (after asking) starts each server to scan its tools; ``--wrap`` proposes (and with
``--apply`` writes) configs that route stdio servers through ``mcpwall wrap``.

Exit codes: 0 done; 1 the result is below ``--fail-under`` / at or above ``--fail-on``; 2 usage
error or nothing could be scanned.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

from mcpwall.scan.clients import scan_clients
from mcpwall.scan.clients.audit import DEFAULT_GATEWAYS
from mcpwall.scan.clients.model import ClientsReport, ServerEntry
from mcpwall.scan.clients.paths import home_dir
from mcpwall.scan.clients.wrap import apply, propose
from mcpwall.scan.model import SEVERITY_ORDER
from mcpwall.scan.probe import ScanOptions
from mcpwall.scan.report import FORMATS, render_clients, render_scan
from mcpwall.scan.runner import normalise_target, scan_url
from mcpwall.scan.scoring import LETTERS, meets


def _headers(raw: tuple[str, ...], bearer: str | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in raw:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected 'Name: value', got {item.split(':')[0]!r}…", param_hint="--header")
        headers[name.strip()] = value.strip()
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    return headers


def _emit(text: str, output: str | None, color: bool | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"report written to {output}", err=True)
    else:
        click.echo(text, nl=False, color=color)


@click.command()
@click.argument("url", required=False)
@click.option("--clients", "clients_mode", is_flag=True, help="Map the MCP servers configured in local clients.")
@click.option("-H", "--header", "headers", multiple=True, metavar="'NAME: VALUE'",
              help="Credential header for an authenticated scan (repeatable).")
@click.option("--bearer", envvar="MCPWALL_SCAN_BEARER", metavar="TOKEN",
              help="Bearer token for an authenticated scan (or set MCPWALL_SCAN_BEARER).")
@click.option("--active", is_flag=True, help="Add probes that send more traffic: a request burst and a session replay.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report to a file.")
@click.option("--fail-under", type=click.Choice(LETTERS, case_sensitive=False),
              help="URL scan: exit 1 when the grade is below this letter.")
@click.option("--fail-on", type=click.Choice(["critical", "high", "medium", "low"]),
              help="--clients: exit 1 when a finding of this severity or worse exists.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per request.")
@click.option("--cacert", type=click.Path(exists=True, dir_okay=False), help="Extra CA bundle to trust.")
@click.option("--allow-loopback-http", is_flag=True,
              help="Treat plain HTTP to a loopback address as acceptable (local development servers).")
@click.option("--plain-port", type=int, help="Where to look for a plaintext listener (default: 80 for 443, else same).")
@click.option("--config", "configs", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="--clients: also read this client config file (repeatable).")
@click.option("--project", type=click.Path(file_okay=False), help="--clients: project directory (default: cwd).")
@click.option("--connect", is_flag=True, help="--clients: start each server (asks first) and scan its tools.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before starting servers or writing files.")
@click.option("--wrap", is_flag=True, help="--clients: propose configs that run stdio servers via mcpwall wrap.")
@click.option("--apply", "apply_", is_flag=True, help="--wrap: write the proposals (after a timestamped backup).")
@click.option("--gateway", "gateways", multiple=True, metavar="URL",
              help="--clients: URL of an mcpwall gateway (servers pointing there count as protected).")
@click.option("--color/--no-color", default=None, help="Force colour on or off (default: when a terminal).")
def scan(url: str | None, clients_mode: bool, headers: tuple[str, ...], bearer: str | None, active: bool, fmt: str,
         output: str | None, fail_under: str | None, fail_on: str | None, timeout: float, cacert: str | None,
         allow_loopback_http: bool, plain_port: int | None, configs: tuple[str, ...], project: str | None,
         connect: bool, yes: bool, wrap: bool, apply_: bool, gateways: tuple[str, ...], color: bool | None) -> None:
    """Grade an MCP server (URL), or map this machine's MCP clients (--clients)."""
    if bool(url) == clients_mode:
        raise click.UsageError("give either a URL to scan or --clients")
    if clients_mode:
        _clients(fmt=fmt, output=output, fail_on=fail_on, configs=configs, project=project, connect=connect,
                 yes=yes, wrap=wrap, apply_=apply_, gateways=gateways, timeout=timeout, color=color)
        return
    assert url is not None
    try:
        target = normalise_target(url)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    options = ScanOptions(credentials=_headers(headers, bearer), active=active, timeout=timeout, cafile=cacert,
                          plain_port=plain_port, allow_loopback_http=allow_loopback_http)
    report = asyncio.run(scan_url(target, options))
    _emit(render_scan(report, fmt, color=bool(color is not False and not output)), output, color)
    if not report.reachable:
        sys.exit(2)
    if fail_under and not meets(report.grade.letter, fail_under):
        click.echo(f"grade {report.grade.letter} is below --fail-under {fail_under.upper()}", err=True)
        sys.exit(1)


def _confirm(yes: bool) -> object:
    def ask(entry: ServerEntry, shown: str) -> bool:
        click.echo(f"\n{entry.client}: {entry.name}", err=True)
        click.echo(f"  will run: {shown}", err=True)
        if yes:
            return True
        try:
            return click.confirm("  start it and list its tools?", default=False, err=True)
        except click.Abort:
            return False

    return ask


def _clients(*, fmt: str, output: str | None, fail_on: str | None, configs: tuple[str, ...], project: str | None,
             connect: bool, yes: bool, wrap: bool, apply_: bool, gateways: tuple[str, ...], timeout: float,
             color: bool | None) -> None:
    if apply_ and not wrap:
        raise click.UsageError("--apply goes with --wrap")
    report: ClientsReport = asyncio.run(scan_clients(
        project=Path(project) if project else None, extra=[Path(c) for c in configs], connect=connect,
        confirm=_confirm(yes) if connect else None, timeout=max(timeout, 20.0),  # type: ignore[arg-type]
        gateways=[*DEFAULT_GATEWAYS, *gateways]))
    home = str(home_dir(os.environ, sys.platform))
    _emit(render_clients(report, fmt, color=bool(color is not False and not output), home=home), output, color)
    if wrap:
        _wrap(report, apply_=apply_, yes=yes)
    if fail_on:
        worst = [f for f in report.all_findings if SEVERITY_ORDER[f.severity] <= SEVERITY_ORDER[fail_on]]
        if worst:
            click.echo(f"{len(worst)} finding(s) at or above {fail_on}", err=True)
            sys.exit(1)


def _wrap(report: ClientsReport, *, apply_: bool, yes: bool) -> None:
    proposals = [p for p in (propose(f) for f in report.files if f.exists and f.servers) if p is not None]
    if not proposals:
        click.echo("\nNothing to wrap: no stdio server outside mcpwall.", err=True)
        return
    for proposal in proposals:
        click.echo(f"\n# {proposal.client}: {proposal.path} — wrap {', '.join(proposal.wrapped)}")
        if proposal.reason:
            click.echo(f"# cannot be written automatically: {proposal.reason}")
        click.echo(proposal.diff, nl=False)
    if not apply_:
        click.echo("\nRun again with --apply to write these changes (a backup of each file is kept).", err=True)
        return
    writable = [p for p in proposals if p.new_text is not None]
    if not writable:
        return
    if not yes and not click.confirm(f"\nWrite {len(writable)} file(s)?", default=False, err=True):
        click.echo("nothing written", err=True)
        return
    for proposal in writable:
        apply(proposal)
        click.echo(f"wrote {proposal.path} (backup: {proposal.backup})", err=True)
