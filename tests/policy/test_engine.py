"""The policy engine: grants, deny-overrides, capability classes, argument constraints, CEL at
its edges, time windows, context conditions, and explanations."""

from __future__ import annotations

import posixpath
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from mcpwall.gateway.call import Principal
from mcpwall.policy.conditions import glob_regex, within_roots
from mcpwall.policy.engine import CompiledPolicy, Input
from mcpwall.policy.model import PolicyDocument

POLICY: dict[str, Any] = {
    "roles": {
        "reader": {"allow": {"tools": ["fs__read_*", "search__*"], "resources": ["file:///srv/docs/**"],
                             "prompts": ["*"]},
                   "deny": {"tools": ["search__admin_*"]}},
        "writer": {"allow": {"tools": ["fs__*"], "capabilities": ["write"]}},
        "readonly-agent": {"allow": {"capabilities": ["read"]}},
        "*": {"allow": {"tools": ["time__now"]}},
    },
    "capabilities": {"fs__delete_*": "admin"},
    "rules": [
        {"name": "fs-limits", "tools": ["fs__*"],
         "args": {"path": {"roots": ["/srv/data", "/srv/docs"], "max_length": 256},
                  "limit": {"type": "integer", "min": 1, "max": 100},
                  "mode": {"enum": ["text", "binary"]},
                  "name": {"pattern": "[a-z0-9_-]+"}}},
        {"name": "search-cel", "tools": ["search__query"],
         "when": 'args.limit <= 100 && !args.q.startsWith("/etc")'},
        {"name": "mtls-only", "tools": ["fs__write_*"], "require_auth": ["mtls"]},
        {"name": "business-hours", "tools": ["fs__write_*"],
         "during": [{"days": ["mon-fri"], "start": "09:00", "end": "17:00", "tz": "Europe/Berlin"}]},
        {"name": "maintenance", "tools": ["**"], "not_during": [{"days": ["sun"], "start": "02:00", "end": "04:00"}]},
        {"name": "confirm-delete", "tools": ["fs__delete_*"], "require_confirmation": True},
        {"name": "scoped", "prompts": ["secret__*"], "require_scopes": ["prompts:secret"]},
    ],
}
MONDAY_NOON_BERLIN = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)  # 12:00 CEST


def policy(raw: dict[str, Any] | None = None) -> CompiledPolicy:
    return CompiledPolicy(PolicyDocument.model_validate(raw or POLICY))


def who(*roles: str, method: str = "api_key", scopes: tuple[str, ...] = (), methods: str | None = None) -> Principal:
    attributes = {"auth_methods": methods} if methods else {}
    return Principal(id="p", roles=frozenset(roles), scopes=frozenset(scopes), auth_method=method,
                     attributes=attributes)


def tool(name: str, principal: Principal, args: dict[str, Any] | None = None, *, annotations: dict[str, Any] | None
         = None, now: datetime = MONDAY_NOON_BERLIN, headers: dict[str, str] | None = None) -> Input:
    definition = {"name": name, "annotations": annotations} if annotations is not None else None
    return Input(principal=principal, kind="tool", name=name, args=args or {}, definition=definition,
                 headers=headers or {}, now=now)


# -- grants ---------------------------------------------------------------------------------

def test_default_deny_hides_anything_not_granted() -> None:
    p = policy()
    assert p.decide(tool("fs__read_file", who("reader"), {"path": "/srv/docs/a"})).effect == "allow"
    hidden = p.decide(tool("github__delete_repo", who("reader")))
    assert hidden.effect == "hidden" and hidden.decided_by == "default"
    assert p.decide(tool("fs__read_file", who())).effect == "hidden"


def test_deny_overrides_allow_across_roles() -> None:
    p = policy({"roles": {"a": {"allow": {"tools": ["search__*"]}}, "b": {"deny": {"tools": ["search__admin_*"]}}}})
    decision = p.decide(tool("search__admin_reset", who("a", "b")))
    assert decision.effect == "hidden" and decision.decided_by.startswith("roles.b.deny")
    assert p.decide(tool("search__query", who("a", "b"))).effect == "allow"


def test_everyone_role_applies_to_all_principals() -> None:
    assert policy().decide(tool("time__now", who())).effect == "allow"


