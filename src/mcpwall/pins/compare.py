"""Classify how an upstream's current definitions differ from the pinned ones, and show it.

Beyond ``changed`` (same name, new hash), ``added`` and ``removed``, a definition that appears
under a new name while a similar one disappeared is a ``renamed`` tool; one that disappeared
and reappeared as several similar ones was ``split``; several that collapsed into one were
``merged``. Similarity ignores the name: identical descriptions and schemas score 1.0, and
otherwise the text of the rendered definitions is compared. A rename is still a change — an
attacker renaming a trusted tool must not earn trust on first use under the new name.

When only part of an upstream's list is at hand (one page of a paginated list), pass
``complete=False``: nothing is then reported as removed, because it may sit on another page.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from mcpwall.pins.canonical import Pin, canonical_json, definition_hash
from mcpwall.pins.lockfile import YamlDumper

ChangeKind = Literal["added", "changed", "removed", "renamed", "split", "merged"]
# Above this many added-by-removed pairs only exact matches are looked for, keeping the fuzzy
# comparison (quadratic in text length) bounded on large catalogs.
MAX_FUZZY_PAIRS = 2_500
MAX_COMPARE_CHARS = 8_000


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # tools | prompts
    name: str
    change: ChangeKind
    old: Pin | None = None  # the pinned definition this is compared with
    new: Pin | None = None  # the current definition (None when removed)
    related: tuple[str, ...] = field(default=())  # old names (renamed, split, merged)


def render(definition: Mapping[str, Any]) -> str:
    """Readable text of a definition for diffs: YAML, sorted keys, non-ASCII escaped."""
    return yaml.dump(dict(definition), Dumper=YamlDumper, sort_keys=True, allow_unicode=False,
                     default_flow_style=False, width=100, indent=2)


def unified_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, label: str) -> str:
    before = render(old).splitlines(keepends=True) if old is not None else []
    after = render(new).splitlines(keepends=True) if new is not None else []
    return "".join(difflib.unified_diff(before, after, f"{label} (pinned)", f"{label} (current)"))


def _nameless(definition: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in definition.items() if k != "name"}


def similarity(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """1.0 when everything but the name is identical, else a text similarity in [0, 1)."""
    left, right = _nameless(a), _nameless(b)
    if canonical_json(left) == canonical_json(right):
        return 1.0
    text_a = render(left)[:MAX_COMPARE_CHARS]
    text_b = render(right)[:MAX_COMPARE_CHARS]
    matcher = difflib.SequenceMatcher(None, text_a, text_b, autojunk=False)
    if matcher.real_quick_ratio() < 0.5 or matcher.quick_ratio() < 0.5:
        return 0.0
    return min(matcher.ratio(), 0.999)


def compare(kind: str, pinned: Mapping[str, Pin], current: Mapping[str, Pin], *,
            threshold: float = 0.85, complete: bool = True) -> list[Change]:
    """Every difference between ``pinned`` and ``current`` (both keyed by upstream name)."""
    changes: list[Change] = []
    added = sorted(n for n in current if n not in pinned)
    gone = sorted(n for n in pinned if n not in current)
    for name in sorted(n for n in current if n in pinned):
        if current[name].hash != pinned[name].hash:
            changes.append(Change(kind, name, "changed", pinned[name], current[name]))

    matches: dict[str, list[str]] = {a: [] for a in added}  # added name -> similar gone names
    exact: dict[str, list[str]] = {}
    for name in gone:
        exact.setdefault(definition_hash(_nameless(pinned[name].definition)), []).append(name)
    fuzzy = len(added) * len(gone) <= MAX_FUZZY_PAIRS
    for a in added:
        same = exact.get(definition_hash(_nameless(current[a].definition)), [])
        matches[a].extend(same)
        if fuzzy:
            matches[a].extend(g for g in gone if g not in same
                              and similarity(pinned[g].definition, current[a].definition) >= threshold)
    sources: dict[str, list[str]] = {g: [] for g in gone}  # gone name -> added names like it
    for a, olds in matches.items():
        for g in olds:
            sources[g].append(a)

    for a in added:
        olds = matches[a]
        if not olds:
            changes.append(Change(kind, a, "added", None, current[a]))
        elif len(olds) > 1:
            changes.append(Change(kind, a, "merged", pinned[olds[0]], current[a], tuple(olds)))
        elif len(sources[olds[0]]) > 1:
            changes.append(Change(kind, a, "split", pinned[olds[0]], current[a], (olds[0],)))
        else:
            changes.append(Change(kind, a, "renamed", pinned[olds[0]], current[a], (olds[0],)))
    if complete:
        changes.extend(Change(kind, g, "removed", pinned[g], None) for g in gone)
    return changes
