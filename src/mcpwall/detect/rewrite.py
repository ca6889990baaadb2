"""Edits to strings at finding spans: redact, wrap or replace, without breaking the JSON.

Every edit works on one string value at a time and returns a new string, so the message keeps
its shape and types; :func:`mcpwall.detect.walker.replace_at` puts the new strings back.
Overlapping spans are merged first, so an edit never cuts another one in half.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from mcpwall.detect.scanner import Finding, Scan
from mcpwall.detect.walker import Path, replace_at

Edit = Callable[[str, list[Finding]], str]


def merged(findings: Iterable[Finding], gap: int = 0, text: str = "") -> list[tuple[int, int, list[Finding]]]:
    """Spans of ``findings`` with overlaps merged, each with the findings it covers.

    With ``gap``, spans separated by at most that many characters of one line of ``text`` are
    merged too, so one suspicious sentence gets one edit rather than several."""
    out: list[tuple[int, int, list[Finding]]] = []
    for f in sorted(findings, key=lambda f: (f.start, -f.end)):
        if out and (f.start < out[-1][1] or (
                f.start - out[-1][1] <= gap and "\n" not in text[out[-1][1]:f.start])):
            start, end, group = out[-1]
            out[-1] = (start, max(end, f.end), [*group, f])
        else:
            out.append((f.start, f.end, [f]))
    return out


def edit_string(text: str, findings: Iterable[Finding], edit: Edit, gap: int = 0) -> str:
    pieces: list[str] = []
    cursor = 0
    for start, end, group in merged(findings, gap, text):
        pieces.append(text[cursor:start])
        pieces.append(edit(text[start:end], group))
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def apply(message: Any, scan: Scan, findings: Iterable[Finding], edit: Edit) -> Any:
    """``message`` with every string that holds one of ``findings`` edited."""
    by_path: dict[Path, list[Finding]] = {}
    for f in findings:
        by_path.setdefault(f.path, []).append(f)
    replacements = {path: edit_string(scan.strings[path], group, edit) for path, group in by_path.items()}
    return replace_at(message, replacements)


def redaction(_text: str, group: list[Finding]) -> str:
    best = max(group, key=lambda f: (f.severity, not f.generic, f.end - f.start))
    return f"[REDACTED:{best.rule.partition('.')[2]}]"
