"""Reading JSON with comments and trailing commas (VS Code and Zed settings files).

A small scanner that removes ``//`` and ``/* */`` comments and trailing commas outside strings,
then hands the result to the JSON parser. It reads untrusted files: it never raises anything but
``ValueError``, and :func:`has_comments` tells the config rewriter when a file cannot be
rewritten without losing the user's comments.
"""

from __future__ import annotations

from typing import Any

import orjson


def strip(text: str) -> tuple[str, bool]:
    """``text`` with comments and trailing commas removed, and whether there were comments."""
    out: list[str] = []
    i, n = 0, len(text)
    comments = False
    in_string = False
    while i < n:
        ch = text[i]
        if in_string:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if ch == '"':
                in_string = False
            i += 1
            continue
        if ch == '"':
            in_string = True
            out.append(ch)
            i += 1
        elif ch == "/" and i + 1 < n and text[i + 1] == "/":
            comments = True
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif ch == "/" and i + 1 < n and text[i + 1] == "*":
            comments = True
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            out.append(" ")
        elif ch == ",":
            j = _skip_blank(text, i + 1)
            if j < n and text[j] in "}]":
                i += 1  # a trailing comma: drop it
                continue
            out.append(ch)
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out), comments


def _skip_blank(text: str, i: int) -> int:
    """Index of the next character after whitespace and comments."""
    n = len(text)
    while i < n:
        if text[i] in " \t\r\n":
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            break
    return i


def loads(text: str) -> Any:
    try:
        return orjson.loads(strip(text)[0])
    except (orjson.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not valid JSON: {exc}") from None


def has_comments(text: str) -> bool:
    return strip(text)[1]
