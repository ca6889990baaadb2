"""``mcpwall approvals list|show|approve|deny``: act on held calls through a running gateway.

The commands talk to the gateway's admin API (``/api/approvals`` on the admin port), never to
its database: the gateway owns the approval state, re-evaluates every decision and wakes the
held call. The admin URL comes from ``--admin-url``, ``$MCPWALL_ADMIN_URL`` or the ``admin:``
section of ``-c mcpwall.yaml``; the token from ``--token`` or ``$MCPWALL_ADMIN_TOKEN``.

Exit codes: 0 done, 1 refused (not pending, self-approval, ...), 3 authentication failed,
4 gateway unreachable.
"""

from __future__ import annotations

import sys
import time
from typing import Any, NoReturn

import click
import httpx
import orjson

EXIT_REFUSED, EXIT_AUTH, EXIT_UNREACHABLE = 1, 3, 4
DEFAULT_ADMIN_URL = "http://127.0.0.1:8766"


class _Api:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             params: dict[str, Any] | None = None) -> dict[str, Any]:
        if not self.token:
            _fail("no admin token: pass --token or set MCPWALL_ADMIN_TOKEN", EXIT_AUTH)
        try:
            response = httpx.request(method, f"{self.url}/api/approvals{path}", params=params,
                                     content=orjson.dumps(body) if body is not None else None,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"},
                                     timeout=10.0, follow_redirects=False)
        except httpx.HTTPError as exc:
            _fail(f"cannot reach the gateway admin API at {self.url} ({type(exc).__name__})", EXIT_UNREACHABLE)
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            _fail(f"unexpected answer from {self.url} (HTTP {response.status_code})", EXIT_REFUSED)
        if not isinstance(data, dict):
            _fail(f"unexpected answer from {self.url}", EXIT_REFUSED)
        if response.status_code >= 400:
            raw = data.get("error")
            error: dict[str, Any] = raw if isinstance(raw, dict) else {}
            message = error.get("message") or f"HTTP {response.status_code}"
            _fail(f"{message} [{error.get('code', 'error')}]",
                  EXIT_AUTH if response.status_code == 401 else EXIT_REFUSED)
        return data


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _admin_url_from_config(path: str) -> str:
    from mcpwall.config.loader import load
    from mcpwall.errors import ConfigError

    try:
        config = load(path)
    except ConfigError as exc:
        _fail("; ".join(exc.problems), EXIT_REFUSED)
    host = config.admin.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.admin.port}"


@click.group()
@click.option("--admin-url", envvar="MCPWALL_ADMIN_URL", default=None,
              help=f"The gateway's admin API (default: from -c, else {DEFAULT_ADMIN_URL}).")
@click.option("--token", envvar="MCPWALL_ADMIN_TOKEN", default=None, help="Admin or per-approver token.")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Read the admin address from this mcpwall.yaml.")
@click.pass_context
def approvals(ctx: click.Context, admin_url: str | None, token: str | None, config_path: str | None) -> None:
    """List, inspect, approve and deny calls held for approval."""
    url = admin_url or (_admin_url_from_config(config_path) if config_path else DEFAULT_ADMIN_URL)
    ctx.obj = _Api(url, token)


