"""Shared fixtures for the detection tests: compiled rule sets are built once per session."""

from __future__ import annotations

import pytest

from mcpwall.detect.engine import Engine, hyperscan_available
from mcpwall.detect.rules import BUILTIN_PACKS, Rule, load_pack


@pytest.fixture(scope="session")
def all_rules() -> list[Rule]:
    return [rule for pack in BUILTIN_PACKS for rule in load_pack(pack)]


@pytest.fixture(scope="session")
def engines(all_rules: list[Rule]) -> tuple[Engine, Engine]:
    """(hyperscan, re) engines over every built-in rule."""
    if not hyperscan_available():
        pytest.skip("the hyperscan package is not installed")
    return Engine(all_rules, "hyperscan"), Engine(all_rules, "re")
