"""Every string in a JSON value, with its path; and structure-preserving replacement by path.

MCP puts text that reaches a model (or leaves the user's machine) in many places: ``content``
items, embedded resources, ``structuredContent``, prompt messages, sampling and elicitation
requests, ``_meta``. Rather than know each shape, the walker visits every string value of
whatever it is given, in document order, and skips only payloads that are binary by contract
(base64 ``data`` of image and audio content, resource ``blob``). Object keys are structure, not
content, and are not visited.

Paths are tuples of keys and indexes; :func:`render_path` writes them as JSONPath
(``$.content[0].text``). :func:`replace_at` swaps strings at given paths and copies only the
containers on the way, so the result is the same JSON shape with the same types everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

Path = tuple[str | int, ...]
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BINARY_CONTENT = frozenset({"image", "audio"})


def iter_strings(value: Any, root: Path = ()) -> Iterator[tuple[Path, str]]:
    """Yield ``(path, string)`` for every string value under ``value``, in document order."""
    stack: list[tuple[Path, Any]] = [(root, value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            yield path, node
        elif isinstance(node, dict):
            skip = _binary_keys(node)
            children = [((*path, k), v) for k, v in node.items() if isinstance(k, str) and k not in skip]
            stack.extend(reversed(children))
        elif isinstance(node, list):
            stack.extend(reversed([((*path, i), v) for i, v in enumerate(node)]))


class Collected:
    """The strings under a value, with their paths built only when asked for.

    Building a tuple per node is the walker's main cost on large structured results, and only
    the few strings with findings ever need their path."""

    __slots__ = ("_keys", "_nodes", "_parents", "root", "strings")

    def __init__(self, value: Any, root: Path = ()) -> None:
        self.root = root
        self.strings: list[str] = []
        self._nodes: list[int] = []  # node of each string
        self._parents: list[int] = [-1]
        self._keys: list[str | int] = [""]
        stack: list[tuple[int, Any]] = [(0, value)]
        parents, keys = self._parents, self._keys
        while stack:
            node_id, node = stack.pop()
            if isinstance(node, str):
                self.strings.append(node)
                self._nodes.append(node_id)
            elif isinstance(node, dict):
                skip = _binary_keys(node)
                children: list[tuple[int, Any]] = []
                for key, child in node.items():
                    if isinstance(child, (str, dict, list)) and isinstance(key, str) and key not in skip:
                        parents.append(node_id)
                        keys.append(key)
                        children.append((len(keys) - 1, child))
                stack.extend(reversed(children))
            elif isinstance(node, list):
                children = []
                for index, child in enumerate(node):
                    if isinstance(child, (str, dict, list)):
                        parents.append(node_id)
                        keys.append(index)
                        children.append((len(keys) - 1, child))
                stack.extend(reversed(children))

    def path(self, index: int) -> Path:
        parts: list[str | int] = []
        node = self._nodes[index]
        while node > 0:
            parts.append(self._keys[node])
            node = self._parents[node]
        return self.root + tuple(reversed(parts))


def _binary_keys(node: dict[str, Any]) -> frozenset[str]:
    kind = node.get("type")
    if isinstance(kind, str) and kind in _BINARY_CONTENT and isinstance(node.get("data"), str):
        return frozenset({"data"})
    if isinstance(node.get("blob"), str):
        return frozenset({"blob"})
    return frozenset()


def render_path(path: Path) -> str:
    out = ["$"]
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENT.fullmatch(part):
            out.append(f".{part}")
        else:
            escaped = part.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'["{escaped}"]')
    return "".join(out)


def get_at(value: Any, path: Path) -> Any:
    for part in path:
        value = value[part]
    return value


def replace_at(value: Any, replacements: Mapping[Path, Any]) -> Any:
    """A copy of ``value`` with the values at ``replacements``' paths swapped in.

    Containers off those paths are shared with the original, not copied."""
    if not replacements:
        return value
    if () in replacements:
        return replacements[()]
    by_head: dict[str | int, dict[Path, Any]] = {}
    for path, new in replacements.items():
        by_head.setdefault(path[0], {})[path[1:]] = new
    if isinstance(value, dict):
        copy: dict[str, Any] = dict(value)
        for key, sub in by_head.items():
            if isinstance(key, str) and key in copy:
                copy[key] = replace_at(copy[key], sub)
        return copy
    if isinstance(value, list):
        items = list(value)
        for index, sub in by_head.items():
            if isinstance(index, int) and 0 <= index < len(items):
                items[index] = replace_at(items[index], sub)
        return items
    return value
