"""Conditions a call must meet: globs, argument constraints, time windows and CEL.

Each check returns None when satisfied or a short, client-safe reason when not. None of them
raises on hostile input: odd types, missing values and evaluation errors all read as "not
satisfied" (fail closed).
"""

from __future__ import annotations

import math
import posixpath
import re
import zoneinfo
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from mcpwall.policy.model import DAYS, ArgConstraint, Window

_MISSING = object()


def glob_regex(patterns: Iterable[str], *, segments: bool = True) -> re.Pattern[str] | None:
    """One regex for a set of globs: ``**`` matches anything, ``*`` anything but ``/``, ``?`` one
    character but ``/``. Matching is case-sensitive and anchored. None for an empty set.
    With ``segments=False`` (JSON-RPC method names) ``*`` and ``?`` match ``/`` too."""
    parts = [_translate(p if segments else p.replace("**", "*").replace("*", "**")) for p in patterns]
    if not parts:
        return None
    return re.compile("(?:" + "|".join(parts) + r")\Z", re.DOTALL)


def _translate(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


class CompiledArg:
    def __init__(self, path: str, spec: ArgConstraint) -> None:
        self.path = path
        self.keys = path.split(".")
        self.spec = spec
        self.pattern = re.compile(spec.pattern) if spec.pattern is not None else None
        self.roots = [posixpath.normpath(r) for r in spec.roots] if spec.roots else None

    def check(self, args: dict[str, Any]) -> str | None:
        value: Any = args
        for key in self.keys:
            if not isinstance(value, dict) or key not in value:
                value = _MISSING
                break
            value = value[key]
        if value is _MISSING:
            return f"argument {self.path} is required" if self.spec.required else None
        return self._value(value)

    def _value(self, value: Any) -> str | None:
        spec, name = self.spec, self.path
        if spec.type is not None and not _is_type(value, spec.type):
            return f"argument {name} must be of type {spec.type}"
        if spec.enum is not None and not any(_same(value, option) for option in spec.enum):
            return f"argument {name} is not one of the allowed values"
        if spec.min is not None or spec.max is not None:
            if not _is_number(value) or math.isnan(value):
                return f"argument {name} must be a number"
            if spec.min is not None and value < spec.min:
                return f"argument {name} is below the minimum {spec.min:g}"
            if spec.max is not None and value > spec.max:
                return f"argument {name} is above the maximum {spec.max:g}"
        if spec.min_length is not None or spec.max_length is not None:
            if not isinstance(value, (str, list)):
                return f"argument {name} must be a string or an array"
            if spec.min_length is not None and len(value) < spec.min_length:
                return f"argument {name} is shorter than {spec.min_length}"
            if spec.max_length is not None and len(value) > spec.max_length:
                return f"argument {name} is longer than {spec.max_length}"
        if self.pattern is not None and (not isinstance(value, str) or self.pattern.fullmatch(value) is None):
            return f"argument {name} does not match the allowed pattern"
        if self.roots is not None:
            paths = value if isinstance(value, list) else [value]
            if not paths or not all(isinstance(p, str) and within_roots(p, self.roots) for p in paths):
                return f"argument {name} is outside the allowed paths"
        return None


def within_roots(raw: str, roots: list[str]) -> bool:
    """True when ``raw``, normalised (``..`` resolved, backslashes as separators, a ``file://``
    prefix removed), is one of ``roots`` or lies below one. Relative paths never qualify:
    they resolve against a directory only the upstream knows."""
    if "\x00" in raw:
        return False
    path = raw
    if path.lower().startswith("file://"):
        path = path[7:]
        if not path.startswith("/"):
            return False  # file://host/... names another machine
    path = path.replace("\\", "/")
    if not path.startswith("/"):
        return False
    normal = posixpath.normpath(path)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    return any(root == "/" or normal == root or normal.startswith(root.rstrip("/") + "/") for root in roots)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_type(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if kind == "number":
        return _is_number(value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    return isinstance(value, dict)


def _same(value: Any, option: Any) -> bool:
    # JSON has no 1 == true; Python does.
    if isinstance(value, bool) or isinstance(option, bool):
        return isinstance(value, bool) and isinstance(option, bool) and value is option
    return bool(value == option)


class CompiledWindow:
    def __init__(self, window: Window) -> None:
        self.days = {DAYS.index(d) for d in window.days}
        self.start = _minutes(window.start)
        self.end = _minutes(window.end)
        self.tz = zoneinfo.ZoneInfo(window.tz)

    def contains(self, now: datetime) -> bool:
        local = now.astimezone(self.tz)
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if self.start <= self.end:
            return day in self.days and self.start <= minute < self.end
        # Past midnight: the window belongs to the day it starts on.
        return (day in self.days and minute >= self.start) or ((day - 1) % 7 in self.days and minute < self.end)


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class CompiledCel:
    def __init__(self, source: str) -> None:
        import cel

        self.source = source
        self.program = cel.compile(source)
        # Converting unused variables into CEL values costs more than evaluating most
        # expressions, so only the ones the expression names are built.
        self.names = frozenset(self.program.variables())

    def check(self, variables: dict[str, Any]) -> str | None:
        try:
            result = self.program.execute(variables)
        except Exception:
            return "the call's condition could not be evaluated"
        return None if result is True else "the call does not meet the policy condition"
