"""``mcpwall pins``: write, inspect and approve the tool-definition lockfile.

* ``pins lock``    — connect to the upstreams and pin every tool and prompt they list now.
* ``pins status``  — what differs between the upstreams and their pins (exit 1 when anything
  does, so CI can gate on it); ``--offline`` lists the pins without connecting.
* ``pins diff``    — the same, as readable unified diffs of the definitions.
* ``pins approve`` — show the diffs, ask, and record the current definitions as approved.

Names select what to show or approve: ``server`` (all of it), ``server/tool``,
``server__tool`` (the namespaced name clients see) or a bare ``tool``. The running gateway
rereads the lockfile as soon as it changes; no restart is needed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from mcpwall.cli.common import load_or_exit
from mcpwall.config.model import Config
from mcpwall.guards.pins import PinsSettings
from mcpwall.pins.book import PinBook, open_book
from mcpwall.pins.canonical import FIELDS, Key, Pin, make_pin
from mcpwall.pins.compare import Change, compare, unified_diff
from mcpwall.pins.lockfile import LockfileError

_CONFIG = click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False, exists=True),
                       help="The gateway's mcpwall.yaml.")


@dataclass
class _Setup:
    config: Config
    settings: PinsSettings
    book: PinBook
    lockfile: Path


def _setup(config_path: str) -> _Setup:
    config = load_or_exit(config_path, code=2)
    config_dir = Path(config_path).resolve().parent
    settings = config.guard_settings("pins")
    assert isinstance(settings, PinsSettings)
    path = config_dir / settings.lockfile
    try:
        book = open_book(path, settings.store, config.storage.url, config_dir)
        book.current()
    except (LockfileError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    return _Setup(config, settings, book, path)


def _fetch(config: Config, servers: list[str] | None) -> dict[str, dict[str, list[dict[str, Any]]]]:
    from mcpwall.gateway.fetch import fetch_definitions

    try:
        return asyncio.run(fetch_definitions(config, servers))
    except Exception as exc:  # any upstream failure: report it, change nothing
        click.echo(f"error: could not list definitions from the upstreams: {exc}", err=True)
        sys.exit(2)


def _current(setup: _Setup, servers: list[str] | None) -> dict[str, dict[str, dict[str, Pin]]]:
    """server -> kind -> upstream name -> pin of what the upstream lists now."""
    fetched = _fetch(setup.config, servers)
    out: dict[str, dict[str, dict[str, Pin]]] = {}
    for server, kinds in fetched.items():
        if server in setup.settings.exempt_servers:
            continue
        for kind in setup.settings.kinds:
            items = [i for i in kinds.get(kind, []) if isinstance(i, dict) and isinstance(i.get("name"), str)]
            out.setdefault(server, {})[kind] = {i["name"]: make_pin(kind, i) for i in items}
    return out


def _drift(setup: _Setup, current: dict[str, dict[str, dict[str, Pin]]]) -> list[tuple[str, Change]]:
    pins = setup.book.current()
    changes: list[tuple[str, Change]] = []
    for server in sorted(current):
        for kind in sorted(current[server]):
            pinned = {n: p for (s, k, n), p in pins.items() if s == server and k == kind}
            for change in compare(kind, pinned, current[server][kind],
                                  threshold=setup.settings.rename_similarity, complete=True):
                changes.append((server, change))
    return changes


def _selected(server: str, change: Change, names: Iterable[str], separator: str) -> bool:
    wanted = set(names)
    if not wanted:
        return True
    names_of = {change.name, *change.related}  # a rename can be picked by its old name too
    forms = {server} | {form for n in names_of for form in (n, f"{server}/{n}", f"{server}{separator}{n}")}
    return bool(wanted & forms)


def _describe(server: str, change: Change) -> str:
    line = f"{server}/{change.name} ({change.kind}): {change.change}"
    if change.related:
        line += " from " + ", ".join(change.related)
    if change.change == "changed" and change.old is not None and change.new is not None:
        line += f" (pinned {change.old.hash[:19]}, now {change.new.hash[:19]})"
    return line


def _show_diff(server: str, change: Change) -> None:
    label = f"{server}/{change.name}"
    if change.related:
        label = f"{server}/{'+'.join(change.related)} -> {server}/{change.name}"
    click.echo(f"## {_describe(server, change)}")
    diff = unified_diff(change.old.definition if change.old else None,
                        change.new.definition if change.new else None, label)
    click.echo(diff if diff.endswith("\n") else diff + "\n", nl=False)


@click.group()
def pins() -> None:
    """Pin tool and prompt definitions (mcpwall.lock) and approve changes to them."""


@pins.command("lock")
@_CONFIG
@click.option("--server", "servers", multiple=True, help="Only these upstreams (repeatable).")
def lock(config_path: str, servers: tuple[str, ...]) -> None:
    """Connect to the upstreams and pin every definition they list now."""
    setup = _setup(config_path)
    current = _current(setup, list(servers) or None)
    new: dict[Key, Pin] = {(s, k, n): p for s, kinds in current.items() for k, items in kinds.items()
                           for n, p in items.items()}
    before = len(_drift(setup, current))
    setup.book.replace_servers(current, new)
    counts = {kind: sum(1 for key in new if key[1] == kind) for kind in FIELDS}
    click.echo(f"{setup.lockfile.name}: pinned {counts['tools']} tools and {counts['prompts']} prompts "
               f"of {len(current)} servers ({before} differences from the previous pins)")


@pins.command("status")
@_CONFIG
@click.option("--offline", is_flag=True, help="List the pins without connecting to the upstreams.")
def status(config_path: str, offline: bool) -> None:
    """Show what differs between the upstreams and their pins; exit 1 when anything does."""
    setup = _setup(config_path)
    if offline:
        for key, pin in sorted(setup.book.current().items()):
            server, kind, name = key
            click.echo(f"{server}/{name} ({kind}) {pin.hash[:19]} {setup.book.source(key)}")
        return
    changes = _drift(setup, _current(setup, None))
    for server, change in changes:
        click.echo(_describe(server, change))
    if changes:
        click.echo(f"{len(changes)} differences: review with `mcpwall pins diff`, "
                   "accept with `mcpwall pins approve`", err=True)
        sys.exit(1)
    click.echo("all definitions match their pins")


@pins.command("diff")
@_CONFIG
@click.argument("names", nargs=-1)
def diff(config_path: str, names: tuple[str, ...]) -> None:
    """Show unified diffs between pinned and current definitions; exit 1 when there are any."""
    setup = _setup(config_path)
    chosen = [(s, c) for s, c in _drift(setup, _current(setup, None))
              if _selected(s, c, names, setup.config.namespace_separator)]
    for server, change in chosen:
        _show_diff(server, change)
    if chosen:
        sys.exit(1)


@pins.command("approve")
@_CONFIG
@click.argument("names", nargs=-1)
@click.option("-y", "--yes", is_flag=True, help="Approve without asking (the diffs are still shown).")
def approve(config_path: str, names: tuple[str, ...], yes: bool) -> None:
    """Show the diffs of the selected definitions, then record them as approved."""
    setup = _setup(config_path)
    chosen = [(s, c) for s, c in _drift(setup, _current(setup, None))
              if _selected(s, c, names, setup.config.namespace_separator)]
    if not chosen:
        click.echo("nothing to approve")
        return
    for server, change in chosen:
        _show_diff(server, change)
    if not yes and not click.confirm(f"Approve these {len(chosen)} changes?", default=False):
        click.echo("nothing approved")
        sys.exit(1)
    approved: dict[Key, Pin] = {}
    removed: list[Key] = []
    for server, change in chosen:
        key = (server, change.kind, change.name)
        if change.new is None:
            removed.append(key)
        else:
            approved[key] = change.new
    setup.book.approve(approved, removed)
    click.echo(f"approved {len(approved)} definitions and {len(removed)} removals in {setup.lockfile.name}")