def test_globs_do_not_cross_slashes_unless_doubled() -> None:
    single, double = glob_regex(["file:///srv/*"]), glob_regex(["file:///srv/**"])
    assert single and double
    assert single.match("file:///srv/a") and not single.match("file:///srv/a/b")
    assert double.match("file:///srv/a/b")
    assert not glob_regex(["fs__read"]).match("fs__read_file")  # type: ignore[union-attr]


def test_capability_classes_from_annotations_and_config() -> None:
    p = policy()
    agent = who("readonly-agent")
    assert p.decide(tool("x__list", agent, annotations={"readOnlyHint": True})).effect == "allow"
    assert p.decide(tool("x__update", agent, annotations={"readOnlyHint": False})).effect == "hidden"
    assert p.decide(tool("x__unknown", agent)).effect == "hidden"  # no annotations: write
    assert p.capability("fs__delete_file", {"annotations": {"readOnlyHint": True}}) == ("admin", True)
    assert p.capability("x__y", {"annotations": {"destructiveHint": False}}) == ("write", False)
    assert p.capability("x__y", None) == ("write", True)


def test_list_visibility_matches_call_decisions() -> None:
    p = policy()
    reader = who("reader")
    assert p.visibility(reader, "tool", "fs__read_file").allowed
    assert not p.visibility(reader, "tool", "search__admin_drop").allowed
    assert p.visibility(reader, "resource", "file:///srv/docs/a/b.md").allowed
    assert not p.visibility(reader, "resource", "file:///etc/passwd").allowed
    assert p.visibility(reader, "prompt", "any__prompt").allowed


# -- argument constraints -----------------------------------------------------------------------

@pytest.mark.parametrize(("args", "part"), [
    ({"path": "/etc/passwd"}, "args.path"),
    ({"path": "/srv/data/../../etc/passwd"}, "args.path"),
    ({"path": "/srv/database"}, "args.path"),
    ({"path": "relative/file"}, "args.path"),
    ({"path": "/srv/data\\..\\..\\etc"}, "args.path"),
    ({"path": "/srv/data/" + "a" * 300}, "args.path"),
    ({"path": ["/srv/data/a", "/etc/shadow"]}, "args.path"),
    ({"path": 42}, "args.path"),
    ({"limit": 0}, "args.limit"),
    ({"limit": 101}, "args.limit"),
    ({"limit": 1.5}, "args.limit"),
    ({"limit": True}, "args.limit"),
    ({"limit": "50"}, "args.limit"),
    ({"mode": "exec"}, "args.mode"),
    ({"mode": None}, "args.mode"),
    ({"name": "Bad Name"}, "args.name"),
    ({"name": "ok\n"}, "args.name"),
])
def test_argument_constraints_refuse(args: dict[str, Any], part: str) -> None:
    decision = policy().decide(tool("fs__read_file", who("reader"), args))
    assert decision.effect == "deny" and decision.decided_by == f"rules.fs-limits.{part}"


def test_argument_constraints_allow_edges() -> None:
    p = policy()
    ok = {"path": "/srv/data", "limit": 100, "mode": "binary", "name": "a_b-1"}
    assert p.decide(tool("fs__read_file", who("reader"), ok)).allowed
    assert p.decide(tool("fs__read_file", who("reader"), {"path": "file:///srv/docs/x", "limit": 1.0})).allowed
    assert p.decide(tool("fs__read_file", who("reader"), {})).allowed  # nothing required


def test_required_arguments_and_dotted_paths() -> None:
    p = policy({"roles": {"r": {"allow": {"tools": ["*"]}}},
                "rules": [{"name": "nested", "tools": ["*"],
                           "args": {"options.depth": {"required": True, "max": 3}}}]})
    assert p.decide(tool("a__b", who("r"), {"options": {"depth": 2}})).allowed
    assert p.decide(tool("a__b", who("r"), {"options": {"depth": 4}})).effect == "deny"
    assert p.decide(tool("a__b", who("r"), {})).reason == "argument options.depth is required"


