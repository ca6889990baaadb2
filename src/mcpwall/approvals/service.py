"""The approval service: opens requests, waits for people, times out, remembers decisions.

One service per gateway process, shared by every guard instance that holds calls (it lives in
``GuardEnv.state["approval.service"]``, so a policy reload that rebuilds the guards keeps the
waiting calls, their timers and the store). Its parts:

* **requests** are records in the approval store (:mod:`mcpwall.storage.approvals`); a retry of
  a call that is already pending joins the pending request instead of opening a second one;
* **waiting**: a held call waits on an in-process signal, bounded by the request's expiry, and
  sends progress notifications meanwhile so the client does not give up first;
* **expiry**: every pending request has a timer; after a restart the timers are rebuilt from
  the store and overdue requests are expired at once — a timeout is always a denial;
* **decisions** come from approvers (admin API, CLI) or from the end user (MCP elicitation).
  A decision is re-evaluated against today's settings (time of check vs time of use), a caller
  cannot approve their own call, and a request may need several distinct approvers;
* **the cache**: human decisions are reused for the same principal, tool and arguments until
  ``cache_ttl`` ends, if the tool's definition has not changed and the settings ask no more.

Every request and decision is announced on the event bus (``approval.requested``,
``approval.vote``, ``approval.decided``) for the audit trail, and to the webhook if configured.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from mcpwall.approvals.assess import Assessment, cache_key, definition_digest, digest, redact, required_approvers
from mcpwall.approvals.settings import ApprovalSettings
from mcpwall.approvals.webhook import WebhookSender
from mcpwall.pipeline.verdict import Pass, Reject
from mcpwall.storage.approvals import ApprovalRecord, ApprovalStore, open_approval_store

if TYPE_CHECKING:
    from mcpwall.gateway.call import Call
    from mcpwall.gateway.events import EventBus

log = logging.getLogger("mcpwall.approvals")

_MAX_CAS_TRIES = 8
_ELICIT_PREVIEW = 2000


class ApprovalError(Exception):
    """An approver's action that cannot be carried out; ``code`` is stable for API clients."""

    code = "invalid"
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ApprovalError):
    code, http_status = "not_found", 404


class NotPending(ApprovalError):
    code, http_status = "not_pending", 409


class SelfApproval(ApprovalError):
    code, http_status = "self_approval", 403


class DuplicateApprover(ApprovalError):
    code, http_status = "duplicate_approver", 409


