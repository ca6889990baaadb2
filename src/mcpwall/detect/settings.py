"""Settings every content-scanning guard shares, and the one place they become a scanner.

The ``dlp``, ``poisoning`` and ``injection`` guards each choose rule packs, add custom rules,
override single rules and pick an engine. This module models those options once and compiles
them (at config load, never per message) into a :class:`~mcpwall.detect.scanner.Scanner`.
Problems — an unknown pack, a pattern outside the portable subset — become config errors that
name the guard and the rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field

from mcpwall.detect.engine import Backend, shared_engine
from mcpwall.detect.rules import Rule, RuleError, RuleSpec, Severity, SeverityName, load_rules, matches_id
from mcpwall.detect.scanner import HIDDEN_DEFAULTS, Scanner
from mcpwall.errors import ConfigError
from mcpwall.pipeline.guard import GuardSettings

HiddenKind = Literal["tag-characters", "variation-selectors", "bidi-control", "zero-width", "ansi-escape",
                     "control-characters", "lone-surrogate", "mixed-script"]


class ContentSettings(GuardSettings):
    """Options common to the content-scanning guards."""

    packs: list[str] = Field(description="Built-in rule packs by name, or paths of pack files "
                                         "(relative to the config file's folder).")
    custom_rules: list[RuleSpec] = Field(default_factory=list, description="Extra rules (ids become custom.<id>).")
    engine: Backend = Field("auto", description="auto: Hyperscan when installed, else the pure-Python engine "
                                                "(same results, slower).")


class HiddenTextSettings(ContentSettings):
    hidden: dict[HiddenKind, SeverityName | Literal["ignore"]] = Field(
        default_factory=dict, description="Severity of each kind of hidden text (ignore to stop reporting it).")


def build_scanner(guard: str, settings: ContentSettings, config_dir: Path, *, categories: Iterable[str],
                  hidden: bool = False, sensitive_fields: bool = False,
                  keep: Callable[[Rule], bool] | None = None, overrides: Mapping[str, str] | None = None,
                  extra_ids: Iterable[str] = ()) -> Scanner:
    """Compile the guard's rules into a scanner, or raise :class:`ConfigError`.

    ``keep`` leaves out rules whose findings the guard would drop anyway, so they cost nothing.
    ``overrides`` (the guard's per-rule settings) must each name a loaded rule — kept or not —,
    one of ``extra_ids`` or a hidden-text kind; anything else is reported as a likely typo."""
    try:
        loaded = load_rules(settings.packs, settings.custom_rules, base_dir=config_dir, categories=categories)
        rules = [r for r in loaded if keep is None or keep(r)]
        engine = shared_engine(rules, settings.engine)
    except RuleError as exc:
        raise ConfigError([f"guards.{guard}: {exc}"]) from None
    severities: dict[str, Severity] | None = None
    if hidden:
        severities = dict(HIDDEN_DEFAULTS)
        hidden_levels: Mapping[str, str] = getattr(settings, "hidden", {})
        for kind, value in hidden_levels.items():
            if value == "ignore":
                severities.pop(kind, None)
            else:
                severities[kind] = Severity.parse(value)
    scanner = Scanner(engine, hidden=severities, sensitive_fields=sensitive_fields)
    known_extra = [*extra_ids, *(f"hidden.{kind}" for kind in scanner.hidden)]
    unknown = unknown_overrides(overrides or {}, loaded, known_extra)
    if unknown:
        raise ConfigError([f"guards.{guard}.rules: no rule named {key!r}" for key in unknown])
    return scanner


def override_for(rule_id: str, category: str, overrides: Mapping[str, str]) -> str | None:
    """The per-rule override a config gives for a finding, if any (full id, short id, category.*)."""
    if not overrides:
        return None
    short = rule_id.partition(".")[2]
    for key in (rule_id, short, f"{category}.*"):
        if key in overrides:
            return overrides[key]
    return None


def unknown_overrides(overrides: Mapping[str, str], rules: Iterable[Rule], extra: Iterable[str] = ()) -> list[str]:
    """Override keys that name no loaded rule (likely typos)."""
    known = list(rules)
    extra_ids = set(extra)
    return [key for key in overrides
            if key not in extra_ids and not key.endswith(".*") and not any(matches_id(r, key) for r in known)]
