"""The ``flow`` guard: taint labels per session, and rules over labels and call history.

Some calls are dangerous only in sequence. Reading a private file is fine, fetching a web page
is fine, posting to a URL is fine — but after private data and untrusted content have both
entered the conversation, a tool that can carry data out is how an injected instruction
exfiltrates it (the "lethal trifecta"). This guard remembers, per session:

* **labels** the session has gained: a result from a tool labelled ``untrusted``, ``private``
  or ``secret`` (see :mod:`mcpwall.gateway.classify`; overridable in ``tool_labels``) labels the
  session, and so do findings that content guards recorded on the call (``finding_labels``);
* **history**: the last ``history`` tool calls, their labels and whether they succeeded.

Rules match the current call (tool globs, capability labels) and fire on conditions over that
state: labels the session carries, an earlier call within N calls (``after``/``within``), an
ordered ``sequence`` of earlier calls, or a missing prerequisite (``requires``). A firing rule
denies the call or holds it for approval (through the approval guard; without one, it denies).
The default rule set holds every ``egress`` call once a session carries ``private`` and
``untrusted`` labels.

A session is the legacy front session; for stateless (2026-07-28) calls it is the principal
plus the conversation key in ``_meta["dev.mcpwall/conversation"]``, or the principal alone.
Place ``flow`` before the content guards in the chain: responses run in reverse order, so it
then sees their findings. State is in memory and per process.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mcpwall.config.types import Seconds, Strict
from mcpwall.gateway.call import Call
from mcpwall.gateway.classify import CAPABILITY_LABELS, ToolLabeler, check_label_list
from mcpwall.guards.approval import LABELER_KEY, request_approval
from mcpwall.pipeline.guard import Guard, GuardEnv, GuardSettings
from mcpwall.pipeline.verdict import PASS, Pass, Reject, Verdict

log = logging.getLogger("mcpwall.guards.flow")

CONVERSATION_META = "dev.mcpwall/conversation"
_LABEL_PREFIX = "label:"


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class FlowRule(Strict):
    """One rule. Selectors (``tools``, ``capabilities``) pick the calls it applies to; conditions
    (``session_labels``, ``after``, ``sequence``, ``requires``) must all hold for it to fire.
    History patterns are tool globs, or ``label:NAME`` for any call whose tool had that label."""

    name: str = Field(min_length=1, max_length=64)
    tools: list[str] = Field(default_factory=list, description="Globs on the exposed or upstream tool name.")
    capabilities: list[str] = Field(default_factory=list, description="The tool has any of these labels.")
    session_labels: list[str] = Field(default_factory=list, description="The session carries all of these.")
    after: list[str] = Field(default_factory=list, description="An earlier call matched one of these.")
    within: int | None = Field(None, ge=1, le=10_000, description="Look back this many calls (default: all kept).")
    sequence: list[str] = Field(default_factory=list, description="Earlier calls matched these, in this order.")
    requires: list[str] = Field(default_factory=list,
                                description="Each must have succeeded earlier; fires when one has not.")
    action: Literal["deny", "approve"] = "deny"
    reason: str | None = Field(None, max_length=500)
    timeout: Seconds | None = None
    approvers: int | None = Field(None, ge=1, le=5)

    @field_validator("tools", "capabilities", "session_labels", "after", "sequence", "requires", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("capabilities", "session_labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        return check_label_list(value)

    @field_validator("after", "sequence", "requires")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for item in value:
            if item.startswith(_LABEL_PREFIX):
                check_label_list([item.removeprefix(_LABEL_PREFIX)])
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> FlowRule:
        if not (self.tools or self.capabilities or self.session_labels or self.after or self.sequence
                or self.requires):
            raise ValueError("a flow rule needs at least one of tools, capabilities, session_labels, after, "
                             "sequence, requires")
        return self


DEFAULT_RULES: tuple[FlowRule, ...] = (
    FlowRule(name="lethal-trifecta", capabilities=["egress"], session_labels=["private", "untrusted"],
             action="approve"),
)


class FlowSettings(GuardSettings):
    default_rules: bool = Field(True, description="Ship the built-in rules (the lethal-trifecta hold).")
    disable_rules: list[str] = Field(default_factory=list, description="Names of built-in rules to turn off.")
    rules: list[FlowRule] = Field(default_factory=list, description="A rule named like a built-in replaces it.")
    tool_labels: dict[str, list[str]] = Field(
        default_factory=dict, description="Label overrides: glob → labels (bare = replace, +x/-x = adjust).")
    finding_labels: dict[str, list[str]] = Field(
        default_factory=lambda: {"injection": ["untrusted"], "poisoning": ["untrusted"], "dlp": ["private"]},
        description="Labels a session gains when a guard (by name) or a finding (by kind) reports something.")
    scope: Literal["session", "principal"] = Field(
        "session", description="session: legacy session or principal+conversation; principal: all of a caller's "
                               "calls share one history (strictest).")
    history: int = Field(50, ge=1, le=10_000, description="Calls remembered per session.")
    session_ttl: Seconds = Field(8 * 3600.0, description="Forget a session idle this long.")
    max_sessions: int = Field(50_000, ge=1, description="Beyond this, the least recently used are forgotten.")

    @field_validator("tool_labels", "finding_labels")
    @classmethod
    def _label_map(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return {key: check_label_list(labels) for key, labels in value.items()}

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, value: list[FlowRule]) -> list[FlowRule]:
        seen: set[str] = set()
        for rule in value:
            if rule.name in seen:
                raise ValueError(f"two flow rules are named {rule.name!r}")
            seen.add(rule.name)
        return value


@dataclass(slots=True)
class Step:
    tool: str
    target: str | None
    labels: frozenset[str]
    ok: bool


@dataclass(slots=True)
class FlowState:
    """What one session has seen: labels (with the tool that brought each) and recent calls."""

    steps: deque[Step]
    labels: dict[str, str] = field(default_factory=dict)
    touched: float = 0.0


class _Pattern:
    """A history pattern: ``label:NAME`` or a glob on the exposed or upstream tool name."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.label = text.removeprefix(_LABEL_PREFIX) if text.startswith(_LABEL_PREFIX) else None
        self.regex = None if self.label else re.compile(fnmatch.translate(text))

    def matches(self, tool: str, target: str | None, labels: frozenset[str]) -> bool:
        if self.label is not None:
            return self.label in labels
        assert self.regex is not None
        return bool(self.regex.match(tool) or (target and self.regex.match(target)))


