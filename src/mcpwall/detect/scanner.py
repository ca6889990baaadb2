"""From engine matches to findings: paths, original offsets, hidden text, safe excerpts.

A :class:`Scanner` pairs an engine with what one kind of scan needs to report: which hidden-text
kinds matter (and how much), and whether credential-named JSON fields count as secrets. It
walks a message (or, for one with many strings, picks out the few that can match from its
serialised bytes: :mod:`mcpwall.detect.locate`), runs the engine once over those strings, maps
every match back to the original characters, drops generic findings that a specific rule
already explains, and writes an excerpt for each finding. Excerpts of secrets and personal data
show the surrounding text with the value replaced by ``[REDACTED:<rule>]`` — the value itself
never leaves this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from mcpwall.detect import locate
from mcpwall.detect import normalize as hidden_kinds
from mcpwall.detect.engine import SENSITIVE_FIELD_WORDS, Engine
from mcpwall.detect.rules import Severity
from mcpwall.detect.validators import placeholder, secret_value
from mcpwall.detect.walker import Collected, Path, render_path

SENSITIVE = frozenset({"secret", "pii"})
# Messages with more strings than this are scanned serialised (see Scanner.scan). Walking costs
# a fraction of a microsecond per string, and the engine scans long strings faster than the JSON
# prefilter scans their escaped form, so fewer strings are cheaper to scan directly.
MANY_STRINGS = 1024
EXCERPT_CONTEXT = 24
EXCERPT_LIMIT = 160

HIDDEN_DEFAULTS: dict[str, Severity] = {
    hidden_kinds.TAG: Severity.HIGH,
    hidden_kinds.VARIATION: Severity.HIGH,
    hidden_kinds.BIDI: Severity.MEDIUM,
    hidden_kinds.ZERO_WIDTH: Severity.MEDIUM,
    hidden_kinds.ANSI: Severity.MEDIUM,
    hidden_kinds.CONTROL: Severity.LOW,
    hidden_kinds.SURROGATE: Severity.LOW,
    hidden_kinds.MIXED_SCRIPT: Severity.LOW,
}
_HIDDEN_TITLES = {
    hidden_kinds.TAG: "Invisible Unicode tag characters (hidden text)",
    hidden_kinds.VARIATION: "Runs of variation selectors (hidden payload)",
    hidden_kinds.BIDI: "Bidirectional control characters",
    hidden_kinds.ZERO_WIDTH: "Zero-width characters",
    hidden_kinds.ANSI: "ANSI terminal escape sequences",
    hidden_kinds.CONTROL: "Control characters",
    hidden_kinds.SURROGATE: "Invalid Unicode (lone surrogates)",
    hidden_kinds.MIXED_SCRIPT: "Look-alike letters from another script inside a word",
}

# JSON field names whose string values are credentials by definition.
_SENSITIVE_FIELD = re.compile("(?:" + "|".join(SENSITIVE_FIELD_WORDS) + ")$", re.IGNORECASE)
_NOT_SENSITIVE_FIELD = re.compile(r"page|cursor|next|continuation|sync|etag|type|name|url|uri|path|id$|_id|count|"
                                  r"expir|length|format|prefix|hint|field|header|usage|limit", re.IGNORECASE)
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a scan found. Safe to log: ``excerpt`` never holds a secret or personal value."""

    rule: str
    category: str
    severity: Severity
    title: str
    location: str  # JSONPath of the string
    start: int  # span in the original string
    end: int
    excerpt: str
    path: Path = ()
    generic: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "category": self.category, "severity": self.severity.label,
                "title": self.title, "location": self.location, "span": [self.start, self.end],
                "excerpt": self.excerpt}


@dataclass(slots=True)
class Scan:
    findings: list[Finding]
    strings: dict[Path, str] = field(default_factory=dict)  # originals of the strings with findings
    truncated: bool = False

    def by_path(self) -> dict[Path, list[Finding]]:
        grouped: dict[Path, list[Finding]] = {}
        for finding in self.findings:
            grouped.setdefault(finding.path, []).append(finding)
        return grouped

    def at_least(self, severity: Severity) -> list[Finding]:
        return [f for f in self.findings if f.severity >= severity]


