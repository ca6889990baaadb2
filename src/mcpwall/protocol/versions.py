"""MCP protocol revisions and the two eras. No network code, no state."""

from __future__ import annotations

from typing import Literal

Era = Literal["modern", "legacy"]

MODERN_VERSIONS: tuple[str, ...] = ("2026-07-28",)
LEGACY_VERSIONS: tuple[str, ...] = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
LATEST_MODERN = MODERN_VERSIONS[0]
LATEST_LEGACY = LEGACY_VERSIONS[0]
ALL_VERSIONS = MODERN_VERSIONS + LEGACY_VERSIONS
# A legacy HTTP client that sends no MCP-Protocol-Version header is assumed to speak this.
HTTP_DEFAULT_LEGACY = "2025-03-26"
BATCH_VERSION = "2025-03-26"  # the only revision that allows JSON-RPC batches

META_PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_LOG_LEVEL = "io.modelcontextprotocol/logLevel"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"
META_SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"
META_DECISION = "dev.mcpwall/decision"

# Methods whose params name a target that the modern HTTP transport mirrors in Mcp-Name.
NAMED_METHODS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
# Methods that may answer with an MRTR input_required result (2026-07-28).
MRTR_METHODS = frozenset(NAMED_METHODS)
LIST_METHODS = {
    "tools/list": "tools",
    "prompts/list": "prompts",
    "resources/list": "resources",
    "resources/templates/list": "resourceTemplates",
}


def era_of(version: str) -> Era:
    return "modern" if version in MODERN_VERSIONS else "legacy"


def negotiate_legacy(requested: object) -> str:
    """The version a legacy ``initialize`` answer carries: the client's if known, else the latest."""
    if isinstance(requested, str) and requested in LEGACY_VERSIONS:
        return requested
    return LATEST_LEGACY
