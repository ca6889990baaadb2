"""The one table of guards: name → implementing class, imported on first use.

Adding a guard is one module under ``mcpwall/guards/``, one line here, one test file and one
docs entry. The order of this table is the default chain order when a config lists guards
without saying otherwise; ``audit`` is always forced last.
"""

from __future__ import annotations

import importlib
from functools import cache

from mcpwall.pipeline.guard import Guard

GUARDS: dict[str, str] = {
    "limits": "mcpwall.guards.limits:LimitsGuard",
    "auth": "mcpwall.guards.auth:AuthGuard",
    "policy": "mcpwall.guards.policy:PolicyGuard",
    "ratelimit": "mcpwall.guards.ratelimit:RateLimitGuard",
    "pins": "mcpwall.guards.pins:PinsGuard",
    "schema": "mcpwall.guards.schema:SchemaGuard",
    "argcheck": "mcpwall.guards.argcheck:ArgcheckGuard",
    "egress": "mcpwall.guards.egress:EgressGuard",
    "dlp": "mcpwall.guards.dlp:DlpGuard",
    "poisoning": "mcpwall.guards.poisoning:PoisoningGuard",
    "injection": "mcpwall.guards.injection:InjectionGuard",
    "flow": "mcpwall.guards.flow:FlowGuard",
    "approval": "mcpwall.guards.approval:ApprovalGuard",
    "audit": "mcpwall.guards.audit:AuditGuard",
}

ALWAYS_LAST = "audit"


@cache
def guard_class(name: str) -> type[Guard]:
    module_name, _, class_name = GUARDS[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Guard)):
        raise TypeError(f"{GUARDS[name]} is not a Guard")
    return cls
