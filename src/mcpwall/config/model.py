"""The configuration model: one pydantic tree, ``extra="forbid"`` everywhere.

Static settings (listeners, storage) and reloadable policy (guards) live in one file; the
loader (:mod:`mcpwall.config.loader`) reads YAML, interpolates ``${ENV}``, validates against
this model and reports every problem at once with its line number.
"""

from __future__ import annotations

import re
import warnings
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    create_model,
    field_validator,
    model_validator,
)

from mcpwall.config.types import Seconds, Strict
from mcpwall.pipeline.guard import GuardSettings
from mcpwall.pipeline.registry import ALWAYS_LAST, GUARDS, guard_class


class TlsConfig(Strict):
    """TLS termination on the MCP port (see docs/auth.md). Paths resolve against the config's folder."""

    cert: str = Field(description="PEM certificate chain of the gateway.")
    key: str = Field(description="PEM private key of the gateway.")
    key_password: str | None = None
    client_ca: str | None = Field(None, description="PEM CA bundle that client certificates must chain to (mTLS).")
    client_cert: Literal["none", "optional", "required"] | None = Field(
        None, description="Ask for client certificates; default: required when client_ca is set, else none.")
    min_version: Literal["1.2", "1.3"] = "1.2"
    ciphers: str | None = Field(None, description="OpenSSL cipher list for TLS 1.2; default: ECDHE with AEAD only.")

    @model_validator(mode="after")
    def _client_ca(self) -> TlsConfig:
        if self.client_cert is None:
            self.client_cert = "required" if self.client_ca else "none"
        if self.client_cert != "none" and not self.client_ca:
            raise ValueError("client_cert needs client_ca")
        return self


class CorsConfig(Strict):
    allow_origins: list[str] = Field(
        default_factory=list, description="Browser origins (scheme://host[:port]) allowed to call the MCP "
                                          "endpoint cross-origin. '*' is never accepted.")
    allow_credentials: bool = False
    max_age: Seconds = 600.0

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin == "*" or not re.fullmatch(r"https?://[^/\s*]+", origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com ('*' is not allowed)")
        return value


class ListenConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    path: str = "/mcp"
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed besides the loopback ones (DNS-rebinding protection). "
                    "Requests with any other Origin get 403.")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header values allowed besides loopback names and the bind address.")
    response_mode: Literal["auto", "json", "sse"] = Field(
        "auto", description="auto: JSON when the answer is ready at once, SSE once anything streams.")
    legacy_session_idle_timeout: Seconds = 1800.0
    max_sessions: int = Field(10_000, gt=0)
    max_sessions_per_principal: int = Field(1_000, gt=0, description="Legacy sessions one caller may hold.")
    sse_keepalive: Seconds = 15.0
    legacy_sse: bool = Field(
        False, description="Also serve the deprecated HTTP+SSE transport (2024-11-05): GET /sse opens a "
                           "session stream, clients POST to /messages?session_id=…")
    tls: TlsConfig | None = None
    https_only: Literal["off", "refuse", "redirect"] = Field(
        "off", description="Plain-HTTP requests (scheme seen after trusted proxy headers): refuse with 403 "
                           "or redirect to https.")
    cors: CorsConfig = Field(default_factory=CorsConfig)
    security_headers: bool = Field(True, description="Add HSTS (on https), CSP, nosniff, frame and referrer headers.")
    hsts_max_age: Seconds = 63072000.0

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value.rstrip("/") or "/"


class AdminConfig(Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8766, ge=0, le=65535)


class CircuitConfig(Strict):
    failures: int = Field(5, ge=1, description="Consecutive failures that open the circuit.")
    reset_after: Seconds = Field(10.0, description="How long the circuit stays open before a probe.")


class RestartConfig(Strict):
    initial_backoff: Seconds = 0.5
    max_backoff: Seconds = 30.0


HARD_MAX_TIMEOUT = 600.0

Grade = Literal["A", "B", "C", "D", "F"]


class AdmissionConfig(Strict):
    """Scan an HTTP upstream with ``mcpwall scan`` at start and on a schedule; quarantine it below the bar."""

    min_grade: Grade = Field("B", description="Lowest posture grade that keeps the upstream admitted.")
    mcp_min_grade: Grade | None = Field(None, description="Optional bar for the MCP-protocol sub-grade too.")
    rescan: Seconds = Field(3600.0, description="How often to scan again (re-admits an upstream that recovered).")
    timeout: Seconds = Field(10.0, description="Per-request timeout of the scan.")
    allow_loopback_http: bool = Field(
        False, description="Accept plain HTTP to a loopback upstream (HTTPS and HSTS checks count as not applicable).")
    cafile: str | None = Field(None, description="Extra CA bundle to verify the upstream's certificate.")


