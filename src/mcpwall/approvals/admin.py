"""The approvals admin API (served on the admin port, never on the MCP port).

    GET  /api/approvals?status=pending|approved|denied|expired|all&limit=N
    GET  /api/approvals/{id}
    POST /api/approvals/{id}/approve   {"approver": "alice", "comment": "..."}
    POST /api/approvals/{id}/deny      {"approver": "alice", "reason": "..."}

Every request needs ``Authorization: Bearer <token>``. A per-approver token
(``approver_tokens: {alice: ...}``) proves who is acting; the shared ``admin_token`` lets the
caller name themselves in ``approver`` (weaker: anyone with the shared token can claim any
name, so prefer per-approver tokens where separation of duties matters). Answers are JSON;
errors are ``{"error": {"code", "message"}}`` with a stable ``code``.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mcpwall.approvals.service import ApprovalError, ApprovalService, same_person
from mcpwall.storage.approvals import STATUSES

if TYPE_CHECKING:
    from mcpwall.approvals.settings import ApprovalSettings

PREFIX = "/api/approvals"
_MAX_BODY = 65_536
_APPROVER = re.compile(r"^[\w.@:+-][\w .@:+-]{0,127}$")


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def approval_routes(current: Callable[[], tuple[ApprovalService, ApprovalSettings, str | None]]) -> list[BaseRoute]:
    """Routes bound to ``current()``, which returns the live service, the live settings and the
    shared admin token, so a reload that replaces the guard changes who may act at once."""

    async def list_approvals(request: Request) -> Response:
        service, settings, token = current()
        try:
            _identify(request, settings, token)
            status = request.query_params.get("status", "pending")
            if status not in (*STATUSES, "all"):
                raise _Refused(400, "invalid", f"status must be one of {', '.join((*STATUSES, 'all'))}")
            limit = _int(request.query_params.get("limit", "100"), 1, 1000)
        except _Refused as exc:
            return _error(exc)
        records = service.recent(None if status == "all" else status, limit)
        return _json({"approvals": [service.view(r) for r in records]})

    async def show_approval(request: Request) -> Response:
        service, settings, token = current()
        try:
            _identify(request, settings, token)
        except _Refused as exc:
            return _error(exc)
        record = service.get(request.path_params["approval_id"])
        if record is None:
            return _error(_Refused(404, "not_found", "no such approval request"))
        return _json({"approval": service.view(record)})

    async def decide(request: Request, approve: bool) -> Response:
        service, settings, token = current()
        try:
            proven = _identify(request, settings, token)
            body = await _body(request)
            approver = _approver(body.get("approver"), proven)
            note = body.get("comment" if approve else "reason") or body.get("reason") or body.get("comment") or ""
            if not isinstance(note, str):
                raise _Refused(400, "invalid", "comment/reason must be a string")
            record = service.decide(request.path_params["approval_id"], approver, approve, note=note)
        except _Refused as exc:
            return _error(exc)
        except ApprovalError as exc:
            return _error(_Refused(exc.http_status, exc.code, exc.message))
        return _json({"approval": service.view(record), "status": record.status})

    async def approve(request: Request) -> Response:
        return await decide(request, True)

    async def deny(request: Request) -> Response:
        return await decide(request, False)

    return [
        Route(PREFIX, list_approvals, methods=["GET"]),
        Route(PREFIX + "/{approval_id}", show_approval, methods=["GET"]),
        Route(PREFIX + "/{approval_id}/approve", approve, methods=["POST"]),
        Route(PREFIX + "/{approval_id}/deny", deny, methods=["POST"]),
    ]


def _identify(request: Request, settings: ApprovalSettings, shared: str | None) -> str | None:
    """The approver a per-approver token proves, ``None`` for the shared token; else refuse."""
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise _Refused(401, "unauthorized", "send Authorization: Bearer <admin token>")
    presented = presented.strip()
    proven: str | None = None
    matched = False
    # Compare against every token so timing does not reveal which one was close.
    for name, token in settings.approver_tokens.items():
        if hmac.compare_digest(token.encode(), presented.encode()):
            proven, matched = name, True
    if shared and hmac.compare_digest(shared.encode(), presented.encode()):
        matched = True
    if not matched:
        raise _Refused(401, "unauthorized", "invalid admin token")
    return proven


def _approver(claimed: Any, proven: str | None) -> str:
    if claimed is not None and (not isinstance(claimed, str) or not _APPROVER.match(claimed)):
        raise _Refused(400, "invalid", "approver must be a name of 1-128 letters, digits, spaces or .@:+-_")
    if proven is not None:
        if claimed and not same_person(claimed, proven):
            raise _Refused(403, "token_mismatch", "this token belongs to another approver")
        return proven
    if not claimed:
        raise _Refused(400, "approver_required", "name the approver (\"approver\": \"...\")")
    return str(claimed)


async def _body(request: Request) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > _MAX_BODY:
            raise _Refused(413, "too_large", "the request body is too large")
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _Refused(400, "invalid", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise _Refused(400, "invalid", "the body must be a JSON object")
    return body


def _int(raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise _Refused(400, "invalid", f"expected a number from {low} to {high}") from None
    return max(low, min(high, value))


def _json(data: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


def _error(exc: _Refused) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    response = _json({"error": {"code": exc.code, "message": exc.message}}, exc.status)
    if headers:
        response.headers.update(headers)
    return response
