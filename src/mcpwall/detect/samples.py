"""Synthetic positives from rule example templates, for tests and the benchmark.

A rule's ``examples`` may hold templates such as ``AKIA{[A-Z2-7]:16}`` or ``ghp_{alnum:36}``: each
``{set:n}`` (or ``{set:n-m}``) becomes ``n`` random characters of ``set``, where ``set`` is a name
below or a bracketed list of characters and ranges. A fixed seed makes every run see the same
strings. Nothing here runs on the request path.
"""

from __future__ import annotations

import random
import re

_NAMED = {
    "upper": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "lower": "abcdefghijklmnopqrstuvwxyz",
    "digit": "0123456789",
    "hex": "0123456789abcdef",
    "HEX": "0123456789ABCDEF",
    "alnum": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    "alpha": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "b64": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    "b64u": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-",
    "lowalnum": "abcdefghijklmnopqrstuvwxyz0123456789",
    "upalnum": "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
}
_SLOT = re.compile(r"\{(\[[^\]]+\]|[A-Za-z0-9]+):(\d+)(?:-(\d+))?\}")


def expand(template: str, rng: random.Random) -> str:
    def fill(match: re.Match[str]) -> str:
        chars = _charset(match.group(1))
        low = int(match.group(2))
        high = int(match.group(3) or low)
        return "".join(rng.choice(chars) for _ in range(rng.randint(low, high)))

    return _SLOT.sub(fill, template)


def examples(template: str, count: int = 1, seed: int = 0) -> list[str]:
    rng = random.Random(f"{seed}:{template}")
    return [expand(template, rng) for _ in range(count)]


def _charset(spec: str) -> str:
    if not spec.startswith("["):
        return _NAMED[spec]
    body = spec[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            out.extend(chr(c) for c in range(ord(body[i]), ord(body[i + 2]) + 1))
            i += 3
        else:
            out.append(body[i])
            i += 1
    return "".join(out)
