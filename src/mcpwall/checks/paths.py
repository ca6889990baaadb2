"""Judge a file-path argument against a set of allowed roots.

A path is refused when it, or any decoding of it an upstream might apply, can leave the
roots: ``..`` segments (also percent-encoded, double-encoded or written with full-width or
backslash forms), NUL and control characters, ``~`` home expansion, absolute paths (POSIX,
drive-letter, UNC, ``file://``) outside the roots, and — where a root exists on this machine —
symlinks whose real target lies outside it.

Relative paths are taken relative to the first root, the usual convention of file-serving MCP
servers. ``..`` is refused outright rather than normalised away: it has no honest use in a tool
argument that could not be written without it, and refusing it removes a whole class of
parser disagreements.
"""

from __future__ import annotations

import os
import posixpath
import re
import unicodedata
from collections.abc import Sequence
from pathlib import PurePosixPath
from urllib.parse import unquote_to_bytes, urlsplit

MAX_PATH_CHARS = 4096
MAX_DECODE_ROUNDS = 4

_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FOREIGN_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:|\\\\|//)")


class PathRejected(Exception):
    """A path argument the roots do not allow. ``code`` is stable, ``message`` safe to show."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def decodings(value: str) -> list[str]:
    """``value`` and every form an upstream might turn it into: repeated percent-decoding and
    NFKC compatibility folding (full-width dots and slashes become ``../``)."""
    stages = [value]
    current = value
    for _ in range(MAX_DECODE_ROUNDS):
        if not _PERCENT.search(current):
            break
        try:
            decoded = unquote_to_bytes(current).decode("utf-8")
        except UnicodeDecodeError:
            raise PathRejected("encoding", "path contains percent-encoded bytes that are not UTF-8") from None
        if decoded == current:
            break
        stages.append(decoded)
        current = decoded
    else:
        if _PERCENT.search(current):
            raise PathRejected("encoding", "path is percent-encoded too many times")
    out: list[str] = []
    for stage in stages:
        for form in (stage, unicodedata.normalize("NFKC", stage)):
            if form not in out:
                out.append(form)
    return out


def _segments(path: str) -> list[str]:
    return re.split(r"[/\\]", path)


def check_path(value: str, roots: Sequence[str], *, resolve_symlinks: bool = True) -> None:
    """Raise :class:`PathRejected` unless ``value`` stays inside ``roots``.

    With no roots, only the syntactic checks apply (traversal, encodings, NUL, ``~``).
    """
    if len(value) > MAX_PATH_CHARS:
        raise PathRejected("too_long", "path is too long")
    if value.startswith("file:"):
        value = _file_uri_path(value)
    for index, form in enumerate(decodings(value)):
        encoded = index > 0
        if _CONTROL.search(form):
            raise PathRejected("control", "path contains NUL or control characters")
        if ".." in _segments(form):
            code = "encoded_traversal" if encoded else "traversal"
            raise PathRejected(code, "path contains a '..' segment" + (" once decoded" if encoded else ""))
        if form.startswith("~"):
            raise PathRejected("home", "path starts with '~' (home directory expansion)")
        if roots:
            _check_inside(form, roots, resolve_symlinks=resolve_symlinks)


def _file_uri_path(value: str) -> str:
    parts = urlsplit(value)
    if parts.netloc not in ("", "localhost"):
        raise PathRejected("outside_roots", "file URI names a remote host")
    return parts.path


def _check_inside(path: str, roots: Sequence[str], *, resolve_symlinks: bool) -> None:
    if _FOREIGN_ABSOLUTE.match(path):
        raise PathRejected("outside_roots", "drive-letter or network paths are outside the allowed roots")
    posix = path.replace("\\", "/")
    target = posixpath.normpath(posix if posix.startswith("/") else posixpath.join(roots[0], posix))
    root = next((r for r in roots if _within(target, r)), None)
    if root is None:
        raise PathRejected("outside_roots", "path is outside the allowed roots")
    if resolve_symlinks and os.path.isdir(root):
        real_root = os.path.realpath(root)
        real_target = os.path.realpath(target)
        if not _within(real_target, real_root):
            raise PathRejected("symlink_escape", "path leads outside the allowed roots through a symlink")


def _within(path: str, root: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(posixpath.normpath(root)))