class TooManyPending(ApprovalError):
    code, http_status = "too_many_pending", 429


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What an approval request records about a held call, computed once when it is held."""

    principal: str
    auth_method: str
    roles: tuple[str, ...]
    session: str | None
    server: str | None
    tool: str
    target: str | None
    method: str
    arguments: dict[str, Any]  # redacted
    arguments_digest: str
    definition_digest: str
    cache_key: str
    decision_id: str

    @classmethod
    def of(cls, call: Call) -> CallFacts:
        tool = call.exposed_name or call.target or str(call.params.get("name") or "")
        args_digest = digest({"tool": tool, "arguments": call.arguments})
        return cls(principal=call.principal.id, auth_method=call.principal.auth_method,
                   roles=tuple(sorted(call.principal.roles)), session=call.session_id, server=call.server,
                   tool=tool, target=call.target, method=call.method, arguments=redact(call.arguments),
                   arguments_digest=args_digest, definition_digest=definition_digest(call.definition),
                   cache_key=cache_key(call.principal.id, tool, args_digest), decision_id=call.decision_id)


class ApprovalService:
    def __init__(self, events: EventBus, settings: ApprovalSettings | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.events = events
        self.settings = settings or ApprovalSettings()
        self.clock = clock
        self.store: ApprovalStore | None = None
        self.webhook: WebhookSender | None = None
        self._signals: dict[str, asyncio.Event] = {}
        self._waiting: Counter[str] = Counter()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._asking: dict[str, asyncio.Task[None]] = {}  # one elicitation per request at a time
        self._users = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def acquire(self) -> None:
        self._users += 1

    async def start(self, storage_url: str, base_dir: Path | None = None) -> None:
        """Open the store (once), then rebuild timers for pending requests and expire overdue ones."""
        if self.store is None:
            self.store = open_approval_store(storage_url, base_dir)
            self.store.prune(self.clock() - self.settings.retention)
            for record in self.store.pending():
                if record.expires <= self.clock():
                    self.expire(record.id)
                else:
                    self._schedule(record)
        self.configure(self.settings)

    def configure(self, settings: ApprovalSettings) -> None:
        """Adopt new settings (a reload); the webhook client is rebuilt when its settings change."""
        self.settings = settings
        if self.webhook is not None and self.webhook.settings != settings.webhook:
            old, self.webhook = self.webhook, None
            _background(old.aclose())
        if self.webhook is None and settings.webhook is not None:
            self.webhook = WebhookSender(settings.webhook)

    async def release(self) -> None:
        self._users -= 1
        if self._users > 0:
            return
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self.webhook is not None:
            await self.webhook.aclose()
            self.webhook = None
        if self.store is not None:
            self.store.close()
            self.store = None

    @property
    def _store(self) -> ApprovalStore:
        if self.store is None:
            raise RuntimeError("the approval service is not started")
        return self.store

    # -- requests ----------------------------------------------------------------------------

    def cached(self, facts: CallFacts, assessment: Assessment) -> ApprovalRecord | None:
        """A person's earlier decision that still answers this call, or None.

        Denials are reused as they are. Approvals are reused only if the tool definition is
        unchanged and the approvals given still satisfy what the assessment asks today.
        """
        if self.settings.cache_ttl <= 0:
            return None
        record = self._store.find_cached(facts.cache_key, self.clock())
        if record is None or record.status == "denied":
            return record
        if record.definition_digest != facts.definition_digest:
            return None
        return record if _satisfied(record, assessment.approvers, assessment.user_confirmation) else None

    def open(self, facts: CallFacts, assessment: Assessment, *, labels: list[str],
             session_labels: list[str]) -> ApprovalRecord:
        """The pending request for this call: an existing one for the same call, or a new one."""
        store = self._store
        existing = store.find_pending(facts.cache_key)
        if existing is not None and existing.expires > self.clock():
            if existing.approvers_required < assessment.approvers:
                existing.approvers_required = assessment.approvers
                existing.reasons = list(dict.fromkeys([*existing.reasons, *assessment.reasons]))
                store.update(existing)
            return existing
        if store.count_pending(facts.principal) >= self.settings.max_pending_per_principal:
            raise TooManyPending("too many of this caller's calls are waiting for approval")
        if store.count_pending() >= self.settings.max_pending:
            raise TooManyPending("too many calls are waiting for approval")
        now = self.clock()
        record = ApprovalRecord(
            id=secrets.token_hex(6), created=now, expires=now + assessment.timeout, cache_key=facts.cache_key,
            principal=facts.principal, tool=facts.tool, auth_method=facts.auth_method, roles=list(facts.roles),
            session=facts.session,
            server=facts.server, target=facts.target, method=facts.method, arguments=facts.arguments,
            arguments_digest=facts.arguments_digest, definition_digest=facts.definition_digest,
            labels=sorted(labels), session_labels=sorted(session_labels), risk=assessment.risk.to_dict(),
            reasons=list(assessment.reasons), sources=list(assessment.sources), rule=assessment.rule,
            approvers_required=assessment.approvers, user_confirmation=assessment.user_confirmation,
            decision_id=facts.decision_id)
        store.add(record)
        self._schedule(record)
        self.events.emit("approval.requested", approval_id=record.id, decision_id=record.decision_id,
                         principal=record.principal, server=record.server, tool=record.tool,
                         risk=record.risk.get("score"), level=record.risk.get("level"), reasons=record.reasons,
                         sources=record.sources, rule=record.rule, approvers_required=record.approvers_required,
                         expires=record.expires)
        self._announce("approval.requested", record)
        return record

    async def wait(self, approval_id: str, call: Call, facts: CallFacts) -> Pass | Reject:
        """Hold ``call`` until its request is decided or expires; the verdict to enforce."""
        signal = self._signals.setdefault(approval_id, asyncio.Event())
        self._waiting[approval_id] += 1
        asking: asyncio.Task[None] | None = None
        pinger = _Progress(call)
        try:
            record = self._store.get(approval_id)
            if record is not None and record.pending:
                current = self._asking.get(approval_id)
                if current is None or current.done():
                    asking = self._ask_user(call, record)
                    if asking is not None:
                        self._asking[approval_id] = asking
                await pinger.ping(record, self.clock())
            while True:
                record = self._store.get(approval_id)
                if record is None:
                    return Reject(f"approval {approval_id} no longer exists, so the call was refused",
                                  data=_data(approval_id, "missing"))
                if not record.pending:
                    return self._verdict(record, call, facts)
                remaining = record.expires - self.clock()
                if remaining <= 0:
                    self.expire(approval_id)
                    continue
                try:
                    await asyncio.wait_for(signal.wait(), timeout=min(self.settings.keepalive, remaining))
                except TimeoutError:
                    await pinger.ping(record, self.clock())
        finally:
            if asking is not None:
                if not asking.done():
                    asking.cancel()
                if self._asking.get(approval_id) is asking:
                    del self._asking[approval_id]
            self._waiting[approval_id] -= 1
            if self._waiting[approval_id] <= 0:
                del self._waiting[approval_id]
                if signal.is_set():
                    self._signals.pop(approval_id, None)

    def decide(self, approval_id: str, approver: str, approve: bool, *, channel: str = "admin",
               note: str = "") -> ApprovalRecord:
        """Record one person's decision. Raises :class:`ApprovalError` when it cannot count."""
        approver = approver.strip()
        if not approver:
            raise ApprovalError("name the approver")
        for _ in range(_MAX_CAS_TRIES):
            record = self._store.get(approval_id)
            if record is None:
                raise NotFound(f"no approval request {approval_id}")
            if not record.pending:
                raise NotPending(f"approval {approval_id} is already {record.status}")
            now = self.clock()
            if now >= record.expires:
                self.expire(approval_id)
                raise NotPending(f"approval {approval_id} expired")
            if channel == "admin":
                if same_person(approver, record.principal):
                    raise SelfApproval("separation of duties: a caller cannot approve their own call")
                if any(a["channel"] == "admin" and same_person(a["approver"], approver) for a in record.approvals):
                    raise DuplicateApprover(f"{approver} has already approved {approval_id}")
            record.approvals.append({"approver": approver, "channel": channel, "at": now,
                                     "approve": approve, "comment": note[:1000]})
            if not approve:
                record.status = "denied"
                record.decided_by = approver
                record.decision_reason = note[:1000] or ("declined by the user" if channel == "user" else "denied")
                # A person's "no" is reused for retries; the user's "no" in a dialog is not.
                record.cache_until = now + self.settings.cache_ttl if channel == "admin" else None
            else:
                if channel == "user":
                    record.user_confirmed = True
                # Time of check vs time of use: today's settings may ask for more than they did.
                record.approvers_required = max(record.approvers_required, required_approvers(
                    self.settings, tool=record.tool, target=record.target, labels=record.labels,
                    principal=record.principal, roles=record.roles,
                    risk_score=int(record.risk.get("score", 0))))
                if _satisfied(record, record.approvers_required, record.user_confirmation):
                    record.status = "approved"
                    record.decided_by = ", ".join(a["approver"] for a in record.approvals if a["approve"])
                    record.decision_reason = note[:1000]
                    record.cache_until = now + self.settings.cache_ttl
            decided = record.status != "pending"
            if decided:
                record.decided_at = now
            if self._store.update(record):
                break
        else:
            raise ApprovalError("the approval request kept changing; try again")
        self.events.emit("approval.vote", approval_id=record.id, decision_id=record.decision_id,
                         approver=approver, channel=channel, approve=approve)
        if decided:
            self._finish(record)
        return record

    def expire(self, approval_id: str) -> ApprovalRecord | None:
        """Deny a pending request whose time is up (idempotent; a no-op if decided)."""
        timer = self._timers.pop(approval_id, None)
        if timer is not None:
            timer.cancel()
        for _ in range(_MAX_CAS_TRIES):
            record = self._store.get(approval_id) if self.store is not None else None
            if record is None or not record.pending:
                return record
            now = self.clock()
            if now < record.expires:
                self._schedule(record)
                return record
            record.status = "expired"
            record.decided_at = now
            record.decided_by = "timeout"
            record.decision_reason = f"no decision within {record.expires - record.created:.0f}s"
            if self._store.update(record):
                self._finish(record)
                return record
        return None

    def get(self, approval_id: str) -> ApprovalRecord | None:
        return self._store.get(approval_id)

    def recent(self, status: str | None = None, limit: int = 100) -> list[ApprovalRecord]:
        return self._store.recent(status, limit)

    def view(self, record: ApprovalRecord) -> dict[str, Any]:
        """The public shape of a request (admin API, CLI, webhook)."""
        data = record.to_dict()
        data.pop("cache_key", None)
        data.pop("version", None)
        data["approvals_given"] = sum(1 for a in record.approvals if a["channel"] == "admin" and a["approve"])
        data["remaining_seconds"] = max(0.0, round(record.expires - self.clock(), 1)) if record.pending else 0.0
        return data

    # -- internals ---------------------------------------------------------------------------

    def _finish(self, record: ApprovalRecord) -> None:
        timer = self._timers.pop(record.id, None)
        if timer is not None:
            timer.cancel()
        self.events.emit("approval.decided", approval_id=record.id, decision_id=record.decision_id,
                         principal=record.principal, server=record.server, tool=record.tool, status=record.status,
                         decided_by=record.decided_by, reason=record.decision_reason,
                         approvers=[a["approver"] for a in record.approvals if a["approve"]])
        self._announce("approval.decided", record)
        signal = self._signals.get(record.id)
        if signal is not None:
            signal.set()
            if not self._waiting.get(record.id):
                self._signals.pop(record.id, None)

    def _schedule(self, record: ApprovalRecord) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: start() rebuilds timers from the store
        old = self._timers.pop(record.id, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, record.expires - self.clock())
        self._timers[record.id] = loop.call_later(delay, self.expire, record.id)

    def _announce(self, event: str, record: ApprovalRecord) -> None:
        if self.webhook is None:
            return
        view = self.view(record)
        if not self.webhook.settings.include_arguments:
            view.pop("arguments", None)
        try:
            self.webhook.send(event, {"approval": view})
        except Exception:
            log.exception("could not queue the approval webhook")

    def _verdict(self, record: ApprovalRecord, call: Call, facts: CallFacts) -> Pass | Reject:
        if record.status == "approved":
            # The call released must be the call approved: same arguments, same tool definition.
            now_digest = digest({"tool": facts.tool, "arguments": call.arguments})
            if now_digest != record.arguments_digest:
                return Reject(f"the call changed after approval {record.id}, so it was refused",
                              data=_data(record.id, "mismatch"))
            if definition_digest(call.definition) != record.definition_digest:
                return Reject(f"the tool's definition changed while approval {record.id} was pending, "
                              "so the call was refused", data=_data(record.id, "mismatch"))
            call.scratch["approval.granted"] = record.id
            return Pass(reason=f"approved by {record.decided_by} (approval {record.id})")
        if record.status == "denied":
            why = f": {record.decision_reason}" if record.decision_reason else ""
            return Reject(f"approval {record.id} was denied by {record.decided_by}{why}",
                          data=_data(record.id, "denied"))
        return Reject(f"approval {record.id} timed out ({record.decision_reason}), so the call was refused",
                      data=_data(record.id, record.status))

    def _ask_user(self, call: Call, record: ApprovalRecord) -> asyncio.Task[None] | None:
        mode = record.user_confirmation
        if mode == "off":
            return None
        if call.ask_client is None or not supports_form_elicitation(call.client_capabilities):
            if mode == "both":
                # The user must confirm but cannot be asked: fail closed.
                _safe_decide(self, record.id, f"user:{record.principal}", False, "user",
                             "the client cannot show a confirmation (no elicitation support)")
            return None
        return asyncio.get_running_loop().create_task(self._elicit(call, record))

    async def _elicit(self, call: Call, record: ApprovalRecord) -> None:
        assert call.ask_client is not None
        preview = orjson.dumps(record.arguments, option=orjson.OPT_INDENT_2).decode()
        if len(preview) > _ELICIT_PREVIEW:
            preview = preview[:_ELICIT_PREVIEW] + "…"
        message = (f"mcpwall is holding a tool call for your approval.\n\nTool: {record.tool}\n"
                   f"Arguments:\n{preview}\n\n"
                   f"Why: {'; '.join(record.reasons)}\nRisk: {record.risk.get('level')} "
                   f"({record.risk.get('score')}/100)\nApproval id: {record.id}")
        params = {"message": message, "requestedSchema": {
            "type": "object",
            "properties": {"approve": {"type": "boolean", "title": "Allow this call",
                                       "description": f"Allow {record.tool} to run with the arguments shown."}},
            "required": ["approve"]}}
        who = f"user:{record.principal}"
        try:
            answer = await call.ask_client("elicitation/create", params)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("approval %s: the client did not answer the confirmation (%s)", record.id, type(exc).__name__)
            if record.user_confirmation == "both":
                _safe_decide(self, record.id, who, False, "user", "the user could not be asked")
            return
        content = answer.get("content") if isinstance(answer, dict) else None
        accepted = (isinstance(answer, dict) and answer.get("action") == "accept" and isinstance(content, dict)
                    and content.get("approve") is True)
        _safe_decide(self, record.id, who, accepted, "user", "" if accepted else "declined by the user")


