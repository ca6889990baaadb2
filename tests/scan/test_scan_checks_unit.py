"""The evaluators as pure functions: edge cases no fixture server needs to exist for."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid

import orjson
import pytest

from mcpwall.scan import checks, mcp_checks
from mcpwall.scan.checks import POSTURE
from mcpwall.scan.http import Exchange
from mcpwall.scan.mcp_checks import MCP, id_entropy_bits
from mcpwall.scan.mcp_http import McpView
from mcpwall.scan.model import CheckResult
from mcpwall.scan.probe import FOREIGN_ORIGIN, Evidence, ScanOptions
from mcpwall.scan.scoring import letter_for, meets, posture_grade, relative_grade
from mcpwall.scan.tls import TlsInfo

TARGET = "https://mcp.example.test/mcp"


def ex(label: str, status: int | None = 200, body: bytes | dict | list = b"", headers: dict[str, str] | None = None,
       url: str = TARGET, method: str = "GET", error: str | None = None) -> Exchange:
    data = orjson.dumps(body) if isinstance(body, (dict, list)) else body
    hdrs = [(k.lower(), v) for k, v in (headers or {}).items()]
    if isinstance(body, (dict, list)):
        hdrs.append(("content-type", "application/json"))
    return Exchange(label=label, method=method, url=url, status=status, headers=hdrs, body=data, error=error)


def evidence(*exchanges: Exchange, target: str = TARGET, **kw: object) -> Evidence:
    ev = Evidence(target=target, options=ScanOptions(**kw))  # type: ignore[arg-type]
    ev.exchanges = {e.label: e for e in exchanges}
    return ev


# --- weights and grades ---------------------------------------------------------------------

def test_posture_weights_are_the_published_ones_and_sum_to_100() -> None:
    weights = {spec.id: spec.weight for spec, _ in POSTURE}
    assert len(weights) == 14
    assert sum(weights.values()) == 100
    assert weights["https-enforced"] == 20 and weights["auth-required"] == 15
    assert weights["no-admin-paths"] == 10 and weights["no-credentials-in-responses"] == 10
    assert weights["no-wildcard-cors"] == 8
    assert [weights[k] for k in ("csp", "hsts", "x-frame-options", "x-content-type-options")] == [3, 3, 3, 3]
    assert all(weights[k] == 5 for k in ("no-version-disclosure", "no-open-redirect", "no-sensitive-files",
                                         "no-error-leak", "protected-resource-metadata"))


def test_mcp_passive_weights_sum_to_100() -> None:
    assert sum(spec.weight for spec, _ in MCP if not spec.active_only) == 100


@pytest.mark.parametrize(("score", "letter"), [(100, "A"), (90, "A"), (89, "B"), (75, "B"), (74, "C"), (60, "C"),
                                               (59, "D"), (40, "D"), (39, "F"), (0, "F")])
def test_bands(score: int, letter: str) -> None:
    assert letter_for(score) == letter


def test_meets_orders_letters() -> None:
    assert meets("A", "B") and meets("B", "B") and not meets("C", "B") and meets("f", "F")


def test_unknown_posture_checks_earn_nothing_but_na_earns_its_weight() -> None:
    spec = POSTURE[0][0]
    assert posture_grade([CheckResult(spec, "unknown", "")]).score == 0
    assert posture_grade([CheckResult(spec, "na", "")]).score == spec.weight


def test_relative_grade_counts_only_observed_probes() -> None:
    specs = [spec for spec, _ in MCP[:2]]
    grade = relative_grade([CheckResult(specs[0], "pass", ""), CheckResult(specs[1], "unknown", "")])
    assert grade is not None and grade.score == 100 and grade.observed_weight == specs[0].weight
    assert relative_grade([CheckResult(specs[1], "unknown", "")]) is None


# --- posture evaluators ---------------------------------------------------------------------

def _tls(**kw: object) -> TlsInfo:
    info = TlsInfo(version="TLSv1.3", verified=True, legacy_accepted=False,
                   not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=90))
    for k, v in kw.items():
        setattr(info, k, v)
    return info


@pytest.mark.parametrize(("plain", "status"), [
    (ex("plaintext", None, error="connection refused"), "pass"),
    (ex("plaintext", 301, headers={"Location": "https://mcp.example.test/mcp"}), "pass"),
    (ex("plaintext", 301, headers={"Location": "http://other.test/"}), "fail"),
    (ex("plaintext", 400, b"The plain HTTP request was sent to HTTPS port"), "pass"),
    (ex("plaintext", 401, {"error": "unauthorized"}), "fail"),
    (ex("plaintext", 200, {"jsonrpc": "2.0", "id": 1, "result": {}}), "fail"),
])
def test_https_judges_the_plaintext_listener(plain: Exchange, status: str) -> None:
    ev = evidence(plain)
    ev.tls = _tls()
    assert checks.check_https(ev)[0] == status


def test_https_fails_an_untrusted_certificate_even_when_plaintext_is_refused() -> None:
    ev = evidence(ex("plaintext", None, error="connection refused"))
    ev.tls = _tls(verified=False, verify_error="self-signed certificate")
    assert checks.check_https(ev)[0] == "fail"


def test_admin_paths_on_a_catch_all_server_are_not_reported() -> None:
    spa = b"<html>app shell</html>"
    ev = evidence(ex("notfound", 200, spa), ex("admin:/admin", 200, spa), ex("admin:/metrics", 200, spa))
    assert checks.check_admin(ev)[0] == "pass"
    ev = evidence(ex("notfound", 200, spa), ex("admin:/admin", 200, b"<html>Admin</html>"))
    assert checks.check_admin(ev)[0] == "fail"


def test_admin_path_that_exists_behind_a_login_is_still_exposed() -> None:
    ev = evidence(ex("notfound", 404, b"nope"), ex("admin:/dashboard", 302, headers={"Location": "/login"}))
    assert checks.check_admin(ev)[0] == "fail"
    ev = evidence(ex("notfound", 401, b"auth"), ex("admin:/dashboard", 401, b"auth"))
    assert checks.check_admin(ev)[0] == "pass"


def test_credentials_check_ignores_the_scanners_own_token_echoed_back() -> None:
    token = "ghp_" + "R8m2Qx7Lk4Vn9Pz3Tw6Yb1Hc5Jd0Fs8Ga2Ke"
    ev = evidence(ex("hello", 200, {"echo": token}), credentials={"Authorization": f"Bearer {token}"})
    assert checks.check_credentials(ev)[0] == "pass"
    ev = evidence(ex("hello", 200, {"echo": token}))
    status, _, found = checks.check_credentials(ev)
    assert status == "fail" and token not in " ".join(found)


def test_cors_reflection_fails_and_public_metadata_may_be_open() -> None:
    reflected = ex("cors_preflight", 204, headers={"Access-Control-Allow-Origin": FOREIGN_ORIGIN,
                                                   "Access-Control-Allow-Credentials": "true"})
    assert checks.check_cors(evidence(reflected))[0] == "fail"
    metadata = ex("prm_path", 200, {"resource": TARGET}, headers={"Access-Control-Allow-Origin": "*"})
    assert checks.check_cors(evidence(metadata))[0] == "pass"


def test_frame_ancestors_in_csp_counts_for_x_frame_options() -> None:
    primary = ex("init_unauth", 401, headers={"Content-Security-Policy": "frame-ancestors 'none'"})
    assert checks.check_xfo(evidence(primary))[0] == "pass"
    assert checks.check_xfo(evidence(ex("init_unauth", 401, headers={"X-Frame-Options": "ALLOW-FROM x"})))[0] == \
        "fail"


def test_short_hsts_fails() -> None:
    assert checks.check_hsts(evidence(ex("init_unauth", 401, headers={
        "Strict-Transport-Security": "max-age=300"})))[0] == "fail"


@pytest.mark.parametrize(("headers", "body", "status"), [
    ({"Server": "nginx"}, b"", "pass"),
    ({"Server": "nginx/1.25.3"}, b"", "fail"),
    ({"Server": "uvicorn"}, b"", "fail"),
    ({"X-Powered-By": "Express"}, b"", "fail"),
    ({}, b"<hr><center>nginx/1.18.0 (Ubuntu)</center>", "fail"),
])
def test_version_disclosure(headers: dict[str, str], body: bytes, status: str) -> None:
    assert checks.check_version(evidence(ex("notfound", 404, body, headers=headers)))[0] == status


@pytest.mark.parametrize(("location", "status"), [
    ("https://mcpwall-scan.invalid/", "fail"),
    ("//mcpwall-scan.invalid/x", "fail"),
    ("/\\mcpwall-scan.invalid/", "fail"),
    ("/login", "pass"),
    ("https://mcp.example.test/home", "pass"),
])
def test_open_redirect_targets(location: str, status: str) -> None:
    probe = ex("redirect:/login?next=", 302, headers={"Location": location}, url="https://mcp.example.test/login")
    assert checks.check_redirect(evidence(probe))[0] == status


def test_sensitive_files_need_their_signature() -> None:
    base = ex("notfound", 404, b"")
    html_env = ex("file:/.env", 200, b"<html>DEBUG=1</html>")
    assert checks.check_files(evidence(base, html_env))[0] == "pass"
    git = ex("file:/.git/HEAD", 200, b"ref: refs/heads/main\n")
    assert checks.check_files(evidence(base, git))[0] == "fail"
    listing = ex("listing:/static/", 200, b"<html><title>Index of /static</title></html>")
    assert checks.check_files(evidence(base, listing))[0] == "fail"


@pytest.mark.parametrize("body", [
    b'Traceback (most recent call last):\n  File "/app/x.py", line 3',
    b"Error: boom\n    at handler (/srv/app/index.js:12:7)",
    b"SQLSTATE[42000]: Syntax error",
    b"java.lang.NullPointerException",
])
def test_error_leaks_are_recognised(body: bytes) -> None:
    assert checks.check_errors(evidence(ex("malformed_json", 500, body)))[0] == "fail"


def test_prm_resource_must_name_this_endpoint() -> None:
    good = ex("prm_path", 200, {"resource": TARGET, "authorization_servers": ["https://as.example.test"]})
    assert checks.check_prm(evidence(good))[0] == "pass"
    other = ex("prm_path", 200, {"resource": "https://elsewhere.test/mcp", "authorization_servers": ["https://a"]})
    assert checks.check_prm(evidence(other))[0] == "fail"
    plain_as = ex("prm_path", 200, {"resource": TARGET, "authorization_servers": ["http://as.example.test"]})
    assert checks.check_prm(evidence(plain_as))[0] == "fail"


# --- MCP evaluators -------------------------------------------------------------------------

@pytest.mark.parametrize(("tls", "status"), [
    (_tls(), "pass"),
    (_tls(version="TLSv1.1"), "fail"),
    (_tls(legacy_accepted=True), "fail"),
    (_tls(not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=3)), "fail"),
    (_tls(legacy_accepted=None), "pass"),
])
def test_tls_probe(tls: TlsInfo, status: str) -> None:
    ev = evidence()
    ev.tls = tls
    assert mcp_checks.check_tls(ev)[0] == status


def test_origin_probe_is_unknown_when_everything_is_401() -> None:
    ev = evidence(ex("hello", 401), ex("foreign_origin", 401), ex("foreign_host", 401))
    assert mcp_checks.check_origin(ev)[0] == "unknown"
    ev = evidence(ex("hello", 401), ex("foreign_origin", 403), ex("foreign_host", 421))
    assert mcp_checks.check_origin(ev)[0] == "pass"


def test_oversized_body_cut_off_counts_as_refused() -> None:
    ev = evidence(ex("oversized", None, error="connection closed (RemoteProtocolError)"))
    assert mcp_checks.check_oversized(ev)[0] == "pass"
    assert mcp_checks.check_oversized(evidence(ex("oversized", None, error="timeout")))[0] == "fail"


def test_batch_must_be_accepted_when_2025_03_26_was_negotiated() -> None:
    batch = ex("batch", 200, [{"jsonrpc": "2.0", "id": 1, "result": {}}, {"jsonrpc": "2.0", "id": 2, "result": {}}])
    ev = evidence(batch, credentials={"Authorization": "Bearer t"})
    ev.view = McpView(era="legacy", version="2025-03-26")
    assert mcp_checks.check_batch(ev)[0] == "pass"
    ev.view = McpView(era="legacy", version="2025-11-25")
    assert mcp_checks.check_batch(ev)[0] == "fail"


def test_session_id_entropy_estimates() -> None:
    assert id_entropy_bits(str(uuid.uuid4())) == 122
    assert id_entropy_bits(secrets.token_urlsafe(32)) >= 256
    assert id_entropy_bits("0123456789abcdef0123456789abcdef") == 128  # hex, not shaped like a UUIDv4
    assert id_entropy_bits("1001") < 20
    assert id_entropy_bits("") == 0


def test_session_probe_flags_an_id_that_works_without_credentials() -> None:
    ev = evidence(ex("session_without_credentials", 200, {"jsonrpc": "2.0", "id": 1, "result": {"tools": []}}))
    ev.view = McpView(era="legacy", version="2025-11-25", session_id="a")
    ev.session_ids = [secrets.token_urlsafe(32), secrets.token_urlsafe(32)]
    ev.legacy = ("2025-11-25", ev.session_ids[0])
    status, summary, _ = mcp_checks.check_session(ev)
    assert status == "fail" and "without credentials" in summary


def test_rate_probe_needs_a_429() -> None:
    ev = evidence(credentials={"Authorization": "Bearer t"})
    ev.burst = [ex(f"burst:{i}", 200) for i in range(5)]
    assert mcp_checks.check_rate(ev)[0] == "fail"
    ev.burst.append(ex("burst:9", 429, headers={"Retry-After": "1"}))
    assert mcp_checks.check_rate(ev)[0] == "pass"


def test_docs_list_every_check_with_its_weight() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "scan.md").read_text()
    for spec, _ in (*POSTURE, *MCP):
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{spec.id}`")), None)
        assert row is not None, spec.id
        assert f"| {spec.weight} |" in row, spec.id