class _CompiledRule:
    def __init__(self, rule: FlowRule) -> None:
        self.rule = rule
        self.tools = [_Pattern(t) for t in rule.tools]
        self.capabilities = frozenset(rule.capabilities)
        self.session_labels = frozenset(rule.session_labels)
        self.after = [_Pattern(p) for p in rule.after]
        self.sequence = [_Pattern(p) for p in rule.sequence]
        self.requires = [_Pattern(p) for p in rule.requires]

    def check(self, tool: str, target: str | None, labels: frozenset[str], state: FlowState) -> str | None:
        """Why this rule fires for the call, or None when it does not."""
        rule = self.rule
        if self.tools and not any(p.matches(tool, target, labels) for p in self.tools):
            return None
        if self.capabilities and not labels & self.capabilities:
            return None
        if not self.session_labels <= state.labels.keys():
            return None
        steps: Sequence[Step] = list(state.steps)
        if rule.within is not None:
            steps = steps[-rule.within:]
        parts: list[str] = []
        if self.session_labels:
            parts.append("this session holds " + " and ".join(
                f"{label} data (from {state.labels[label]})" for label in sorted(self.session_labels)))
        if self.after:
            hit = next((s for s in reversed(steps) if any(p.matches(s.tool, s.target, s.labels) for p in self.after)),
                       None)
            if hit is None:
                return None
            window = f" within {rule.within} calls" if rule.within else ""
            parts.append(f"it follows {hit.tool}{window}")
        if self.sequence:
            if not _subsequence(steps, self.sequence):
                return None
            parts.append("it completes the sequence " + " → ".join([*(p.text for p in self.sequence), tool]))
        if self.requires:
            missing = [p.text for p in self.requires
                       if not any(s.ok and p.matches(s.tool, s.target, s.labels) for s in steps)]
            if not missing:
                return None
            parts.append(f"{' and '.join(missing)} must succeed first in this session")
        if rule.reason:
            return f"flow rule {rule.name!r}: {rule.reason}"
        if self.capabilities:
            parts.insert(0, f"{tool} is {'/'.join(sorted(labels & self.capabilities))}")
        return f"flow rule {rule.name!r}: " + ("; ".join(parts) or f"{tool} is not allowed here")


