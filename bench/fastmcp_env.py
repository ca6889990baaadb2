"""The separate virtual environment FastMCP runs in: ``bench/.venv-fastmcp`` (git-ignored).

FastMCP pins dependencies that may conflict with mcpwall's, so the harness creates this
environment itself the first time it is needed (with uv when available, else venv + pip)
and reuses it afterwards. ``fastmcp-slim`` 4.1.6 declares ``certifi>=2026.10.19``; where the
package index has no such release yet, the install is retried with that one requirement
relaxed (certifi only supplies CA roots, which loopback HTTP never uses).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

VERSION = "4.1.6"
VENV = Path(__file__).resolve().parent / ".venv-fastmcp"
PACKAGES = [f"fastmcp=={VERSION}", "uvicorn>=0.34", "uvloop>=0.21", "httptools>=0.6"]


class FastMCPUnavailable(RuntimeError):
    pass


def python() -> Path:
    return VENV / "bin" / "python"


def _installed() -> bool:
    if not python().exists():
        return False
    probe = subprocess.run([str(python()), "-c", "import fastmcp, uvicorn, uvloop; print(fastmcp.__version__)"],
                           capture_output=True, text=True, timeout=60)
    return probe.returncode == 0 and probe.stdout.strip() == VERSION


def _uv() -> str | None:
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv")


def ensure(log: Path) -> Path:
    """The venv's python, creating the venv if needed. Raises FastMCPUnavailable."""
    if _installed():
        return python()
    uv = _uv()
    with open(log, "ab") as out:
        def run(argv: list[str]) -> bool:
            out.write(f"$ {' '.join(argv)}\n".encode())
            out.flush()
            return subprocess.run(argv, stdout=out, stderr=out, timeout=600).returncode == 0

        if uv:
            ok = run([uv, "venv", "-q", "--allow-existing", "-p", sys.executable, str(VENV)])
            install = [uv, "pip", "install", "-q", "--python", str(python()), *PACKAGES]
            ok = ok and run(install)
            if not ok:
                with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as overrides:
                    overrides.write("certifi>=2024.1\n")
                ok = run([*install, "--override", overrides.name])
                Path(overrides.name).unlink(missing_ok=True)
        else:
            ok = run([sys.executable, "-m", "venv", str(VENV)])
            ok = ok and run([str(python()), "-m", "pip", "install", "-q", "uv"])
            uv_in_venv = str(VENV / "bin" / "uv")
            with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as overrides:
                overrides.write("certifi>=2024.1\n")
            ok = ok and run([uv_in_venv, "pip", "install", "-q", "--python", str(python()), *PACKAGES,
                             "--override", overrides.name])
            Path(overrides.name).unlink(missing_ok=True)
    if not (ok and _installed()):
        raise FastMCPUnavailable(f"could not install fastmcp {VERSION} into {VENV} (see {log})")
    return python()
