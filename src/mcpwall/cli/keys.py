"""``mcpwall keys create|list|rotate|revoke``: manage API keys.

Keys live in the store named by ``guards.auth.api_keys.store`` or ``storage.url`` of the
config (``-c``), or by ``--storage``. A new key is printed once, alone on stdout, so
``KEY=$(mcpwall keys create …)`` works; only its digest is kept. Revocation takes effect on the
running gateway's next request.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from mcpwall.auth import apikey
from mcpwall.cli.common import exit_with_problems
from mcpwall.config.types import parse_duration
from mcpwall.errors import ConfigError
from mcpwall.storage.apikeys import KeyRecord, KeyStore, open_key_store

_DEFAULT_CONFIG = "mcpwall.yaml"


def _open(config: str | None, storage: str | None) -> KeyStore:
    try:
        if storage is not None:
            return open_key_store(storage, Path.cwd())
        path = Path(config) if config else Path(_DEFAULT_CONFIG)
        if config is None and not path.exists():
            return open_key_store("sqlite:///mcpwall.db", Path.cwd())
        from mcpwall.config.loader import load

        loaded = load(path)
        auth = getattr(loaded.guards, "auth", None)
        api_keys = getattr(auth, "api_keys", None)
        url = getattr(api_keys, "store", None) or loaded.storage.url
        return open_key_store(url, path.resolve().parent)
    except ConfigError as exc:
        exit_with_problems(exc, 2)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _duration(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(parse_duration(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None
    return seconds


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


_store_options = [
    click.option("-c", "--config", type=click.Path(dir_okay=False), default=None,
                 help=f"Config whose storage holds the keys (default: ./{_DEFAULT_CONFIG} if present)."),
    click.option("--storage", default=None, help="Storage URL, e.g. sqlite:///mcpwall.db (overrides -c)."),
]


def _with_store(func: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(_store_options):
        func = option(func)
    return func


@click.group()
def keys() -> None:
    """Create, list, rotate and revoke API keys."""


@keys.command()
@click.option("--principal", required=True, help="Who the key identifies.")
@click.option("--roles", default="", help="Comma-separated roles.")
@click.option("--expires", default=None, help="Lifetime such as 90d or 12h (default: no expiry).")
@click.option("--note", default="", help="Free text shown in `keys list`.")
@_with_store
def create(principal: str, roles: str, expires: str | None, note: str, config: str | None,
           storage: str | None) -> None:
    """Create a key and print it once."""
    store = _open(config, storage)
    role_list = tuple(r.strip() for r in roles.split(",") if r.strip())
    record, plaintext = apikey.mint(store, principal, role_list, expires_in=_duration(expires, "--expires"),
                                    note=note)
    store.close()
    click.echo(plaintext)
    click.echo(f"created key {record.key_id} for {principal} (roles: {', '.join(role_list) or 'none'}; "
               f"expires: {_when(record.expires_at)}). It is shown only now.", err=True)


@keys.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include revoked and expired keys.")
@click.option("--json", "as_json", is_flag=True)
@_with_store
def list_keys(show_all: bool, as_json: bool, config: str | None, storage: str | None) -> None:
    """List keys (never their secrets)."""
    store = _open(config, storage)
    now = time.time()
    records = [r for r in store.list() if show_all or r.status(now) == "active"]
    store.close()
    if as_json:
        click.echo(json.dumps([_row(r, now) for r in records], indent=2))
        return
    click.echo(f"{'KEY ID':<18}{'PRINCIPAL':<20}{'ROLES':<24}{'STATUS':<9}{'EXPIRES':<22}NOTE")
    for r in records:
        click.echo(f"{r.key_id:<18}{r.principal:<20}{','.join(r.roles):<24}{r.status(now):<9}"
                   f"{_when(r.expires_at):<22}{r.note}")


def _row(r: KeyRecord, now: float) -> dict[str, object]:
    return {"key_id": r.key_id, "principal": r.principal, "roles": list(r.roles), "status": r.status(now),
            "created_at": r.created_at, "expires_at": r.expires_at, "revoked_at": r.revoked_at, "note": r.note}


@keys.command()
@click.argument("key_id")
@click.option("--grace", default="0s", help="How long the old key keeps working, e.g. 24h (default: 0).")
@click.option("--expires", default=None, help="Lifetime of the new key.")
@_with_store
def rotate(key_id: str, grace: str, expires: str | None, config: str | None, storage: str | None) -> None:
    """Replace a key: same principal and roles, new secret; print the new key once."""
    grace_seconds = _duration(grace, "--grace") or 0.0
    store = _open(config, storage)
    try:
        record, plaintext = apikey.rotate(store, key_id, grace=grace_seconds,
                                          expires_in=_duration(expires, "--expires"))
    except KeyError:
        raise click.ClickException(f"no key {key_id}") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(plaintext)
    click.echo(f"rotated {key_id} → {record.key_id}; the old key stops working "
               f"{'now' if grace_seconds == 0 else 'after ' + grace}.", err=True)


@keys.command()
@click.argument("key_id")
@_with_store
def revoke(key_id: str, config: str | None, storage: str | None) -> None:
    """Revoke a key at once."""
    store = _open(config, storage)
    found = store.revoke(key_id)
    store.close()
    if not found:
        raise click.ClickException(f"no key {key_id}")
    click.echo(f"revoked {key_id}", err=True)
