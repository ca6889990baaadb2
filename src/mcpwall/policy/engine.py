"""Compile a policy document once; decide calls and list visibility fast.

Two layers:

1. **Grants** (roles). A target — tool, prompt or resource — is visible to a principal when one
   of its roles (or the everyone-role ``*``) allows it by name glob or, for tools, by capability
   class, and no role denies it: deny overrides allow, and with ``default: deny`` anything not
   granted is invisible. Invisible targets are withheld from lists and refused exactly like
   targets that do not exist.
2. **Rules**. A visible call must also meet every rule that applies to it — argument
   constraints, CEL conditions, time windows, required auth methods, confirmation, scopes.
   A failed rule is a visible refusal with a reason the model can read.

Every decision says which grant or rule decided it (``decided_by``); ``explain`` also returns
the trace of everything that was considered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from mcpwall.gateway.call import Principal
from mcpwall.policy.conditions import CompiledArg, CompiledCel, CompiledWindow, glob_regex
from mcpwall.policy.model import Capability, Grants, PolicyDocument, Rule

Kind = Literal["tool", "prompt", "resource"]
Effect = Literal["allow", "deny", "hidden"]
_FIELD: dict[str, str] = {"tool": "tools", "prompt": "prompts", "resource": "resources"}
_CACHE_MAX = 50_000
EVERYONE = "*"
META_CONFIRM = "dev.mcpwall/confirm"


@dataclass(slots=True)
class Input:
    """What the engine needs to know about one call."""

    principal: Principal
    kind: Kind
    name: str  # namespaced tool/prompt name, or resource URI
    method: str = "tools/call"
    server: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    definition: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class Decision:
    effect: Effect
    reason: str
    decided_by: str
    step_up_scopes: tuple[str, ...] = ()
    trace: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.effect == "allow"


@dataclass(frozen=True, slots=True)
class _Patterns:
    items: tuple[tuple[str, re.Pattern[str]], ...]
    combined: re.Pattern[str] | None

    @classmethod
    def of(cls, globs: list[str]) -> _Patterns:
        items = tuple((g, glob_regex([g])) for g in globs)
        return cls(tuple((g, r) for g, r in items if r is not None), glob_regex(globs))

    def match(self, name: str) -> bool:
        return self.combined is not None and self.combined.match(name) is not None

    def which(self, name: str) -> str | None:
        return next((g for g, r in self.items if r.match(name)), None)


@dataclass(frozen=True, slots=True)
class _CompiledGrants:
    patterns: dict[str, _Patterns]
    capabilities: frozenset[str]

    @classmethod
    def of(cls, grants: Grants) -> _CompiledGrants:
        return cls({kind: _Patterns.of(getattr(grants, f)) for kind, f in _FIELD.items()},
                   frozenset(grants.capabilities))

    def match(self, kind: str, name: str, capability: str | None) -> str | None:
        """The grant that matches, as text for ``decided_by``, or None."""
        patterns = self.patterns[kind]
        if patterns.match(name):
            return f"{_FIELD[kind]} {patterns.which(name)!r}"
        if kind == "tool" and capability is not None and capability in self.capabilities:
            return f"capabilities {capability!r}"
        return None


class _CompiledRule:
    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.name = rule.name
        self.targets = {kind: _Patterns.of(getattr(rule, f)) for kind, f in _FIELD.items()}
        self.capabilities = frozenset(rule.capabilities)
        self.roles = frozenset(rule.roles)
        self.args = [CompiledArg(path, spec) for path, spec in rule.args.items()]
        self.cel = CompiledCel(rule.when) if rule.when else None
        self.during = [CompiledWindow(w) for w in rule.during]
        self.not_during = [CompiledWindow(w) for w in rule.not_during]

    def applies(self, kind: str, name: str, capability: str | None, roles: frozenset[str]) -> bool:
        if self.roles and not (self.roles & roles):
            return False
        if self.targets[kind].match(name):
            return True
        return kind == "tool" and capability is not None and capability in self.capabilities


class CompiledPolicy:
    def __init__(self, document: PolicyDocument, source: str = "<inline>") -> None:
        self.document = document
        self.source = source
        self.default: Effect = "allow" if document.default == "allow" else "hidden"
        self.roles = {name: (_CompiledGrants.of(role.allow), _CompiledGrants.of(role.deny))
                      for name, role in document.roles.items()}
        self.capability_globs = [(glob, glob_regex([glob]), cls) for glob, cls in document.capabilities.items()]
        self.rules = [_CompiledRule(rule) for rule in document.rules]
        self.confirm_header = document.confirm_header.lower()
        self._visible: dict[tuple[frozenset[str], str, str, str | None], Decision] = {}

    # -- capability classes ------------------------------------------------------------------

    def capability(self, name: str, definition: dict[str, Any] | None) -> tuple[Capability, bool]:
        """(class, destructive) of a tool: config globs first, then the tool's annotations.
        Annotations come from the upstream and are only hints; pin definitions to trust them."""
        annotations = (definition or {}).get("annotations")
        annotations = annotations if isinstance(annotations, dict) else {}
        configured = next((cls for _glob, regex, cls in self.capability_globs if regex and regex.match(name)), None)
        if configured is not None:
            cls: Capability = configured
        else:
            cls = "read" if annotations.get("readOnlyHint") is True else "write"
        if cls == "read":
            return cls, False
        # MCP's default for destructiveHint is true: a tool is destructive unless it says otherwise.
        return cls, cls == "admin" or annotations.get("destructiveHint") is not False

    # -- grants --------------------------------------------------------------------------------

    def visibility(self, principal: Principal, kind: Kind, name: str, definition: dict[str, Any] | None = None
                   ) -> Decision:
        capability = self.capability(name, definition)[0] if kind == "tool" else None
        key = (principal.roles, kind, name, capability)
        cached = self._visible.get(key)
        if cached is not None:
            return cached
        decision = self._grant(principal.roles, kind, name, capability, None)
        if len(self._visible) >= _CACHE_MAX:
            self._visible.clear()
        self._visible[key] = decision
        return decision

    def _grant(self, roles: frozenset[str], kind: str, name: str, capability: str | None,
               trace: list[str] | None) -> Decision:
        applicable = [r for r in (*sorted(roles), EVERYONE) if r in self.roles]
        allowed_by: str | None = None
        for role in applicable:
            allow, deny = self.roles[role]
            denied = deny.match(kind, name, capability)
            if denied is not None:
                if trace is not None:
                    trace.append(f"role {role}: deny {denied} matches {name}")
                return Decision("hidden", f"{kind} not available", f"roles.{role}.deny.{denied}")
            granted = allow.match(kind, name, capability)
            if granted is not None:
                if trace is not None:
                    trace.append(f"role {role}: allow {granted} matches {name}")
                allowed_by = allowed_by or f"roles.{role}.allow.{granted}"
        if trace is not None and not applicable:
            trace.append(f"no role of the principal ({', '.join(sorted(roles)) or 'none'}) is in the policy")
        if allowed_by is not None:
            return Decision("allow", "", allowed_by)
        if self.default == "allow":
            return Decision("allow", "", "default")
        if trace is not None:
            trace.append(f"no grant matches {name}; default deny")
        return Decision("hidden", f"{kind} not available", "default")

    # -- calls ---------------------------------------------------------------------------------

    def decide(self, call: Input, *, explain: bool = False) -> Decision:
        trace: list[str] | None = [] if explain else None
        capability, destructive = (self.capability(call.name, call.definition) if call.kind == "tool"
                                   else (None, False))
        if trace is not None and capability is not None:
            trace.append(f"{call.name} is class {capability}{' (destructive)' if destructive else ''}")
        grant = (self._grant(call.principal.roles, call.kind, call.name, capability, trace) if explain
                 else self.visibility(call.principal, call.kind, call.name, call.definition))
        if not grant.allowed:
            return _with_trace(grant, trace)
        if call.kind == "tool" and destructive and self.document.confirm_destructive and not self._confirmed(call):
            return _with_trace(Decision("deny", f"{call.name} is destructive and needs confirmation "
                                                f"(header {self.confirm_header}: {call.name})",
                                        "confirm_destructive"), trace)
        for rule in self.rules:
            if not rule.applies(call.kind, call.name, capability, call.principal.roles):
                continue
            variables = _cel_variables(call, rule.cel.names) if rule.cel is not None else None
            failure = self._check(rule, call, variables)
            if failure is not None:
                return _with_trace(failure, trace)
            if trace is not None:
                trace.append(f"rule {rule.name}: satisfied")
        return _with_trace(grant, trace)

    def _check(self, rule: _CompiledRule, call: Input, variables: dict[str, Any] | None) -> Decision | None:
        where = f"rules.{rule.name}"

        def deny(reason: str, part: str, scopes: tuple[str, ...] = ()) -> Decision:
            return Decision("deny", rule.rule.message or reason, f"{where}.{part}", scopes)

        methods = _auth_methods(call.principal)
        missing_auth = [m for m in rule.rule.require_auth if m not in methods]
        if missing_auth:
            return deny(f"this call requires authentication by {', '.join(missing_auth)}", "require_auth")
        if rule.rule.require_scopes:
            missing = [s for s in rule.rule.require_scopes if s not in call.principal.scopes]
            if missing:
                return deny("this call needs more OAuth scopes", "require_scopes", tuple(rule.rule.require_scopes))
        if rule.during and not any(w.contains(call.now) for w in rule.during):
            return deny("this call is not allowed at this time", "during")
        if any(w.contains(call.now) for w in rule.not_during):
            return deny("this call is not allowed at this time", "not_during")
        if rule.rule.require_confirmation and not self._confirmed(call):
            return deny(f"this call needs confirmation (header {self.confirm_header}: {call.name})",
                        "require_confirmation")
        for arg in rule.args:
            reason = arg.check(call.args)
            if reason is not None:
                return deny(reason, f"args.{arg.path}")
        if rule.cel is not None and variables is not None:
            reason = rule.cel.check(variables)
            if reason is not None:
                return deny(reason, "when")
        return None

    def _confirmed(self, call: Input) -> bool:
        return call.headers.get(self.confirm_header) == call.name or call.meta.get(META_CONFIRM) == call.name


def _auth_methods(principal: Principal) -> set[str]:
    listed = principal.attributes.get("auth_methods")
    methods = set(listed.split(",")) if listed else set()
    methods.add(principal.auth_method)
    return methods


def _cel_variables(call: Input, names: frozenset[str]) -> dict[str, Any]:
    """The CEL variables an expression uses (see :class:`CompiledCel`)."""
    out: dict[str, Any] = {}
    for name in names:
        if name == "args":
            out[name] = call.args
        elif name == "principal":
            p = call.principal
            out[name] = {"id": p.id, "roles": sorted(p.roles), "scopes": sorted(p.scopes),
                         "auth_method": p.auth_method, "auth_methods": sorted(_auth_methods(p)),
                         "attributes": dict(p.attributes)}
        elif name == "time":
            out[name] = call.now.astimezone(UTC)
        elif name == "server":
            out[name] = call.server or ""
        elif name == "tool":
            out[name] = call.name if call.kind == "tool" else ""
        elif name == "target":
            out[name] = call.name
        elif name == "method":
            out[name] = call.method
    return out


def _with_trace(decision: Decision, trace: list[str] | None) -> Decision:
    if trace is None:
        return decision
    return Decision(decision.effect, decision.reason, decision.decided_by, decision.step_up_scopes, tuple(trace))
