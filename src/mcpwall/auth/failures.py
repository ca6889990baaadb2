"""Slow down and then lock out a source that keeps failing authentication.

Per source address, failures inside a sliding ``window`` are counted. From ``threshold``
failures on, each further refusal is delayed (doubling from ``base_delay`` up to
``max_delay``), which makes online guessing slow without hurting a client that mistyped once;
at ``lockout_after`` failures the source is refused outright for ``lockout`` seconds, without
its credentials even being checked. State is per process and bounded in size.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from pydantic import Field

from mcpwall.config.types import Seconds, Strict

_MAX_SOURCES = 100_000


class FailureSettings(Strict):
    threshold: int = Field(5, ge=1, description="Failures within the window before refusals are delayed.")
    window: Seconds = Field(300.0, gt=0, description="Sliding window over which failures count.")
    base_delay: Seconds = Field(0.5, description="First delay; doubles with each further failure.")
    max_delay: Seconds = Field(8.0, description="Longest delay added to one refusal.")
    lockout_after: int = Field(30, ge=1, description="Failures within the window that lock the source out.")
    lockout: Seconds = Field(900.0, description="How long a locked-out source is refused.")


class FailureTracker:
    def __init__(self, settings: FailureSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked: dict[str, float] = {}

    def locked_for(self, source: str) -> float:
        """Seconds the source stays locked out (0 when it is not)."""
        until = self._locked.get(source)
        if until is None:
            return 0.0
        remaining = until - self._clock()
        if remaining <= 0:
            del self._locked[source]
            self._failures.pop(source, None)
            return 0.0
        return remaining

    def record_failure(self, source: str) -> tuple[float, bool]:
        """Count a failure. Returns (delay to add before answering, whether the source is now locked)."""
        now = self._clock()
        window = self._failures.get(source)
        if window is None:
            window = deque()
            self._failures[source] = window
            if len(self._failures) > _MAX_SOURCES:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(source)
        window.append(now)
        while window and now - window[0] > self.settings.window:
            window.popleft()
        while len(window) > self.settings.lockout_after:
            window.popleft()
        count = len(window)
        if count >= self.settings.lockout_after:
            self._locked[source] = now + self.settings.lockout
            if len(self._locked) > _MAX_SOURCES:
                self._locked.pop(next(iter(self._locked)))
            return 0.0, True
        if count < self.settings.threshold:
            return 0.0, False
        delay = self.settings.base_delay * (2 ** (count - self.settings.threshold))
        return min(delay, self.settings.max_delay), False

    def failures(self, source: str) -> int:
        window = self._failures.get(source)
        return len(window) if window is not None else 0
