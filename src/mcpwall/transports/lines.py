"""Newline-delimited framing over an asyncio stream, with overlong lines skipped whole.

Both stdio sides (the client on the gateway's stdin, upstream servers on their stdout) frame
messages this way. A line over the reader's limit is discarded up to and including its newline:
``StreamReader.readline`` would drop only what it had buffered and then return the rest of the
line as a line of its own, so the tail of a huge line could smuggle in a message.
"""

from __future__ import annotations

import asyncio

OVERLONG = None  # what read_line returns for a skipped line


async def read_line(reader: asyncio.StreamReader) -> bytes | None:
    """The next line (``b""`` at end of input), or ``None`` for a line over the reader's limit."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial  # end of input: a last line without a newline, or b""
    except asyncio.LimitOverrunError as exc:
        skip = exc.consumed  # bytes buffered before the newline (or before the limit was hit)
    while True:
        try:
            await reader.readexactly(skip)
            await reader.readuntil(b"\n")  # the rest of the line, newline included
            return OVERLONG
        except asyncio.IncompleteReadError:
            return OVERLONG  # input ended inside the overlong line
        except asyncio.LimitOverrunError as exc:
            skip = exc.consumed
