"""Structured logs: one JSON object per line, secrets scrubbed from messages, fields and tracebacks."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from mcpwall.config.model import LogConfig
from mcpwall.logs import configure

TOKEN = "ghp_" + "Z9y8" * 9


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure(LogConfig(level="debug", format="json"), stream=out)
    yield out
    root.removeHandler(handler)
    root.setLevel(level)


def test_one_json_object_per_line_without_secrets(stream: io.StringIO) -> None:
    log = logging.getLogger("mcpwall.test")
    log.info("calling with Bearer %s", TOKEN, extra={"event": {"upstream": "fs", "api_key": TOKEN, "msg": "x"}})
    try:
        raise ValueError(f"bad token {TOKEN}\nsecond line")
    except ValueError:
        log.exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (orjson.loads(line) for line in lines)
    assert first["level"] == "info" and first["logger"] == "mcpwall.test" and first["upstream"] == "fs"
    assert first["api_key"] == "[REDACTED]" and first["event.msg"] == "x"
    assert second["error"] == "ValueError" and "second line" in second["traceback"]
    assert TOKEN not in stream.getvalue()


def test_text_format_is_scrubbed_too() -> None:
    out = io.StringIO()
    handler = configure(LogConfig(format="text"), stream=out)
    try:
        logging.getLogger("mcpwall.test").warning("key AKIAIOSFODNN7EXAMPLE leaked")
    finally:
        logging.getLogger().removeHandler(handler)
    assert "AKIAIOSFODNN7EXAMPLE" not in out.getvalue() and "leaked" in out.getvalue()


def test_configure_replaces_its_own_handler() -> None:
    root = logging.getLogger()
    first = configure(LogConfig(), stream=io.StringIO())
    second = configure(LogConfig(), stream=io.StringIO())
    try:
        assert first not in root.handlers and second in root.handlers
    finally:
        root.removeHandler(second)