class FlowGuard(Guard):
    name = "flow"
    Settings = FlowSettings
    settings: FlowSettings

    def __init__(self, settings: FlowSettings, env: GuardEnv) -> None:
        super().__init__(settings, env)
        self.labeler = ToolLabeler(settings.tool_labels)
        env.state[LABELER_KEY] = self.labeler
        own = {r.name for r in settings.rules}
        builtin = [r for r in DEFAULT_RULES if settings.default_rules and r.name not in own
                   and r.name not in settings.disable_rules]
        self.rules = [_CompiledRule(r) for r in (*builtin, *settings.rules)]
        self._sessions: OrderedDict[str, FlowState] = OrderedDict()
        self._finding_labels = {k: frozenset(v) for k, v in settings.finding_labels.items()}

    async def on_request(self, call: Call) -> Verdict:
        if call.direction != "client" or call.method not in ("tools/call", "resources/read"):
            return PASS
        key = self.session_key(call)
        state = self._state(key)
        call.scratch["flow.key"] = key
        call.labels.update(state.labels)
        if call.method == "resources/read":
            uri = call.target or str(call.params.get("uri") or "")
            call.scratch["flow.labels"] = self.labeler.resource(uri)
            return PASS
        tool = call.exposed_name or call.target or str(call.params.get("name") or "")
        labels = self.labeler.tool(exposed=call.exposed_name, target=call.target, server=call.server,
                                   definition=call.definition)
        call.scratch["flow.labels"] = labels
        return self._judge(call, tool, labels, state)

    async def on_response(self, call: Call, result: dict[str, Any]) -> Verdict:
        key = call.scratch.get("flow.key")
        if key is None or result.get("resultType") == "input_required":
            return PASS
        state = self._state(key)
        tool_labels: frozenset[str] = call.scratch.get("flow.labels", frozenset())
        gained = {label for label in tool_labels if label not in CAPABILITY_LABELS}
        gained |= self._labels_from_findings(call)
        if call.method == "tools/call":
            tool = call.exposed_name or call.target or str(call.params.get("name") or "")
            state.steps.append(Step(tool, call.target, tool_labels, ok=result.get("isError") is not True))
            source = tool
        else:
            source = call.target or "a resource"
        new = sorted(label for label in gained if label not in state.labels)
        for label in new:
            state.labels[label] = source
        call.labels.update(gained)
        if new:
            self.env.events.emit("flow.labelled", session=_public_key(key), principal=call.principal.id,
                                 tool=source, labels=new)
            return Pass(reason=f"the session gained {', '.join(new)} from {source}")
        return PASS

    def session_key(self, call: Call) -> str:
        principal = call.principal.id
        if self.settings.scope == "principal":
            return f"p:{principal}"
        if call.session_id:
            return f"s:{principal}:{call.session_id}"
        meta = call.params.get("_meta")
        conversation = meta.get(CONVERSATION_META) if isinstance(meta, dict) else None
        if isinstance(conversation, str | int) and not isinstance(conversation, bool) and str(conversation):
            return f"c:{principal}:{str(conversation)[:200]}"
        return f"p:{principal}"

    def _judge(self, call: Call, tool: str, labels: frozenset[str], state: FlowState) -> Verdict:
        denials: list[tuple[FlowRule, str]] = []
        holds: list[tuple[FlowRule, str]] = []
        for compiled in self.rules:
            why = compiled.check(tool, call.target, labels, state)
            if why is not None:
                (denials if compiled.rule.action == "deny" else holds).append((compiled.rule, why))
        if not denials and not holds:
            return PASS
        fired = denials or holds
        self.env.events.emit("flow.violation", principal=call.principal.id, tool=tool,
                             rules=[r.name for r, _ in fired], action="deny" if denials else "approve",
                             session_labels=sorted(state.labels), decision_id=call.decision_id)
        finding = [{"kind": "flow", "rules": [r.name for r, _ in fired], "session_labels": sorted(state.labels)}]
        if denials:
            return Reject(denials[0][1], findings=finding)
        reason = "; ".join(why for _, why in holds)
        timeouts = [r.timeout for r, _ in holds if r.timeout]
        approvers = [r.approvers for r, _ in holds if r.approvers]
        verdict = request_approval(self.env, call, reason=reason, source="flow",
                                   rule=",".join(r.name for r, _ in holds),
                                   timeout=min(timeouts) if timeouts else None,
                                   approvers=max(approvers) if approvers else None)
        if verdict is None:
            return Reject(f"{reason} (no approval channel is configured, so the call was refused)", findings=finding)
        return verdict

    def _labels_from_findings(self, call: Call) -> set[str]:
        out: set[str] = set()
        for record in call.records:
            if not record.findings or record.guard in (self.name, "approval"):
                continue
            out |= self._finding_labels.get(record.guard, frozenset())
            for finding in record.findings:
                out |= _finding_own_labels(finding, self._finding_labels)
        return out

    def _state(self, key: str) -> FlowState:
        now = time.monotonic()
        state = self._sessions.get(key)
        if state is not None and now - state.touched > self.settings.session_ttl:
            del self._sessions[key]
            state = None
        if state is None:
            state = FlowState(steps=deque(maxlen=self.settings.history))
            self._sessions[key] = state
            self._evict(now)
        else:
            self._sessions.move_to_end(key)
        state.touched = now
        return state

    def _evict(self, now: float) -> None:
        while len(self._sessions) > self.settings.max_sessions:
            self._sessions.popitem(last=False)
        # The oldest entries are the least recently used: drop expired ones from the front.
        while self._sessions:
            oldest_key, oldest = next(iter(self._sessions.items()))
            if now - oldest.touched <= self.settings.session_ttl:
                break
            del self._sessions[oldest_key]


def _subsequence(steps: Iterable[Step], patterns: Sequence[_Pattern]) -> bool:
    index = 0
    for step in steps:
        if patterns[index].matches(step.tool, step.target, step.labels):
            index += 1
            if index == len(patterns):
                return True
    return False


def _finding_own_labels(finding: dict[str, Any], mapping: dict[str, frozenset[str]]) -> set[str]:
    out: set[str] = set()
    labels = finding.get("labels")
    if isinstance(labels, list):
        out |= {x for x in labels if isinstance(x, str) and x and x not in CAPABILITY_LABELS}
    for key in ("kind", "type", "category"):
        value = finding.get(key)
        if isinstance(value, str):
            out |= mapping.get(value, frozenset())
    return out


def _public_key(key: str) -> str:
    # Session ids are bearer-like for legacy clients: never put them in events whole.
    kind, _, rest = key.partition(":")
    if kind == "s":
        principal, _, session = rest.rpartition(":")
        return f"s:{principal}:{session[:6]}…"
    return key
