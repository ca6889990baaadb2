"""The ``argcheck`` guard: threat checks on the arguments the config marks.

::

    guards:
      argcheck:
        roots: [/srv/shared]                   # where path arguments may point
        arguments:
          "files__*": {path: path, "paths.*": path}
          "db__find": {"filter.name": sql}
          "git__*": {branch: shell}
          "web__fetch": {target: url}

Each marked argument (dotted path, ``*`` for every item) is checked by its kind:

* ``path``  — must stay inside ``roots`` (or ``server_roots[server]``): no ``..`` (plain,
  percent-encoded, double-encoded, full-width, backslashed), no NUL or control characters, no
  ``~``, no absolute path elsewhere, no symlink leading out of a local root
  (:mod:`mcpwall.checks.paths`).
* ``sql``   — no SQL-injection payload (:mod:`mcpwall.checks.sqli`).
* ``shell`` — no shell metacharacters and no leading ``-`` (:mod:`mcpwall.checks.shell`).
* ``url``   — the ``egress`` guard's rules (its defaults when that guard is not configured).

A finding refuses the call as a tool error naming the argument (``data.path``) and the rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from mcpwall.checks import argpaths
from mcpwall.checks.paths import PathRejected, check_path
from mcpwall.checks.shell import find_shell_metachar
from mcpwall.checks.sqli import find_sql_injection
from mcpwall.checks.urls import EgressDenied, EgressPolicy, as_url
from mcpwall.gateway.call import Call
from mcpwall.guards.egress import EgressGuard, EgressSettings, build_policy
from mcpwall.pipeline.guard import Guard, GuardEnv, GuardSettings
from mcpwall.pipeline.verdict import PASS, Reject, Verdict

ArgKind = Literal["sql", "shell", "path", "url"]


class ArgcheckSettings(GuardSettings):
    arguments: dict[str, dict[str, ArgKind]] = Field(
        default_factory=dict, description="Tool glob -> {argument path: sql | shell | path | url}.")
    roots: list[str] = Field(default_factory=list, description="Folders path arguments must stay in "
                             "(relative to the config file's folder).")
    server_roots: dict[str, list[str]] = Field(default_factory=dict, description="Per-upstream roots, "
                                               "replacing 'roots' for that upstream's tools.")
    resolve_symlinks: bool = Field(True, description="Follow symlinks under roots that exist on this machine.")


class ArgcheckGuard(Guard):
    name = "argcheck"
    Settings = ArgcheckSettings
    settings: ArgcheckSettings

    def __init__(self, settings: ArgcheckSettings, env: GuardEnv) -> None:
        super().__init__(settings, env)
        self._roots = self._absolute(settings.roots)
        self._server_roots = {s: self._absolute(r) for s, r in settings.server_roots.items()}
        self._rules = list(settings.arguments.items())

    def _absolute(self, roots: list[str]) -> list[str]:
        return [str((self.env.config_dir / Path(root).expanduser()).resolve()) if not Path(root).is_absolute()
                else str(Path(root)) for root in roots]

    async def on_request(self, call: Call) -> Verdict:
        if call.direction != "client" or call.method != "tools/call" or not self._rules:
            return PASS
        arguments = call.params.get("arguments")
        if not isinstance(arguments, dict):
            return PASS
        names = (call.exposed_name, call.target)
        for pattern, marks in self._rules:
            if not argpaths.tool_matches(pattern, names):
                continue
            for path, kind in marks.items():
                for where, value in argpaths.strings(arguments, path):
                    problem = await self._check(call, kind, value)
                    if problem is not None:
                        rule, message = problem
                        return Reject(f"argument {where}: {message}", as_tool_error=True,
                                      data={"path": where, "check": kind, "rule": rule},
                                      findings=[{"rule": f"argcheck.{kind}.{rule}", "path": where}])
        return PASS

    async def _check(self, call: Call, kind: str, value: str) -> tuple[str, str] | None:
        if kind == "path":
            roots = self._server_roots.get(call.server or "", self._roots)
            try:
                check_path(value, roots, resolve_symlinks=self.settings.resolve_symlinks)
            except PathRejected as exc:
                return exc.code, exc.message
            return None
        if kind == "sql":
            rule = find_sql_injection(value)
            return (rule, f"looks like SQL injection ({rule.replace('_', ' ')})") if rule else None
        if kind == "shell":
            rule = find_shell_metachar(value)
            return (rule, f"contains shell syntax ({rule.replace('_', ' ')})") if rule else None
        url = as_url(value)
        if url is None:
            return "malformed", "not a URL"
        try:
            await self._egress_policy(call.server).check(url)
        except EgressDenied as exc:
            return exc.code, exc.message
        return None

    def _egress_policy(self, server: str | None) -> EgressPolicy:
        egress = self.env.state.get("egress")
        if isinstance(egress, EgressGuard):
            return egress.policy_for(server)
        return build_policy(EgressSettings(), server)
