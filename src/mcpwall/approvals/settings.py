"""Configuration of the ``approval`` guard: rules, risk threshold, timeouts, channels, webhook."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mcpwall.config.types import HttpUrl, Seconds, Strict
from mcpwall.gateway.classify import check_label_list
from mcpwall.pipeline.guard import GuardSettings

UserConfirmation = Literal["off", "either", "both"]
WebhookEvent = Literal["approval.requested", "approval.decided"]
_WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = ("approval.requested", "approval.decided")


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class ApprovalRule(Strict):
    """``{tools: "mail__send*", action: approve, timeout: 2m, approvers: 2}``. The first rule whose
    selectors all match decides; ``allow`` exempts the call (also from the risk threshold)."""

    name: str | None = None
    tools: list[str] = Field(default_factory=lambda: ["*"],
                             description="Globs on the exposed (server__tool) or upstream tool name.")
    capabilities: list[str] = Field(default_factory=list,
                                    description="Match tools with any of these labels (write, egress, ...).")
    principals: list[str] = Field(default_factory=list, description="Globs on the caller's principal id.")
    roles: list[str] = Field(default_factory=list, description="Match callers with any of these roles.")
    action: Literal["approve", "allow"] = "approve"
    timeout: Seconds | None = Field(None, description="Auto-deny after this long (default: the guard's).")
    approvers: int | None = Field(None, ge=1, le=5, description="Distinct people who must approve.")
    user_confirmation: UserConfirmation | None = None
    reason: str | None = Field(None, max_length=500, description="Shown to approvers and, on denial, the client.")

    @field_validator("tools", "principals", "roles", "capabilities", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("capabilities")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        return check_label_list(value)

    @property
    def label(self) -> str:
        return self.name or f"{self.action} {','.join(self.tools)}"


class WebhookSettings(Strict):
    """Announce each new approval request (and each decision) to a URL, signed with HMAC-SHA256."""

    url: HttpUrl
    secret: str = Field(min_length=16, description="HMAC-SHA256 key; the receiver verifies X-Mcpwall-Signature.")
    timeout: Seconds = 5.0
    retries: int = Field(3, ge=0, le=10)
    events: list[WebhookEvent] = Field(default_factory=lambda: list(_WEBHOOK_EVENTS))
    include_arguments: bool = Field(True, description="Send the (redacted) arguments in the payload.")


class ApprovalSettings(GuardSettings):
    rules: list[ApprovalRule] = Field(default_factory=list)
    risk_threshold: int | None = Field(
        None, ge=0, le=100, description="Hold every call whose risk score (0-100) reaches this; off when unset.")
    timeout: Seconds = Field(60.0, description="Default time to decide before the call is denied.")
    approvers: int = Field(1, ge=1, le=5, description="Default number of distinct approvers.")
    user_confirmation: UserConfirmation = Field(
        "off", description="Ask the end user through MCP elicitation: 'either' channel approves, or 'both' must.")
    cache_ttl: Seconds = Field(600.0, description="Reuse a person's decision for the same principal, tool and "
                                                  "arguments this long (0 disables).")
    keepalive: Seconds = Field(10.0, description="Progress notification interval while a call is held.")
    admin_token: str | None = Field(
        None, description="Bearer token for the approvals admin API (default: $MCPWALL_ADMIN_TOKEN). "
                          "Callers name themselves with 'approver'.")
    approver_tokens: dict[str, str] = Field(
        default_factory=dict, description="Per-approver tokens: name → token. The token proves the name.")
    webhook: WebhookSettings | None = None
    max_pending: int = Field(1000, ge=1, description="Pending requests across all callers.")
    max_pending_per_principal: int = Field(20, ge=1, description="Pending requests per caller.")
    retention: Seconds = Field(7 * 86400.0, description="Keep decided requests this long.")
    tool_labels: dict[str, list[str]] = Field(
        default_factory=dict, description="Label overrides (glob → labels); default: the flow guard's.")

    @field_validator("tool_labels")
    @classmethod
    def _tool_labels(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return {glob: check_label_list(labels) for glob, labels in value.items()}

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be more than 0")
        return value

    @model_validator(mode="after")
    def _tokens(self) -> ApprovalSettings:
        for name, token in self.approver_tokens.items():
            if len(token) < 16:
                raise ValueError(f"approver_tokens.{name}: use a token of at least 16 characters")
        if self.admin_token is not None and len(self.admin_token) < 16:
            raise ValueError("admin_token: use a token of at least 16 characters")
        return self
