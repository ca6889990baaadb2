"""Settings of the audit guard (``guards: {audit: {...}}``) and where its files live.

Shared by the guard and the ``mcpwall audit`` command, so both find the same store, key and
head file from the same config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mcpwall.config.types import HttpUrl, Seconds
from mcpwall.pipeline.guard import GuardSettings
from mcpwall.storage.urls import sqlite_path


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RedactSettings(Strict):
    fields: list[str] = Field(
        default_factory=list,
        description="Argument/field names (any depth, case-insensitive) whose values are hashed or removed. "
                    "Credential-like keys (password, token, apiKey, …) are always removed.")
    action: Literal["hash", "remove"] = Field("hash", description="hash: keyed HMAC, so equal values correlate.")
    max_string_bytes: int = Field(4096, ge=64, description="Longer strings are cut and their digest kept.")


class BurstRule(Strict):
    count: int = Field(10, ge=1)
    window: Seconds = 60.0


class AlertRules(Strict):
    auth_failure_burst: BurstRule | None = Field(default_factory=BurstRule,
                                                 description="Auth failures from one source within a window.")
    new_capability: bool = Field(True, description="A principal uses a capability class (read, write, "
                                                   "destructive, open-world) it never used before.")
    new_tool: bool = Field(True, description="A tool is called for the first time.")
    pin_change: bool = True
    finding: bool = Field(True, description="Injection or DLP findings (events of kind 'finding').")
    circuit_open: bool = True
    audit_health: bool = Field(True, description="Audit sink down, records dropped, chain anomalies.")


class WebhookSettings(Strict):
    url: HttpUrl
    secret: str | None = Field(None, description="HMAC-SHA256 key for the X-Mcpwall-Signature header.")
    timeout: Seconds = 5.0
    max_attempts: int = Field(5, ge=1, le=20)
    min_severity: Literal["info", "warning", "critical"] = "info"


class AlertSettings(Strict):
    enabled: bool = True
    rules: AlertRules = Field(default_factory=AlertRules)
    log: bool = Field(True, description="Write every alert to the log (logger mcpwall.alerts).")
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    cooldown: Seconds = Field(300.0, description="The same alert (rule and subject) at most once per cooldown; "
                                                 "repeats are counted into the next one.")
    max_per_minute: int = Field(30, ge=1, description="Alerts delivered per minute across all rules; the rest are "
                                                      "counted and summarised.")
    keep: int = Field(500, ge=1, description="Recent alerts kept for the admin API.")


class AuditSettings(GuardSettings):
    url: str | None = Field(
        None, description="Audit store: sqlite:///path, postgresql://… . Default: from storage.url — for SQLite a "
                          "separate '<name>-audit.db' beside it.")
    pg_schema: str | None = Field(None, description="PostgreSQL schema for the audit tables.")
    durability: Literal["async", "sync"] = Field(
        "async", description="sync: a call completes only after its record is committed.")
    sync_timeout: Seconds = 5.0
    on_failure: Literal["block", "buffer"] = Field(
        "block", description="block: refuse calls while the store cannot be written (fail closed). "
                             "buffer: keep serving and buffer records (bounded; drops are counted and alerted).")
    buffer_size: int = Field(10_000, ge=1)
    batch_max: int = Field(500, ge=1, description="Most records written in one transaction.")
    batch_wait: Seconds = Field(
        0.002, le=1.0, description="After the first record of a batch arrives, wait this long (or until batch_max "
                                   "records) before writing, so one transaction carries them all. A record a call "
                                   "waits for (durability: sync) is written at once, with whatever is queued.")
    checkpoint_every: int = Field(1000, ge=1, description="Store a signed checkpoint after this many records…")
    checkpoint_interval: Seconds = Field(60.0, description="…or after this long, whichever comes first.")
    head_interval: Seconds = Field(
        1.0, description="Sign the head (in the store and the head file) at most this often while records are "
                         "written, not per batch; also at every checkpoint and at shutdown. Records after the last "
                         "signed head are protected by the hash chain only until the next one (see docs/audit.md, "
                         "'The unsigned tail'). 0 signs every batch.")
    signing_key: str | None = Field(
        None, description="Ed25519 private key (PEM). Default: mcpwall-audit.key beside the config, created "
                          "with mode 0600 on first start; the public key is written to <key>.pub.")
    head_file: str | None = Field(
        None, description="Where the latest signed head is kept outside the store (truncation evidence).")
    retention: Seconds = Field(90 * 86400.0, description="Delete records older than this; 0 keeps everything.")
    prune_interval: Seconds = 3600.0
    record_lists: bool = Field(True, description="Record tools/list, prompts/list, … results too.")
    redact: RedactSettings = Field(default_factory=RedactSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)


@dataclass(frozen=True, slots=True)
class AuditPaths:
    url: str
    signing_key: Path
    public_key: Path
    head_file: Path | None


def resolve_paths(settings: AuditSettings, config_dir: Path, storage_url: str) -> AuditPaths:
    """Where the store, the key and the head file are, relative paths against ``config_dir``."""
    url = settings.url or _default_url(storage_url, config_dir)
    key = _path(settings.signing_key, config_dir) if settings.signing_key else config_dir / "mcpwall-audit.key"
    if settings.head_file:
        head: Path | None = _path(settings.head_file, config_dir)
    else:
        db = sqlite_path(url, config_dir)
        if db is not None:
            head = db.with_name(db.name + ".head")
        elif url.startswith("memory:"):
            head = None
        else:
            head = config_dir / "mcpwall-audit.head"
    return AuditPaths(url=url, signing_key=key, public_key=key.with_name(key.name + ".pub"), head_file=head)


def _default_url(storage_url: str, config_dir: Path) -> str:
    db = sqlite_path(storage_url, config_dir)
    if db is None:
        return storage_url
    db = db.resolve()
    return f"sqlite:///{db.with_name(db.stem + '-audit' + (db.suffix or '.db'))}"


def _path(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path
