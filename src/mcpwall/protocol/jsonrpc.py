"""JSON-RPC 2.0 framing: decode untrusted bytes into checked message dicts, encode replies.

This is the first code that touches attacker-controlled bytes, so it is strict and bounded:
a size cap before parsing, a nesting-depth cap after, and shape checks that name what is wrong.
Messages stay plain dicts (orjson) on the hot path; nothing here allocates pydantic models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from mcpwall.errors import InvalidParams, ParseError, ProtocolError, TooLarge

Message = dict[str, Any]
Kind = Literal["request", "notification", "response", "error"]

DEFAULT_MAX_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH


DEFAULT_LIMITS = Limits()


def decode(data: bytes | bytearray | memoryview | str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Parse one JSON text, enforcing the size and depth limits. Returns the raw value."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > limits.max_bytes:
        raise TooLarge(f"message of {size} bytes exceeds the limit of {limits.max_bytes} bytes")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ParseError("Parse error: body is not valid JSON") from None
    depth = nesting_depth(value, limits.max_depth)
    if depth > limits.max_depth:
        raise ProtocolError(f"message nesting exceeds the limit of {limits.max_depth} levels")
    return value


def nesting_depth(value: Any, stop_after: int) -> int:
    """Depth of nested arrays/objects, counting stops once ``stop_after`` is exceeded."""
    # Iterative so that hostile input cannot exhaust the Python stack.
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > deepest:
            deepest = depth
            if deepest > stop_after:
                return deepest
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def classify(msg: Any) -> Kind:
    """Check the JSON-RPC 2.0 shape of one message and say what it is.

    Raises :class:`ProtocolError` (``-32600``) naming the first problem found.
    """
    if not isinstance(msg, dict):
        raise ProtocolError("Invalid Request: a JSON-RPC message must be an object")
    if msg.get("jsonrpc") != "2.0":
        raise ProtocolError('Invalid Request: "jsonrpc" must be "2.0"')
    has_id = "id" in msg
    if has_id:
        rid = msg["id"]
        if rid is None and "method" in msg:
            raise ProtocolError("Invalid Request: request id must not be null")
        if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int))):
            raise ProtocolError("Invalid Request: id must be a string or an integer")
    if "method" in msg:
        if not isinstance(msg["method"], str) or not msg["method"]:
            raise ProtocolError('Invalid Request: "method" must be a non-empty string')
        if "result" in msg or "error" in msg:
            raise ProtocolError("Invalid Request: a message cannot be both a request and a response")
        params = msg.get("params")
        if params is not None and not isinstance(params, dict):
            raise ProtocolError('Invalid Request: "params" must be an object')
        return "request" if has_id else "notification"
    if not has_id:
        raise ProtocolError('Invalid Request: message has neither "method" nor "id"')
    if ("result" in msg) == ("error" in msg):
        raise ProtocolError('Invalid Request: a response needs exactly one of "result" and "error"')
    if "error" in msg:
        err = msg["error"]
        if not isinstance(err, dict) or not isinstance(err.get("code"), int) or isinstance(err.get("code"), bool) \
                or not isinstance(err.get("message"), str):
            raise ProtocolError('Invalid Request: "error" needs an integer "code" and a string "message"')
        return "error"
    if not isinstance(msg["result"], dict):
        raise ProtocolError('Invalid Request: "result" must be an object')
    return "response"


def params_of(msg: Message) -> dict[str, Any]:
    params = msg.get("params")
    return params if isinstance(params, dict) else {}


def meta_of(params: dict[str, Any]) -> dict[str, Any]:
    meta = params.get("_meta")
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise InvalidParams('Invalid params: "_meta" must be an object')
    return meta


def encode(msg: Any) -> bytes:
    return orjson.dumps(msg)


def response(rid: Any, result: dict[str, Any]) -> Message:
    return {"jsonrpc": "2.0", "id": rid, "result": result}


def error_response(rid: Any, error: dict[str, Any]) -> Message:
    return {"jsonrpc": "2.0", "id": rid, "error": error}


def request(rid: Any, method: str, params: dict[str, Any] | None = None) -> Message:
    msg: Message = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def notification(method: str, params: dict[str, Any] | None = None) -> Message:
    msg: Message = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return msg
