"""``python -m bench.detect``: detection quality and scanning throughput of mcpwall's scanners.

Quality is measured on two sources:

* the shared labelled corpus (``../shared/corpora/dev.jsonl``), read in place when present and
  skipped with a note when not. Rows are split by a hash of their id into a tuning part (70 %)
  and a held-out part (30 %); rules were tuned looking at the tuning part only, and both are
  reported so overfitting would show;
* the project's own cases in ``tests/detect/cases/`` (hand-written benign and attack texts),
  plus the rule packs' own examples as a sanity row.

A text counts as detected when the scanner reports a finding at or above the severity the guard
acts on by default (``medium``; personal data, which the DLP guard records from ``low``, is
scored at ``low`` and span by span per entity type). Throughput is the time to scan a 1 MiB
tool result — one large text item, and a structured result of many small strings — with each
engine, single-threaded.

``--update-docs`` rewrites the generated part of ``docs/detection.md``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcpwall.detect.engine import Engine, hyperscan_available
from mcpwall.detect.rules import Severity, load_pack
from mcpwall.detect.samples import examples
from mcpwall.detect.scanner import HIDDEN_DEFAULTS, Scanner

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpora" / "dev.jsonl"
CASES = ROOT / "tests" / "detect" / "cases"
DOC = ROOT / "docs" / "detection.md"
START, END = "<!-- detection-results:start -->", "<!-- detection-results:end -->"
PII_TYPES = {"CREDIT_CARD": "pii.credit-card", "IBAN_CODE": "pii.iban", "US_SSN": "pii.us-ssn",
             "EMAIL_ADDRESS": "pii.email", "PHONE_NUMBER": "pii.phone", "IP_ADDRESS": "pii.ip"}


@dataclass
class Tally:
    tp: int = 0
    fn: int = 0
    fp: int = 0
    tn: int = 0
    spans: bool = False  # span-level scoring: no negatives to count, so no false-positive rate

    def add(self, attack: bool, detected: bool) -> None:
        if attack:
            self.tp += detected
            self.fn += not detected
        else:
            self.fp += detected
            self.tn += not detected

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def fpr(self) -> float | None:
        if self.spans:
            return None
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else None


@dataclass
class Report:
    rows: list[tuple[str, str, Tally]] = field(default_factory=list)  # (detector, group, tally)
    notes: list[str] = field(default_factory=list)
    throughput: list[tuple[str, str, str, float]] = field(default_factory=list)  # scanner, payload, engine, MB/s
    rule_hits: dict[str, Counter[str]] = field(default_factory=dict)


def held_out(row_id: str) -> bool:
    return int(hashlib.sha1(row_id.encode()).hexdigest(), 16) % 10 < 3


def scanners(backend: str = "auto") -> dict[str, Scanner]:
    def engine(*packs: str) -> Engine:
        return Engine([rule for pack in packs for rule in load_pack(pack)], backend)  # type: ignore[arg-type]
    dlp_default = [r for p in ("secrets", "pii") for r in load_pack(p) if r.severity >= Severity.MEDIUM]
    return {
        "dlp (default rules)": Scanner(Engine(dlp_default, backend), sensitive_fields=True),  # type: ignore[arg-type]
        "secrets": Scanner(engine("secrets"), sensitive_fields=True),
        "pii": Scanner(engine("pii")),
        "poisoning": Scanner(engine("poisoning"), hidden=HIDDEN_DEFAULTS),
        "injection": Scanner(engine("injection"), hidden=HIDDEN_DEFAULTS),
    }


def detected(scanner: Scanner, text: str, floor: Severity, hits: Counter[str] | None = None) -> bool:
    findings = [f for f in scanner.scan_text(text).findings if f.severity >= floor]
    if hits is not None:
        hits.update(f.rule for f in findings)
    return bool(findings)


# -- corpus -------------------------------------------------------------------------------------

KIND_DETECTOR = {"description": "poisoning", "benign_description": "poisoning",
                 "result": "injection", "benign_result": "injection", "secret": "secrets"}


def family(row: dict[str, Any]) -> str:
    category = str(row["category"])
    head = category.split(":")[0]
    if head in ("bipia_text", "bipia_code", "injecagent_dh") and ":" in category:
        return f"{head}:{category.split(':')[1]}" if head != "injecagent_dh" else head
    return head


def corpus_quality(report: Report, scan: dict[str, Scanner]) -> None:
    if not CORPUS.exists():
        report.notes.append(f"corpus not found at {CORPUS}; corpus rows skipped")
        return
    rows = [json.loads(line) for line in CORPUS.read_text("utf-8").splitlines() if line.strip()]
    per: dict[tuple[str, str], Tally] = defaultdict(Tally)
    for row in rows:
        detector = KIND_DETECTOR.get(row["kind"])
        if detector is None:
            continue
        split = "held-out" if held_out(row["id"]) else "tuning"
        attack = row["label"] == "attack"
        hits = report.rule_hits.setdefault(detector, Counter()) if attack else None
        found = detected(scan[detector], row["text"], Severity.MEDIUM, hits)
        for group in (f"corpus {split}", f"corpus {split}: {family(row)}"):
            per[(detector, group)].add(attack, found)
        per[(detector, "corpus all")].add(attack, found)
        if not attack and detector != "secrets":
            # The DLP scanner must stay quiet on ordinary descriptions and results too.
            per[("secrets", "corpus all: benign descriptions and results")].add(
                False, detected(scan["secrets"], row["text"], Severity.MEDIUM))
    for (detector, group), tally in sorted(per.items()):
        report.rows.append((detector, group, tally))
    pii_quality(report, scan["pii"], [r for r in rows if r["kind"] == "pii"])


def pii_quality(report: Report, scanner: Scanner, rows: list[dict[str, Any]]) -> None:
    """Span-level scores per entity type: a gold span is found when a finding of the matching
    rule overlaps it; a finding of a scored rule that overlaps no gold span is a false positive."""
    per: dict[str, Tally] = defaultdict(lambda: Tally(spans=True))
    benign = Tally()
    for row in rows:
        findings = [f for f in scanner.scan_text(row["text"]).findings if f.severity >= Severity.INFO]
        found = [(_pii_rule(f.rule), f.start, f.end) for f in findings]
        gold = [(PII_TYPES[t], s, e) for t, s, e in row.get("spans", []) if t in PII_TYPES]
        for rule, start, end in gold:
            per[rule].add(True, any(r == rule and s < end and start < e for r, s, e in found))
        for rule, start, end in found:
            if rule in PII_TYPES.values() and not any(r == rule and s < end and start < e for r, s, e in gold):
                per[rule].fp += 1
        if row["label"] == "benign":
            benign.add(False, bool(findings))
    for rule, tally in sorted(per.items()):
        report.rows.append(("pii", f"corpus presidio spans: {rule}", tally))
    report.rows.append(("pii", "corpus presidio texts without entities", benign))


def _pii_rule(rule: str) -> str:
    return {"pii.ipv4": "pii.ip", "pii.ipv6": "pii.ip", "pii.us-ssn-unformatted": "pii.us-ssn"}.get(rule, rule)


# -- the project's own cases ----------------------------------------------------------------------

def case_lines(name: str) -> list[str]:
    path = CASES / name
    return [line.rstrip("\n").replace("\\n", "\n") for line in path.read_text("utf-8").splitlines() if line.strip()]


def own_quality(report: Report, scan: dict[str, Scanner]) -> None:
    sets: list[tuple[str, str, bool]] = [
        ("poisoning", "attack_descriptions.txt", True), ("poisoning", "benign_descriptions.txt", False),
        ("injection", "attack_results.txt", True), ("injection", "benign_results.txt", False),
        ("secrets", "benign_secrets.txt", False), ("secrets", "benign_descriptions.txt", False),
        ("secrets", "benign_results.txt", False),
    ]
    for detector, name, attack in sets:
        tally = Tally()
        for text in case_lines(name):
            tally.add(attack, detected(scan[detector], text, Severity.MEDIUM))
        report.rows.append((detector, f"own cases: {name.removesuffix('.txt')}", tally))
    for detector in ("secrets", "pii"):
        tally = Tally()
        for rule in load_pack(detector):
            for template in rule.examples:
                for text in examples(template, 3, seed=1):
                    tally.add(True, any(f.rule == rule.id for f in scan[detector].scan_text(text).findings))
        report.rows.append((detector, "rule examples (self-check)", tally))


# -- throughput -----------------------------------------------------------------------------------

def payloads() -> dict[str, Any]:
    """1 MiB tool results: one text item (with an email and a token in it), and structured content
    of some 40 000 small strings, clean and with one token."""
    words = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "the", "build",
             "server", "reports", "status", "ok", "for", "job", "4821", "at", "2024-05-01T12:00:03Z", "and", "the",
             "cache", "hit", "ratio", "stays", "at", "97", "percent"]
    lines = []
    size = 0
    i = 0
    while size < 1 << 20:
        line = " ".join(words[(i + j) % len(words)] for j in range(12)) + f" request_id={i:08d}\n"
        lines.append(line)
        size += len(line)
        i += 1
    text = "".join(lines)[: 1 << 20]
    # A few realistic findings, as a scanned result would have.
    text = text[:1000] + " contact jane.doe@example.org " + text[1000:]
    text = text[: len(text) // 2] + " key ghp_" + "k7Qd9Lr2Xv8Zp1Nc4Ty6Mb3Hs5Wf0Ja2Ge9U " + text[len(text) // 2:]
    text_result = {"content": [{"type": "text", "text": text[: 1 << 20]}]}
    rows = []
    size = 0
    i = 0
    while size < 1 << 20:
        row = {"id": i, "name": f"item-{i}", "status": "active" if i % 3 else "paused",
               "note": " ".join(words[(i + j) % len(words)] for j in range(5)), "owner": f"team-{i % 17}"}
        rows.append(row)
        size += len(json.dumps(row))
        i += 1
    dirty = [dict(row) for row in rows]
    dirty[len(dirty) // 2]["note"] = "rotate ghp_" + "k7Qd9Lr2Xv8Zp1Nc4Ty6Mb3Hs5Wf0Ja2Ge9U today"
    return {"1 MiB text": text_result,
            "1 MiB structured, clean": {"content": [], "structuredContent": {"rows": rows}},
            "1 MiB structured, one secret": {"content": [], "structuredContent": {"rows": dirty}}}


def measure(fn: Callable[[], Any], payload_bytes: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return payload_bytes / statistics.median(times) / 1e6


def throughput(report: Report, quick: bool) -> None:
    data = payloads()
    sizes = {name: len(json.dumps(value).encode()) for name, value in data.items()}
    backends = ["hyperscan", "re"] if hyperscan_available() else ["re"]
    if not hyperscan_available():
        report.notes.append("hyperscan is not installed: only the pure-Python engine was measured")
    for backend in backends:
        built = scanners(backend)
        built["every rule (incl. opt-in PII)"] = Scanner(Engine([r for p in ("secrets", "pii", "poisoning", "injection")
                                             for r in load_pack(p)], backend), hidden=HIDDEN_DEFAULTS)  # type: ignore[arg-type]
        repeat = (3 if quick else 7) if backend == "hyperscan" else 1
        for name, scanner in built.items():
            if backend == "re" and not name.startswith("every") and quick:
                continue
            for payload, value in data.items():
                mbs = measure(functools.partial(scanner.scan, value), sizes[payload], repeat)
                report.throughput.append((name, payload, backend, mbs))


# -- output ---------------------------------------------------------------------------------------

def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def render(report: Report) -> str:
    out = ["### Detection quality", "",
           "| detector | data | n attack | n benign | recall | precision | false-positive rate |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for detector, group, t in report.rows:
        benign = "-" if t.spans else str(t.fp + t.tn)
        out.append(f"| {detector} | {group} | {t.tp + t.fn} | {benign} | {pct(t.recall)} | "
                   f"{pct(t.precision)} | {pct(t.fpr)} |")
    if report.rule_hits:
        out += ["", "Rules that fired most on corpus attacks (texts can trigger several):", ""]
        for detector, hits in sorted(report.rule_hits.items()):
            top = ", ".join(f"`{rule}` {n}" for rule, n in hits.most_common(6))
            out.append(f"* {detector}: {top}")
    if report.throughput:
        out += ["", "### Throughput (single thread, median of runs)", "",
                "| scanner | payload | engine | MB/s |", "|---|---|---|---:|"]
        for name, payload, backend, mbs in report.throughput:
            out.append(f"| {name} | {payload} | {backend} | {mbs:,.1f} |")
    for note in report.notes:
        out += ["", f"Note: {note}"]
    return "\n".join(out) + "\n"


def update_docs(text: str) -> None:
    doc = DOC.read_text("utf-8")
    if START not in doc or END not in doc:
        raise SystemExit(f"{DOC} has no {START} ... {END} section")
    head, _, rest = doc.partition(START)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{START}\n{text}{END}{tail}", "utf-8")


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detect", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer throughput runs; skip slow fallback rows")
    parser.add_argument("--no-throughput", action="store_true", help="quality only")
    parser.add_argument("--json", type=Path, help="also write the numbers as JSON here")
    parser.add_argument("--update-docs", action="store_true", help="rewrite the results section of docs/detection.md")
    args = parser.parse_args(list(argv) if argv is not None else None)
    report = Report()
    scan = scanners()
    corpus_quality(report, scan)
    own_quality(report, scan)
    if not args.no_throughput:
        throughput(report, args.quick)
    text = render(report)
    sys.stdout.write(text)
    if args.json:
        args.json.write_text(json.dumps({
            "quality": [{"detector": d, "data": g, "tp": t.tp, "fn": t.fn, "fp": t.fp, "tn": t.tn}
                        for d, g, t in report.rows],
            "throughput": [{"scanner": s, "payload": p, "engine": e, "mb_per_s": m}
                           for s, p, e, m in report.throughput],
            "notes": report.notes}, indent=2))
    if args.update_docs:
        update_docs(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
