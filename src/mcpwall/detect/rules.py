"""Detection rules and rule packs: the data every scanner matches with.

A rule pack is a YAML file (built-in ones live in ``mcpwall/detect/rules/``) holding rules of one
category. Operators add packs of their own (a path instead of a built-in name) and single custom
rules in a guard's config; both go through the same :class:`RuleSpec` model, so a bad pattern is a
config error with the rule's name in it, never a surprise at scan time.

Rule ids are ``<category>.<id>`` (``secret.aws-access-key-id``, ``pii.credit-card``); custom rules
from config are ``custom.<id>``. Overrides in config may use the full id or the part after the dot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mcpwall.detect.syntax import PatternError, Portable, compile_portable
from mcpwall.detect.validators import VALIDATORS

Category = Literal["secret", "pii", "poisoning", "injection", "hidden"]
CATEGORIES: tuple[str, ...] = ("secret", "pii", "poisoning", "injection", "hidden")
BUILTIN_PACKS: tuple[str, ...] = ("secrets", "pii", "poisoning", "injection")
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")


class Severity(IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, value: str | int | Severity) -> Severity:
        if isinstance(value, Severity):
            return value
        if isinstance(value, int):
            return cls(value)
        return cls[value.upper()]

    @property
    def label(self) -> str:
        return self.name.lower()


SeverityName = Literal["info", "low", "medium", "high", "critical"]


class RuleSpec(BaseModel):
    """One rule as written in a pack or in config."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Unique within its category: lowercase letters, digits, '.', '_', '-'.")
    title: str = ""
    pattern: str = Field(description="Python regular expression in the portable subset (see docs/detection.md).")
    severity: SeverityName | None = None
    ignore_case: bool = False
    group: int | str | None = Field(None, description="Capture group holding the sensitive part "
                                                      "(default: the whole match).")
    validate_with: list[str] = Field(default_factory=list, alias="validate",
                                     description="Checks the span must pass: " + ", ".join(sorted(VALIDATORS)))
    min_entropy: float | None = Field(None, ge=0, le=8, description="Minimum Shannon entropy (bits/char) of the span.")
    placeholders: bool | None = Field(None, description="Drop spans that look like placeholders "
                                                        "(xxxx, <KEY>, EXAMPLE).")
    generic: bool = Field(False, description="Yields to a more specific rule that matches the same text.")
    extend: Literal["pem"] | None = Field(None, description="pem: grow the span to the end of the PEM block.")
    examples: list[str] = Field(default_factory=list, description="Texts the rule must match (templates allowed).")
    negatives: list[str] = Field(default_factory=list, description="Texts the rule must not match.")
    tags: list[str] = Field(default_factory=list)
    category: Category | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("rule ids are 1-80 characters of a-z, 0-9, '.', '_' and '-'")
        return value

    @field_validator("validate_with")
    @classmethod
    def _validators(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in VALIDATORS]
        if unknown:
            raise ValueError(f"unknown validator(s) {unknown}; known: {sorted(VALIDATORS)}")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            compile_portable(value)
        except PatternError as exc:
            raise ValueError(str(exc)) from None
        return value


class PackSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pack: str
    category: Category
    description: str = ""
    severity: SeverityName = "medium"
    placeholders: bool = False
    rules: list[RuleSpec]


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """A compiled rule, ready for an engine."""

    id: str  # full id: category.short
    short_id: str
    category: str
    title: str
    severity: Severity
    pattern: Portable
    group: int | str | None
    validators: tuple[str, ...]
    min_entropy: float | None
    placeholders: bool
    generic: bool
    extend: str | None
    pack: str
    examples: tuple[str, ...]
    negatives: tuple[str, ...]
    tags: tuple[str, ...]

    @property
    def fingerprint(self) -> tuple[Any, ...]:
        return (self.id, self.pattern.source, self.pattern.ignore_case, self.group, self.validators,
                self.min_entropy, self.placeholders, self.generic, self.extend, self.severity)


class RuleError(ValueError):
    """A pack or rule that cannot be loaded; the message names the pack and rule."""


def build_rule(spec: RuleSpec, *, category: str, pack: str, default_severity: str = "medium",
               default_placeholders: bool = False, prefix: str | None = None) -> Rule:
    category = spec.category or category
    try:
        pattern = compile_portable(spec.pattern, ignore_case=spec.ignore_case)
    except PatternError as exc:
        raise RuleError(f"{pack}: rule {spec.id}: {exc}") from None
    group = spec.group
    if isinstance(group, int) and group > pattern.compiled.groups:
        raise RuleError(f"{pack}: rule {spec.id}: the pattern has no group {group}")
    if isinstance(group, str) and group not in pattern.group_names:
        raise RuleError(f"{pack}: rule {spec.id}: the pattern has no group named {group!r}")
    return Rule(
        id=f"{prefix or category}.{spec.id}", short_id=spec.id, category=category,
        title=spec.title or spec.id.replace("-", " "), severity=Severity.parse(spec.severity or default_severity),
        pattern=pattern, group=group, validators=tuple(spec.validate_with), min_entropy=spec.min_entropy,
        placeholders=default_placeholders if spec.placeholders is None else spec.placeholders,
        generic=spec.generic, extend=spec.extend, pack=pack, examples=tuple(spec.examples),
        negatives=tuple(spec.negatives), tags=tuple(spec.tags))


def load_pack(name: str, *, base_dir: Path | None = None) -> list[Rule]:
    """A built-in pack by name, or a pack file by path (relative to ``base_dir``)."""
    if name in BUILTIN_PACKS:
        text = resources.files("mcpwall.detect").joinpath("rules").joinpath(f"{name}.yaml").read_text("utf-8")
        source = f"built-in pack {name}"
    else:
        path = Path(name)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise RuleError(f"rule pack {name}: cannot read it ({exc.strerror})") from None
        source = f"rule pack {name}"
    try:
        spec = PackSpec.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as exc:
        raise RuleError(f"{source}: {exc}") from None
    return [build_rule(r, category=spec.category, pack=spec.pack, default_severity=spec.severity,
                       default_placeholders=spec.placeholders) for r in spec.rules]


def load_rules(packs: Iterable[str], custom: Sequence[RuleSpec] = (), *, base_dir: Path | None = None,
               categories: Iterable[str] | None = None) -> list[Rule]:
    """Rules of the named packs plus custom rules, optionally limited to some categories."""
    wanted = set(categories) if categories is not None else None
    rules: list[Rule] = []
    for name in packs:
        rules.extend(load_pack(name, base_dir=base_dir))
    for spec in custom:
        category = spec.category or "secret"
        rules.append(build_rule(spec, category=category, pack="custom", prefix="custom",
                                default_placeholders=category == "secret"))
    if wanted is not None:
        rules = [r for r in rules if r.category in wanted]
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise RuleError(f"duplicate rule id {rule.id}")
        seen.add(rule.id)
    return rules


def matches_id(rule: Rule, key: str) -> bool:
    """Does a config key (full id, short id, or ``category.*``) name this rule?"""
    return key in (rule.id, rule.short_id) or key == f"{rule.category}.*"
