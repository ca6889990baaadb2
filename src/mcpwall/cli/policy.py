"""``mcpwall policy test|explain``: check a policy before it reaches traffic."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import ValidationError

from mcpwall.errors import ConfigError
from mcpwall.policy.engine import CompiledPolicy, Decision
from mcpwall.policy.loading import load_document, problems_of
from mcpwall.policy.testing import CaseInput, load_tests, policy_for, policy_from_config, run


def _fail(problems: list[str]) -> None:
    for problem in problems:
        click.echo(problem, err=True)
    sys.exit(2)


def _policy(config: str | None, policy_file: str | None) -> CompiledPolicy | None:
    if policy_file is not None:
        return CompiledPolicy(load_document(Path(policy_file)), policy_file)
    if config is not None:
        return policy_from_config(Path(config))
    return None


@click.group()
def policy() -> None:
    """Test and explain access policies."""


@policy.command("test")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("-c", "--config", type=click.Path(dir_okay=False, exists=True), help="Use guards.policy of this config.")
@click.option("-p", "--policy", "policy_file", type=click.Path(dir_okay=False, exists=True),
              help="Use this policy document.")
@click.option("-v", "--verbose", is_flag=True, help="Show every case, not only failures.")
def test(files: tuple[str, ...], config: str | None, policy_file: str | None, verbose: bool) -> None:
    """Run policy test cases (input → expected decision). Exit 1 if any fails."""
    passed = failed = 0
    try:
        override = _policy(config, policy_file)
        for name in files:
            path = Path(name)
            tests = load_tests(path)
            compiled = override or policy_for(tests, path)
            for result in run(compiled, tests):
                if result.passed:
                    passed += 1
                    if verbose:
                        click.echo(f"PASS {path.name}: {result.case.name}")
                    continue
                failed += 1
                d = result.decision
                want = result.case.expect + (f" by {result.case.decided_by}" if result.case.decided_by else "")
                click.echo(f"FAIL {path.name}: {result.case.name}: expected {want}, got {d.effect} "
                           f"by {d.decided_by}" + (f" ({d.reason})" if d.reason else ""))
                for line in d.trace:
                    click.echo(f"       {line}")
    except ConfigError as exc:
        _fail(exc.problems)
    click.echo(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


@policy.command()
@click.option("-c", "--config", type=click.Path(dir_okay=False, exists=True), help="Use guards.policy of this config.")
@click.option("-p", "--policy", "policy_file", type=click.Path(dir_okay=False, exists=True),
              help="Use this policy document.")
@click.option("-i", "--input", "input_file", type=click.Path(dir_okay=False, exists=True),
              help="YAML/JSON file with one input (as in a test case).")
@click.option("--principal", default=None, help="Principal id.")
@click.option("--roles", default="", help="Comma-separated roles.")
@click.option("--auth-method", default=None, help="How the principal authenticated (api_key, bearer, mtls, hmac).")
@click.option("--tool", default=None, help="Namespaced tool name.")
@click.option("--prompt", default=None, help="Namespaced prompt name.")
@click.option("--resource", default=None, help="Resource URI.")
@click.option("--args", "args_json", default=None, help="Tool arguments as JSON.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def explain(config: str | None, policy_file: str | None, input_file: str | None, principal: str | None,
            roles: str, auth_method: str | None, tool: str | None, prompt: str | None, resource: str | None,
            args_json: str | None, as_json: bool) -> None:
    """Show the decision for one call and which grant or rule made it."""
    try:
        compiled = _policy(config, policy_file)
        if compiled is None:
            raise ConfigError(["give the policy with -c mcpwall.yaml or -p policy.yaml"])
        raw: dict[str, Any] = {}
        if input_file is not None:
            loaded = yaml.safe_load(Path(input_file).read_text(encoding="utf-8"))
            raw = dict(loaded.get("input", loaded)) if isinstance(loaded, dict) else {}
        person = dict(raw.get("principal") or {})
        if principal is not None:
            person["id"] = principal
        if roles:
            person["roles"] = [r for r in roles.split(",") if r]
        if auth_method is not None:
            person["auth_method"] = auth_method
        raw["principal"] = person
        for key, value in (("tool", tool), ("prompt", prompt), ("resource", resource)):
            if value is not None:
                raw[key] = value
        if args_json is not None:
            raw["args"] = json.loads(args_json)
        case = CaseInput.model_validate(raw)
    except ConfigError as exc:
        _fail(exc.problems)
        return
    except ValidationError as exc:
        _fail(problems_of(exc, "input"))
        return
    except (ValueError, OSError) as exc:
        _fail([f"input: {exc}"])
        return
    decision = compiled.decide(case.to_input(), explain=True)
    _print(decision, as_json)


def _print(decision: Decision, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"decision": decision.effect, "decided_by": decision.decided_by,
                               "reason": decision.reason, "step_up_scopes": list(decision.step_up_scopes),
                               "trace": list(decision.trace)}, indent=2))
        return
    click.echo(f"decision:   {decision.effect}")
    click.echo(f"decided by: {decision.decided_by}")
    if decision.reason:
        click.echo(f"reason:     {decision.reason}")
    if decision.step_up_scopes:
        click.echo(f"step-up:    {' '.join(decision.step_up_scopes)}")
    for line in decision.trace:
        click.echo(f"  - {line}")
