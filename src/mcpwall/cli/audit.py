"""``mcpwall audit verify|tail|query|export``: prove the audit trail intact, read it, ship it.

All subcommands read the store, key and head file the config names (``guards.audit``), and open
the store read-only in spirit: they never append, so they are safe next to a running gateway.
``verify`` exits 1 and names the first bad record of each kind when the chain was tampered with.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

import click
import orjson

from mcpwall.audit.export import FORMATS, parsed, render
from mcpwall.audit.record import parse_timestamp, timestamp
from mcpwall.audit.settings import AuditPaths, AuditSettings, resolve_paths
from mcpwall.audit.signing import SigningKeyError, load_public_keys
from mcpwall.audit.store import AuditStore, Filters, Row, StoreError, open_store
from mcpwall.audit.verify import read_head_file, verify_export, verify_store
from mcpwall.cli.common import load_or_exit
from mcpwall.config.types import parse_duration as _parse_duration

_config_option = click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
                              help="The gateway's mcpwall.yaml.")


def _filters(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed((
        click.option("--principal", help="Only records of this principal id."),
        click.option("--tool", help="Only records for this tool (as the upstream names it) or resource URI."),
        click.option("--decision", type=click.Choice(["allow", "deny", "error"]), help="Only this final decision."),
        click.option("--kind", help="Only this record kind: call, auth.failure, pin.changed, alert, …"),
        click.option("--upstream", help="Only records for this upstream."),
        click.option("--since", help="From this time: ISO 8601 (2026-01-31T12:00Z) or an age (90m, 24h, 7d)."),
        click.option("--until", help="Before this time: ISO 8601 or an age."),
    )):
        func = option(func)
    return func


@click.group()
def audit() -> None:
    """Verify, read and export the tamper-evident audit trail."""


def _settings(config_path: str) -> tuple[AuditSettings, AuditPaths]:
    config = load_or_exit(config_path, code=2)
    settings = config.guard_settings("audit")
    assert isinstance(settings, AuditSettings)
    config_dir = Path(config_path).resolve().parent
    return settings, resolve_paths(settings, config_dir, config.storage.url)


def _open(config_path: str) -> tuple[AuditSettings, AuditPaths, AuditStore]:
    settings, paths = _settings(config_path)
    store = open_store(paths.url, base_dir=Path(config_path).resolve().parent, schema=settings.pg_schema)
    try:
        if store.open(create=False) is None:
            raise StoreError("the store holds no audit chain yet")
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    return settings, paths, store


def _time(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        seconds = _parse_duration(value)
        if isinstance(seconds, float):
            return timestamp(time.time() - seconds)
    except ValueError:
        pass
    try:
        return timestamp(parse_timestamp(value))
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a time nor an age such as 24h") from None


def _make_filters(principal: str | None, tool: str | None, decision: str | None, kind: str | None,
                  upstream: str | None, since: str | None, until: str | None, **extra: Any) -> Filters:
    return Filters(principal=principal, tool=tool, decision=decision, kind=kind, upstream=upstream,
                   since=_time(since), until=_time(until), **extra)


def _text_line(record: dict[str, Any]) -> str:
    principal = record.get("principal") or {}
    parts = [str(record.get("seq")), str(record.get("ts", "")), str(record.get("kind", "")),
             str(principal.get("id", "-")) if isinstance(principal, dict) else "-",
             str(record.get("method") or "-"), str(record.get("target") or "-"), str(record.get("decision") or "-")]
    if record.get("reason"):
        parts.append(repr(record["reason"]))
    return " ".join(parts)


def _emit(rows: Iterable[Row], fmt: str, out: TextIO) -> int:
    count = 0
    records = parsed(rows)
    if fmt == "text":
        for record in records:
            out.write(_text_line(record) + "\n")
            count += 1
        return count
    for line in render(records, fmt):
        out.write(line + "\n")
        count += 1
    return count


@audit.command()
@_config_option
@click.option("--public-key", "public_keys", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Trusted Ed25519 public key (PEM); repeatable. Default: the key beside the signing key.")
@click.option("--head-file", type=click.Path(dir_okay=False), help="A copy of the signed head kept elsewhere.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--file", "export_file", type=click.Path(exists=True, dir_okay=False),
              help="Verify a JSON-lines export made with 'export --proof' instead of the store.")
def verify(config_path: str, public_keys: tuple[str, ...], head_file: str | None, as_json: bool,
           export_file: str | None) -> None:
    """Check every record, link and signature; exit 1 naming the first bad record."""
    if export_file is not None:
        _, paths = _settings(config_path)
        store = None
    else:
        _, paths, store = _open(config_path)
    key_paths = [Path(p) for p in public_keys]
    if not key_paths:
        if paths.public_key.exists():
            key_paths = [paths.public_key]
        elif paths.signing_key.exists():
            key_paths = [paths.signing_key]
        else:
            raise click.ClickException("no public key to verify with: pass --public-key")
    try:
        keys = load_public_keys(key_paths)
    except (SigningKeyError, ValueError, OSError) as exc:
        raise click.ClickException(f"cannot load the public key: {exc}") from None
    head_path = Path(head_file) if head_file else paths.head_file
    try:
        outside = read_head_file(head_path) if head_path is not None else None
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read the head file: {exc}") from None
    if store is None:
        assert export_file is not None
        with open(export_file, "rb") as handle:
            report = verify_export(handle, keys, head_file=outside if head_file else None)
    else:
        try:
            report = verify_store(store, keys, head_file=outside,
                                  head_file_name=f"head file {head_path.name}" if head_path else "head file")
        finally:
            store.close()
    if as_json:
        click.echo(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        rate = report.records / report.seconds if report.seconds > 0 else 0.0
        span = f"seq {report.first_seq}..{report.last_seq}" if report.records else "empty"
        if report.ok:
            click.echo(f"ok: chain {report.chain}: {report.records} records ({span}), {report.checkpoints} "
                       f"checkpoints, verified in {report.seconds:.2f}s ({rate:,.0f} records/s)")
        else:
            first = report.first_bad
            assert first is not None
            click.echo(f"FAILED: chain {report.chain}: first bad record: seq {first.seq} ({first.kind}): "
                       f"{first.detail}", err=True)
            for problem in report.problems:
                click.echo(f"  {problem.kind}: seq {problem.seq}: {problem.detail}", err=True)
        for warning in report.warnings:
            click.echo(f"warning: {warning}", err=True)
    sys.exit(0 if report.ok else 1)


@audit.command()
@_config_option
@click.option("-n", "--lines", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("-f", "--follow", is_flag=True, help="Keep printing new records as they are written.")
@click.option("--format", "fmt", type=click.Choice(["text", *FORMATS]), default="text", show_default=True)
@_filters
def tail(config_path: str, lines: int, follow: bool, fmt: str, **filters: Any) -> None:
    """Print the newest records (oldest first)."""
    _, _, store = _open(config_path)
    try:
        rows = store.query(_make_filters(**filters, limit=lines, newest_first=True))
        rows.reverse()
        _emit(rows, fmt, sys.stdout)
        last = rows[-1].seq if rows else (store.head() or _NoHead).seq
        while follow:
            sys.stdout.flush()
            time.sleep(1.0)
            rows = store.query(_make_filters(**filters, after_seq=last, limit=1000))
            if rows:
                _emit(rows, fmt, sys.stdout)
                last = rows[-1].seq
    except KeyboardInterrupt:
        pass
    finally:
        store.close()


class _NoHead:
    seq = 0


@audit.command()
@_config_option
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--format", "fmt", type=click.Choice(["text", *FORMATS]), default="text", show_default=True)
@_filters
def query(config_path: str, limit: int, fmt: str, **filters: Any) -> None:
    """Print the records matching the filters (oldest first)."""
    _, _, store = _open(config_path)
    try:
        _emit(store.query(_make_filters(**filters, limit=limit)), fmt, sys.stdout)
    finally:
        store.close()


@audit.command()
@_config_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl", show_default=True,
              help="jsonl (re-verifiable), cef, syslog (RFC 5424 with CEF), otel (OTLP/JSON log records).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="File to write (default stdout).")
@click.option("--proof", is_flag=True, help="jsonl only: append the signed checkpoints and head, so the export "
                                            "can be verified offline with 'verify --file'.")
@_filters
def export(config_path: str, fmt: str, output: str | None, proof: bool, **filters: Any) -> None:
    """Export records for a SIEM or for offline verification."""
    if proof and (fmt != "jsonl" or any(v is not None for v in filters.values())):
        raise click.UsageError("--proof needs --format jsonl and no filters (it proves the whole chain)")
    _, _, store = _open(config_path)
    flt = _make_filters(**filters)
    try:
        head = store.head() if proof else None  # read first: records written meanwhile stay verifiable
        # A proof covers what a signature covers: records after the last signed head (the unsigned
        # tail of a running gateway) are left out, or the export would not verify.
        signed = head.checkpoint.seq if head is not None and head.checkpoint is not None else 0
        rows = _all_rows(store, flt)
        if proof:
            rows = (row for row in rows if row.seq <= signed)
        handle = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
        try:
            count = _emit(rows, fmt, handle)
            if proof and head is not None and head.checkpoint is not None:
                for cp in store.checkpoints():
                    if cp.seq <= signed:
                        handle.write(orjson.dumps({"checkpoint": orjson.loads(cp.to_json())}).decode() + "\n")
                handle.write(orjson.dumps({"head": orjson.loads(head.checkpoint.to_json())}).decode() + "\n")
        finally:
            if output:
                handle.close()
        if output:
            click.echo(f"{count} {'documents' if fmt == 'otel' else 'records'} written to {output}", err=True)
    finally:
        store.close()


def _all_rows(store: AuditStore, flt: Filters, page: int = 2000) -> Iterable[Row]:
    """Every matching row, fetched in pages so exports of any size run in bounded memory."""
    after = 0
    while True:
        flt.after_seq, flt.limit = after, page
        rows = store.query(flt)
        yield from rows
        if len(rows) < page:
            return
        after = rows[-1].seq
