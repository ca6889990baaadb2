"""Bounded waiting for conditions that only another process can make true.

A child process's side effect (a file it writes, a process that exits) raises no event in the
test, so the test polls — with a deadline and a growing interval, never a fixed sleep.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio


async def eventually(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Return once ``condition()`` is true; fail the test with ``what`` after ``timeout`` seconds."""
    delay = 0.01
    with anyio.move_on_after(timeout):
        while not condition():
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.25)
        return
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
