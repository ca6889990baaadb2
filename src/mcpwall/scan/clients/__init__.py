"""``mcpwall scan --clients``: map the MCP attack surface of this machine's clients.

:func:`scan_clients` finds the configuration files (``paths``), reads their server entries
(``discovery``), reviews them statically (``audit``) and, only when asked and with consent,
connects to each server to list and analyse its tools (``connect``). ``wrap`` proposes configs
that route stdio servers through mcpwall.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mcpwall.scan.clients.audit import DEFAULT_GATEWAYS, audit_entry, inconsistent
from mcpwall.scan.clients.connect import Confirm, connect_all
from mcpwall.scan.clients.discovery import discover
from mcpwall.scan.clients.model import ClientsReport, ConfigFile, ServerEntry
from mcpwall.scan.clients.paths import home_dir, locations
from mcpwall.scan.http import USER_AGENT
from mcpwall.scan.model import SEVERITY_ORDER

__all__ = ["ClientsReport", "ConfigFile", "ServerEntry", "find_configs", "scan_clients"]


def find_configs(*, env: Mapping[str, str] | None = None, platform: str | None = None,
                 project: Path | None = None, extra: Sequence[Path] = (),
                 include_managed: bool = True) -> list[ConfigFile]:
    locs = locations(env=env, platform=platform, project=project, include_managed=include_managed)
    return discover(locs, list(extra))


async def scan_clients(*, env: Mapping[str, str] | None = None, platform: str | None = None,
                       project: Path | None = None, extra: Sequence[Path] = (), connect: bool = False,
                       confirm: Confirm | None = None, timeout: float = 20.0,
                       gateways: Sequence[str] = DEFAULT_GATEWAYS, include_managed: bool = True) -> ClientsReport:
    env = os.environ if env is None else env
    platform = platform or sys.platform
    files = find_configs(env=env, platform=platform, project=project, extra=extra, include_managed=include_managed)
    home = str(home_dir(env, platform))
    report = ClientsReport(scanner=USER_AGENT, started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           files=files)
    for entry in report.servers:
        entry.findings.extend(audit_entry(entry, home=home, gateways=gateways))
    report.findings.extend(inconsistent(report.servers))
    if connect:
        if confirm is None:
            raise ValueError("connecting starts programs; a confirm callback is required")
        report.connected = True
        report.findings.extend(await connect_all(report.servers, confirm, timeout=timeout, env=env))
    for entry in report.servers:
        entry.findings.sort(key=lambda f: (SEVERITY_ORDER[f.severity], f.rule))
    report.findings.sort(key=lambda f: (SEVERITY_ORDER[f.severity], f.rule, f.subject))
    return report
