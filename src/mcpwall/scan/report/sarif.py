"""SARIF 2.1.0 output, so scan results land in code-scanning dashboards.

One run per report. Rules are the checks (with their weight, rationale and fix) and the finding
rules that occurred; results are failed or unobservable checks and every finding. URL scans
locate results at the scanned URL; client scans at the configuration file and line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mcpwall import __version__
from mcpwall.scan.clients.model import ClientsReport
from mcpwall.scan.model import CheckSpec, Finding, ScanReport
from mcpwall.scan.report.common import SARIF_LEVEL, SECURITY_SEVERITY

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _rule_name(rule_id: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", rule_id) if part)


def _check_rule(spec: CheckSpec) -> dict[str, Any]:
    return {
        "id": spec.id,
        "name": _rule_name(spec.id),
        "shortDescription": {"text": spec.title},
        "fullDescription": {"text": spec.rationale},
        "help": {"text": spec.fix, "markdown": f"**Fix:** {spec.fix}"},
        "defaultConfiguration": {"level": SARIF_LEVEL[spec.severity]},
        "properties": {"tags": ["security", "mcp", "posture" if spec.group == "posture" else "protocol"],
                       "weight": spec.weight,
                       "security-severity": SECURITY_SEVERITY[spec.severity]},
    }


def _finding_rule(finding: Finding) -> dict[str, Any]:
    return {
        "id": finding.rule,
        "name": _rule_name(finding.rule),
        "shortDescription": {"text": finding.title},
        "help": {"text": finding.fix or finding.title},
        "defaultConfiguration": {"level": SARIF_LEVEL[finding.severity]},
        "properties": {"tags": ["security", "mcp"], "security-severity": SECURITY_SEVERITY[finding.severity]},
    }


def _driver(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "mcpwall-scan", "semanticVersion": __version__, "version": __version__, "rules": rules}


def _log(run: dict[str, Any]) -> dict[str, Any]:
    return {"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}


def scan(report: ScanReport) -> dict[str, Any]:
    rules: list[dict[str, Any]] = [_check_rule(r.spec) for r in report.checks]
    index = {rule["id"]: i for i, rule in enumerate(rules)}
    for finding in report.findings:
        if finding.rule not in index:
            index[finding.rule] = len(rules)
            rules.append(_finding_rule(finding))
    location = [{"physicalLocation": {"artifactLocation": {"uri": report.target}}}]
    results: list[dict[str, Any]] = []
    for result in report.checks:
        if result.status not in ("fail", "unknown"):
            continue
        unknown = result.status == "unknown"
        text = f"{result.spec.title}: {result.summary}" + (" (could not be verified)" if unknown else "")
        results.append({
            "ruleId": result.spec.id, "ruleIndex": index[result.spec.id],
            "level": "note" if unknown else SARIF_LEVEL[result.spec.severity],
            "message": {"text": text}, "locations": location,
            "properties": {"status": result.status, "evidence": result.evidence, "weight": result.spec.weight},
        })
    for finding in report.findings:
        results.append({
            "ruleId": finding.rule, "ruleIndex": index[finding.rule], "level": SARIF_LEVEL[finding.severity],
            "message": {"text": f"{finding.title}: {finding.detail}"}, "locations": location,
            "properties": {"subject": finding.subject},
        })
    run = {
        "tool": {"driver": _driver(rules)},
        "invocations": [{"executionSuccessful": report.reachable}],
        "results": results,
        "properties": {"target": report.target, "grade": report.grade.letter, "score": report.grade.score,
                       "mcpGrade": report.mcp_grade.letter if report.mcp_grade else None,
                       "mcpScore": report.mcp_grade.score if report.mcp_grade else None},
    }
    return _log(run)


def _file_uri(path: str) -> str:
    try:
        return Path(path).resolve().as_uri()
    except ValueError:
        return path


def clients(report: ClientsReport) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    results: list[dict[str, Any]] = []
    lines = {(e.config_path, e.label): e.line for e in report.servers}
    entries = [(f, e) for e in report.servers for f in e.findings] + [(f, None) for f in report.findings]
    for finding, entry in entries:
        if finding.rule not in index:
            index[finding.rule] = len(rules)
            rules.append(_finding_rule(finding))
        location: dict[str, Any] = {}
        if finding.location:
            physical: dict[str, Any] = {"artifactLocation": {"uri": _file_uri(finding.location)}}
            line = entry.line if entry is not None else lines.get((finding.location, finding.subject))
            if line:
                physical["region"] = {"startLine": line}
            location["physicalLocation"] = physical
        if entry is not None:
            location["logicalLocations"] = [{"name": entry.name, "kind": "object",
                                             "fullyQualifiedName": f"{entry.client}/{entry.name}"}]
        result: dict[str, Any] = {
            "ruleId": finding.rule, "ruleIndex": index[finding.rule], "level": SARIF_LEVEL[finding.severity],
            "message": {"text": f"{finding.title}: {finding.detail}"},
            "properties": {"subject": finding.subject, "severity": finding.severity},
        }
        if location:
            result["locations"] = [location]
        results.append(result)
    run = {
        "tool": {"driver": _driver(rules)},
        "invocations": [{"executionSuccessful": True}],
        "results": results,
        "properties": {"servers": len(report.servers), "connected": report.connected},
    }
    return _log(run)