class Scanner:
    def __init__(self, engine: Engine, *, hidden: Mapping[str, Severity] | None = None,
                 sensitive_fields: bool = False, json_prefilter: bool = True, many_strings: int = MANY_STRINGS) -> None:
        self.engine = engine
        self.hidden = dict(hidden) if hidden is not None else {}
        self.sensitive_fields = sensitive_fields
        self.json_prefilter = json_prefilter
        self.many_strings = many_strings

    def scan(self, value: Any, root: Path = ()) -> Scan:
        if self.json_prefilter and self.engine.backend == "hyperscan" and _has_many_strings(value, self.many_strings):
            scan = self._scan_serialised(value, root)
            if scan is not None:
                return scan
        collected = Collected(value, root)
        return self._scan(collected.strings, collected.path, collected.key)

    def _scan_serialised(self, value: Any, root: Path) -> Scan | None:
        """Scan only the strings the serialised message says can match; None: walk it instead.

        Walking tens of thousands of small strings in Python is the expensive part of scanning
        a structured result; the serialised bytes are checked at C speed and only the few
        suspect strings are scanned (see :mod:`mcpwall.detect.locate`). Per-string results do
        not depend on the other strings, so the findings are the walk's findings."""
        try:
            data = orjson.dumps(value)
        except (TypeError, orjson.JSONEncodeError):
            return None  # not plain JSON (or lone surrogates): the walk copes
        found = locate.suspect_strings(self.engine, value, data, keys=self.sensitive_fields)
        if found is None:
            return None
        if not found:
            return Scan([])
        paths = [root + path for path, _ in found]
        scan = self._scan([text for _, text in found], paths.__getitem__, lambda i: paths[i][-1] if paths[i] else None)
        # Which matches a capped scan keeps depends on every string scanned: only the walk decides.
        return None if scan.truncated else scan

    def scan_text(self, text: str, root: Path = ()) -> Scan:
        return self._scan([text], lambda _i: root, lambda _i: root[-1] if root else None)

    def _scan(self, strings: list[str], path_of: Any, key_of: Any) -> Scan:
        result = self.engine.scan(strings)
        paths: dict[int, Path] = {}

        def path(index: int) -> Path:
            if index not in paths:
                paths[index] = path_of(index)
            return paths[index]

        raw: list[Finding] = []
        for match in result.matches:
            changed = result.changed.get(match.index)
            start, end = (match.start, match.end) if changed is None else changed.to_original(match.start, match.end)
            rule = match.rule
            raw.append(Finding(rule.id, rule.category, rule.severity, rule.title, "", start, end, "",
                               path(match.index), rule.generic))
        if self.hidden:
            for index, normalized in sorted(result.changed.items()):
                for kind, (count, first) in normalized.hidden.items():
                    severity = self.hidden.get(kind)
                    if severity is None:
                        continue
                    note = f"{count} {kind}"
                    if kind == hidden_kinds.TAG and normalized.revealed:
                        note += f"; hidden text: {_clip(normalized.revealed, 80)!r}"
                    raw.append(Finding(f"hidden.{kind}", "hidden", severity, _HIDDEN_TITLES[kind], "", first,
                                       first + 1, note, path(index)))
        if self.sensitive_fields:
            raw.extend(self._sensitive_fields(strings, path, key_of))
        findings = _finish(_drop_shadowed(raw), strings, paths)
        return Scan(findings, {paths[i]: strings[i] for i in paths if any(f.path == paths[i] for f in findings)},
                    result.truncated)

    def _sensitive_fields(self, strings: list[str], path: Any, key_of: Any) -> Iterable[Finding]:
        verdicts: dict[str, bool] = {}  # field name -> sensitive, decided once per name
        for index, value in enumerate(strings):
            key = key_of(index)
            if not isinstance(key, str):
                continue
            sensitive = verdicts.get(key)
            if sensitive is None:
                sensitive = verdicts[key] = bool(_SENSITIVE_FIELD.search(key)) and not _NOT_SENSITIVE_FIELD.search(key)
            if sensitive and 8 <= len(value) <= 4096 and " " not in value and secret_value(value) \
                    and not placeholder(value):
                yield Finding("secret.sensitive-field", "secret", Severity.MEDIUM,
                              "Credential in a field named like one", "", 0, len(value), "", path(index), True)