class _Progress:
    """Progress notifications for a held call, when the request asked for progress."""

    def __init__(self, call: Call) -> None:
        meta = call.params.get("_meta")
        self.token = meta.get("progressToken") if isinstance(meta, dict) else None
        self.notify = call.notify if self.token is not None else None
        self.count = 0

    async def ping(self, record: ApprovalRecord, now: float) -> None:
        if self.notify is None:
            return
        self.count += 1
        remaining = max(0, round(record.expires - now))
        params = {"progressToken": self.token, "progress": self.count,
                  "message": f"waiting for approval {record.id} ({remaining}s left)"}
        try:
            await self.notify("notifications/progress", params)
        except Exception as exc:
            log.debug("progress notification failed (%s); stopping them for this call", type(exc).__name__)
            self.notify = None


def supports_form_elicitation(capabilities: dict[str, Any]) -> bool:
    """The client declared elicitation, in form mode (an empty object means form, per the spec)."""
    elicitation = capabilities.get("elicitation")
    if not isinstance(elicitation, dict):
        return False
    return not elicitation or "form" in elicitation


def same_person(a: str, b: str) -> bool:
    """Conservative identity match for separation of duties: ``alice``, ``user:alice`` and
    ``alice@example.com`` are the same person. A false match refuses an approval, never grants one."""
    return bool(_identities(a) & _identities(b))


