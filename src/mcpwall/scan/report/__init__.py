"""Report formats for both scans: text (with colour), JSON, SARIF 2.1.0, Markdown and HTML.

``render_scan`` and ``render_clients`` are the only entry points the CLI needs; each format is
its own module and turns the result types of :mod:`mcpwall.scan.model` and
:mod:`mcpwall.scan.clients.model` into a string. Reports never contain credentials: the result
types carry only redacted values.
"""

from __future__ import annotations

from typing import Literal

import orjson

from mcpwall.scan.clients.model import ClientsReport
from mcpwall.scan.model import ScanReport

Format = Literal["text", "json", "sarif", "markdown", "html"]
FORMATS: tuple[str, ...] = ("text", "json", "sarif", "markdown", "html")


def _json(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n"


def render_scan(report: ScanReport, fmt: str, *, color: bool = False) -> str:
    from mcpwall.scan.report import html, markdown, sarif, text

    if fmt == "text":
        return text.scan(report, color=color)
    if fmt == "json":
        return _json({"format": "mcpwall-scan-report", "version": 1, **report.to_dict()})
    if fmt == "sarif":
        return _json(sarif.scan(report))
    if fmt == "markdown":
        return markdown.scan(report)
    if fmt == "html":
        return html.scan(report)
    raise ValueError(f"unknown format {fmt!r}")


def render_clients(report: ClientsReport, fmt: str, *, color: bool = False, home: str = "") -> str:
    from mcpwall.scan.report import html, markdown, sarif, text

    if fmt == "text":
        return text.clients(report, color=color, home=home)
    if fmt == "json":
        return _json(report.to_dict())
    if fmt == "sarif":
        return _json(sarif.clients(report))
    if fmt == "markdown":
        return markdown.clients(report, home=home)
    if fmt == "html":
        return html.clients(report, home=home)
    raise ValueError(f"unknown format {fmt!r}")
