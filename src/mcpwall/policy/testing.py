"""Policy test files for ``mcpwall policy test`` (in the spirit of ``opa test``) and the input
format ``mcpwall policy explain`` shares.

A test file::

    policy: policy.yaml          # or `config: mcpwall.yaml` (its guards.policy); relative to this file
    cases:
      - name: readers may read docs
        input:
          principal: {id: alice, roles: [reader], auth_method: api_key}
          tool: fs__read_file     # or prompt: NAME, or resource: URI
          args: {path: /srv/docs/a.md}
          annotations: {readOnlyHint: true}
          headers: {x-mcpwall-confirm: fs__read_file}
          time: "2026-05-04T10:00:00+02:00"
        expect: allow            # allow | deny | hidden
        decided_by: roles.reader # optional: prefix of the grant or rule that must decide
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from mcpwall.config.types import Strict
from mcpwall.errors import ConfigError
from mcpwall.gateway.call import Principal
from mcpwall.policy.engine import CompiledPolicy, Decision, Input, Kind
from mcpwall.policy.loading import load_document, problems_of
from mcpwall.policy.model import PolicySettings


class PrincipalInput(Strict):
    id: str = "test"
    roles: list[str] = Field(default_factory=list)
    scopes: list[str] = Field(default_factory=list)
    auth_method: str = "api_key"
    auth_methods: list[str] = Field(default_factory=list)
    attributes: dict[str, str] = Field(default_factory=dict)


class CaseInput(Strict):
    principal: PrincipalInput = Field(default_factory=PrincipalInput)
    tool: str | None = None
    prompt: str | None = None
    resource: str | None = None
    server: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    annotations: dict[str, Any] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)
    time: datetime | None = None

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone offset, e.g. 2026-05-04T10:00:00Z")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> CaseInput:
        if sum(x is not None for x in (self.tool, self.prompt, self.resource)) != 1:
            raise ValueError("give exactly one of tool, prompt, resource")
        return self

    def to_input(self, separator: str = "__") -> Input:
        kind: Kind
        if self.tool is not None:
            kind, name, method = "tool", self.tool, "tools/call"
        elif self.prompt is not None:
            kind, name, method = "prompt", self.prompt, "prompts/get"
        else:
            kind, name, method = "resource", self.resource or "", "resources/read"
        server = self.server
        if server is None and kind != "resource" and separator in name:
            server = name.split(separator, 1)[0]
        p = self.principal
        attributes = dict(p.attributes)
        if p.auth_methods:
            attributes["auth_methods"] = ",".join(p.auth_methods)
        principal = Principal(id=p.id, roles=frozenset(p.roles), scopes=frozenset(p.scopes),
                              auth_method=p.auth_method, attributes=attributes)
        definition = {"name": name, "annotations": self.annotations} if self.annotations is not None else None
        return Input(principal=principal, kind=kind, name=name, method=method, server=server, args=self.args,
                     definition=definition, headers={k.lower(): v for k, v in self.headers.items()},
                     meta=self.meta, now=self.time or datetime.now(UTC))


class Case(Strict):
    name: str
    input: CaseInput
    expect: Literal["allow", "deny", "hidden"]
    decided_by: str | None = None


class TestFile(Strict):
    policy: str | None = None
    config: str | None = None
    cases: list[Case] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: Case
    decision: Decision
    passed: bool


def load_tests(path: Path) -> TestFile:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {getattr(exc, 'problem', exc)}"]) from None
    try:
        return TestFile.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigError(problems_of(exc, str(path))) from None


def policy_from_config(path: Path) -> CompiledPolicy:
    """The policy of ``guards.policy`` in an ``mcpwall.yaml``."""
    from mcpwall.config.loader import load
    from mcpwall.policy.loading import compile_settings

    config = load(path)
    settings = getattr(config.guards, "policy", None)
    if not isinstance(settings, PolicySettings):
        raise ConfigError([f"{path}: guards.policy is not configured"])
    return compile_settings(settings, path.parent)


def policy_for(tests: TestFile, test_path: Path) -> CompiledPolicy:
    base = test_path.parent
    if tests.policy is not None:
        policy_path = base / tests.policy
        return CompiledPolicy(load_document(policy_path), str(policy_path))
    if tests.config is not None:
        return policy_from_config(base / tests.config)
    raise ConfigError([f"{test_path}: name the policy under test with `policy:` or `config:` (or pass -c)"])


def run(policy: CompiledPolicy, tests: TestFile) -> list[CaseResult]:
    results = []
    for case in tests.cases:
        decision = policy.decide(case.input.to_input(), explain=True)
        passed = decision.effect == case.expect and (
            case.decided_by is None or decision.decided_by.startswith(case.decided_by))
        results.append(CaseResult(case, decision, passed))
    return results