def _identities(name: str) -> set[str]:
    low = name.strip().casefold()
    out = {low, low.rsplit(":", 1)[-1]}
    out |= {n.split("@", 1)[0] for n in tuple(out) if "@" in n}
    out.discard("")
    return out


def _satisfied(record: ApprovalRecord, approvers: int, user_confirmation: str) -> bool:
    admins = {a["approver"].casefold() for a in record.approvals if a["channel"] == "admin" and a["approve"]}
    if user_confirmation == "either" and record.user_confirmed:
        return True
    if user_confirmation == "both" and not record.user_confirmed:
        return False
    return len(admins) >= approvers


def _safe_decide(service: ApprovalService, approval_id: str, who: str, approve: bool, channel: str,
                 note: str) -> None:
    try:
        service.decide(approval_id, who, approve, channel=channel, note=note)
    except ApprovalError as exc:
        log.debug("approval %s: user decision not recorded (%s)", approval_id, exc.code)


def _data(approval_id: str, status: str) -> dict[str, Any]:
    return {"approval": {"id": approval_id, "status": status}}


_BACKGROUND: set[asyncio.Task[Any]] = set()


def _background(coro: Any) -> None:
    try:
        task = asyncio.get_running_loop().create_task(coro)
    except RuntimeError:
        coro.close()
        return
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
