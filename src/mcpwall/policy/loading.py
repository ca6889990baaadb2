"""Read policy documents from YAML files and turn policy settings into a compiled policy.

Every problem is reported at once as ``file: path: message``, through
:class:`~mcpwall.errors.ConfigError`, so ``mcpwall check``, reloads and ``mcpwall policy``
speak the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mcpwall.errors import ConfigError
from mcpwall.policy.engine import CompiledPolicy
from mcpwall.policy.model import PolicyDocument, PolicySettings


def problems_of(exc: ValidationError, source: str) -> list[str]:
    out = []
    for error in exc.errors():
        path = ".".join(str(p) for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        out.append(f"{source}: {path or '(top)'}: {error['msg'].removeprefix('Value error, ')}")
    return out


def load_document(path: Path) -> PolicyDocument:
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the policy file: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError([f"{path}{line}: invalid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: a policy file must be a mapping"])
    try:
        return PolicyDocument.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(problems_of(exc, str(path))) from None


def resolve(settings: PolicySettings, base_dir: Path) -> Path | None:
    if settings.file is None:
        return None
    path = Path(settings.file)
    return path if path.is_absolute() else base_dir / path


def compile_settings(settings: PolicySettings, base_dir: Path) -> CompiledPolicy:
    """The compiled policy the settings describe (inline, or from their ``file``)."""
    path = resolve(settings, base_dir)
    if path is None:
        return CompiledPolicy(settings.document(), "<config>")
    return CompiledPolicy(load_document(path), str(path))
