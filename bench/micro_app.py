"""The ASGI app used to compare ASGI servers: read a JSON-RPC request, answer 200 bytes of text.

``app`` is bare ASGI; ``starlette_app`` is the same behind a Starlette route, to show what the
framework layer costs on top of the server. Imported by uvicorn/granian in ``python -m bench micro``.
"""

from __future__ import annotations

from typing import Any

import orjson

from bench.payloads import call_result

RESULT = call_result("small")
HEADERS = [(b"content-type", b"application/json")]


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/healthz":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": b"{}"})
        return
    request = orjson.loads(await _body(receive))
    body = orjson.dumps({"jsonrpc": "2.0", "id": request.get("id"), "result": RESULT})
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": body})


def _starlette() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def mcp(request: Request) -> Response:
        message = orjson.loads(await request.body())
        body = orjson.dumps({"jsonrpc": "2.0", "id": message.get("id"), "result": RESULT})
        return Response(body, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    return Starlette(routes=[Route("/mcp", mcp, methods=["POST"]), Route("/healthz", healthz)])


starlette_app = _starlette()
