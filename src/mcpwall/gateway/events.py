"""An in-process event bus: guards and connectors announce what happened, sinks listen.

Events are flat dicts with a ``kind`` (``upstream.restart``, ``pin.changed``, ``auth.failure``,
``config.reload``, …). The audit trail, the alert rules and the metrics subscribe here, so the
code that notices something never needs to know who cares about it. Emitting never blocks
and never raises into the emitter: a failing subscriber is logged and skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("mcpwall.events")

Event = dict[str, Any]
Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def emit(self, kind: str, /, **fields: Any) -> None:
        event: Event = {"time": time.time(), **fields, "kind": kind}
        for subscriber in tuple(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber failed for %s", kind)
