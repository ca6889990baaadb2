"""Small helpers the report formats share: counts, orderings, path shortening."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from mcpwall.scan.model import SEVERITY_ORDER, CheckResult, Finding

SEVERITIES = ("critical", "high", "medium", "low", "info")
SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
# GitHub code scanning reads a 0-10 "security-severity" property to rank results.
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "1.0"}


def severity_counts(findings: Iterable[Finding]) -> dict[str, int]:
    counts: Counter[str] = Counter(str(f.severity) for f in findings)
    return {s: counts.get(s, 0) for s in SEVERITIES}


def by_severity(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.rule, f.subject))


def failed(results: Iterable[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.status in ("fail", "unknown")]


def short_path(path: str, home: str) -> str:
    if home and (path == home or path.startswith(home.rstrip("/\\") + ("/" if "/" in path else "\\"))):
        return "~" + path[len(home.rstrip("/\\")):]
    return path


def status_symbol(status: str) -> str:
    return {"pass": "✔", "fail": "✘", "na": "\u2013", "unknown": "?"}[status]
