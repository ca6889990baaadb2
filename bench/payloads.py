"""Deterministic benchmark payloads: tool results of fixed sizes and a 500-tool catalogue.

Shared by the fast upstream (which serves them) and the load generator (which checks what
comes back). The text is benign prose built from a fixed word list with a fixed seed, so
content scanners see realistic words rather than one repeated byte, and every run serves
the same bytes. No network, no state.
"""

from __future__ import annotations

import random
from typing import Any

MODERN_VERSION = "2026-07-28"
LEGACY_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
SERVER_INFO = {"name": "mcpwall-bench-upstream", "version": "1.0.0"}

# Result text sizes, in bytes of UTF-8 text inside the CallToolResult.
SIZES: dict[str, int] = {"small": 200, "medium": 64 * 1024, "large": 1024 * 1024}
LIST_TOOLS = 500

_WORDS = (
    "the", "quarterly", "report", "lists", "revenue", "by", "region", "and", "the", "team", "reviewed",
    "each", "line", "item", "before", "filing", "it", "with", "the", "archive", "service", "while",
    "the", "build", "pipeline", "finished", "its", "nightly", "run", "and", "posted", "a", "summary",
    "of", "test", "results", "coverage", "numbers", "and", "open", "review", "comments", "for", "the",
    "project", "owners", "who", "planned", "the", "next", "release", "window", "around", "the",
    "holiday", "schedule", "and", "customer", "meetings", "weather", "forecast", "shows", "light",
    "rain", "in", "the", "afternoon", "with", "clearing", "skies", "by", "evening", "temperature",
    "around", "eighteen", "degrees", "wind", "from", "the", "west", "at", "twelve", "kilometres",
    "per", "hour", "humidity", "moderate",
)


def text_of_size(size: int, seed: int = 7) -> str:
    """Benign English-like ASCII text of exactly ``size`` bytes, the same on every call."""
    rng = random.Random(seed)
    parts: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS)
        sep = ".\n" if rng.random() < 0.06 else " "
        parts.append(word + sep)
        length += len(word) + len(sep)
    return "".join(parts)[:size]


def call_result(tool: str) -> dict[str, Any]:
    """The CallToolResult the upstream returns for one of the fixed-size tools."""
    return {"content": [{"type": "text", "text": text_of_size(SIZES[tool])}], "isError": False}


def _filler_tool(index: int) -> dict[str, Any]:
    rng = random.Random(index)
    words = " ".join(rng.choice(_WORDS) for _ in range(24))
    return {
        "name": f"tool_{index:04d}",
        "title": f"Tool {index}",
        "description": f"Looks up records for the {rng.choice(_WORDS)} workflow: {words}.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look up.", "maxLength": 256},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                "region": {"type": "string", "enum": ["eu", "us", "apac"]},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        "annotations": {"readOnlyHint": True, "openWorldHint": False},
    }


def core_tools() -> list[dict[str, Any]]:
    """The tools the load generator calls."""
    tools: list[dict[str, Any]] = []
    for name, size in SIZES.items():
        tools.append({
            "name": name,
            "description": f"Returns {size} bytes of text.",
            "inputSchema": {"type": "object", "properties": {"tag": {"type": "string", "maxLength": 64}}},
            "annotations": {"readOnlyHint": True},
        })
    tools.append({
        "name": "echo",
        "description": "Echoes the message back.",
        "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}},
                        "required": ["message"]},
        "annotations": {"readOnlyHint": True},
    })
    return tools


CALL_TOOLS = 24  # catalogue size for the tools/call scenarios: a typical server's handful of tools


def all_tools(count: int = LIST_TOOLS) -> list[dict[str, Any]]:
    """A catalogue of ``count`` tools (at least the core ones): core tools, then fillers."""
    tools = core_tools()
    tools.extend(_filler_tool(i) for i in range(len(tools), count))
    return tools
