"""The SSE parser against an independent reference, and on streams a hostile upstream would send.

The reference splits the whole stream at once (``re.split`` on CRLF/CR/LF), so it cannot share
a bug with the incremental parser's buffer bookkeeping. Streams mix all three line ends, put a
CR/LF pair across a chunk boundary, and are fed in arbitrary pieces.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from mcpwall.transports.sse import SSEParser

LINE_END = re.compile(rb"\r\n|\r|\n")

fields = st.one_of(
    st.builds(lambda v: b"data: " + v, st.binary(max_size=12).map(lambda b: LINE_END.sub(b"", b))),
    st.builds(lambda v: b"data:" + v, st.sampled_from([b"", b"x", b" y"])),
    st.builds(lambda v: b"event: " + v, st.sampled_from([b"message", b"endpoint", b"other"])),
    st.builds(lambda v: b"id: " + v, st.sampled_from([b"1", b"", b"a\0b"])),
    st.just(b"retry: 10"), st.just(b": comment"), st.just(b""), st.just(b"data"), st.just(b"bogus: 1"),
)


def reference(stream: bytes) -> list[tuple[str, str, str | None]]:
    """(event, data, id) of every dispatched event; an unterminated last line is not a line yet."""
    lines = LINE_END.split(stream)[:-1]
    if stream.endswith(b"\r"):
        lines = lines[:-1]  # a trailing CR may still become CRLF: the parser waits for the next byte
    out: list[tuple[str, str, str | None]] = []
    data: list[str] = []
    name, ident = "", None
    for raw in lines:
        line = raw.decode("utf-8", "replace")
        if line == "":
            if data:
                out.append((name or "message", "\n".join(data), ident))
            data, name, ident = [], "", None
            continue
        if line.startswith(":"):
            continue
        key, sep, value = line.partition(":")
        value = value[1:] if sep and value.startswith(" ") else value
        if key == "data":
            data.append(value)
        elif key == "event":
            name = value
        elif key == "id" and "\0" not in value:
            ident = value
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(fields, st.sampled_from([b"\n", b"\r\n", b"\r"])), max_size=30),
       st.lists(st.integers(0, 400), max_size=10))
def test_any_chunking_matches_the_reference(lines: list[tuple[bytes, bytes]], cuts: list[int]) -> None:
    stream = b"".join(field + end for field, end in lines)
    parser = SSEParser()
    got = []
    last = 0
    for cut in [*sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]:
        got += parser.feed(stream[last:cut])
        last = cut
    assert [(e.event, e.data, e.id) for e in got] == reference(stream)


def test_megabytes_of_short_lines_in_one_chunk() -> None:
    """What a hostile upstream can send in one read: this used to take quadratic time."""
    stream = b"data: a\n\n" * 200_000 + b"\r\n" * 1_000_000 + b"data: end\r\n\r\n"
    events = SSEParser(max_event_bytes=4 * 1024 * 1024).feed(stream)
    assert len(events) == 200_001 and events[-1].data == "end"


def test_a_long_line_trickling_in_is_kept_whole() -> None:
    parser = SSEParser(max_event_bytes=4 * 1024 * 1024)
    for _ in range(100_000):
        assert parser.feed(b"data: x") == []
    events = parser.feed(b"\n\n")
    assert len(events) == 1 and events[0].data == "x" + "data: x" * 99_999
