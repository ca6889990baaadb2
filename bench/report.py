"""Turns measurements into the outputs: ratios, the bar, a text table, Markdown, JSON, a chart.

Ratios are computed only between configurations measured in the same group of the same run
(same upstream, same response mode, interleaved): throughput against the group's baseline
(``direct``, or ``mcpwall`` for the per-guard group) and against FastMCP; added latency as
the difference of medians of p50 and p99.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench import stats

MiB = 2**20


def add_ratios(group: dict[str, Any]) -> None:
    by_scenario: dict[str, dict[str, dict[str, Any]]] = {}
    for rec in group["records"]:
        by_scenario.setdefault(rec["scenario"], {})[rec["config"]] = rec
    for recs in by_scenario.values():
        base = recs.get(group["baseline"])
        fast = recs.get("fastmcp")
        for rec in recs.values():
            rec["x_base"] = stats.ratio(rec.get("rps"), base.get("rps")) if base else None
            rec["x_fastmcp"] = stats.ratio(rec.get("rps"), fast.get("rps")) if fast else None
            rec["added_p50"] = stats.delta(rec.get("p50"), base.get("p50")) if base else None
            rec["added_p99"] = stats.delta(rec.get("p99"), base.get("p99")) if base else None


def _find(results: dict[str, Any], group: str, scenario: str, config: str) -> dict[str, Any] | None:
    for g in results.get("groups", []):
        if g["name"] != group:
            continue
        for rec in g["records"]:
            if rec["scenario"] == scenario and rec["config"] == config:
                found: dict[str, Any] = rec
                return found
    return None


def _verdict(value: float | None, limit: float, higher_is_better: bool) -> str:
    if value is None:
        return "not measured"
    ok = value >= limit if higher_is_better else value <= limit
    return "meets" if ok else "misses"


def bar(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Where the project stands against each goal of the performance budget."""
    rows: list[dict[str, Any]] = []
    for config in ("mcpwall", "default"):
        for era in ("modern", "legacy"):
            rec = _find(results, "core", f"{era}/small/c1", config)
            for key, limit in (("added_p50", 1.0), ("added_p99", 5.0)):
                value = rec.get(key) if rec else None
                rows.append({"goal": f"added {key[-3:]} at c=1, {era}, {config}", "limit": f"≤ {limit:g} ms",
                             "value": None if value is None else round(value, 3), "unit": "ms",
                             "status": _verdict(value, limit, higher_is_better=False)})
    for config in ("mcpwall", "default"):
        for era in ("modern", "legacy"):
            rec = _find(results, "core", f"{era}/small/c64", config)
            xb = rec.get("x_base") if rec else None
            xf = rec.get("x_fastmcp") if rec else None
            rows.append({"goal": f"throughput at c=64 vs direct, {era}, {config}", "limit": "≥ 0.50x",
                         "value": None if xb is None else round(xb, 3), "unit": "x",
                         "status": _verdict(xb, 0.5, higher_is_better=True)})
            rows.append({"goal": f"throughput at c=64 vs FastMCP, {era}, {config}", "limit": "≥ 3x",
                         "value": None if xf is None else round(xf, 2), "unit": "x",
                         "status": _verdict(xf, 3.0, higher_is_better=True)})
    scan_value = results.get("extras", {}).get("scan_mb_s")
    rows.append({"goal": "content scanning of 1 MiB results, per core (slower of dlp, injection)",
                 "limit": "≥ 200 MB/s", "value": scan_value, "unit": "MB/s",
                 "status": _verdict(scan_value, 200.0, True)})
    sess = results.get("extras", {}).get("sessions", {}).get("mcpwall", {})
    per = sess.get("bytes_per_session")
    rows.append({"goal": "RSS per idle legacy session (1,000 sessions)", "limit": "≤ 64 KiB",
                 "value": None if per is None else round(per / 1024, 1), "unit": "KiB",
                 "status": _verdict(None if per is None else per / 1024, 64.0, False)})
    idle = sess.get("idle_rss")
    rows.append({"goal": "gateway idle RSS", "limit": "≤ 80 MiB",
                 "value": None if idle is None else round(idle / MiB, 1), "unit": "MiB",
                 "status": _verdict(None if idle is None else idle / MiB, 80.0, False)})
    ready = results.get("extras", {}).get("startup", {}).get("mcpwall", {}).get("median_s")
    rows.append({"goal": "mcpwall serve ready (upstream already up)", "limit": "≤ 1 s",
                 "value": None if ready is None else round(ready, 3), "unit": "s",
                 "status": _verdict(ready, 1.0, False)})
    return rows


# --- text ------------------------------------------------------------------------------------------


