"""The ``dlp`` guard: secrets and personal data, in both directions.

::

    guards:
      dlp:
        action: redact                 # monitor | redact | block
        min_severity: medium           # weaker findings are only recorded
        rules:                         # per-rule overrides: ignore | monitor | redact | block
          secret.aws-access-key-id: block
          pii.email: ignore
        custom_rules:
          - {id: employee-id, pattern: '\\bEMP-[0-9]{6}\\b', category: pii, severity: medium}

What is scanned:

* client requests (``on_request``): ``tools/call`` and ``prompts/get`` arguments, the argument of
  ``completion/complete`` and the URI of ``resources/read`` — before any upstream sees them, so
  ``block`` really keeps a credential from leaving;
* results (``on_response``): everything a result carries (content, structured content, embedded
  resources, prompt messages);
* server→client requests (``call.direction == "server"``: sampling, elicitation) on the way to the
  client, and the client's answers to them on the way back to the upstream.

``redact`` replaces each matched span inside its string with ``[REDACTED:<rule>]``: the message
keeps its shape, so JSON stays valid and ``structuredContent`` keeps its types. ``block`` refuses
(for ``tools/call``, an ``isError`` result naming the rules and locations). ``monitor`` only records.
Findings (rule, category, severity, JSON path, redacted excerpt — never the value) go to the
verdict for the audit trail and to a ``finding`` event for alerting.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from mcpwall.detect import rewrite
from mcpwall.detect.rules import Rule, Severity, SeverityName
from mcpwall.detect.scanner import Finding, Scan
from mcpwall.detect.settings import ContentSettings, build_scanner, override_for
from mcpwall.gateway.call import Call
from mcpwall.pipeline.guard import Guard, GuardEnv
from mcpwall.pipeline.verdict import PASS, Mutate, Pass, Reject, Verdict

Action = Literal["monitor", "redact", "block"]
RuleAction = Literal["ignore", "monitor", "redact", "block"]
_RANK = {"ignore": 0, "monitor": 1, "redact": 2, "block": 3}
# Where a client request carries user data, per method.
_REQUEST_FIELDS: dict[str, tuple[str, ...]] = {
    "tools/call": ("arguments",),
    "prompts/get": ("arguments",),
    "completion/complete": ("argument", "context"),
    "resources/read": ("uri",),
}
_EXTRA_IDS = ("secret.sensitive-field",)


class DlpSettings(ContentSettings):
    packs: list[str] = Field(default_factory=lambda: ["secrets", "pii"],
                             description="Rule packs: built-in names (secrets, pii) or pack files.")
    action: Action = Field("redact", description="What to do with findings at or above min_severity.")
    min_severity: SeverityName = Field("medium", description="Findings below this are only recorded.")
    report_severity: SeverityName = Field("medium", description="Rules below this are not run at all unless an "
                                          "override names them; low brings in emails and phone numbers, info "
                                          "IP addresses.")
    rules: dict[str, RuleAction] = Field(default_factory=dict, description="Per-rule actions: full id "
                                         "(secret.github-pat), short id (github-pat) or category.* (pii.*).")
    requests: bool = Field(True, description="Scan client requests (arguments) before they are routed.")
    responses: bool = Field(True, description="Scan results on their way to the client.")
    server_requests: bool = Field(True, description="Scan sampling/elicitation requests and their answers.")
    sensitive_fields: bool = Field(True, description="Treat credential-looking values of fields named like "
                                                     "credentials (password, api_key, token…) as secrets.")


class DlpGuard(Guard):
    name = "dlp"
    Settings = DlpSettings
    settings: DlpSettings

    def __init__(self, settings: DlpSettings, env: GuardEnv) -> None:
        super().__init__(settings, env)
        self._min = Severity.parse(settings.min_severity)
        self._report = Severity.parse(settings.report_severity)
        self._default: Action = settings.action
        self.scanner = build_scanner(self.name, settings, env.config_dir, categories=("secret", "pii"),
                                     sensitive_fields=settings.sensitive_fields, keep=self._reportable,
                                     overrides=settings.rules, extra_ids=_EXTRA_IDS)

    async def on_request(self, call: Call) -> Verdict:
        if call.direction == "server":
            if not self.settings.server_requests:
                return PASS
            params = call.params
            return self._judge(call, call.message, ("params",), params, "server request")
        if not self.settings.requests:
            return PASS
        fields = _REQUEST_FIELDS.get(call.method)
        if not fields:
            return PASS
        params = call.params
        subset = {f: params[f] for f in fields if f in params}
        if not subset:
            return PASS
        return self._judge(call, call.message, ("params",), subset, "request")

    async def on_response(self, call: Call, result: dict[str, Any]) -> Verdict:
        if call.direction == "server":
            if not self.settings.server_requests:
                return PASS
            return self._judge(call, result, (), result, "answer to a server request")
        if not self.settings.responses:
            return PASS
        return self._judge(call, result, (), result, "result")

    def _judge(self, call: Call, message: dict[str, Any], root: tuple[str, ...], value: Any, what: str) -> Verdict:
        scan = self.scanner.scan(value, root)
        decided = [(f, action) for f in scan.findings if (action := self._action(f)) != "ignore"]
        if not decided:
            return PASS
        records = [{**f.to_dict(), "action": action} for f, action in decided]
        worst = max((a for _, a in decided), key=_RANK.__getitem__)
        self.env.events.emit("finding", guard=self.name, decision_id=call.decision_id, method=call.method,
                             server=call.server, tool=call.target, direction=call.direction, action=worst,
                             findings=records)
        acted = [f for f, a in decided if a == worst]
        summary = _summary(acted)
        if worst == "block":
            return Reject(f"dlp: {what} blocked: it contains {summary}", findings=records,
                          data={"findings": [_public(f) for f in acted]})
        if worst == "redact":
            redacted = _redacted(message, scan, [f for f, a in decided if a == "redact"])
            return Mutate(redacted, reason=f"dlp: redacted {summary} in the {what}", findings=records)
        return Pass(reason=f"dlp: {what} contains {summary}", findings=records)

    def _reportable(self, rule: Rule) -> bool:
        """Rules whose findings would all be dropped are not compiled at all."""
        override = override_for(rule.id, rule.category, self.settings.rules)
        return override != "ignore" if override is not None else rule.severity >= self._report

    def _action(self, finding: Finding) -> RuleAction:
        override = override_for(finding.rule, finding.category, self.settings.rules)
        if override is not None:
            return override  # type: ignore[return-value]
        if finding.severity < self._report:
            return "ignore"
        if finding.severity < self._min:
            return "monitor"
        return self._default


def _redacted(message: dict[str, Any], scan: Scan, findings: list[Finding]) -> dict[str, Any]:
    result: dict[str, Any] = rewrite.apply(message, scan, findings, rewrite.redaction)
    return result


def _summary(findings: list[Finding]) -> str:
    rules = sorted({f.rule for f in findings})
    where = sorted({f.location for f in findings})
    more = f" and {len(where) - 3} more places" if len(where) > 3 else ""
    return f"{', '.join(rules)} at {', '.join(where[:3])}{more}"


def _public(finding: Finding) -> dict[str, Any]:
    """What a client may learn about a finding: no excerpt, no span."""
    return {"rule": finding.rule, "category": finding.category, "location": finding.location}
