"""mcpwall's benchmark harness: ``python -m bench`` (all scenarios) or ``python -m bench NAME``.

It starts every process it measures on loopback, drives real MCP traffic at them, stops them,
and writes a table, JSON and a chart under ``bench/results/``. See ``docs/performance.md``.
"""
