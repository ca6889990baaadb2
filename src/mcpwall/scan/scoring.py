"""Turning check results into a score and a letter grade.

The posture grade is absolute: the fourteen posture checks carry published weights that sum
to 100, a check earns its weight when it passes (or does not apply), and a check that could not
be observed earns nothing, because a scanner that cannot see a control cannot vouch for it.

The MCP sub-grade is relative: several protocol probes need credentials or a particular
protocol era to be observable at all, so it is computed over the probes that were observed and
says how many that was. With nothing observed there is no sub-grade.
"""

from __future__ import annotations

from collections.abc import Iterable

from mcpwall.scan.model import CheckResult, Grade

BANDS: tuple[tuple[int, str], ...] = ((90, "A"), (75, "B"), (60, "C"), (40, "D"), (0, "F"))
LETTERS: tuple[str, ...] = tuple(letter for _, letter in BANDS)


def letter_for(score: int) -> str:
    for floor, letter in BANDS:
        if score >= floor:
            return letter
    return "F"


def meets(letter: str, minimum: str) -> bool:
    """``True`` when grade ``letter`` is at least ``minimum`` (A best, F worst)."""
    return LETTERS.index(letter.upper()) <= LETTERS.index(minimum.upper())


def posture_grade(results: Iterable[CheckResult]) -> Grade:
    results = list(results)
    total = sum(r.spec.weight for r in results)
    score = sum(r.earned for r in results)
    return Grade(score=score, letter=letter_for(score), observed_weight=total, total_weight=total)


def relative_grade(results: Iterable[CheckResult]) -> Grade | None:
    results = list(results)
    observed = [r for r in results if r.observed and r.spec.weight > 0]
    weight = sum(r.spec.weight for r in observed)
    if weight == 0:
        return None
    score = round(100 * sum(r.earned for r in observed) / weight)
    return Grade(score=score, letter=letter_for(score), observed_weight=weight,
                 total_weight=sum(r.spec.weight for r in results))
