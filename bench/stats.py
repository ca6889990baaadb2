"""Numbers from raw samples: percentiles of one run, medians across repeats, ratios."""

from __future__ import annotations

import math
import statistics
from typing import Any


def percentile(sorted_ms: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (NaN if empty)."""
    if not sorted_ms:
        return math.nan
    rank = max(1, math.ceil(p / 100.0 * len(sorted_ms)))
    return sorted_ms[min(rank, len(sorted_ms)) - 1]


def summarize(raw: dict[str, Any], target_key: str = "target", peak_rss: int = 0) -> dict[str, Any]:
    """One run: throughput, latency percentiles, errors, CPU per request, peak RSS."""
    lat = sorted(raw.get("latencies_ms", []))
    ok = int(raw.get("ok", 0))
    elapsed = float(raw.get("elapsed") or 0.0)
    errors = dict(raw.get("errors", {}))
    if raw.get("timeouts"):
        errors["timeout"] = errors.get("timeout", 0) + int(raw["timeouts"])
    if raw.get("setup_errors"):
        errors["setup"] = errors.get("setup", 0) + int(raw["setup_errors"])
    cpu = raw.get("cpu_s", {}) or {}
    target_cpu = cpu.get(target_key, raw.get("target_cpu_s"))
    if target_cpu is not None and "children_cpu_s" in raw:
        target_cpu = float(target_cpu) + float(raw["children_cpu_s"])
    return {
        "rps": ok / elapsed if elapsed > 0 else 0.0,
        "ok": ok,
        "samples": len(lat),
        "p50": percentile(lat, 50), "p90": percentile(lat, 90), "p99": percentile(lat, 99),
        "max": lat[-1] if lat else math.nan,
        "errors": errors,
        "error_count": sum(errors.values()),
        "error_sample": raw.get("error_sample", ""),
        "target_cpu_s": target_cpu,
        "upstream_cpu_s": cpu.get("upstream"),
        "cpu_us_per_call": (float(target_cpu) * 1e6 / ok) if (target_cpu is not None and ok) else None,
        "loadgen_cpu_s": raw.get("loadgen_cpu_s"),
        "peak_rss": peak_rss or raw.get("target_peak_rss", 0),
    }


def _median(values: list[Any]) -> Any:
    clean = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    return statistics.median(clean) if clean else None


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians across repeats; errors summed; RSS the maximum seen."""
    if not runs:
        return {}
    errors: dict[str, int] = {}
    for run in runs:
        for kind, count in run["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    out = {key: _median([r.get(key) for r in runs])
           for key in ("rps", "p50", "p90", "p99", "max", "cpu_us_per_call", "target_cpu_s", "loadgen_cpu_s")}
    out.update(errors=errors, error_count=sum(errors.values()), ok=sum(r["ok"] for r in runs),
               repeats=len(runs), peak_rss=max(r.get("peak_rss") or 0 for r in runs),
               error_sample=next((r["error_sample"] for r in runs if r.get("error_sample")), ""))
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def delta(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return None
    return a - b