@given(st.text(alphabet="/.abc\\", max_size=30))
def test_within_roots_never_lets_a_path_escape(path: str) -> None:
    if within_roots(path, ["/srv/data"]):
        normal = posixpath.normpath(path.replace("\\", "/"))
        assert normal == "/srv/data" or normal.startswith("/srv/data/")


# -- CEL ----------------------------------------------------------------------------------------

def cel_policy(expression: str) -> CompiledPolicy:
    return policy({"roles": {"r": {"allow": {"tools": ["*"]}}},
                   "rules": [{"name": "cel", "tools": ["*"], "when": expression}]})


@pytest.mark.parametrize(("expression", "args", "allowed"), [
    ('args.limit <= 100 && !args.path.startsWith("/etc")', {"limit": 100, "path": "/srv"}, True),
    ('args.limit <= 100 && !args.path.startsWith("/etc")', {"limit": 101, "path": "/srv"}, False),
    ('args.limit <= 100 && !args.path.startsWith("/etc")', {"limit": 1, "path": "/etc/x"}, False),
    ('args.limit <= 100', {}, False),  # missing field: an evaluation error, so refused
    ('args.limit <= 100', {"limit": "5"}, False),  # wrong type
    ('args.limit <= 100', {"limit": 100.0000001}, False),
    ('args.n * 2 > 0', {"n": 2**63 - 1}, False),  # integer overflow is an error, not a wrap-around
    ('has(args.limit) ? args.limit <= 100 : true', {}, True),
    ('args.limit', {"limit": 1}, False),  # not a boolean: refused
    ('args.x == null', {"x": None}, True),
    ('size(args.items) <= 2', {"items": [1, 2, 3]}, False),
    ('"admin" in principal.roles', {}, False),
    ('principal.id == "p" && principal.auth_method == "api_key"', {}, True),
    ('server == "fs" && tool == "fs__read"', {}, True),
    ('time > timestamp("2026-01-01T00:00:00Z")', {}, True),
    ('args.q.matches("^[a-z]+$")', {"q": "abc"}, True),
    ('args.q.matches("^[a-z]+$")', {"q": "ab\u0441"}, False),
    ('1 / args.d > 0', {"d": 0}, False),
])
def test_cel_conditions_at_their_edges(expression: str, args: dict[str, Any], allowed: bool) -> None:
    call = tool("fs__read", who("r"), args)
    call.server = "fs"
    decision = cel_policy(expression).decide(call)
    assert decision.allowed is allowed, decision
    if not allowed:
        assert decision.decided_by == "rules.cel.when"


def test_invalid_cel_is_refused_at_load() -> None:
    with pytest.raises(ValidationError, match="invalid CEL"):
        PolicyDocument.model_validate({"rules": [{"name": "x", "tools": ["*"], "when": "args.limit <="}]})
    with pytest.raises(ValidationError, match="longer than"):
        PolicyDocument.model_validate({"rules": [{"name": "x", "tools": ["*"], "when": "true && " * 1000}]})


# -- context conditions -------------------------------------------------------------------------

def test_time_windows_with_time_zones() -> None:
    p = policy()
    writer = who("writer", methods="mtls,api_key")
    assert p.decide(tool("fs__write_file", writer, {"path": "/srv/data/x"})).allowed
    evening = datetime(2026, 5, 4, 16, 30, tzinfo=UTC)  # 18:30 in Berlin
    assert p.decide(tool("fs__write_file", writer, {"path": "/srv/data/x"}, now=evening)).decided_by == \
        "rules.business-hours.during"
    saturday = datetime(2026, 5, 9, 10, 0, tzinfo=UTC)
    assert not p.decide(tool("fs__write_file", writer, {"path": "/srv/data/x"}, now=saturday)).allowed
    maintenance = datetime(2026, 5, 10, 2, 30, tzinfo=UTC)  # Sunday 02:30 UTC
    assert p.decide(tool("time__now", who(), now=maintenance)).decided_by == "rules.maintenance.not_during"


