"""Smoke test of the benchmark harness: its quick mode against the fast upstream directly.

Checks that ``python -m bench --quick`` starts what it needs, drives real MCP traffic in both
eras over HTTP and stdio, writes its results and stops everything it started. No timing is
asserted: numbers on a shared test machine mean nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the harness uses Linux process groups")
def test_quick_mode_measures_the_fast_upstream_directly_and_cleans_up(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--quick", "core", "stdio", "--configs", "direct", "--out", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err[-2000:]

    runs = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert len(runs) == 1
    results = json.loads((runs[0] / "results.json").read_text())
    spawned = results["meta"]["spawned"]
    assert {name for name, _ in spawned} >= {"upstream", "loadgen-0", "stdio-target"}
    assert [pid for _, pid in spawned if _alive(pid)] == []
    assert (tmp_path / "latest.json").exists()
    assert (runs[0] / "table.md").read_text().startswith("mcpwall benchmark")

    groups = {g["name"]: g for g in results["groups"]}
    assert set(groups) == {"core", "stdio"}
    for group in groups.values():
        assert group["failures"] == {}
        assert {r["config"] for r in group["records"]} == {"direct"}
    core = {r["scenario"]: r for r in groups["core"]["records"]}
    assert {"modern/small/c1", "legacy/small/c16", "modern/large/c1"} <= set(core)
    for record in [*core.values(), *groups["stdio"]["records"]]:
        assert record["error_count"] == 0, (record["scenario"], record["error_sample"])
        assert record["ok"] > 0
        assert record["p50"] is not None
        assert record["x_base"] == pytest.approx(1.0)
    assert "direct" in out
