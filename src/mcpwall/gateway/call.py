"""The objects that describe one request in flight: who sent it and what it asks.

A :class:`Call` is created by a front transport for every client request (and for every
server→client request relayed back to a client), handed to the guard chain, routed to an
upstream, and finally written to the audit trail with every guard's verdict.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from mcpwall.protocol.versions import Era

Transport = Literal["http", "stdio"]
Direction = Literal["client", "server"]  # who sent the message: the client, or an upstream server


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller. Never derived from self-reported ``clientInfo``."""

    id: str
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    auth_method: str = "anonymous"
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def anonymous(self) -> bool:
        return self.auth_method == "anonymous"

    @property
    def key(self) -> str:
        """What sessions, cursors and upstream connections are bound to: the id *and* how it was
        proven, so an API key named "alice" and a token whose subject is "alice" stay apart."""
        return f"{self.auth_method}:{self.id}"


ANONYMOUS = Principal(id="anonymous")

# Decision ids: a random per-process prefix and a counter. Unique across restarts and replicas
# (the prefix), cheap on the hot path (no entropy drawn per call), and they reveal nothing.
_ID_PREFIX = os.urandom(4).hex()
_id_counter = itertools.count(1)


def new_decision_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):08x}"


@dataclass(slots=True)
class GuardRecord:
    """One guard's verdict on one call, kept for the audit trail."""

    guard: str
    verdict: str  # pass | mutate | reject | hold | error
    reason: str = ""
    shadow: bool = False
    findings: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class Call:
    """One client request (or relayed server→client request) in flight."""

    message: dict[str, Any]
    principal: Principal
    era: Era
    protocol_version: str
    transport: Transport
    session_id: str | None = None  # legacy front session, if any
    source: str = ""  # client address, or "stdio"
    headers: dict[str, str] = field(default_factory=dict)  # HTTP request headers, lower-cased names
    # Transport facts: {"scheme": "https", "client": ("1.2.3.4", 5678), "tls": {...peer cert...}}.
    transport_info: dict[str, Any] = field(default_factory=dict)
    client_capabilities: dict[str, Any] = field(default_factory=dict)
    direction: Direction = "client"
    # Filled by routing before the guard chain runs.
    server: str | None = None  # the upstream's configured name
    target: str | None = None  # tool/prompt name as the upstream knows it, or resource URI
    exposed_name: str | None = None  # the name the client used (namespaced)
    definition: dict[str, Any] | None = None  # the tool/prompt definition from the catalog
    # Channels back to the client, set by the front when it can use them (None otherwise):
    # ``notify(method, params)`` sends a notification related to this request (e.g. progress
    # keep-alives while a call is held); ``ask_client(method, params)`` sends a server→client
    # request such as ``elicitation/create`` and returns its result (legacy clients only).
    notify: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None
    ask_client: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]] | None = None
    # Bookkeeping.
    decision_id: str = field(default_factory=new_decision_id)
    started: float = field(default_factory=time.monotonic)
    wall_time: float = field(default_factory=time.time)
    records: list[GuardRecord] = field(default_factory=list)
    labels: set[str] = field(default_factory=set)  # taint labels the session carried or gained
    scratch: dict[str, Any] = field(default_factory=dict)  # per-call state guards share

    @property
    def method(self) -> str:
        method = self.message.get("method")
        return method if isinstance(method, str) else ""

    @property
    def params(self) -> dict[str, Any]:
        params = self.message.get("params")
        return params if isinstance(params, dict) else {}

    @property
    def request_id(self) -> Any:
        return self.message.get("id")

    @property
    def arguments(self) -> dict[str, Any]:
        args = self.params.get("arguments")
        return args if isinstance(args, dict) else {}