def test_windows_past_midnight_belong_to_their_start_day() -> None:
    p = policy({"roles": {"r": {"allow": {"tools": ["*"]}}},
                "rules": [{"name": "night", "tools": ["*"], "during": [{"days": ["fri"], "start": "22:00",
                                                                        "end": "02:00"}]}]})
    friday_late = datetime(2026, 5, 8, 23, 0, tzinfo=UTC)
    saturday_early = datetime(2026, 5, 9, 1, 0, tzinfo=UTC)
    saturday_late = datetime(2026, 5, 9, 23, 0, tzinfo=UTC)
    assert p.decide(tool("a__b", who("r"), now=friday_late)).allowed
    assert p.decide(tool("a__b", who("r"), now=saturday_early)).allowed
    assert not p.decide(tool("a__b", who("r"), now=saturday_late)).allowed


def test_required_auth_method() -> None:
    p = policy()
    decision = p.decide(tool("fs__write_file", who("writer"), {"path": "/srv/data/x"}))
    assert decision.decided_by == "rules.mtls-only.require_auth"
    assert p.decide(tool("fs__write_file", who("writer", method="mtls"), {"path": "/srv/data/x"})).allowed


def test_confirmation_header_must_name_the_tool() -> None:
    p = policy()
    writer = who("writer")
    name = "fs__delete_file"
    assert p.decide(tool(name, writer, {"path": "/srv/data/x"})).decided_by == "rules.confirm-delete" \
                                                                              ".require_confirmation"
    wrong = tool(name, writer, {"path": "/srv/data/x"}, headers={"x-mcpwall-confirm": "true"})
    assert not p.decide(wrong).allowed
    right = tool(name, writer, {"path": "/srv/data/x"}, headers={"x-mcpwall-confirm": name})
    assert p.decide(right).allowed


def test_confirm_destructive_applies_to_every_destructive_tool() -> None:
    p = policy({"roles": {"r": {"allow": {"tools": ["*"]}}}, "confirm_destructive": True})
    assert p.decide(tool("a__drop", who("r"))).decided_by == "confirm_destructive"
    assert p.decide(tool("a__get", who("r"), annotations={"readOnlyHint": True})).allowed
    assert p.decide(tool("a__put", who("r"), annotations={"destructiveHint": False})).allowed


def test_missing_scopes_ask_for_step_up() -> None:
    p = policy()
    call = Input(principal=who("reader", method="bearer"), kind="prompt", name="secret__plan")
    decision = p.decide(call)
    assert decision.effect == "deny" and decision.step_up_scopes == ("prompts:secret",)
    call.principal = who("reader", method="bearer", scopes=("prompts:secret",))
    assert p.decide(call).allowed


def test_explain_names_the_deciding_rule_and_traces() -> None:
    decision = policy().decide(tool("fs__read_file", who("reader"), {"path": "/etc/passwd"}), explain=True)
    assert decision.decided_by == "rules.fs-limits.args.path"
    assert any("role reader: allow tools 'fs__read_*'" in line for line in decision.trace)
    allowed = policy().decide(tool("fs__read_file", who("reader"), {"path": "/srv/docs/a"}), explain=True)
    assert allowed.decided_by == "roles.reader.allow.tools 'fs__read_*'"
    assert "rule fs-limits: satisfied" in allowed.trace


def test_default_allow_is_possible_but_deny_still_wins() -> None:
    p = policy({"default": "allow", "roles": {"r": {"deny": {"tools": ["x__*"]}}}})
    assert p.decide(tool("y__a", who())).allowed
    assert p.decide(tool("x__a", who("r"))).effect == "hidden"


def test_document_validation_errors() -> None:
    bad: list[dict[str, Any]] = [
        {"rules": [{"name": "a", "tools": ["*"]}, {"name": "a", "tools": ["*"]}]},
        {"rules": [{"name": "a"}]},
        {"rules": [{"name": "a", "tools": ["*"], "args": {"x": {"pattern": "("}}}]},
        {"rules": [{"name": "a", "tools": ["*"], "during": [{"tz": "Mars/Olympus"}]}]},
        {"rules": [{"name": "a", "tools": ["*"], "during": [{"start": "25:00"}]}]},
        {"rules": [{"name": "a", "tools": ["*"], "args": {"p": {"roots": ["relative"]}}}]},
        {"roles": {"r": {"allow": {"capabilities": ["superuser"]}}}},
        {"unknown": 1},
    ]
    for raw in bad:
        with pytest.raises(ValidationError):
            PolicyDocument.model_validate(raw)
