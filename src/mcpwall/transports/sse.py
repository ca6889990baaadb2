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
        self._buffer = bytearray()
        self._scanned = 0  # bytes at the head of the buffer known to hold no line end
        self._data: list[str] = []
        self._data_bytes = 0
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self.last_event_id: str | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        # Lines are cut by offset, the consumed head is dropped once per call, and every byte is
        # searched for a line end only once (across calls too). Re-slicing the buffer per line,
        # as this once did, made a chunk of many short lines cost quadratic time: a hostile
        # upstream could stall the event loop for seconds with a megabyte of newlines.
        buffer = self._buffer
        buffer += chunk
        events: list[Event] = []
        start = 0
        scan = self._scanned
        cr = lf = -2  # next CR / LF at or after ``scan``; -2: not searched yet, -1: none left
        while True:
            if cr != -1 and cr < scan:
                cr = buffer.find(b"\r", scan)
            if lf != -1 and lf < scan:
                lf = buffer.find(b"\n", scan)
            if cr == -1 and lf == -1:
                scan = len(buffer)
                break
            if cr != -1 and (lf == -1 or cr < lf):
                if cr + 1 == len(buffer):
                    scan = cr  # a CR at the end may be the first half of CRLF; wait for more
                    break
                end, skip = cr, (2 if buffer[cr + 1] == 0x0A else 1)
            else:
                end, skip = lf, 1
            event = self._line(buffer[start:end].decode("utf-8", errors="replace"))
            start = scan = end + skip
            if event is not None:
                events.append(event)
        del buffer[:start]
        self._scanned = scan - start
        if len(buffer) > self.max_event_bytes:
            raise ProtocolError("event stream line exceeds the size limit")
        return events

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


def encode_event(data: bytes, *, event: str | None = "message", event_id: str | None = None) -> bytes:
    """One SSE event carrying a JSON message (which never contains raw newlines)."""
    head = b""
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\n"
    if event:
        head += b"event: " + event.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


KEEPALIVE = b": keep-alive\n\n"
