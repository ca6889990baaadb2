"""Logging setup: one line per event on stderr, JSON by default, secrets scrubbed.

``configure(config.log)`` installs one handler on the root logger. In ``json`` format each line
is an object ``{"ts", "level", "logger", "msg", ...}``; structured fields passed as
``log.info("...", extra={"event": {...}})`` are merged in (redacted: credential-like keys are
dropped). Every message, field and traceback goes through the same credential scrubber as the
audit trail, so a token that slips into an exception message does not reach the log. stdout is
never used: it belongs to MCP on the stdio front.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import orjson

from mcpwall.audit.record import timestamp
from mcpwall.audit.redact import Redactor, scrub_text
from mcpwall.config.model import LogConfig

_RESERVED = frozenset({"ts", "level", "logger", "msg"})
_redactor = Redactor(max_string_bytes=8192)
# Libraries whose INFO lines carry full URLs or request details.
_QUIET = ("httpx", "httpcore", "hpack", "asyncio", "uvicorn.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub_text(record.getMessage()),
        }
        event = getattr(record, "event", None)
        if isinstance(event, dict):
            for key, value in _redactor.redact(event).items():
                out[key if key not in _RESERVED else f"event.{key}"] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = record.exc_info[0].__name__
            out["traceback"] = scrub_text(self.formatException(record.exc_info))
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return scrub_text(super().format(record)).replace("\n", "\n    ")


def configure(config: LogConfig | None = None, *, stream: TextIO | None = None) -> logging.Handler:
    """Install the mcpwall handler on the root logger (replacing one installed earlier)."""
    config = config or LogConfig()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if config.format == "json" else TextFormatter())
    handler._mcpwall = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_mcpwall", False):
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(config.level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    return handler
