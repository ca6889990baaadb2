"""The ``pins`` guard: tool and prompt definition pinning, the rug-pull defence.

Every tool and prompt definition an upstream lists is hashed (see :mod:`mcpwall.pins.canonical`)
and compared with its pin. A definition that changed since it was approved — or that appears
under a new name while a similar approved one vanished (a rename, split or merge) — is withheld
from the list, and calls to it are refused with a reason that names the pin mismatch, until an
operator reviews the diff and runs ``mcpwall pins approve``. Approvals land in the lockfile,
which this guard rereads as soon as it changes, so no restart is needed.

``pinning`` decides what happens to definitions without a pin:

* ``strict``  — unknown definitions are withheld too; only the lockfile grants trust.
* ``tofu``    — trust on first use: a genuinely new definition is pinned the first time it is
  seen (in the lockfile, or in the storage database with ``store: storage``), then strict.
* ``monitor`` — nothing is withheld or refused; every difference is reported.

Every difference raises a ``pin.changed`` event (once per definition version) for the audit
trail and alerting. Upstream names are used throughout: list items carry namespaced names, so
the guard reads the upstream from ``call.scratch["list_server"]`` and strips
``call.scratch["list_prefix"]`` (or reads ``_meta["dev.mcpwall/route"]`` when present).
"""

from __future__ import annotations

import logging
from typing import Any, Literal, get_args

import anyio
from pydantic import Field

from mcpwall.gateway.call import Call, GuardRecord
from mcpwall.pins.book import PinBook, open_book
from mcpwall.pins.canonical import Key, Pin, make_pin
from mcpwall.pins.compare import Change, ChangeKind, compare
from mcpwall.pipeline.guard import Guard, GuardEnv, GuardSettings
from mcpwall.pipeline.verdict import PASS, Pass, Reject, Verdict

log = logging.getLogger("mcpwall.guards.pins")

ROUTE_META = "dev.mcpwall/route"
_CALL_KINDS = {"tools/call": "tools", "prompts/get": "prompts"}
_MAX_REPORTED = 10_000
PinKind = Literal["tools", "prompts"]


class PinsSettings(GuardSettings):
    pinning: Literal["strict", "tofu", "monitor"] = Field(
        "tofu", description="strict: only approved definitions pass; tofu: trust new definitions on first "
                            "use, then strict; monitor: report differences, withhold nothing.")
    lockfile: str = Field("mcpwall.lock", description="The lockfile, relative to the config file's folder.")
    store: Literal["lockfile", "storage"] = Field(
        "lockfile", description="Where tofu records first-seen definitions: the lockfile itself, or the "
                                "storage database (storage.url, sqlite).")
    kinds: list[PinKind] = Field(default_factory=lambda: list(get_args(PinKind)),
                                 description="Which definitions are pinned.")
    rename_similarity: float = Field(
        0.85, ge=0.5, le=1.0, description="How alike two definitions must be to count as a rename/split/merge.")
    exempt_servers: list[str] = Field(default_factory=list, description="Upstreams whose definitions are not pinned.")


