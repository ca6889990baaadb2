"""Where the pinned Node test peers live, and how tests get at them.

``scripts/test-deps.sh`` installs ``tests/node/package-lock.json`` into ``tests/node/node_modules``:
a Node 22 runtime (the machine's own Node may be older; the conformance suite needs 22), the
MCP reference servers and the conformance suite. This module only finds those files; it never
installs anything. Tests that need them call :func:`require_node`, which fails the test under CI
(``CI=true``, where a missing peer is a broken pipeline) and skips it elsewhere with the command
that fixes it.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE_PROJECT = REPO / "tests" / "node"
NODE_MODULES = NODE_PROJECT / "node_modules"
BIN = NODE_MODULES / ".bin"
INSTALL_HINT = "run scripts/test-deps.sh to install the pinned Node test peers"

# Executable names under node_modules/.bin that tests may launch.
EVERYTHING = "mcp-server-everything"
FILESYSTEM = "mcp-server-filesystem"
MEMORY = "mcp-server-memory"
CONFORMANCE = "conformance"


@dataclass(frozen=True)
class NodeEnv:
    """The Node 22 binary plus the JavaScript entry points of the pinned packages."""

    node: Path
    version: str

    def script(self, name: str) -> Path:
        """The JavaScript file behind ``node_modules/.bin/<name>``."""
        path = (BIN / name).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"{name} is not installed; {INSTALL_HINT}")
        return path

    def command(self, name: str, *args: str) -> list[str]:
        """argv that runs a package's bin with Node 22, whatever ``node`` is first on PATH."""
        return [str(self.node), str(self.script(name)), *args]

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment whose PATH finds Node 22 and the package bins first."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = os.pathsep.join([str(self.node.parent), str(BIN), env.get("PATH", "")])
        return env


@cache
def find_node() -> NodeEnv | str:
    """The installed Node environment, or a sentence saying why there is none."""
    node = BIN / "node"
    if not node.exists():
        return f"Node 22 not found at {node}; {INSTALL_HINT}"
    try:
        version = subprocess.run(
            [str(node), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"Node at {node} does not run ({exc}); {INSTALL_HINT}"
    if not version.startswith("v22."):
        return f"expected Node 22 at {node}, found {version}; {INSTALL_HINT}"
    return NodeEnv(node=node.resolve(), version=version)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def missing(reason: str) -> NoReturn:
    """Fail under CI, skip elsewhere: a missing test peer is never a silent pass in CI."""
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def require_node(*packages: str) -> NodeEnv:
    """Node 22 and the given package bins, or fail/skip the calling test with the fix."""
    found = find_node()
    if isinstance(found, str):
        missing(found)
    for name in packages:
        if not (BIN / name).exists():
            missing(f"{name} not found in {BIN}; {INSTALL_HINT}")
    return found