def _has_many_strings(value: Any, limit: int) -> bool:
    """Does ``value`` hold more than ``limit`` strings? Stops counting as soon as it knows."""
    count = 0
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            count += 1
            if count > limit:
                return True
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _drop_shadowed(findings: list[Finding]) -> list[Finding]:
    """Generic findings that overlap a specific finding on the same string add nothing."""
    specific: dict[Path, list[tuple[int, int]]] = {}
    for f in findings:
        if not f.generic and f.category in SENSITIVE:
            specific.setdefault(f.path, []).append((f.start, f.end))
    if not specific:
        return findings
    return [f for f in findings
            if not (f.generic and any(s < f.end and f.start < e for s, e in specific.get(f.path, ())))]


def _finish(findings: list[Finding], strings: list[str], paths: dict[int, Path]) -> list[Finding]:
    """Fill in locations and excerpts, in document order."""
    text_of = {p: strings[i] for i, p in paths.items()}
    sensitive_spans: dict[Path, list[tuple[int, int, str]]] = {}
    for f in findings:
        if f.category in SENSITIVE:
            sensitive_spans.setdefault(f.path, []).append((f.start, f.end, f.rule.partition(".")[2]))
    out: list[Finding] = []
    for f in findings:
        text = text_of[f.path]
        if f.category == "hidden":
            excerpt = f.excerpt
        elif f.category in SENSITIVE:
            excerpt = _sensitive_excerpt(text, f, sensitive_spans[f.path])
        else:
            excerpt = _clip(_masked(text[f.start:f.end], f.start, sensitive_spans.get(f.path, ())), EXCERPT_LIMIT)
        out.append(Finding(f.rule, f.category, f.severity, f.title, render_path(f.path), f.start, f.end, excerpt,
                           f.path, f.generic))
    order = {p: i for i, p in paths.items()}
    out.sort(key=lambda f: (order.get(f.path, 0), f.start, f.rule))
    return out


def _sensitive_excerpt(text: str, finding: Finding, spans: list[tuple[int, int, str]]) -> str:
    label = finding.rule.partition(".")[2]
    before = _masked(text[max(0, finding.start - EXCERPT_CONTEXT):finding.start],
                     max(0, finding.start - EXCERPT_CONTEXT), spans)
    after = _masked(text[finding.end:finding.end + EXCERPT_CONTEXT], finding.end, spans)
    lead = "…" if finding.start > EXCERPT_CONTEXT else ""
    tail = "…" if finding.end + EXCERPT_CONTEXT < len(text) else ""
    return f"{lead}{_printable(before)}[REDACTED:{label}]{_printable(after)}{tail}"


def _masked(fragment: str, offset: int, spans: Iterable[tuple[int, int, str]]) -> str:
    """``fragment`` (starting at ``offset`` of its string) with every sensitive span masked."""
    pieces: list[str] = []
    cursor = 0
    for start, end, label in sorted(spans):
        s, e = max(start - offset, cursor), min(end - offset, len(fragment))
        if e <= s:
            continue
        pieces.append(fragment[cursor:s])
        pieces.append(f"[REDACTED:{label}]")
        cursor = e
    pieces.append(fragment[cursor:])
    return "".join(pieces)


def _printable(text: str) -> str:
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _clip(text: str, limit: int) -> str:
    text = _printable(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
