"""FastMCP 4 ``create_proxy`` in its best configuration, served for the benchmark (config 5).

Runs under ``bench/.venv-fastmcp`` (FastMCP's dependencies may conflict with mcpwall's), so
it imports nothing from the project. Best configuration: one backend ``Client`` connected
once and shared by every request (FastMCP's default opens a fresh backend session per
request), incoming headers not forwarded upstream, uvicorn with uvloop and httptools.
Prints ``{"port": N}`` when listening; ``GET /healthz`` answers 200.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import sys


async def serve(upstream: str, host: str, port: int, json_response: bool) -> None:
    import uvicorn
    from fastmcp import Client  # type: ignore[import-not-found]
    from fastmcp.client.transports import StreamableHttpTransport  # type: ignore[import-not-found]
    from fastmcp.server import create_proxy  # type: ignore[import-not-found]
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse

    # A plain (non-ProxyClient) Client forwards no incoming headers; connected, it is shared.
    client = Client(StreamableHttpTransport(upstream), mode="auto")
    async with client:
        proxy = create_proxy(client, name="bench-proxy")

        @proxy.custom_route("/healthz", methods=["GET"])  # type: ignore[untyped-decorator]
        async def healthz(request: Request) -> PlainTextResponse:
            return PlainTextResponse("ok")

        app = proxy.http_app(path="/mcp", json_response=json_response)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sys.stdout.write(json.dumps({"port": sock.getsockname()[1]}) + "\n")
        sys.stdout.flush()
        config = uvicorn.Config(app, loop="none", http="httptools", log_level="warning", lifespan="on",
                                access_log=False)
        await uvicorn.Server(config).serve(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sse", action="store_true", help="answer with text/event-stream")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.upstream, args.host, args.port, json_response=not args.sse))


if __name__ == "__main__":
    main()
