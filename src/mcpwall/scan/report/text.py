"""Human-readable terminal reports, with colour when the caller asks for it.

Passing checks take one line; failed and unobservable ones add their summary, a little evidence
and the fix, so the output doubles as a to-do list.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

import click

from mcpwall.scan.clients.model import ClientsReport, ServerEntry
from mcpwall.scan.model import CheckResult, Finding, Grade, ScanReport
from mcpwall.scan.report.common import by_severity, severity_counts, short_path, status_symbol

WIDTH = 100
Style = Callable[..., str]

_GRADE_COLOUR = {"A": "green", "B": "green", "C": "yellow", "D": "red", "F": "red"}
_STATUS_COLOUR = {"pass": "green", "fail": "red", "na": "bright_black", "unknown": "yellow"}
_SEVERITY_COLOUR = {"critical": "red", "high": "red", "medium": "yellow", "low": "cyan", "info": "bright_black"}


def _styler(color: bool) -> Style:
    if color:
        return click.style

    def plain(text: Any, **_: Any) -> str:
        return str(text)

    return plain


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ") or [indent]


def _grade(style: Style, label: str, grade: Grade | None) -> str:
    if grade is None:
        return f"{label}  {style('n/a', dim=True)}"
    colour = _GRADE_COLOUR[grade.letter]
    return f"{label}  {style(f' {grade.letter} ', fg='white', bg=colour, bold=True)}  {grade.score}/100"


def _check_lines(style: Style, result: CheckResult) -> list[str]:
    colour = _STATUS_COLOUR[result.status]
    points = f"{result.earned}/{result.spec.weight}" if result.status != "unknown" else f"?/{result.spec.weight}"
    title = result.spec.title
    head = f"  {style(status_symbol(result.status), fg=colour, bold=True)} {title:<58} {points:>6}"
    lines = [head]
    if result.status in ("fail", "unknown"):
        lines += _wrap(style(result.summary, fg=colour), "      ")
        lines += [style(line, dim=True) for e in result.evidence[:3] for line in _wrap("· " + e, "      ")]
        lines += _wrap(style("fix: ", bold=True) + result.spec.fix, "      ")
    elif result.status == "na":
        lines += [style(line, dim=True) for line in _wrap(result.summary, "      ")]
    return lines


def _finding_lines(style: Style, finding: Finding, show_fix: bool) -> list[str]:
    tag = style(f"{finding.severity.upper():<8}", fg=_SEVERITY_COLOUR[finding.severity], bold=True)
    lines = [f"  {tag} {finding.title}"]
    lines += [style(line, dim=True) for line in _wrap(finding.detail, "           ")]
    if show_fix and finding.fix:
        lines += _wrap(style("fix: ", bold=True) + finding.fix, "           ")
    return lines


def scan(report: ScanReport, *, color: bool = False) -> str:
    style = _styler(color)
    out = [style("mcpwall scan", bold=True) + f"  {report.target}"]
    who = []
    if report.era:
        name = f' "{report.server_name}"' if report.server_name else ""
        who.append(f"{report.era} MCP server{name}")
    who += ["authenticated" if report.authenticated else "anonymous", "active" if report.active else "passive",
            f"{report.requests} requests", f"{report.duration_ms / 1000:.1f} s"]
    out.append(style(" · ".join(who), dim=True))
    out.append("")
    mcp = _grade(style, "MCP protocol", report.mcp_grade)
    if report.mcp_grade is not None:
        mcp += style(f"  ({report.mcp_grade.observed_weight} of {report.mcp_grade.total_weight} points observable)",
                     dim=True)
    out.append("  " + _grade(style, "Grade", report.grade) + "        " + mcp)
    for note in report.notes:
        out += _wrap(style("note: " + note, fg="yellow"), "  ")
    out += ["", style("  Posture checks", bold=True)]
    for result in report.posture:
        out += _check_lines(style, result)
    out += ["", style("  MCP protocol probes", bold=True)]
    for result in report.mcp:
        out += _check_lines(style, result)
    if report.findings:
        out += ["", style(f"  Findings ({len(report.findings)})", bold=True)]
        seen: set[str] = set()
        for finding in by_severity(report.findings):
            out += _finding_lines(style, finding, finding.rule not in seen)
            seen.add(finding.rule)
    out.append("")
    return "\n".join(out)


def _entry_lines(style: Style, entry: ServerEntry, seen: set[str]) -> list[str]:
    what = " ".join(entry.command_line()) if entry.command else (entry.to_dict()["url"] or "")
    disabled = style(" (disabled)", dim=True) if entry.disabled else ""
    lines = [f"    {style(entry.name, bold=True)}{disabled}  {style(entry.transport, fg='cyan')}  "
             f"{textwrap.shorten(what, 70, placeholder='…')}"]
    if entry.tools is not None:
        caps = ", ".join(entry.capabilities) or "no risky capability"
        lines.append(style(f"      {len(entry.tools)} tool(s) · {caps}", dim=True))
    elif entry.connect_error:
        lines.append(style(f"      not connected: {entry.connect_error}", fg="yellow"))
    for finding in entry.findings:
        if finding.rule in ("tool-url-input", "tool-path-input"):
            continue  # surfaces are summarised by the capability line
        tag = style(f"{finding.severity.upper():<7}", fg=_SEVERITY_COLOUR[finding.severity], bold=True)
        lines.append(f"      {tag} {finding.title}: {textwrap.shorten(finding.detail, 60, placeholder='…')}")
        if finding.rule not in seen and finding.fix:
            lines += [style(line, dim=True) for line in _wrap("fix: " + finding.fix, "              ")]
            seen.add(finding.rule)
    return lines


def clients(report: ClientsReport, *, color: bool = False, home: str = "") -> str:
    style = _styler(color)
    found = [f for f in report.files if f.exists]
    servers = report.servers
    out = [style("mcpwall scan --clients", bold=True) +
           f"  {len(servers)} server(s) in {len(found)} configuration file(s)"]
    if not found:
        out += ["", "  No MCP client configuration found. Looked in:"]
        out += [style(f"    {short_path(f.path, home)}", dim=True) for f in report.files]
        return "\n".join(out) + "\n"
    seen: set[str] = set()
    for config in found:
        out += ["", f"  {style(config.client, bold=True, fg='blue')}  {style(short_path(config.path, home), dim=True)}"
                    f"{style('  [' + config.scope + ']', dim=True)}"]
        if config.error:
            out.append(style(f"    could not read: {config.error}", fg="yellow"))
        if not config.servers and not config.error:
            out.append(style("    no servers", dim=True))
        for entry in config.servers:
            out += _entry_lines(style, entry, seen)
    if report.findings:
        out += ["", style("  Across servers and clients", bold=True)]
        for finding in report.findings:
            out += _finding_lines(style, finding, finding.rule not in seen)
            seen.add(finding.rule)
    counts = severity_counts(report.all_findings)
    summary = " · ".join(style(f"{n} {s}", fg=_SEVERITY_COLOUR[s]) for s, n in counts.items() if n)
    out += ["", f"  {summary or 'no findings'}"]
    if not report.connected:
        out.append(style("  Tools were not listed; add --connect to start each server (asks first) and scan its "
                         "tools.", dim=True))
    out.append("")
    return "\n".join(out)
