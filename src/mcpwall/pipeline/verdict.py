"""What a guard can say about a message: pass it, change it, refuse it, or hold it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mcpwall.errors import GATEWAY_REFUSED


@dataclass(frozen=True, slots=True)
class Pass:
    reason: str = ""
    findings: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Mutate:
    """Replace the message (request params, or the result) with ``message``."""

    message: dict[str, Any]
    reason: str = ""
    findings: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse. ``code`` is the JSON-RPC error code; ``http_status`` overrides the HTTP status.

    ``as_tool_error``: for ``tools/call``, answer with an ``isError`` result the model can read
    instead of a protocol error (the default for policy refusals, per the design).
    ``hidden``: answer exactly as if the target did not exist (``-32602``), revealing nothing.
    """

    reason: str
    code: int = GATEWAY_REFUSED
    http_status: int | None = None
    as_tool_error: bool = True
    hidden: bool = False
    data: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Hold:
    """Park the call until ``wait`` resolves to a final verdict (human approval)."""

    reason: str
    wait: Callable[[], Awaitable[Pass | Reject]]
    findings: list[dict[str, Any]] = field(default_factory=list)


Verdict = Pass | Mutate | Reject | Hold
PASS = Pass()