def _f(value: float | None, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


COLUMNS = ["scenario", "configuration", "calls/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors",
           "CPU µs/call", "peak RSS MiB", "x base", "x FastMCP", "+p50 ms", "+p99 ms"]


def group_rows(group: dict[str, Any]) -> list[list[str]]:
    rows = []
    for rec in group["records"]:
        rows.append([rec["scenario"], rec["label"], _f(rec.get("rps"), ".0f"), _f(rec.get("p50"), ".2f"),
                     _f(rec.get("p90"), ".2f"), _f(rec.get("p99"), ".2f"), _f(rec.get("max"), ".1f"),
                     str(rec.get("error_count", 0)), _f(rec.get("cpu_us_per_call"), ".0f"),
                     _f((rec.get("peak_rss") or 0) / MiB or None, ".0f"),
                     _f(rec.get("x_base"), ".2f"), _f(rec.get("x_fastmcp"), ".2f"),
                     _f(rec.get("added_p50"), "+.2f"), _f(rec.get("added_p99"), "+.2f")])
    return rows


def text_table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in pairs)
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def md_table(rows: list[list[str]], header: list[str]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out.extend("| " + " | ".join(r) + " |" for r in rows)
    return "\n".join(out)


def _notes(group: dict[str, Any]) -> list[str]:
    notes = [f"{group['labels'].get(k, k)} did not start: {v.splitlines()[0][:200]}"
             for k, v in group["failures"].items()]
    samples = {}
    for rec in group["records"]:
        if rec.get("error_count") and rec.get("error_sample") and rec["label"] not in samples:
            samples[rec["label"]] = rec["error_sample"][:200]
    notes.extend(f"{label}: first error: {sample}" for label, sample in samples.items())
    return notes


def render(results: dict[str, Any], markdown: bool) -> str:
    table = md_table if markdown else text_table
    parts: list[str] = []
    meta = results["meta"]
    m = meta["machine"]
    parts.append(f"mcpwall benchmark — {meta['started']} — {m['nproc']} x {m['cpu_model']}, {m['ram_gib']} GiB RAM, "
                 f"Python {m['python']}; {meta['mode']} run: {meta['repeats']} repeats x {meta['duration']} s "
                 f"(+{meta['warmup']} s warm-up), medians; total {meta.get('seconds', 0):.0f} s")
    parts.extend(("- " if markdown else "note: ") + note for note in results.get("notes", []))
    ceiling = results.get("extras", {}).get("ceiling")
    if ceiling:
        parts.append(f"Load generator ceiling: {ceiling['max_rps']:.0f} calls/s against a static responder; "
                     f"{_f(ceiling['loadgen_us_per_call'], '.1f')} µs of its own CPU per call.")
    for group in results.get("groups", []):
        heading = f"{group['title']} [{group['name']}; {group['transport']}, {group['mode']}, " \
                  f"{group['tools']} tools; x base = vs {group['baseline']}]"
        parts.append(("### " if markdown else "== ") + heading)
        parts.append(table(group_rows(group), COLUMNS))
        for note in _notes(group):
            parts.append(("- " if markdown else "   note: ") + note)
    extras = results.get("extras", {})
    if "sessions" in extras:
        rows = []
        for key, row in extras["sessions"].items():
            if not isinstance(row, dict):
                continue
            if "error" in row:
                rows.append([key, "did not start", "-", "-", "-"])
                continue
            rows.append([key, _f(row["idle_rss"] / MiB, ".1f"), str(row["sessions"]),
                         _f(row["rss_with_sessions"] / MiB, ".1f"), _f(row["bytes_per_session"] / 1024, ".1f")])
        parts.append(("### " if markdown else "== ") + "Idle legacy sessions")
        parts.append(table(rows, ["target", "idle RSS MiB", "sessions", "RSS with sessions MiB", "KiB/session"]))
    if "startup" in extras:
        rows = [[k, _f(v.get("median_s") and v["median_s"] * 1000, ".0f"),
                 ", ".join(f"{t * 1000:.0f}" for t in v.get("ready_s", [])) or (v.get("error") or "")[:80]]
                for k, v in extras["startup"].items()]
        parts.append(("### " if markdown else "== ") + "mcpwall serve start-up (spawn → /healthz 200)")
        parts.append(table(rows, ["config", "median ms", "runs ms"]))
    if extras.get("costs", {}).get("guards"):
        costs = extras["costs"]
        rows = [[guard, _f(row["us_per_call"], ".1f"), _f(row["us_per_hook"], ".1f")]
                for guard, row in costs["guards"].items()]
        parts.append(("### " if markdown else "== ") + "Each guard's own time, default policy, 1 client "
                     f"({costs['calls']} calls; {costs['note']})")
        parts.append(table(rows, ["guard", "µs per call", "µs per hook run"]))
    if "scan" in extras:
        scan = extras["scan"]
        parts.append(("### " if markdown else "== ") + "Content scanning of 1 MiB results (bench/detect.py)")
        if scan.get("mb_s_by_scanner"):
            rows = [[name, _f(mbs, ",.1f")] for name, mbs in scan["mb_s_by_scanner"].items()]
            parts.append(table(rows, ["scanner", f"MB/s, one core, {scan['engine']} (slower 1 MiB payload)"]))
        else:
            parts.append(str(scan.get("note") or scan.get("error") or "no result")[:500])
    bar_rows = [[r["goal"], r["limit"], _f(r["value"], "g") if isinstance(r["value"], (int, float)) else "-",
                 r["unit"], r["status"]] for r in results.get("bar", [])]
    parts.append(("### " if markdown else "== ") + "Against the bar")
    parts.append(table(bar_rows, ["goal", "limit", "value", "unit", "status"]))
    return "\n\n".join(parts) + "\n"


# --- chart -----------------------------------------------------------------------------------------


def chart(results: dict[str, Any], path: Path) -> str | None:
    """A PNG of latency percentiles at c=1 and throughput by concurrency; None if matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'); no chart"
    core = next((g for g in results.get("groups", []) if g["name"] == "core"), None)
    guards = next((g for g in results.get("groups", []) if g["name"] == "guards"), None)
    if core is None:
        return "no core group measured; no chart"
    panels = 3 if guards and len(guards["configs"]) > 1 else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.8))
    configs = [k for k in core["configs"] if any(r["config"] == k for r in core["records"])]
    # Panel 1: p50 / p90 / p99 at concurrency 1.
    ax = axes[0]
    scen = [s for s in ("modern/small/c1", "legacy/small/c1") if any(r["scenario"] == s for r in core["records"])]
    width = 0.8 / max(1, len(configs))
    for i, key in enumerate(configs):
        for j, s in enumerate(scen):
            rec = next((r for r in core["records"] if r["scenario"] == s and r["config"] == key), None)
            if rec is None:
                continue
            x = j * 3
            vals = [rec.get(p) or 0 for p in ("p50", "p90", "p99")]
            ax.bar([x + k + i * width for k in range(3)], vals, width,
                   label=core["labels"][key] if j == 0 else None, color=f"C{i}")
    ax.set_xticks([j * 3 + k + 0.4 for j in range(len(scen)) for k in range(3)])
    ax.set_xticklabels([f"{s.split('/')[0]}\n{p}" for s in scen for p in ("p50", "p90", "p99")], fontsize=8)
    ax.set_ylabel("latency, ms (log)")
    ax.set_yscale("log")
    ax.set_title("tools/call 200 B, 1 client")
    ax.legend(fontsize=8)
    # Panel 2: throughput by concurrency.
    ax = axes[1]
    for i, key in enumerate(configs):
        for era, style in (("modern", "-"), ("legacy", "--")):
            pts = sorted((r["concurrency"], r.get("rps") or 0) for r in core["records"]
                         if r["config"] == key and r["era"] == era and r["op"] == "small")
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", color=f"C{i}",
                        label=f"{core['labels'][key]} ({era})")
    ax.set_xscale("log", base=2)
    levels = sorted({r["concurrency"] for r in core["records"]})
    ax.set_xticks(levels)
    ax.set_xticklabels([str(c) for c in levels])
    ax.set_yscale("log")
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("calls/s (log)")
    ax.set_title("throughput, tools/call 200 B")
    ax.legend(fontsize=7)
    if panels == 3 and guards is not None:
        # CPU per call is steadier than latency differences of a millisecond on a shared machine.
        ax = axes[2]
        base = {r["scenario"]: r.get("cpu_us_per_call") for r in guards["records"] if r["config"] == "mcpwall"}
        names = [k for k in guards["configs"] if k != "mcpwall"]
        ys = list(range(len(names)))
        for j, (name, label_text) in enumerate((("modern/small/c1", "200 B"), ("modern/large/c1", "1 MiB"))):
            by_config = {r["config"]: r.get("cpu_us_per_call") for r in guards["records"] if r["scenario"] == name}
            base_cost = base.get(name)
            vals = [(by_config[k] - base_cost) if by_config.get(k) is not None and base_cost is not None else 0
                    for k in names]
            ax.barh([y + (j - 0.5) * 0.4 for y in ys], vals, height=0.4, label=f"tools/call {label_text}")
        ax.set_yticks(ys)
        ax.set_yticklabels(names)
        ax.axvline(0, color="black", linewidth=0.5)
        ax.set_xlabel("CPU µs per call added over mcpwall with no guards (1 client)")
        ax.set_title("cost of each guard")
        ax.legend(fontsize=8)
    fig.suptitle(f"mcpwall benchmark {results['meta']['started']} ({results['meta']['mode']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
