"""``python -m bench docs``: copy the latest results into ``docs/performance.md``.

Replaces what stands between ``<!-- bench:latest -->`` / ``<!-- /bench:latest -->`` with
``bench/results/latest.md`` and between ``<!-- bench:micro -->`` / ``<!-- /bench:micro -->``
with ``bench/results/latest-micro.md``; the rest of the page is prose and stays as written.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "performance.md"
RESULTS = REPO / "bench" / "results"


def _splice(text: str, marker: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- bench:{marker} -->\n).*?(\n<!-- /bench:{marker} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{PAGE} has no <!-- bench:{marker} --> section")
    return pattern.sub(lambda m: m.group(1) + body.strip() + m.group(2), text)


def main(argv: list[str]) -> int:
    text = PAGE.read_text()
    for marker, source in (("latest", RESULTS / "latest.md"), ("micro", RESULTS / "latest-micro.md")):
        if source.exists():
            text = _splice(text, marker, source.read_text())
            print(f"{PAGE.relative_to(REPO)}: {marker} section from {source.relative_to(REPO)}")
        else:
            print(f"no {source.relative_to(REPO)}; {marker} section left as it was", file=sys.stderr)
    PAGE.write_text(text)
    return 0
