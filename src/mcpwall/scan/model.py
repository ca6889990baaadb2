"""The scanner's result types: check specs, check results, findings, grades and reports.

Plain dataclasses with no behaviour beyond small derived properties, so that the probing code,
the evaluators, the scoring and every report format share one vocabulary. Nothing here does
I/O. ``to_dict`` methods give the JSON shape that ``--format json`` prints and that the
admission gate keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pass", "fail", "na", "unknown"]
"""``na``: the check does not apply (it earns its points); ``unknown``: it could not be observed."""

Severity = Literal["critical", "high", "medium", "low", "info"]
Group = Literal["posture", "mcp"]

SEVERITY_ORDER: dict[str, int] = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One published check: what it looks at, what it is worth, and how to fix a failure."""

    id: str
    title: str
    weight: int
    group: Group
    rationale: str
    fix: str
    active_only: bool = False

    @property
    def severity(self) -> Severity:
        if self.weight >= 15:
            return "critical"
        if self.weight >= 8:
            return "high"
        if self.weight >= 5:
            return "medium"
        return "low"


@dataclass(slots=True)
class CheckResult:
    spec: CheckSpec
    status: Status
    summary: str
    evidence: list[str] = field(default_factory=list)

    @property
    def earned(self) -> int:
        return self.spec.weight if self.status in ("pass", "na") else 0

    @property
    def observed(self) -> bool:
        return self.status != "unknown"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.spec.id,
            "title": self.spec.title,
            "group": self.spec.group,
            "weight": self.spec.weight,
            "severity": self.spec.severity,
            "status": self.status,
            "earned": self.earned,
            "summary": self.summary,
            "evidence": list(self.evidence),
            "fix": self.spec.fix if self.status in ("fail", "unknown") else None,
        }


@dataclass(slots=True)
class Finding:
    """An observation that is not a scored check: a risky tool, a config smell, a note."""

    rule: str
    severity: Severity
    title: str
    detail: str
    fix: str = ""
    subject: str = ""  # the tool, server or file the finding is about
    location: str = ""  # a URL or file path, for SARIF
    evidence: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "title": self.title,
            "detail": self.detail,
            "fix": self.fix,
            "subject": self.subject,
            "location": self.location,
            "evidence": list(self.evidence),
        }


@dataclass(frozen=True, slots=True)
class Grade:
    score: int
    letter: str
    observed_weight: int = 100
    total_weight: int = 100

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "letter": self.letter, "observed_weight": self.observed_weight,
                "total_weight": self.total_weight}


@dataclass(slots=True)
class ScanReport:
    """Everything one ``mcpwall scan URL`` learned."""

    target: str
    scanner: str
    started_at: str
    duration_ms: float
    active: bool
    authenticated: bool
    reachable: bool
    posture: list[CheckResult]
    mcp: list[CheckResult]
    findings: list[Finding]
    grade: Grade
    mcp_grade: Grade | None
    requests: int
    era: str | None = None
    server_name: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def checks(self) -> list[CheckResult]:
        return [*self.posture, *self.mcp]

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "scanner": self.scanner,
            "started_at": self.started_at,
            "duration_ms": round(self.duration_ms, 1),
            "mode": "active" if self.active else "passive",
            "authenticated": self.authenticated,
            "reachable": self.reachable,
            "era": self.era,
            "server_name": self.server_name,
            "grade": self.grade.to_dict(),
            "mcp_grade": self.mcp_grade.to_dict() if self.mcp_grade else None,
            "posture": [r.to_dict() for r in self.posture],
            "mcp": [r.to_dict() for r in self.mcp],
            "findings": [f.to_dict() for f in self.findings],
            "tools": [{"name": t.get("name"), "capabilities": t.get("capabilities", [])} for t in self.tools],
            "requests": self.requests,
            "notes": list(self.notes),
        }
