"""The policy document: roles with allow/deny grants, rules with conditions, capability classes.

Everything is validated when loaded — globs, regular expressions, time zones and CEL
expressions are compiled here, so a policy that loads cannot fail for syntax at call time.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mcpwall.config.types import Seconds, SigningSecret, Strict, TimeZone
from mcpwall.pipeline.guard import GuardSettings

Capability = Literal["read", "write", "admin"]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_CEL_CHARS = 4096
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")


class Grants(Strict):
    tools: list[str] = Field(default_factory=list, description="Globs over namespaced tool names (server__tool).")
    prompts: list[str] = Field(default_factory=list, description="Globs over namespaced prompt names.")
    resources: list[str] = Field(default_factory=list, description="Globs over resource URIs (and URI templates).")
    capabilities: list[Capability] = Field(default_factory=list, description="Tools of these capability classes.")

    def empty(self) -> bool:
        return not (self.tools or self.prompts or self.resources or self.capabilities)


class Role(Strict):
    allow: Grants = Field(default_factory=Grants)
    deny: Grants = Field(default_factory=Grants)


class ArgConstraint(Strict):
    type: Literal["string", "integer", "number", "boolean", "array", "object"] | None = None
    required: bool = False
    min: float | None = Field(None, description="Smallest allowed number.")
    max: float | None = Field(None, description="Largest allowed number.")
    enum: list[Any] | None = Field(None, description="Allowed values.")
    pattern: str | None = Field(None, description="Regular expression the whole string must match.")
    min_length: int | None = Field(None, ge=0, description="Shortest string (characters) or array (items).")
    max_length: int | None = Field(None, ge=0, description="Longest string (characters) or array (items).")
    roots: list[str] | None = Field(
        None, description="Allowed path roots: the normalised path (or every path in an array) must lie inside one.")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @field_validator("roots")
    @classmethod
    def _roots(cls, value: list[str] | None) -> list[str] | None:
        for root in value or ():
            if not root.startswith("/"):
                raise ValueError(f"root {root!r} must be an absolute path")
        return value


class Window(Strict):
    days: list[str] = Field(default_factory=lambda: list(DAYS), description="mon…sun, or ranges like mon-fri.")
    start: str = Field("00:00", description="HH:MM, local time in `tz`.")
    end: str = Field("24:00", description="HH:MM; a window whose end is before its start runs past midnight.")
    tz: TimeZone = "UTC"

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for item in value:
            first, _, last = item.lower().partition("-")
            if first not in DAYS or (last and last not in DAYS):
                raise ValueError(f"{item!r} is not a day (mon…sun) or a range like mon-fri")
            if not last:
                out.append(first)
                continue
            i, j = DAYS.index(first), DAYS.index(last)
            span = range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)]
            out.extend(DAYS[k] for k in span)
        return list(dict.fromkeys(out))

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _TIME.match(value):
            raise ValueError("expected HH:MM (00:00 to 24:00)")
        return value


class Rule(Strict):
    """Conditions that calls matching ``tools``/``prompts``/``resources``/``capabilities`` (and,
    if given, made by one of ``roles``) must all meet."""

    name: str = Field(min_length=1, max_length=128)
    tools: list[str] = Field(default_factory=list)
    prompts: list[str] = Field(default_factory=list)
    resources: list[str] = Field(default_factory=list)
    capabilities: list[Capability] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list, description="Apply only to principals with one of these roles.")
    args: dict[str, ArgConstraint] = Field(
        default_factory=dict, description="Argument name (dotted path) → constraint.")
    when: str | None = Field(None, description="CEL expression over args, principal, time, server, tool, method; "
                                               "must be true.")
    during: list[Window] = Field(default_factory=list, description="Allowed only inside one of these windows.")
    not_during: list[Window] = Field(default_factory=list, description="Refused inside any of these windows.")
    require_auth: list[str] = Field(default_factory=list, description="Authentication methods the call must have used.")
    require_confirmation: bool = Field(False, description="Needs the confirmation header naming the tool.")
    require_scopes: list[str] = Field(default_factory=list, description="OAuth scopes needed (403 step-up if missing).")
    message: str | None = Field(None, max_length=500, description="Text shown to the client when the rule refuses.")

    @field_validator("when")
    @classmethod
    def _cel(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if len(value) > MAX_CEL_CHARS:
            raise ValueError(f"CEL expression longer than {MAX_CEL_CHARS} characters")
        import cel

        try:
            cel.compile(value)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"invalid CEL expression: {first}") from None
        return value

    @model_validator(mode="after")
    def _targets(self) -> Rule:
        if not (self.tools or self.prompts or self.resources or self.capabilities):
            raise ValueError("a rule must name tools, prompts, resources or capabilities it applies to")
        return self


class PolicyDocument(Strict):
    default: Literal["deny", "allow"] = Field(
        "deny", description="What happens to a target no role grants. Keep 'deny' outside of trials.")
    roles: dict[str, Role] = Field(
        default_factory=dict, description="Role name → grants. Role '*' applies to everyone.")
    rules: list[Rule] = Field(default_factory=list)
    capabilities: dict[str, Capability] = Field(
        default_factory=dict, description="Tool glob → capability class; first match wins, before annotations.")
    confirm_destructive: bool = Field(False, description="Every destructive tool needs the confirmation header.")
    confirm_header: str = Field("x-mcpwall-confirm", description="Header whose value must name the tool.")

    @model_validator(mode="after")
    def _unique_rules(self) -> PolicyDocument:
        names = [r.name for r in self.rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique: {', '.join(duplicates)}")
        return self


class IdentityHeader(Strict):
    secret: SigningSecret = Field(description="HMAC key upstreams verify with (at least 32 characters; use ${ENV}).")
    header: str = "X-Mcpwall-Principal"
    servers: list[str] = Field(default_factory=list, description="Upstreams that get the header; empty: all.")
    ttl: Seconds = Field(60.0, gt=0, description="Lifetime of each signed assertion.")


class PolicySettings(GuardSettings, PolicyDocument):
    file: str | None = Field(None, description="Policy document file (YAML); reloaded when it changes. "
                                               "Exclusive with inline roles/rules/capabilities.")
    watch: bool = Field(True, description="Reload `file` when it changes.")
    watch_interval: Seconds = Field(2.0, gt=0)
    identity_header: IdentityHeader | None = None

    @model_validator(mode="after")
    def _one_source(self) -> PolicySettings:
        if self.file is not None and (self.roles or self.rules or self.capabilities):
            raise ValueError("give the policy either inline (roles/rules/capabilities) or in `file`, not both")
        return self

    def document(self) -> PolicyDocument:
        return PolicyDocument.model_validate(self.model_dump(include=set(PolicyDocument.model_fields)))
