"""The guard chain: runs guards in configured order on the way in, reverse order on the way out.

Rules that hold for every guard, so no guard has to remember them:

* the first ``Reject`` stops the request; later guards do not run;
* a guard that raises is a ``Reject`` (fail closed), logged with its traceback, never shown;
* ``mode: shadow`` records and counts the verdict, then carries on as if it were ``Pass``;
* a ``Hold`` is awaited here (the approval's own timeout bounds it) and its outcome recorded;
* list hooks that raise withhold the whole list rather than let unchecked items through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from mcpwall.gateway.call import Call, GuardRecord
from mcpwall.pipeline.guard import Guard, Outcome
from mcpwall.pipeline.verdict import PASS, Hold, Mutate, Pass, Reject, Verdict

log = logging.getLogger("mcpwall.chain")


class GuardChain:
    def __init__(self, guards: Sequence[Guard], observe: Callable[[str, float], None] | None = None) -> None:
        """``observe(guard_name, seconds)`` is told the cost of every hook run (metrics)."""
        self.guards = tuple(guards)
        self._observe = observe
        self._reversed = tuple(reversed(self.guards))
        self._auth_guards = tuple(g for g in self.guards if _overrides(g, "authenticate"))
        self._request_guards = tuple(g for g in self.guards if _overrides(g, "on_request"))
        self._response_guards = tuple(g for g in self._reversed if _overrides(g, "on_response"))
        self._list_guards = tuple(g for g in self.guards if _overrides(g, "on_list"))
        self._complete_guards = tuple(g for g in self._reversed if _overrides(g, "on_complete"))
        # Per-guard cumulative cost, read by metrics and the benchmark.
        self.cost_seconds: dict[str, float] = {g.name: 0.0 for g in self.guards}

    def get(self, name: str) -> Guard | None:
        return next((g for g in self.guards if g.name == name), None)

    async def start(self) -> None:
        for guard in self.guards:
            await guard.start()

    async def aclose(self) -> None:
        for guard in self._reversed:
            try:
                await guard.aclose()
            except Exception:
                log.exception("guard %s failed to close", guard.name)

    async def authenticate(self, call: Call) -> Reject | None:
        """Run the auth guards; they set ``call.principal``. A raising guard refuses (fail closed)."""
        for guard in self._auth_guards:
            started = time.perf_counter()
            try:
                verdict = await guard.authenticate(call)
            except Exception:
                log.exception("guard %s raised while authenticating; refusing", guard.name)
                verdict = Reject("authentication failed", http_status=401, as_tool_error=False)
            finally:
                self._spent(guard, started)
            if verdict is not None:
                call.records.append(GuardRecord(guard.name, "reject", verdict.reason, guard.shadow))
                if not guard.shadow:
                    return verdict
        return None

    async def on_request(self, call: Call) -> Reject | None:
        """Run the request hooks. Returns the enforced ``Reject``, or None to proceed."""
        for guard in self._request_guards:
            verdict = await self._run(guard, call, guard.on_request(call))
            if isinstance(verdict, Mutate) and not guard.shadow:
                call.message = verdict.message
            final = await self._settle(guard, call, verdict)
            if final is not None:
                return final
        return None

    async def on_response(self, call: Call, result: dict[str, Any]) -> tuple[dict[str, Any], Reject | None]:
        """Run the response hooks in reverse order. Returns the (possibly changed) result."""
        for guard in self._response_guards:
            verdict = await self._run(guard, call, guard.on_response(call, result))
            if isinstance(verdict, Mutate) and not guard.shadow:
                result = verdict.message
            final = await self._settle(guard, call, verdict)
            if final is not None:
                return result, final
        return result, None

    async def on_list(self, call: Call, kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for guard in self._list_guards:
            started = time.perf_counter()
            try:
                filtered = await guard.on_list(call, kind, items)
            except Exception:
                log.exception("guard %s failed on a %s list; withholding it", guard.name, kind)
                call.records.append(GuardRecord(guard.name, "error", "guard failed; list withheld"))
                return []
            finally:
                self._spent(guard, started)
            if not guard.shadow:
                items = filtered
            elif len(filtered) != len(items):
                call.records.append(GuardRecord(guard.name, "mutate", f"would withhold {len(items) - len(filtered)}",
                                                shadow=True))
        return items

    async def on_complete(self, call: Call, outcome: Outcome) -> None:
        for guard in self._complete_guards:
            started = time.perf_counter()
            try:
                await guard.on_complete(call, outcome)
            except Exception:
                log.exception("guard %s failed in on_complete", guard.name)
            finally:
                self._spent(guard, started)

    async def _run(self, guard: Guard, call: Call, hook: Any) -> Verdict:
        started = time.perf_counter()
        try:
            verdict: Verdict = await hook
        except Exception:
            log.exception("guard %s raised; refusing the call (fail closed)", guard.name)
            verdict = Reject(f"{guard.name}: the guard failed, so the call was refused", as_tool_error=True)
        finally:
            self._spent(guard, started)
        return verdict

    def _spent(self, guard: Guard, started: float) -> None:
        """Charge one hook run to its guard: the cumulative cost and, if observed, the metrics."""
        spent = time.perf_counter() - started
        self.cost_seconds[guard.name] += spent
        if self._observe is not None:
            self._observe(guard.name, spent)

    async def _settle(self, guard: Guard, call: Call, verdict: Verdict) -> Reject | None:
        if isinstance(verdict, Hold):
            call.records.append(GuardRecord(guard.name, "hold", verdict.reason, guard.shadow, verdict.findings))
            if guard.shadow:
                return None
            try:
                verdict = await verdict.wait()
            except Exception:
                log.exception("guard %s failed while holding a call", guard.name)
                verdict = Reject(f"{guard.name}: the held call could not be decided, so it was refused")
        if verdict is PASS:
            return None
        if isinstance(verdict, Pass):
            if verdict.reason or verdict.findings:
                call.records.append(GuardRecord(guard.name, "pass", verdict.reason, guard.shadow, verdict.findings))
            return None
        if isinstance(verdict, Mutate):
            call.records.append(GuardRecord(guard.name, "mutate", verdict.reason, guard.shadow, verdict.findings))
            return None
        call.records.append(GuardRecord(guard.name, "reject", verdict.reason, guard.shadow, verdict.findings))
        return None if guard.shadow else verdict


def _overrides(guard: Guard, hook: str) -> bool:
    return getattr(type(guard), hook) is not getattr(Guard, hook)
