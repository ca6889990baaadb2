"""Reloading policy without a restart: SIGHUP re-reads the config file and hands each guard that
can reload (``guard.reload(settings)``) its new settings.

Sessions, upstream connections and in-flight calls are untouched. A config that fails to load,
or a guard that refuses its new settings, leaves the running settings in place and says why; a
guard that refuses does not stop the others from taking theirs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mcpwall.config.loader import load
from mcpwall.errors import ConfigError
from mcpwall.gateway.core import Gateway

log = logging.getLogger("mcpwall.reload")


def reload_config(gateway: Gateway, path: Path) -> bool:
    """Apply the reloadable parts of the config at ``path``. Returns whether all of it applied."""
    try:
        new = load(path)
    except ConfigError as exc:
        log.error("config reload refused; the running config stays:\n%s", "\n".join(exc.problems))
        gateway.events.emit("config.reload", ok=False, problems=exc.problems)
        return False
    ok = True
    for guard in gateway.chain.guards:
        reload = getattr(guard, "reload", None)
        if not callable(reload):
            continue
        try:
            reload(new.guard_settings(guard.name))
        except ConfigError as exc:
            ok = False
            log.error("guard %s refused its new settings; its old ones stay: %s", guard.name, "; ".join(exc.problems))
    ignored = _static_changes(gateway, new)
    if ignored:
        log.warning("these settings change only on restart: %s", ", ".join(ignored))
    gateway.events.emit("config.reload", ok=ok, restart_needed=ignored)
    log.info("config reloaded from %s%s", path, "" if ok else " (partly)")
    return ok


def _static_changes(gateway: Gateway, new: object) -> list[str]:
    old = gateway.config
    return [name for name in ("listen", "admin", "servers", "storage", "security")
            if getattr(old, name) != getattr(new, name)]
