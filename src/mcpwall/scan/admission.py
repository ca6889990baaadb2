"""The admission gate: HTTP upstreams serve only while their scan grade meets the configured bar.

For every upstream with ``admission:`` in its config, :class:`AdmissionGate` runs ``mcpwall scan``
(passive, with the upstream's own configured headers as credentials) when the gateway starts
and again every ``rescan`` seconds. An upstream whose grade is below ``min_grade`` (or whose
MCP sub-grade is below ``mcp_min_grade``) is *quarantined*; one that recovers is re-admitted.
Every change of state is logged and emitted on the event bus as ``admission.changed`` (the audit
trail subscribes there).

Fail closed: an upstream is not admitted before its first scan has finished, and a scan that
cannot reach the upstream grades it F. Upstreams without ``admission:`` are always admitted.

The gateway asks :meth:`AdmissionGate.is_admitted` before listing or routing to an upstream;
the gate itself never touches traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mcpwall.config.model import AdmissionConfig, ServerConfig
from mcpwall.gateway.events import EventBus
from mcpwall.scan.model import ScanReport
from mcpwall.scan.probe import ScanOptions
from mcpwall.scan.runner import scan_url
from mcpwall.scan.scoring import meets

log = logging.getLogger("mcpwall.admission")

State = Literal["pending", "admitted", "quarantined"]
Scanner = Callable[[str, ScanOptions], Awaitable[ScanReport]]
EVENT = "admission.changed"


@dataclass(slots=True)
class AdmissionStatus:
    server: str
    state: State = "pending"
    grade: str | None = None
    score: int | None = None
    mcp_grade: str | None = None
    reason: str = "not scanned yet"
    scanned_at: float | None = None
    failed_checks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"server": self.server, "state": self.state, "grade": self.grade, "score": self.score,
                "mcp_grade": self.mcp_grade, "reason": self.reason, "scanned_at": self.scanned_at,
                "failed_checks": list(self.failed_checks)}


def options_for(server: ServerConfig, admission: AdmissionConfig) -> ScanOptions:
    return ScanOptions(credentials=dict(server.headers), timeout=admission.timeout, cafile=admission.cafile,
                       allow_loopback_http=admission.allow_loopback_http)


def verdict(report: ScanReport, admission: AdmissionConfig) -> tuple[bool, str]:
    """Whether ``report`` clears the bar, and a one-line reason either way."""
    grade = report.grade
    if not report.reachable:
        return False, "upstream unreachable during the admission scan"
    if not meets(grade.letter, admission.min_grade):
        failed = [r.spec.id for r in report.posture if r.status in ("fail", "unknown")]
        return False, (f"grade {grade.letter} ({grade.score}/100) is below {admission.min_grade}"
                       f"; failed: {', '.join(failed[:6])}")
    if admission.mcp_min_grade is not None:
        mcp = report.mcp_grade
        if mcp is None or not meets(mcp.letter, admission.mcp_min_grade):
            shown = f"{mcp.letter} ({mcp.score}/100)" if mcp else "not observable"
            return False, f"MCP sub-grade {shown} is below {admission.mcp_min_grade}"
    return True, f"grade {grade.letter} ({grade.score}/100) meets {admission.min_grade}"


class AdmissionGate:
    def __init__(self, servers: Mapping[str, ServerConfig], events: EventBus, *,
                 scanner: Scanner | None = None, clock: Callable[[], float] = time.time) -> None:
        self._configs = {name: cfg for name, cfg in servers.items()
                         if cfg.admission is not None and cfg.url is not None and cfg.enabled}
        self._events = events
        self._scanner: Scanner = scanner or scan_url
        self._clock = clock
        self._status = {name: AdmissionStatus(name) for name in self._configs}
        self._reports: dict[str, ScanReport] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._locks = {name: asyncio.Lock() for name in self._configs}

    @property
    def gated(self) -> list[str]:
        return list(self._configs)

    def is_admitted(self, server: str) -> bool:
        status = self._status.get(server)
        return status is None or status.state == "admitted"

    def status(self, server: str) -> AdmissionStatus | None:
        return self._status.get(server)

    def statuses(self) -> list[AdmissionStatus]:
        return list(self._status.values())

    def report(self, server: str) -> ScanReport | None:
        """The last full scan report of a gated upstream (for the admin API)."""
        return self._reports.get(server)

    async def start(self) -> None:
        """Scan every gated upstream once (concurrently), then keep rescanning in the background."""
        await asyncio.gather(*(self.rescan(name) for name in self._configs))
        for name in self._configs:
            self._tasks.append(asyncio.create_task(self._loop(name), name=f"admission:{name}"))

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _loop(self, name: str) -> None:
        interval = self._configs[name].admission.rescan  # type: ignore[union-attr]
        while True:
            await asyncio.sleep(interval)
            await self.rescan(name)

    async def rescan(self, name: str) -> AdmissionStatus:
        """Scan one gated upstream now and update its state."""
        config = self._configs[name]
        admission = config.admission
        assert admission is not None and config.url is not None
        async with self._locks[name]:
            try:
                report = await self._scanner(config.url, options_for(config, admission))
            except Exception as exc:  # a scanner bug must quarantine, never admit
                log.exception("admission scan of %s failed", name)
                self._update(name, False, f"admission scan failed ({type(exc).__name__})", None)
                return self._status[name]
            self._reports[name] = report
            admitted, reason = verdict(report, admission)
            self._update(name, admitted, reason, report)
            return self._status[name]

    def _update(self, name: str, admitted: bool, reason: str, report: ScanReport | None) -> None:
        status = self._status[name]
        previous = status.state
        status.state = "admitted" if admitted else "quarantined"
        status.reason = reason
        status.scanned_at = self._clock()
        if report is not None:
            status.grade = report.grade.letter
            status.score = report.grade.score
            status.mcp_grade = report.mcp_grade.letter if report.mcp_grade else None
            status.failed_checks = [r.spec.id for r in report.checks if r.status == "fail"]
        else:
            status.grade, status.score, status.mcp_grade = "F", 0, None
        if status.state == previous:
            return
        if admitted:
            log.info("upstream %s admitted: %s", name, reason)
        else:
            log.warning("upstream %s quarantined: %s; its tools are withheld and calls refused", name, reason)
        self._events.emit(EVENT, server=name, admitted=admitted, state=status.state, previous=previous,
                          grade=status.grade, score=status.score, mcp_grade=status.mcp_grade, reason=reason,
                          failed_checks=list(status.failed_checks))