@approvals.command("list")
@click.option("--status", type=click.Choice(["pending", "approved", "denied", "expired", "all"]), default="pending",
              show_default=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_obj
def list_(api: _Api, status: str, limit: int, as_json: bool) -> None:
    """List approval requests (pending ones by default)."""
    data = api.call("GET", "", params={"status": status, "limit": limit})
    items = data.get("approvals") or []
    if as_json:
        click.echo(orjson.dumps(items, option=orjson.OPT_INDENT_2).decode())
        return
    if not items:
        click.echo(f"no {status if status != 'all' else ''} approval requests".replace("  ", " "))
        return
    rows = [("ID", "STATUS", "AGE", "LEFT", "PRINCIPAL", "TOOL", "RISK", "APPROVALS", "WHY")]
    now = time.time()
    for item in items:
        rows.append((str(item["id"]), str(item["status"]), _age(now - float(item["created"])),
                     f"{item.get('remaining_seconds', 0):.0f}s" if item["status"] == "pending" else "-",
                     str(item["principal"]), str(item["tool"]),
                     f"{item['risk'].get('level', '?')} {item['risk'].get('score', '?')}",
                     f"{item.get('approvals_given', 0)}/{item.get('approvers_required', 1)}",
                     _short("; ".join(item.get("reasons") or []), 60)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1])


@approvals.command()
@click.argument("approval_id")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_obj
def show(api: _Api, approval_id: str, as_json: bool) -> None:
    """Show one request in full: who, what tool, the (redacted) arguments, the risk and why."""
    item = api.call("GET", f"/{approval_id}")["approval"]
    if as_json:
        click.echo(orjson.dumps(item, option=orjson.OPT_INDENT_2).decode())
        return
    lines = [
        f"approval   {item['id']}  ({item['status']})",
        f"principal  {item['principal']} (auth: {item.get('auth_method')}; "
        f"roles: {', '.join(item.get('roles') or []) or '-'})",
        f"tool       {item['tool']}  (server {item.get('server')}, labels: {', '.join(item.get('labels') or [])})",
        f"session    carries {', '.join(item.get('session_labels') or []) or 'no labels'}",
        f"risk       {item['risk'].get('level')} ({item['risk'].get('score')}/100)",
    ]
    lines += [f"           - {r}" for r in item["risk"].get("reasons") or []]
    lines.append("why        " + "; ".join(item.get("reasons") or []))
    lines.append(f"approvers  {item.get('approvals_given', 0)} of {item.get('approvers_required', 1)} given"
                 + (f"; user confirmation: {item['user_confirmation']}" if item.get("user_confirmation") != "off"
                    else ""))
    for vote in item.get("approvals") or []:
        lines.append(f"           - {vote['approver']} ({vote['channel']}): "
                     f"{'approve' if vote.get('approve') else 'deny'} {vote.get('comment') or ''}".rstrip())
    if item["status"] == "pending":
        lines.append(f"expires in {item.get('remaining_seconds', 0):.0f}s")
    else:
        lines.append(f"decided    by {item.get('decided_by')}: {item.get('decision_reason') or item['status']}")
    lines.append("arguments")
    lines.append(orjson.dumps(item.get("arguments"), option=orjson.OPT_INDENT_2).decode())
    click.echo("\n".join(lines))


@approvals.command()
@click.argument("approval_id")
@click.option("--approver", default=None, help="Your name (required with the shared admin token).")
@click.option("--comment", default="", help="Why; kept with the decision.")
@click.pass_obj
def approve(api: _Api, approval_id: str, approver: str | None, comment: str) -> None:
    """Approve a held call."""
    data = api.call("POST", f"/{approval_id}/approve", body=_body(approver, comment=comment))
    item = data["approval"]
    if item["status"] == "approved":
        click.echo(f"approved {approval_id} (by {item.get('decided_by')})")
    else:
        click.echo(f"recorded: {item.get('approvals_given', 0)} of {item.get('approvers_required', 1)} approvals "
                   f"for {approval_id}; still {item['status']}")


@approvals.command()
@click.argument("approval_id")
@click.option("--approver", default=None, help="Your name (required with the shared admin token).")
@click.option("--reason", default="", help="Told to the client that made the call.")
@click.pass_obj
def deny(api: _Api, approval_id: str, approver: str | None, reason: str) -> None:
    """Deny a held call; the client gets an error result with the reason."""
    api.call("POST", f"/{approval_id}/deny", body=_body(approver, reason=reason))
    click.echo(f"denied {approval_id}")


def _body(approver: str | None, **note: str) -> dict[str, Any]:
    body: dict[str, Any] = {k: v for k, v in note.items() if v}
    if approver:
        body["approver"] = approver
    return body


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
