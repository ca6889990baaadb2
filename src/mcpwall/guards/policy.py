"""The ``policy`` guard: authorization — what each principal may see and call.

* Lists (``tools/list``, ``prompts/list``, ``resources/list``, ``resources/templates/list``) are
  filtered per principal: an agent never sees what it may not call.
* A call to a target the principal may not see is refused with ``hidden`` — the same answer
  as for a target that does not exist. A visible call that breaks a rule (arguments, CEL,
  time window, auth method, confirmation) is refused with a reason the model can read; a
  missing OAuth scope gets ``403 insufficient_scope`` so the client can step up.
* Allowed calls to upstreams named in ``identity_header`` carry a signed principal assertion
  (``call.scratch["upstream_headers"]``), never the client's token.

The compiled policy is swapped atomically by :meth:`PolicyGuard.reload` (SIGHUP, or the file
watcher when the policy lives in ``file``): calls in flight finish under the policy they
started with, sessions are untouched, and a policy that fails to load is refused while the
old one stays in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

from mcpwall.errors import ConfigError
from mcpwall.gateway.call import Call
from mcpwall.pipeline.guard import Guard, GuardEnv
from mcpwall.pipeline.verdict import PASS, Reject, Verdict
from mcpwall.policy.engine import CompiledPolicy, Decision, Input, Kind
from mcpwall.policy.identity import assertion
from mcpwall.policy.loading import compile_settings, resolve
from mcpwall.policy.model import PolicySettings

log = logging.getLogger("mcpwall.policy")

SCRATCH_METADATA = "auth.resource_metadata"  # set by the auth guard
GATEWAY_FORBIDDEN = -31403
_LIST_KINDS: dict[str, tuple[Kind, str]] = {
    "tools": ("tool", "name"), "prompts": ("prompt", "name"),
    "resources": ("resource", "uri"), "resourceTemplates": ("resource", "uriTemplate"),
}
_RESOURCE_METHODS = ("resources/read", "resources/subscribe", "resources/unsubscribe")


class PolicyGuard(Guard):
    name = "policy"
    Settings = PolicySettings
    settings: PolicySettings

    def __init__(self, settings: PolicySettings, env: GuardEnv) -> None:
        super().__init__(settings, env)
        self.policy: CompiledPolicy = compile_settings(settings, env.config_dir)
        self._watcher: asyncio.Task[None] | None = None
        self._fingerprint = self._file_fingerprint()

    # -- lifecycle and reload ---------------------------------------------------------------

    async def start(self) -> None:
        if self.settings.file is not None and self.settings.watch:
            self._watcher = asyncio.create_task(self._watch())

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    def reload(self, settings: PolicySettings | None = None) -> None:
        """Compile ``settings`` (or re-read the current policy file) and swap it in.
        Raises :class:`ConfigError` and keeps the old policy if the new one is invalid."""
        new_settings = settings or self.settings
        try:
            policy = compile_settings(new_settings, self.env.config_dir)
        except ConfigError as exc:
            self.env.events.emit("policy.reload", ok=False, source=str(new_settings.file or "<config>"),
                                 problems=exc.problems)
            raise
        watching = self.settings.file
        self.settings = new_settings
        self.policy = policy
        self._fingerprint = self._file_fingerprint()
        self.env.events.emit("policy.reload", ok=True, source=policy.source)
        log.info("policy reloaded from %s", policy.source)
        if self.settings.file != watching and self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        if self.settings.file is not None and self.settings.watch and self._watcher is None:
            with contextlib.suppress(RuntimeError):  # no running loop: the next start() watches
                self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def _file_fingerprint(self) -> str | None:
        path = resolve(self.settings, self.env.config_dir)
        if path is None:
            return None
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return None

    async def _watch(self) -> None:
        seen = None  # the last fingerprint observed, loaded or not
        while True:
            await asyncio.sleep(self.settings.watch_interval)
            fingerprint = self._file_fingerprint()
            if fingerprint is None or fingerprint == self._fingerprint:
                seen = fingerprint
                continue
            if fingerprint != seen:
                # Changed since the last look: an editor or a script may be halfway through
                # writing it, and a truncated file can still parse. Load it once it holds still.
                seen = fingerprint
                continue
            self._fingerprint = fingerprint  # try each version of the file once
            try:
                self.reload()
            except ConfigError as exc:
                log.error("policy file changed but is invalid; keeping the previous policy:\n%s",
                          "\n".join(exc.problems))

    # -- hooks ----------------------------------------------------------------------------------

    async def on_request(self, call: Call) -> Verdict:
        if call.direction != "client":
            return PASS
        policy = self.policy  # one policy per call, even if a reload lands meanwhile
        target = _target(call)
        if target is not None:
            kind, name = target
            decision = policy.decide(Input(
                principal=call.principal, kind=kind, name=name, method=call.method, server=call.server,
                args=call.arguments if kind != "resource" else {}, definition=call.definition,
                headers=call.headers, meta=_meta(call), now=datetime.fromtimestamp(call.wall_time, UTC)))
            if not decision.allowed:
                return self._refusal(call, decision)
            call.scratch["policy.decided_by"] = decision.decided_by
        self._sign_identity(call)
        return PASS

    async def on_list(self, call: Call, kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        spec = _LIST_KINDS.get(kind)
        if spec is None:
            return items
        target_kind, key = spec
        policy = self.policy
        out = []
        for item in items:
            name = item.get(key)
            if not isinstance(name, str):
                continue
            definition = item if target_kind == "tool" else None
            if policy.visibility(call.principal, target_kind, name, definition).allowed:
                out.append(item)
        return out

    # -- helpers --------------------------------------------------------------------------------

    def _refusal(self, call: Call, decision: Decision) -> Reject:
        if decision.effect == "hidden":
            return Reject(f"not visible to this principal ({decision.decided_by})", hidden=True, as_tool_error=False)
        data = {"rule": decision.decided_by}
        if decision.step_up_scopes and call.principal.auth_method == "bearer":
            scope = " ".join(decision.step_up_scopes)
            challenge = f'Bearer error="insufficient_scope", scope="{scope}"'
            metadata = call.scratch.get(SCRATCH_METADATA)
            if isinstance(metadata, str):
                challenge += f', resource_metadata="{metadata}"'
            return Reject(decision.reason, code=GATEWAY_FORBIDDEN, http_status=403, as_tool_error=False,
                          headers={"WWW-Authenticate": challenge},
                          data={**data, "requiredScopes": list(decision.step_up_scopes)})
        return Reject(decision.reason, as_tool_error=True, data=data)

    def _sign_identity(self, call: Call) -> None:
        spec = self.settings.identity_header
        if spec is None or call.server is None or (spec.servers and call.server not in spec.servers):
            return
        token = assertion(call.principal, secret=spec.secret.get_secret_value(), audience=call.server,
                          ttl=spec.ttl, decision_id=call.decision_id, now=call.wall_time)
        headers = call.scratch.setdefault("upstream_headers", {})
        headers[spec.header] = token


def _target(call: Call) -> tuple[Kind, str] | None:
    method = call.method
    if method == "tools/call":
        name = call.exposed_name or call.params.get("name")
        return ("tool", name) if isinstance(name, str) else ("tool", "")
    if method == "prompts/get":
        name = call.exposed_name or call.params.get("name")
        return ("prompt", name) if isinstance(name, str) else ("prompt", "")
    if method in _RESOURCE_METHODS:
        uri = call.params.get("uri")
        return ("resource", uri) if isinstance(uri, str) else ("resource", "")
    if method == "completion/complete":
        ref = call.params.get("ref")
        if isinstance(ref, dict) and ref.get("type") == "ref/prompt":
            name = call.exposed_name or ref.get("name")
            return ("prompt", name if isinstance(name, str) else "")
        if isinstance(ref, dict) and ref.get("type") == "ref/resource":
            uri = ref.get("uri")
            return ("resource", uri if isinstance(uri, str) else "")
    return None


def _meta(call: Call) -> dict[str, Any]:
    meta = call.params.get("_meta")
    return meta if isinstance(meta, dict) else {}
