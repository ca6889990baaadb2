"""The exception tree and the one mapping from exceptions to wire errors.

Every refusal or failure that reaches a client goes through :func:`to_wire`, so that no
response ever carries a stack trace, a file path, a framework name or a version string.
Guards, transports and connectors raise these types; the fronts turn them into JSON-RPC
errors (and HTTP status codes) here and nowhere else.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("mcpwall.errors")

# JSON-RPC 2.0 standard codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# MCP 2026-07-28 reserved codes.
HEADER_MISMATCH = -32020
MISSING_CLIENT_CAPABILITY = -32021
UNSUPPORTED_PROTOCOL_VERSION = -32022
# mcpwall's own codes. JSON-RPC leaves everything outside -32768..-32000 to applications, and
# the MCP spec reserves -32020..-32099, so gateway codes live at -31xxx with the last three
# digits echoing the matching HTTP status. docs/errors.md lists them.
GATEWAY_UNAUTHENTICATED = -31401  # no acceptable credential (HTTP 401 with WWW-Authenticate)
GATEWAY_REFUSED = -31403  # a guard refused the request
GATEWAY_RATE_LIMITED = -31429  # a rate limit or quota was hit
UPSTREAM_UNAVAILABLE = -31503  # upstream down, circuit open, or over capacity
UPSTREAM_TIMEOUT = -31504  # upstream did not answer in time
BRIDGE_UNSUPPORTED = -31501  # an era bridge that cannot be made (answered at once, never hangs)

# HTTP status for a JSON-RPC error code on the Streamable HTTP front (modern path), following
# the spec's table: request-shape problems are 400, unknown methods 404, the rest 200.
_HTTP_STATUS = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    MISSING_CLIENT_CAPABILITY: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}


class McpwallError(Exception):
    """Base of every error the gateway raises on purpose.

    ``message`` is what the client is told; it must be safe to show (no paths, no secrets).
    ``data`` is an optional structured payload for programmatic clients.
    """

    code: int = INTERNAL_ERROR
    http_status: int | None = None

    def __init__(self, message: str, *, code: int | None = None, data: Any = None,
                 http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.data = data
        if http_status is not None:
            self.http_status = http_status


class ProtocolError(McpwallError):
    """The peer sent something that is not valid JSON-RPC / MCP."""

    code = INVALID_REQUEST


class ParseError(ProtocolError):
    code = PARSE_ERROR


class InvalidParams(ProtocolError):
    code = INVALID_PARAMS


class MethodNotFound(ProtocolError):
    code = METHOD_NOT_FOUND


class HeaderMismatch(ProtocolError):
    code = HEADER_MISMATCH
    http_status = 400


class UnsupportedVersion(ProtocolError):
    code = UNSUPPORTED_PROTOCOL_VERSION
    http_status = 400


class TooLarge(ProtocolError):
    """A message over the configured size limit (HTTP 413)."""

    code = INVALID_REQUEST
    http_status = 413


class Refused(McpwallError):
    """A guard refused the call. Carries the guard name and the decision id."""

    code = GATEWAY_REFUSED

    def __init__(self, message: str, *, guard: str, code: int | None = None, data: Any = None,
                 http_status: int | None = None) -> None:
        super().__init__(message, code=code, data=data, http_status=http_status)
        self.guard = guard


class UpstreamError(McpwallError):
    """The upstream answered with a JSON-RPC error; relayed to the client unchanged."""

    def __init__(self, error: dict[str, Any]) -> None:
        code = error.get("code")
        message = error.get("message")
        super().__init__(message if isinstance(message, str) else "upstream error",
                         code=code if isinstance(code, int) and not isinstance(code, bool) else INTERNAL_ERROR,
                         data=error.get("data"))
        self.error = error


class UpstreamUnavailable(McpwallError):
    code = UPSTREAM_UNAVAILABLE


class UpstreamTimeout(McpwallError):
    code = UPSTREAM_TIMEOUT


class BridgeUnsupported(McpwallError):
    code = BRIDGE_UNSUPPORTED


class ConfigError(Exception):
    """Configuration is invalid. ``problems`` holds every ``file:line: path: message`` line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def to_wire(exc: BaseException) -> dict[str, Any]:
    """Turn any exception into a JSON-RPC error object that is safe to send.

    Known errors keep their code, message and data. Anything else is logged here with its
    traceback and becomes a bare ``-32603 Internal error``: the client learns nothing about
    the gateway's internals.
    """
    if isinstance(exc, UpstreamError):
        return dict(exc.error) if _is_clean_error(exc.error) else {"code": exc.code, "message": exc.message}
    if isinstance(exc, McpwallError):
        err: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.data is not None:
            err["data"] = exc.data
        return err
    log.error("internal error", exc_info=exc)
    return {"code": INTERNAL_ERROR, "message": "Internal error"}


def http_status_for(exc: BaseException, *, modern: bool) -> int:
    """HTTP status that carries ``exc`` on the Streamable HTTP front."""
    if isinstance(exc, McpwallError) and exc.http_status is not None:
        return exc.http_status
    if not modern:
        # Legacy clients expect JSON-RPC errors in a 200 response, except for shape errors.
        code = getattr(exc, "code", INTERNAL_ERROR)
        return 400 if code in (PARSE_ERROR, INVALID_REQUEST) else 200
    return _HTTP_STATUS.get(getattr(exc, "code", INTERNAL_ERROR), 200)


def status_for_code(code: int, *, modern: bool) -> int:
    if not modern:
        return 400 if code in (PARSE_ERROR, INVALID_REQUEST) else 200
    return _HTTP_STATUS.get(code, 200)


def _is_clean_error(error: dict[str, Any]) -> bool:
    code = error.get("code")
    return isinstance(code, int) and not isinstance(code, bool) and isinstance(error.get("message"), str)
