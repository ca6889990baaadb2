"""A minimal MCP client over Streamable HTTP, just enough to learn a server's era and tool list.

It speaks through the scanner's :class:`~mcpwall.scan.http.Prober`, so its requests are counted,
bounded and recorded like every other probe. It tries the modern era first (``server/discover``)
and falls back to a legacy ``initialize`` handshake, following the spec's HTTP probe rule: a
recognised modern answer means modern, anything else means legacy. It lists tools page by page
(a bounded number of pages) and never calls a tool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcpwall.protocol.versions import LATEST_LEGACY, MODERN_VERSIONS
from mcpwall.scan import wire
from mcpwall.scan.http import Exchange, Prober

MAX_PAGES = 20


@dataclass(slots=True)
class McpView:
    """What an MCP client with the scanner's credentials could see."""

    era: str | None = None  # "modern" | "legacy" | None (could not talk MCP)
    version: str | None = None
    session_id: str | None = None
    server_name: str | None = None
    tools: list[dict[str, Any]] | None = None
    error: str | None = None
    exchanges: list[Exchange] = field(default_factory=list)


class HttpMcpClient:
    def __init__(self, prober: Prober, url: str, *, auth: bool = True, label: str = "mcp") -> None:
        self.prober = prober
        self.url = url
        self.auth = auth
        self.label = label
        self.view = McpView()

    async def _post(self, suffix: str, payload: Any, headers: dict[str, str]) -> Exchange:
        ex = await self.prober.request(f"{self.label}.{suffix}", "POST", self.url, headers=headers,
                                       content=wire.encode(payload), auth=self.auth, body_cap=4 * 1024 * 1024)
        self.view.exchanges.append(ex)
        return ex

    async def open(self) -> McpView:
        ex = await self._post("discover", wire.discover(), wire.modern_headers("server/discover"))
        result = ex.result_message()
        if ex.ok and result is not None and isinstance(result.get("result"), dict):
            body = result["result"]
            versions = body.get("supportedVersions")
            if isinstance(versions, list) and any(v in MODERN_VERSIONS for v in versions):
                self.view.era = "modern"
                self.view.version = next(v for v in versions if v in MODERN_VERSIONS)
                self.view.server_name = _server_name(body.get("_meta", {}).get("io.modelcontextprotocol/serverInfo"))
                return self.view
        error = ex.error_message()
        if error is not None and error["error"].get("code") == -32022:
            data = error["error"].get("data")
            supported = data.get("supported") if isinstance(data, dict) else None
            if isinstance(supported, list) and any(v in MODERN_VERSIONS for v in supported):
                self.view.era = "modern"
                self.view.version = next(v for v in supported if v in MODERN_VERSIONS)
                return self.view
        init = await self._post("initialize", wire.initialize(LATEST_LEGACY), wire.legacy_headers())
        result = init.result_message()
        if not (init.ok and result is not None and isinstance(result.get("result"), dict)):
            self.view.error = _why(init)
            return self.view
        body = result["result"]
        self.view.era = "legacy"
        version = body.get("protocolVersion")
        self.view.version = version if isinstance(version, str) else LATEST_LEGACY
        self.view.session_id = init.header("mcp-session-id")
        self.view.server_name = _server_name(body.get("serverInfo"))
        await self._post("initialized", wire.initialized(),
                         wire.legacy_headers(self.view.version, self.view.session_id))
        return self.view

    def headers_for(self, method: str) -> dict[str, str]:
        if self.view.era == "modern":
            return wire.modern_headers(method)
        return wire.legacy_headers(self.view.version, self.view.session_id)

    async def list_tools(self) -> list[dict[str, Any]] | None:
        if self.view.era is None:
            return None
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        for page in range(MAX_PAGES):
            payload = wire.tools_list(modern=self.view.era == "modern", cursor=cursor)
            ex = await self._post(f"tools_list.{page}", payload, self.headers_for("tools/list"))
            msg = ex.result_message()
            result = msg.get("result") if msg else None
            if not ex.ok or not isinstance(result, dict):
                self.view.error = _why(ex)
                return tools if tools else None
            items = result.get("tools")
            if isinstance(items, list):
                tools.extend(t for t in items if isinstance(t, dict) and isinstance(t.get("name"), str))
            next_cursor = result.get("nextCursor")
            if not isinstance(next_cursor, str) or next_cursor == cursor:
                break
            cursor = next_cursor
        self.view.tools = tools
        return tools

    async def close(self) -> None:
        """End a legacy session politely (servers may answer 405; that is fine)."""
        if self.view.era == "legacy" and self.view.session_id:
            ex = await self.prober.request(f"{self.label}.delete", "DELETE", self.url,
                                           headers=wire.legacy_headers(self.view.version, self.view.session_id),
                                           auth=self.auth)
            self.view.exchanges.append(ex)


def _server_name(info: Any) -> str | None:
    if isinstance(info, dict) and isinstance(info.get("name"), str):
        return str(info["name"])[:200]
    return None


def _why(ex: Exchange) -> str:
    if ex.error:
        return ex.error
    err = ex.error_message()
    if err is not None:
        return f"HTTP {ex.status}, JSON-RPC error {err['error'].get('code')}"
    return f"HTTP {ex.status}"
