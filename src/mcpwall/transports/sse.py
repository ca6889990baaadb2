"""Server-Sent Events: an incremental parser for upstream streams and an encoder for the front.

The parser follows the WHATWG event-stream rules that matter to MCP (``data``, ``event``,
``id``, ``retry``, comments, CR/LF/CRLF line ends) and bounds what one event may buffer, so a
hostile upstream cannot grow the gateway's memory without limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcpwall.errors import ProtocolError


@dataclass(slots=True)
class Event:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Feed bytes, get complete events. Not thread-safe; one parser per stream."""

    def __init__(self, max_event_bytes: int = 8 * 1024 * 1024) -> None:
        self.max_event_bytes = max_event_bytes
        self._buffer = b""
        self._data: list[str] = []
        self._data_bytes = 0
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self.last_event_id: str | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        self._buffer += chunk
        events: list[Event] = []
        while True:
            cut = _line_end(self._buffer)
            if cut is None:
                if len(self._buffer) > self.max_event_bytes:
                    raise ProtocolError("event stream line exceeds the size limit")
                return events
            end, skip = cut
            line = self._buffer[:end]
            self._buffer = self._buffer[end + skip:]
            event = self._line(line.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)

    def _line(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data_bytes += len(value) + 1
            if self._data_bytes > self.max_event_bytes:
                raise ProtocolError("event stream event exceeds the size limit")
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        if self._id is not None:
            self.last_event_id = self._id
        if not self._data:
            self._event, self._id, self._retry = "", None, None
            return None
        event = Event("\n".join(self._data), self._event or "message", self._id, self._retry)
        self._data, self._data_bytes, self._event, self._id, self._retry = [], 0, "", None, None
        return event


def _line_end(buffer: bytes) -> tuple[int, int] | None:
    """Position of the first line terminator and its length (CRLF counts as one)."""
    cr = buffer.find(b"\r")
    lf = buffer.find(b"\n")
    if cr == -1 and lf == -1:
        return None
    if cr != -1 and (lf == -1 or cr < lf):
        if cr + 1 == len(buffer):
            return None  # a CR at the end may be the first half of CRLF; wait for more
        return (cr, 2) if buffer[cr + 1:cr + 2] == b"\n" else (cr, 1)
    return lf, 1


def encode_event(data: bytes, *, event: str | None = "message", event_id: str | None = None) -> bytes:
    """One SSE event carrying a JSON message (which never contains raw newlines)."""
    head = b""
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\n"
    if event:
        head += b"event: " + event.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


KEEPALIVE = b": keep-alive\n\n"
