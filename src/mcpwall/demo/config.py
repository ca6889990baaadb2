"""The embedded defaults ``mcpwall demo`` runs on: SQLite state, the bundled demo upstream, and
the guards that show what the gateway does: pinning, DLP, injection scanning, approvals and
flow control."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mcpwall.config.model import Config

# Guard settings for the demo, in chain order. ``flow`` runs before the content guards so it sees
# their findings on the way back; ``approval`` runs after them so their findings feed its risk score.
DEMO_GUARDS: dict[str, dict[str, Any]] = {
    "limits": {},
    "pins": {"pinning": "tofu"},
    "poisoning": {},
    "schema": {},
    "egress": {},
    "flow": {},
    "dlp": {"action": "redact"},
    "injection": {"action": "flag"},
    "approval": {"rules": [{"name": "deletions", "tools": ["demo__delete_records"], "timeout": "60s"}]},
    "audit": {},
}


def demo_config(port: int, state_dir: Path, admin_token: str | None = None) -> Config:
    """The demo's config. ``admin_token`` lets approvers act on held calls through the admin API."""
    guards = {name: dict(settings) for name, settings in DEMO_GUARDS.items()}
    if admin_token:
        guards["approval"]["admin_token"] = admin_token
    raw: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": port, "path": "/mcp"},
        "admin": {"host": "127.0.0.1", "port": port + 1},
        "servers": {"demo": {"command": sys.executable, "args": ["-m", "mcpwall.demo.server"]}},
        "storage": {"url": f"sqlite:///{state_dir / 'mcpwall.db'}"},
        "guards": guards,
    }
    return Config.model_validate(raw)
