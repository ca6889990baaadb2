"""Markdown reports, for pull-request comments, wikis and the README's side-by-side."""

from __future__ import annotations

from mcpwall.scan.clients.model import ClientsReport
from mcpwall.scan.model import CheckResult, ScanReport
from mcpwall.scan.report.common import by_severity, severity_counts, short_path, status_symbol


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(results: list[CheckResult]) -> list[str]:
    rows = ["| | Check | Points | Result |", "|---|---|---:|---|"]
    for r in results:
        points = f"{r.earned}/{r.spec.weight}" if r.status != "unknown" else f"?/{r.spec.weight}"
        rows.append(f"| {status_symbol(r.status)} | {_cell(r.spec.title)} | {points} | {_cell(r.summary)} |")
    return rows


def scan(report: ScanReport) -> str:
    mcp = (f"**{report.mcp_grade.letter}** ({report.mcp_grade.score}/100, {report.mcp_grade.observed_weight} of "
           f"{report.mcp_grade.total_weight} points observable)" if report.mcp_grade else "n/a")
    out = [f"## mcpwall scan: `{report.target}`", "",
           f"**Grade {report.grade.letter}** ({report.grade.score}/100) · MCP protocol {mcp} · "
           f"{'authenticated' if report.authenticated else 'anonymous'}, {'active' if report.active else 'passive'}, "
           f"{report.requests} requests", ""]
    out += ["### Posture checks", "", *_table(report.posture), "", "### MCP protocol probes", "", *_table(report.mcp)]
    fixes = [r for r in report.checks if r.status in ("fail", "unknown")]
    if fixes:
        out += ["", "### How to fix", ""]
        out += [f"- **{_cell(r.spec.title)}** — {_cell(r.spec.fix)}" for r in fixes]
    if report.findings:
        out += ["", "### Findings", "", "| Severity | Finding | Detail |", "|---|---|---|"]
        out += [f"| {f.severity} | {_cell(f.title)} | {_cell(f.detail)} |" for f in by_severity(report.findings)]
    return "\n".join(out) + "\n"


def clients(report: ClientsReport, *, home: str = "") -> str:
    counts = severity_counts(report.all_findings)
    out = ["## mcpwall scan --clients", "",
           f"{len(report.servers)} server(s) in {sum(1 for f in report.files if f.exists)} configuration file(s); "
           + ", ".join(f"{n} {s}" for s, n in counts.items() if n), "",
           "| Client | Server | Transport | Capabilities | Findings |", "|---|---|---|---|---|"]
    for entry in report.servers:
        caps = ", ".join(entry.capabilities) if entry.tools is not None else "not listed"
        worst = by_severity(entry.findings)
        summary = "; ".join(f"{f.severity}: {f.title}" for f in worst[:3]) or "none"
        out.append(f"| {_cell(entry.client)} | {_cell(entry.name)} | {entry.transport} | {caps} | {_cell(summary)} |")
    all_findings = by_severity(report.all_findings)
    if all_findings:
        out += ["", "### Findings", "", "| Severity | Finding | Where |", "|---|---|---|"]
        out += [f"| {f.severity} | {_cell(f.title)}: {_cell(f.detail)} | {_cell(short_path(f.location, home))} |"
                for f in all_findings]
    return "\n".join(out) + "\n"
