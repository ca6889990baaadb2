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
_CONTAINERS = frozenset({str, dict, list})
_NO_KEYS: frozenset[str] = frozenset()


def iter_strings(value: Any, root: Path = ()) -> Iterator[tuple[Path, str]]:
    """Yield ``(path, string)`` for every string value under ``value``, in document order."""
    stack: list[tuple[Path, Any]] = [(root, value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            yield path, node
        elif isinstance(node, dict):
            skip = binary_keys(node)
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
        strings: list[str] = []
        nodes: list[int] = []  # node of each string
        parents: list[int] = [-1]
        keys: list[str | int] = [""]
        self.strings, self._nodes, self._parents, self._keys = strings, nodes, parents, keys
        # Hot loop: locals and exact type checks on purpose (valid JSON has only these types).
        add_string, add_node, add_parent, add_key = strings.append, nodes.append, parents.append, keys.append
        stack: list[tuple[int, Any]] = [(0, value)]
        pop, push = stack.pop, stack.append
        while stack:
            node_id, node = pop()
            kind = type(node)
            if kind is str:
                add_string(node)
                add_node(node_id)
            elif kind is dict:
                skip = binary_keys(node) if ("data" in node or "blob" in node) else _NO_KEYS
                for key in reversed(node):
                    child = node[key]
                    if (type(child) in _CONTAINERS or isinstance(child, (str, dict, list))) \
                            and type(key) is str and key not in skip:
                        add_parent(node_id)
                        add_key(key)
                        push((len(keys) - 1, child))
            elif kind is list:
                for index in range(len(node) - 1, -1, -1):
                    child = node[index]
                    if type(child) in _CONTAINERS or isinstance(child, (str, dict, list)):
                        add_parent(node_id)
                        add_key(index)
                        push((len(keys) - 1, child))
            elif isinstance(node, str):  # str subclasses
                add_string(str(node))
                add_node(node_id)
            elif isinstance(node, dict):
                push((node_id, dict(node)))
            elif isinstance(node, list):
                push((node_id, list(node)))

    def key(self, index: int) -> str | int | None:
        """The key or index the string sits under (the last element of its path)."""
        node = self._nodes[index]
        return self._keys[node] if node > 0 else (self.root[-1] if self.root else None)

    def path(self, index: int) -> Path:
        parts: list[str | int] = []
        node = self._nodes[index]
        while node > 0:
            parts.append(self._keys[node])
            node = self._parents[node]
        return self.root + tuple(reversed(parts))


def binary_keys(node: dict[str, Any]) -> frozenset[str]:
    """Keys of ``node`` whose values are binary by contract and never scanned."""
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
