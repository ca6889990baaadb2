"""The ``approval`` guard: hold risky ``tools/call`` requests until a person says yes.

A call needs approval when an approval rule matches it (by tool glob, capability label,
principal or role), when its risk score reaches ``risk_threshold``, or when another guard asks
for it through :func:`request_approval` (the ``flow`` guard does, for toxic sequences). The
guard then answers with a ``Hold``: the chain parks the call, the approval service opens (or
joins) a stored request, announces it, and waits for approvers (admin API, ``mcpwall approvals``,
optionally the end user through MCP elicitation) until the request's timeout denies it.

A person's decision is cached for the same principal, tool and arguments, so an approved
operation is not asked again and a client that reconnects and retries gets the decision.
The request, the wait and the decision live in :mod:`mcpwall.approvals`; this module only
decides *whether* to hold and turns the outcome into a verdict.
"""

from __future__ import annotations

import logging
import os

from starlette.routing import BaseRoute

from mcpwall.approvals.admin import approval_routes
from mcpwall.approvals.assess import Assessment, assess, score
from mcpwall.approvals.service import ApprovalService, CallFacts, TooManyPending
from mcpwall.approvals.settings import ApprovalSettings
from mcpwall.gateway.call import Call
from mcpwall.gateway.classify import ToolLabeler
from mcpwall.pipeline.guard import Guard, GuardEnv
from mcpwall.pipeline.verdict import PASS, Hold, Pass, Reject, Verdict

log = logging.getLogger("mcpwall.guards.approval")

SERVICE_KEY = "approval.service"
GUARD_KEY = "approval"
LABELER_KEY = "tool_labeler"  # published by the flow guard; used when approval has no overrides
ADMIN_TOKEN_ENV = "MCPWALL_ADMIN_TOKEN"
_DEFAULT_LABELER = ToolLabeler()


class ApprovalGuard(Guard):
    name = "approval"
    Settings = ApprovalSettings
    settings: ApprovalSettings

    def __init__(self, settings: ApprovalSettings, env: GuardEnv) -> None:
        super().__init__(settings, env)
        service = env.state.get(SERVICE_KEY)
        if not isinstance(service, ApprovalService):
            service = ApprovalService(env.events, settings)
            env.state[SERVICE_KEY] = service
        self.service: ApprovalService = service
        self.service.acquire()
        self._labeler = ToolLabeler(settings.tool_labels) if settings.tool_labels else None
        self.admin_token = settings.admin_token or os.environ.get(ADMIN_TOKEN_ENV) or None
        env.state[GUARD_KEY] = self

    async def start(self) -> None:
        self.service.configure(self.settings)
        await self.service.start(self.env.storage_url, self.env.config_dir)

    async def aclose(self) -> None:
        if self.env.state.get(GUARD_KEY) is self:
            del self.env.state[GUARD_KEY]
        await self.service.release()

    def admin_routes(self) -> list[BaseRoute]:
        def current() -> tuple[ApprovalService, ApprovalSettings, str | None]:
            live = self.env.state.get(GUARD_KEY)
            guard = live if isinstance(live, ApprovalGuard) else self
            return guard.service, guard.settings, guard.admin_token
        return approval_routes(current)

    async def on_request(self, call: Call) -> Verdict:
        if call.direction != "client" or call.method != "tools/call" or call.scratch.get("approval.granted"):
            return PASS
        assessment = self.assess(call)
        if not assessment.needed:
            return PASS
        return self.hold(call, assessment)

    # -- used by request_approval and by this guard ---------------------------------------

    def labels(self, call: Call) -> frozenset[str]:
        labeler = self._labeler or self.env.state.get(LABELER_KEY) or _DEFAULT_LABELER
        if not isinstance(labeler, ToolLabeler):
            labeler = _DEFAULT_LABELER
        return labeler.tool(exposed=call.exposed_name, target=call.target, server=call.server,
                            definition=call.definition)

    def assess(self, call: Call) -> Assessment:
        return assess(self.settings, call, self.labels(call))

    def hold(self, call: Call, assessment: Assessment) -> Verdict:
        """A cached decision if one answers this call, else a ``Hold`` that opens the request
        only when the chain enforces it (a shadow-mode hold asks nobody)."""
        facts = CallFacts.of(call)
        cached = self.service.cached(facts, assessment)
        if cached is not None:
            call.scratch["approval.id"] = cached.id
            if cached.status == "approved":
                call.scratch["approval.granted"] = cached.id
                return Pass(reason=f"approved earlier by {cached.decided_by} (approval {cached.id})")
            why = f": {cached.decision_reason}" if cached.decision_reason else ""
            return Reject(f"this call was denied earlier by {cached.decided_by}{why} (approval {cached.id})",
                          data={"approval": {"id": cached.id, "status": "denied"}})
        labels = sorted(assessment.labels)
        session_labels = sorted(call.labels)

        async def wait() -> Pass | Reject:
            try:
                record = self.service.open(facts, assessment, labels=labels, session_labels=session_labels)
            except TooManyPending as exc:
                return Reject(f"{exc.message}; the call was refused")
            call.scratch["approval.id"] = record.id
            return await self.service.wait(record.id, call, facts)

        return Hold(reason="held for approval: " + "; ".join(assessment.reasons), wait=wait,
                    findings=[{"kind": "approval", "risk": assessment.risk.to_dict(), "sources": assessment.sources,
                               "rule": assessment.rule}])


def request_approval(env: GuardEnv, call: Call, *, reason: str, source: str, rule: str | None = None,
                     timeout: float | None = None, approvers: int | None = None) -> Verdict | None:
    """Hold ``call`` for approval on behalf of another guard (``flow``, ``policy``).

    The request combines ``reason`` with whatever the approval guard's own rules ask for this
    call (one request, the stricter requirements). Returns the verdict to give the chain — a
    ``Hold``, or a cached ``Pass``/``Reject`` — or ``None`` when no approval guard is
    configured, in which case the caller must refuse the call itself (fail closed).
    """
    guard = env.state.get(GUARD_KEY)
    if not isinstance(guard, ApprovalGuard):
        return None
    if call.scratch.get("approval.granted"):
        return PASS  # this very call was already approved by a person in this chain run
    settings = guard.settings
    labels = guard.labels(call)
    own = guard.assess(call)
    extra = Assessment(needed=True, risk=score(call, labels), labels=labels, reasons=[reason], sources=[source],
                       rule=rule, timeout=timeout or settings.timeout, approvers=approvers or settings.approvers,
                       user_confirmation=settings.user_confirmation)
    return guard.hold(call, own.merge(extra))


def approval_configured(env: GuardEnv) -> bool:
    return isinstance(env.state.get(GUARD_KEY), ApprovalGuard)
