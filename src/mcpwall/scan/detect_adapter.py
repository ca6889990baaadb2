"""Adapter from the shared content-security engine (:mod:`mcpwall.detect`) to the scanner's rules.

The scanner asks two questions about a piece of text: which credentials it contains, and whether
it reads like tool poisoning (including hidden characters). For each question this adapter uses
the engine's built-in pack when it loads (``secrets``, ``poisoning``), so scans and the
gateway's guards agree; a pack that is missing or fails to load falls back to the scanner's own
compact rules (:mod:`mcpwall.scan.rules`). Hidden characters are always reported by the local
check, which names them.

Matched text is never passed on: a secret match becomes its rule id and a redacted excerpt.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from mcpwall.scan.model import Severity
from mcpwall.scan.rules import TextMatch, find_poisoning, find_secrets, hidden_characters, redact, visible

log = logging.getLogger("mcpwall.scan")
_SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")


@cache
def _engine(pack: str) -> Any | None:
    try:
        from mcpwall.detect.engine import shared_engine
        from mcpwall.detect.rules import load_rules

        return shared_engine(load_rules([pack]))
    except Exception as exc:  # missing pack or an engine still in the making: use local rules
        log.debug("detect pack %s unavailable for the scanner (%s)", pack, type(exc).__name__)
        return None


def _matches(engine: Any, text: str) -> list[tuple[str, Severity, str]]:
    scan = engine.scan([text])
    out: list[tuple[str, Severity, str]] = []
    seen: set[str] = set()
    for match in scan.matches:
        rule = match.rule
        if rule.id in seen:
            continue
        seen.add(rule.id)
        level = int(rule.severity)
        severity = _SEVERITIES[level] if 0 <= level < len(_SEVERITIES) else "medium"
        out.append((rule.id, severity, scan.norm(match.index).text[match.start:match.end]))
    return out


class EngineRules:
    """A :class:`~mcpwall.scan.rules.TextScanner` backed by the shared engine where it can be."""

    name = "detect"

    def __init__(self, secrets: Any | None, poisoning: Any | None) -> None:
        self._secrets = secrets
        self._poisoning = poisoning

    def secrets(self, text: str) -> list[TextMatch]:
        if self._secrets is None:
            return find_secrets(text)
        return [TextMatch(rule, "secret", severity, redact(value))
                for rule, severity, value in _matches(self._secrets, text)]

    def poisoning(self, text: str) -> list[TextMatch]:
        if self._poisoning is None:
            return find_poisoning(text)
        out = [TextMatch(rule, "poisoning", severity, visible(value, 100))
               for rule, severity, value in _matches(self._poisoning, text)]
        hidden = hidden_characters(text)
        if hidden:
            out.append(TextMatch("hidden-unicode", "hidden_unicode", "high", ", ".join(hidden[:5])))
        return out


def engine_scanner() -> EngineRules | None:
    secrets, poisoning = _engine("secrets"), _engine("poisoning")
    if secrets is None and poisoning is None:
        return None
    return EngineRules(secrets, poisoning)