class PinsGuard(Guard):
    name = "pins"
    Settings = PinsSettings
    settings: PinsSettings

    def __init__(self, settings: PinsSettings, env: GuardEnv) -> None:
        super().__init__(settings, env)
        self.book: PinBook = open_book(env.config_dir / settings.lockfile, settings.store,
                                       env.storage_url, env.config_dir)
        self._exempt = frozenset(settings.exempt_servers)
        self._kinds = frozenset(settings.kinds)
        # Pins written on first use but perhaps not yet (or never) persisted.
        self._first_use: dict[Key, Pin] = {}
        # Definitions withheld from a list, with the hash seen and why; calls to them are refused
        # even in tofu mode, where an unpinned name would otherwise be trusted on first use.
        self._withheld: dict[Key, tuple[str, str]] = {}
        self._reported: set[tuple[Key, str, str]] = set()
        self._pin_cache: dict[Key, tuple[dict[str, Any], Pin]] = {}
        self._write_lock = anyio.Lock()

    async def start(self) -> None:
        self.book.current()  # an unreadable or tampered lockfile stops the gateway from starting

    # -- lists ---------------------------------------------------------------------------------

    async def on_list(self, call: Call, kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if kind not in self._kinds:
            return items
        pins = self._pins()
        page_server = call.scratch.get("list_server")
        prefix = call.scratch.get("list_prefix") or ""
        enforce = self.settings.pinning != "monitor"
        keep = [True] * len(items)
        groups: dict[str, list[tuple[int, str, Pin | None]]] = {}
        findings: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            server, name = _origin(item, page_server, prefix)
            if server in self._exempt:
                continue
            if server is None or name is None:
                log.warning("pins: cannot tell which upstream a %s entry came from; %s", kind,
                            "withholding it" if enforce else "reporting it")
                keep[index] = not enforce
                findings.append({"rule": "pins.unroutable", "kind": kind})
                continue
            try:
                pin: Pin | None = make_pin(kind, item, name)
            except (TypeError, ValueError):  # not hashable as JSON (e.g. an integer over 64 bits)
                pin = None
            groups.setdefault(server, []).append((index, name, pin))
        first_seen: dict[Key, Pin] = {}
        for server, entries in groups.items():
            self._judge_page(server, kind, entries, pins, keep, first_seen, findings)
        if first_seen:
            await self._pin_first_use(first_seen)
        if findings:
            withheld = keep.count(False)
            reason = f"withheld {withheld} changed or unapproved definitions" if withheld else \
                "definitions differ from their pins"
            call.records.append(GuardRecord(self.name, "mutate" if withheld else "pass", reason,
                                            self.shadow, findings))
        return [item for item, kept in zip(items, keep, strict=True) if kept]

    def _judge_page(self, server: str, kind: str, entries: list[tuple[int, str, Pin | None]],
                    pins: dict[Key, Pin], keep: list[bool], first_seen: dict[Key, Pin],
                    findings: list[dict[str, Any]]) -> None:
        enforce = self.settings.pinning != "monitor"
        counts: dict[str, int] = {}
        for _, name, _pin in entries:
            counts[name] = counts.get(name, 0) + 1
        pinned = {n: p for (s, k, n), p in pins.items() if s == server and k == kind}
        current = {name: pin for _, name, pin in entries if pin is not None and counts[name] == 1}
        changes = {c.name: c for c in compare(kind, pinned, current, threshold=self.settings.rename_similarity,
                                              complete=False)}
        for index, name, pin in entries:
            key = (server, kind, name)
            if pin is None or counts[name] > 1:
                # Unhashable, or the same name listed twice: there is no single definition to trust.
                problem = Change(kind, name, "changed", pinned.get(name), pin)
                change: Change | None = problem
            else:
                change = changes.get(name)
            if change is None:
                self._withheld.pop(key, None)
                continue
            if change.change == "added" and self.settings.pinning == "tofu" and pin is not None:
                first_seen[key] = pin
                findings.append(self._report(server, change, "pinned"))
                continue
            if enforce:
                keep[index] = False
                self._withheld[key] = (pin.hash if pin is not None else "", change.change)
            findings.append(self._report(server, change, "withheld" if enforce else "reported"))

    # -- calls ---------------------------------------------------------------------------------

    async def on_request(self, call: Call) -> Verdict:
        kind = _CALL_KINDS.get(call.method)
        if call.direction != "client" or kind is None or kind not in self._kinds:
            return PASS
        server, name = call.server, call.target
        if server in self._exempt:
            return PASS
        label = "tool" if kind == "tools" else "prompt"
        if server is None or name is None or call.definition is None:
            return self._verdict(kind, {"rule": "pins.unknown", "kind": kind, "server": server, "name": name,
                                        "change": "unknown"},
                                 f"no definition of this {label} is known to the gateway, so it "
                                 "cannot be checked against its pin")
        try:
            pin = self._pin_of(server, kind, name, call.definition)
        except (TypeError, ValueError):
            return self._verdict(kind, {"rule": "pins.unhashable", "kind": kind, "server": server, "name": name,
                                        "change": "changed"},
                                 f"the definition of {label} {name!r} cannot be pinned")
        key = (server, kind, name)
        pinned = self.book.current().get(key) or self._first_use.get(key)
        if pinned is not None and pinned.hash == pin.hash:
            return PASS
        withheld = self._withheld.get(key)
        if pinned is None and withheld is None and self.settings.pinning == "tofu":
            await self._pin_first_use({key: pin})
            self._report(server, Change(kind, name, "added", None, pin), "pinned")
            return PASS
        if pinned is not None:
            change: ChangeKind = "changed"
            what = f"changed since it was approved (pinned {_short(pinned.hash)}, now {_short(pin.hash)})"
        elif withheld is not None and withheld[1] in ("renamed", "split", "merged"):
            change = withheld[1]  # type: ignore[assignment]  # checked just above
            what = f"looks {change} from an approved definition and is not approved itself"
        else:
            change = "added"
            what = "has no approved pin"
        finding = self._report(server, Change(kind, name, change, pinned, pin),
                               "refused" if self.settings.pinning != "monitor" else "reported")
        return self._verdict(kind, finding,
                             f"{label} {name!r} of server {server!r} {what}; it stays blocked until an "
                             f"operator reviews `mcpwall pins diff` and runs `mcpwall pins approve {server}/{name}`")

    def _verdict(self, kind: str, finding: dict[str, Any], reason: str) -> Verdict:
        if self.settings.pinning == "monitor":
            return Pass(reason, findings=[finding])
        return Reject(reason, as_tool_error=kind == "tools", data={"pin": finding}, findings=[finding])

    # -- helpers -------------------------------------------------------------------------------

    def _pins(self) -> dict[Key, Pin]:
        approved = self.book.current()
        if not self._first_use:
            return approved
        return {**self._first_use, **approved}

    def _pin_of(self, server: str, kind: str, name: str, definition: dict[str, Any]) -> Pin:
        key = (server, kind, name)
        cached = self._pin_cache.get(key)
        if cached is not None and cached[0] is definition:
            return cached[1]
        pin = make_pin(kind, definition, name)
        self._pin_cache[key] = (definition, pin)  # holding the dict keeps its identity unique
        return pin

    async def _pin_first_use(self, pins: dict[Key, Pin]) -> None:
        fresh = {k: p for k, p in pins.items() if k not in self._first_use}
        self._first_use.update(fresh)  # visible at once, before the write finishes
        if not fresh:
            return
        try:
            async with self._write_lock:
                await anyio.to_thread.run_sync(self.book.add_first_seen, fresh)
        except Exception:
            log.exception("pins: could not record first-seen definitions; they stay pinned in memory only")
            self.env.events.emit("pin.store_error", count=len(fresh))
            return
        for key in fresh:  # the store has them now; keep the in-memory layer small
            self._first_use.pop(key, None)

    def _report(self, server: str, change: Change, action: str) -> dict[str, Any]:
        finding: dict[str, Any] = {
            "rule": f"pins.{change.change}", "kind": change.kind, "server": server, "name": change.name,
            "change": change.change, "action": action,
            "pinned_hash": change.old.hash if change.old is not None else None,
            "current_hash": change.new.hash if change.new is not None else None,
        }
        if change.related:
            finding["related"] = list(change.related)
        marker = ((server, change.kind, change.name), change.change, finding["current_hash"] or "")
        if marker not in self._reported:
            if len(self._reported) >= _MAX_REPORTED:
                self._reported.clear()
            self._reported.add(marker)
            log.warning("pins: %s %s/%s %s (%s)", change.kind, server, change.name, change.change, action)
            self.env.events.emit("pin.changed", server=server, item_kind=change.kind, name=change.name,
                                 change=change.change, action=action, mode=self.settings.pinning,
                                 pinned_hash=finding["pinned_hash"], current_hash=finding["current_hash"],
                                 related=list(change.related))
        return finding


def _origin(item: dict[str, Any], page_server: Any, prefix: str) -> tuple[str | None, str | None]:
    """(upstream, upstream name) of a list item."""
    if not isinstance(page_server, str):
        # Only when the core did not say which upstream the page came from: its routing note.
        meta = item.get("_meta")
        route = meta.get(ROUTE_META) if isinstance(meta, dict) else None
        if isinstance(route, dict) and isinstance(route.get("server"), str) and isinstance(route.get("name"), str):
            return route["server"], route["name"]
        return None, None
    name = item.get("name")
    if not isinstance(name, str) or not name.startswith(prefix):
        return page_server, None
    return page_server, name[len(prefix):]


def _short(digest: str) -> str:
    return digest[:19]  # "sha256:" and 12 hex digits: enough to tell versions apart in a message
