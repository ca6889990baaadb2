"""What a benchmark run measures: groups of scenarios, each run against a set of configurations.

A *group* shares one response mode (JSON or SSE), one upstream catalogue size and one set
of running configurations; inside it every scenario (era x operation x concurrency) is run
against every configuration in turn, repeatedly (A B C A B C …), so slow drift of the
machine hits all configurations alike, and the medians of the repeats are reported.
The full plan is sized to finish well inside ten minutes on a 2-core machine; ``--quick``
is a smoke test of every path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.payloads import CALL_TOOLS, LIST_TOOLS

PEERS = ["direct", "mcpwall", "default", "fastmcp"]


@dataclass(frozen=True)
class Scenario:
    era: str  # modern | legacy
    op: str  # small | medium | large | echo | list
    concurrency: int

    @property
    def name(self) -> str:
        return f"{self.era}/{self.op}/c{self.concurrency}"


@dataclass
class Group:
    name: str
    title: str
    mode: str  # json | sse (the response type asked of the upstream and the gateway)
    configs: list[str]
    scenarios: list[Scenario]
    tools: int = CALL_TOOLS  # upstream catalogue size
    transport: str = "http"  # http | stdio
    baseline: str = "direct"  # ratios are computed against this configuration
    notes: list[str] = field(default_factory=list)


def _grid(eras: list[str], ops: list[str], levels: list[int]) -> list[Scenario]:
    return [Scenario(e, o, c) for e in eras for o in ops for c in levels]


def groups(quick: bool, guard_keys: list[str]) -> list[Group]:
    """The groups of a full (or quick) run; ``guard_keys`` are the ``+guard`` configurations."""
    if quick:
        return [
            Group("core", "Fast upstream, JSON responses", "json", PEERS,
                  [*_grid(["modern", "legacy"], ["small"], [1, 16]), Scenario("modern", "large", 1)]),
            Group("list", "tools/list of 500 tools", "json", PEERS, [Scenario("modern", "list", 1)],
                  tools=LIST_TOOLS),
            Group("sse", "Fast upstream, SSE responses", "sse", PEERS, [Scenario("legacy", "small", 1)]),
            Group("guards", "Each guard alone (vs mcpwall with no guards)", "json", ["mcpwall", *guard_keys],
                  [Scenario("modern", "small", 1)], baseline="mcpwall"),
            Group("everything", "server-everything (npm) as the upstream, echo", "sse", PEERS,
                  [Scenario("legacy", "echo", 1)]),
            Group("stdio", "stdio upstream: spawned directly vs behind mcpwall stdio", "json",
                  ["direct", "mcpwall"], [Scenario("legacy", "small", 1)], transport="stdio"),
        ]
    return [
        Group("core", "Fast upstream, JSON responses", "json", PEERS,
              [*_grid(["modern", "legacy"], ["small"], [1, 16, 64, 256]),
               *_grid(["modern"], ["medium", "large"], [1, 16])]),
        Group("list", "tools/list of 500 tools", "json", PEERS,
              [Scenario("modern", "list", 1), Scenario("modern", "list", 16), Scenario("legacy", "list", 1)],
              tools=LIST_TOOLS),
        Group("sse", "Fast upstream, SSE responses", "sse", PEERS,
              _grid(["modern", "legacy"], ["small"], [1, 64])),
        Group("guards", "Each guard alone (vs mcpwall with no guards)", "json", ["mcpwall", *guard_keys],
              [Scenario("modern", "small", 1), Scenario("modern", "large", 1)], baseline="mcpwall"),
        Group("everything", "server-everything (npm) as the upstream, echo", "sse", PEERS,
              _grid(["legacy"], ["echo"], [1, 16])),
        Group("stdio", "stdio upstream: spawned directly vs behind mcpwall stdio", "json", ["direct", "mcpwall"],
              [Scenario("legacy", "small", 1), Scenario("legacy", "small", 16), Scenario("modern", "small", 1)],
              transport="stdio"),
    ]


GROUP_NAMES = ["core", "list", "sse", "guards", "everything", "stdio"]
EXTRA_NAMES = ["ceiling", "sessions", "startup", "scan", "costs"]
ALL_NAMES = ["ceiling", *GROUP_NAMES, "sessions", "startup", "scan", "costs"]