class ServerConfig(Strict):
    """One upstream MCP server. Exactly one of ``command`` (stdio) and ``url`` (HTTP)."""

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    transport: Literal["stdio", "http", "sse"] | None = None
    headers: dict[str, str] = Field(default_factory=dict, description="The gateway's own credentials upstream.")
    era: Literal["auto", "modern", "legacy"] = "auto"
    timeout: Seconds = Field(30.0, description=f"Per-request timeout; at most {HARD_MAX_TIMEOUT:.0f}s.")
    connect_timeout: Seconds = 30.0
    prefix: bool = True
    enabled: bool = True
    max_processes: int = Field(8, ge=1, description="stdio: processes this upstream may run at once.")
    session_scope: Literal["principal", "session"] | None = Field(
        None, description="Share one upstream session per principal, or open one per front session. "
                          "Default: principal for stdio, session for HTTP.")
    restart: RestartConfig = Field(default_factory=RestartConfig)
    circuit: CircuitConfig = Field(default_factory=CircuitConfig)
    admission: AdmissionConfig | None = Field(
        None, description="HTTP upstreams only: admit the upstream only while its scan grade meets the bar.")

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if value <= 0 or value > HARD_MAX_TIMEOUT:
            raise ValueError(f"must be more than 0 and at most {HARD_MAX_TIMEOUT:.0f}s")
        return value

    @model_validator(mode="after")
    def _one_transport(self) -> ServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of 'command' (stdio upstream) or 'url' (HTTP upstream)")
        if self.command is not None:
            if self.transport not in (None, "stdio"):
                raise ValueError("'command' upstreams use transport stdio")
            self.transport = "stdio"
        else:
            if self.transport == "stdio":
                raise ValueError("'url' upstreams use transport http or sse")
            self.transport = self.transport or "http"
            if not (self.url or "").startswith(("http://", "https://")):
                raise ValueError("'url' must be an http:// or https:// URL")
        if self.admission is not None and self.command is not None:
            raise ValueError("'admission' scans HTTP upstreams; it does not apply to 'command' upstreams")
        if self.session_scope is None:
            self.session_scope = "principal" if self.transport == "stdio" else "session"
        return self


class StorageConfig(Strict):
    url: str = "sqlite:///mcpwall.db"


class LogConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"


class SecurityConfig(Strict):
    allow_anonymous: bool = Field(
        True, description="Let unauthenticated clients in on loopback and stdio. Without an auth guard, "
                          "anonymous is the only identity, and the gateway then refuses non-loopback binds.")
    cursor_secret: str | None = Field(
        None, description="Key for gateway-minted pagination cursors; random per process if unset "
                          "(set it when several replicas share a load balancer).")


class _GuardsBase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    _order: list[str] = PrivateAttr(default_factory=list)


def _guards_model() -> type[_GuardsBase]:
    """A model with one optional field per registered guard, built from the registry.

    A guard whose module cannot be imported (say, an optional dependency is missing) is not
    fatal until a config asks for it; then validation fails and names the guard."""
    fields: dict[str, Any] = {}
    for name in GUARDS:
        try:
            fields[name] = (guard_class(name).Settings | None, None)
        except Exception as exc:  # import errors of any kind: report them where the guard is used
            fields[name] = (Annotated[Any, AfterValidator(_unavailable(name, exc))] | None, None)
    with warnings.catch_warnings():
        # A guard named "schema" shadows BaseModel.schema(), a deprecated classmethod nobody calls here.
        warnings.filterwarnings("ignore", message='Field name "schema"', category=UserWarning)
        return create_model("GuardsConfig", __base__=_GuardsBase, **fields)


def _unavailable(name: str, exc: Exception) -> Any:
    reason = f"{type(exc).__name__}: {exc}"

    def refuse(value: Any) -> Any:
        raise ValueError(f"guard {name!r} cannot be loaded in this installation ({reason})")
    return refuse


GuardsConfig = _guards_model()


def _guards_shorthand(value: Any) -> Any:
    # ``guards: [limits, dlp]`` is shorthand for default settings in that order.
    if isinstance(value, list):
        out: dict[str, Any] = {}
        for item in value:
            if isinstance(item, str):
                out[item] = {}
            elif isinstance(item, dict) and len(item) == 1:
                out.update(item)
            else:
                raise ValueError("each guard entry is a name or a one-key mapping")
        return out
    if isinstance(value, dict):
        return {k: ({} if v is None else v) for k, v in value.items()}
    return value


class Config(Strict):
    listen: ListenConfig = Field(default_factory=ListenConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    servers: dict[str, ServerConfig] = Field(default_factory=dict)
    servers_from: list[str] = Field(
        default_factory=list, description='Claude-Desktop-style JSON files ({"mcpServers": {...}}) to add.')
    namespace_separator: str = Field("__", min_length=1, max_length=4)
    guards: GuardsConfig = Field(default_factory=GuardsConfig)  # type: ignore[valid-type]
    storage: StorageConfig = Field(default_factory=StorageConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    @field_validator("servers")
    @classmethod
    def _server_names(cls, value: dict[str, ServerConfig]) -> dict[str, ServerConfig]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
                raise ValueError(f"server name {name!r} must be 1-64 characters of [A-Za-z0-9_.-]")
        return value

    @field_validator("guards", mode="wrap")
    @classmethod
    def _guards(cls, value: Any, handler: Any) -> Any:
        raw = _guards_shorthand(value)
        result = handler(raw)
        if isinstance(raw, dict):
            result._order = list(raw)
        return result

    def configured_guards(self) -> list[str]:
        """Guard names in the order the config file lists them."""
        order: list[str] = getattr(self.guards, "_order")  # noqa: B009 (the model is built at run time)
        return list(order)

    def guard_order(self) -> list[str]:
        """Configured order, with ``limits`` always first and ``audit`` always last."""
        names = [n for n in self.configured_guards() if n not in ("limits", ALWAYS_LAST)]
        order = ["limits", *names]
        if ALWAYS_LAST in GUARDS:
            order.append(ALWAYS_LAST)
        return order

    def guard_settings(self, name: str) -> GuardSettings:
        settings: GuardSettings | None = getattr(self.guards, name, None)
        return settings if settings is not None else guard_class(name).Settings()

    @model_validator(mode="after")
    def _separator_not_in_names(self) -> Config:
        for name, server in self.servers.items():
            if server.prefix and self.namespace_separator in name:
                raise ValueError(f"server name {name!r} contains the namespace separator "
                                 f"{self.namespace_separator!r}")
        return self
