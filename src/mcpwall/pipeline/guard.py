"""The guard interface: one class per guard, one settings model per guard.

A guard sees every message that crosses the gateway, in both directions:

* ``on_request``  — a client request before it is routed (``call.direction == "client"``),
  or a server→client request (sampling, elicitation, roots) before it reaches the client
  (``call.direction == "server"``).
* ``on_response`` — the result coming back, in reverse chain order.
* ``on_list``     — the items of a ``tools/list``, ``prompts/list``, ``resources/list`` or
  ``resources/templates/list`` result, so guards can withhold or annotate entries.
* ``on_complete`` — once per call, after the outcome is known (audit, counters, alerts).

Every hook has a harmless default, so a guard overrides only what it needs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict

from mcpwall.pipeline.verdict import PASS, Reject, Verdict

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from mcpwall.gateway.call import Call
    from mcpwall.gateway.events import EventBus


class GuardSettings(BaseModel):
    """Settings every guard has. Subclass it for a guard's own options."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["enforce", "shadow"] = "enforce"
    """``shadow`` computes, audits and counts verdicts without enforcing them."""


@dataclass(slots=True)
class Outcome:
    """How a call ended, for ``on_complete``."""

    decision: Literal["allow", "deny", "error"]
    error_code: int | None = None
    reason: str = ""
    result: dict[str, Any] | None = None  # the result sent to the client, if any
    latency_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    _summary: tuple[int, str] | None = None

    def result_summary(self) -> tuple[int, str] | None:
        """(size in bytes, SHA-256 hex) of the result's JSON, computed on first use only: most
        calls' results are never summarised (lists the audit skips), and large ones are costly."""
        if self.result is None:
            return None
        if self._summary is None:
            data = orjson.dumps(self.result)
            self._summary = (len(data), hashlib.sha256(data).hexdigest())
        return self._summary


@dataclass(slots=True)
class GuardEnv:
    """What the gateway lends every guard at construction."""

    events: EventBus
    config_dir: Path
    storage_url: str = "sqlite:///mcpwall.db"
    state: dict[str, Any] = field(default_factory=dict)  # shared services (stores, catalog) by name


class Guard:
    name: ClassVar[str]
    Settings: ClassVar[type[GuardSettings]] = GuardSettings

    def __init__(self, settings: GuardSettings, env: GuardEnv) -> None:
        self.settings = settings
        self.env = env

    @property
    def shadow(self) -> bool:
        return self.settings.mode == "shadow"

    async def start(self) -> None:
        """Open stores, compile patterns. Called once before traffic flows."""

    async def aclose(self) -> None:
        """Release resources. Called once at shutdown."""

    async def authenticate(self, call: Call) -> Reject | None:
        """Establish ``call.principal`` (auth guards only). Runs before session checks and
        before every other hook, on every HTTP request including notifications, GET and DELETE.
        Return a ``Reject`` (usually with ``http_status`` 401/403 and ``headers``) to refuse."""
        return None

    def http_routes(self) -> list[BaseRoute]:
        """Extra routes this guard serves on the MCP port (e.g. OAuth protected-resource metadata)."""
        return []

    def admin_routes(self) -> list[BaseRoute]:
        """Extra routes this guard serves on the admin port (e.g. approvals, alerts)."""
        return []

    async def on_request(self, call: Call) -> Verdict:
        return PASS

    async def on_response(self, call: Call, result: dict[str, Any]) -> Verdict:
        return PASS

    async def on_list(self, call: Call, kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return items

    async def on_complete(self, call: Call, outcome: Outcome) -> None:
        return None
