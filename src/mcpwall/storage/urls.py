"""Parse ``storage.url`` values: ``sqlite:///path``, ``memory://``, ``redis://…``, ``postgresql://…``."""

from __future__ import annotations

from pathlib import Path


def sqlite_path(url: str, base_dir: Path | None = None) -> Path | None:
    """The database file of a ``sqlite:///`` URL (relative paths resolve against ``base_dir``),
    or None for any other scheme."""
    if not url.startswith("sqlite:///"):
        return None
    raw = url.removeprefix("sqlite:///")
    path = Path(raw)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def scheme(url: str) -> str:
    return url.split(":", 1)[0].lower()
