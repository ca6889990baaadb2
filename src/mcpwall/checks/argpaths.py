"""Name argument values in configuration: tool globs and dotted argument paths.

A config says which arguments of which tools deserve a check::

    arguments:
      "files__*": {path: path, "options.cwd": path}
      "db__query": {"filters.*.value": sql}

Tool patterns are shell-style globs matched against the name the client used (``files__read``)
and the upstream's own name (``read``). Argument paths are dotted; ``*`` matches every list
item or object member at that level, and ``[*]`` is accepted as a synonym for ``.*``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator
from typing import Any

from mcpwall.checks.schemas import pointer


def split_path(path: str) -> list[str]:
    return [part for part in path.replace("[*]", ".*").split(".") if part]


def select(arguments: Any, path: str) -> Iterator[tuple[str, Any]]:
    """``(json_pointer, value)`` for every value ``path`` names in ``arguments``."""
    parts = split_path(path)
    frontier: list[tuple[list[str | int], Any]] = [([], arguments)]
    for part in parts:
        following: list[tuple[list[str | int], Any]] = []
        for trail, node in frontier:
            if part == "*":
                if isinstance(node, dict):
                    following.extend(([*trail, k], v) for k, v in node.items())
                elif isinstance(node, list):
                    following.extend(([*trail, i], v) for i, v in enumerate(node))
            elif isinstance(node, dict) and part in node:
                following.append(([*trail, part], node[part]))
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                following.append(([*trail, int(part)], node[int(part)]))
        frontier = following
    for trail, value in frontier:
        yield pointer(trail, "/arguments"), value


def strings(arguments: Any, path: str) -> Iterator[tuple[str, str]]:
    """Like :func:`select`, but only string values; a list of strings yields each item."""
    for where, value in select(arguments, path):
        if isinstance(value, str):
            yield where, value
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, str):
                    yield f"{where}/{index}", item


def tool_matches(pattern: str, names: Iterable[str | None]) -> bool:
    return any(name is not None and fnmatch.fnmatchcase(name, pattern) for name in names)
