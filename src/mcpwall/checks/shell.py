"""Spot shell metacharacters in argument values that an upstream puts on a command line.

For arguments the operator marks as ending up in a shell command (a file name handed to
``grep``, a branch name handed to ``git``). The check is deliberately strict: anything a POSIX
shell gives meaning to — separators, pipes, substitution, expansion, redirection, quoting,
globbing, newlines — is refused, and so is a leading ``-``, which turns a value into an option
(``--upload-pack=…``) even when the upstream quotes it perfectly.
"""

from __future__ import annotations

import re

RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("control", re.compile(r"[\x00-\x1f\x7f]")),  # newline and CR separate commands too
    ("command_substitution", re.compile(r"`|\$\(")),
    ("variable_expansion", re.compile(r"\$(?:\{|[A-Za-z_0-9@*#?$!-])")),
    ("command_separator", re.compile(r"[;&|]")),
    ("redirection", re.compile(r"[<>]")),
    ("quoting", re.compile(r"[\"'\\]")),
    ("grouping", re.compile(r"[(){}]")),
    ("glob", re.compile(r"[*?\[\]]")),
    ("history_expansion", re.compile(r"!")),
    ("home_expansion", re.compile(r"(?:^|[\s=:])~")),
    ("option_injection", re.compile(r"^\s*-")),
)


def find_shell_metachar(value: str) -> str | None:
    """Name of the first rule ``value`` breaks, or None when it is inert on a command line."""
    for name, pattern in RULES:
        if pattern.search(value):
            return name
    return None
