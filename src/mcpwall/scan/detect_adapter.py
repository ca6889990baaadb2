"""Adapter from the shared content-security engine (:mod:`mcpwall.detect`) to the scanner's rules.

The scanner needs two questions answered about a piece of text: which credentials it contains and
whether it reads like tool poisoning (including hidden characters). When the shared pattern engine
provides those answers, :func:`engine_scanner` wraps it so that scans and the gateway's guards agree;
until then it returns ``None`` and the scanner keeps its own compact rule set
(:class:`mcpwall.scan.rules.LocalRules`).
"""

from __future__ import annotations

from mcpwall.scan.rules import TextScanner


def engine_scanner() -> TextScanner | None:
    return None
