"""The SSE parser: any chunking gives the same events, and limits hold."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpwall.errors import ProtocolError
from mcpwall.transports.sse import KEEPALIVE, SSEParser, encode_event

payloads = st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
                            min_size=1, max_size=40), min_size=1, max_size=6)


def _feed_in_chunks(stream: bytes, cuts: list[int]) -> list[str]:
    parser = SSEParser()
    events = []
    last = 0
    for cut in [*sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]:
        events += parser.feed(stream[last:cut])
        last = cut
    return [e.data for e in events]


@settings(max_examples=300)
@given(payloads, st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
       st.sampled_from([b"\n", b"\r\n", b"\r"]))
def test_chunking_does_not_change_events(datas: list[str], cuts: list[int], newline: bytes) -> None:
    stream = b"".join(encode_event(d.encode()).replace(b"\n", newline) + KEEPALIVE.replace(b"\n", newline)
                      for d in datas)
    if newline == b"\r":
        stream += b"\n"  # a lone CR at the very end is held back until the next byte; flush it
    assert _feed_in_chunks(stream, cuts) == datas


@settings(max_examples=300)
@given(st.binary(max_size=500))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    parser = SSEParser(max_event_bytes=4096)
    try:
        for event in parser.feed(data):
            assert isinstance(event.data, str)
    except ProtocolError:
        pass


def test_fields_and_multiline_data() -> None:
    parser = SSEParser()
    events = parser.feed(b"id: 7\nevent: message\nretry: 500\ndata: a\ndata: b\n\n: comment\n\ndata:c\n\n")
    assert [(e.id, e.event, e.retry, e.data) for e in events] == [("7", "message", 500, "a\nb"),
                                                                    (None, "message", None, "c")]
    assert parser.last_event_id == "7"


def test_event_size_limit() -> None:
    parser = SSEParser(max_event_bytes=100)
    with pytest.raises(ProtocolError):
        parser.feed(b"data: " + b"x" * 200 + b"\n")
    parser = SSEParser(max_event_bytes=100)
    with pytest.raises(ProtocolError):
        parser.feed(b"data: " + b"x" * 200)  # no newline yet: still bounded
