"""mcpwall's scanner against mcpwall: a hardened gateway grades A in front of a server that does not.

The upstream is the SDK-built fixture server over HTTP, with no authentication of its own. It is
scanned directly, then through ``mcpwall serve`` configured with the auth guard (API keys for
the scanner, OAuth metadata for discovery) and a rate limit. Both run on loopback over plain
HTTP, so the scans pass ``allow_loopback_http`` (transport checks count as not applicable).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mcpwall.cli import main as cli
from mcpwall.scan.probe import ScanOptions
from mcpwall.scan.runner import scan_url
from support.jwks_server import IdentityProvider
from support.procs import ManagedProcess, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SDK_UPSTREAM = str(Path(__file__).resolve().parents[1] / "fixtures" / "sdk_upstream.py")


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    with ManagedProcess([sys.executable, SDK_UPSTREAM, "http", "--port", str(port)], log_path=tmp_path / "up.log",
                        name="sdk upstream") as proc:
        proc.wait_http(f"http://127.0.0.1:{port}/mcp", method="POST", ok=lambda status: status < 500)
        yield f"http://127.0.0.1:{port}/mcp"


def hardened(port: int, upstream: str, storage: str, idp: IdentityProvider) -> dict[str, Any]:
    return {
        "listen": {"port": port},
        "storage": {"url": storage},
        "security": {"allow_anonymous": False},
        "servers": {"app": {"url": upstream}},
        "guards": {
            "auth": {"api_keys": {},
                     "jwt": {"resource": f"http://127.0.0.1:{port}/mcp",
                             "issuers": [{"issuer": idp.issuer, "jwks_uri": idp.jwks_uri}]}},
            "ratelimit": {"rates": [{"name": "per-client", "rate": "30/m"}]},
        },
    }


async def test_hardened_gateway_grades_a_where_the_bare_server_does_not(
        upstream: str, gateway_factory: Any, tmp_path: Path) -> None:
    bare = await scan_url(upstream, ScanOptions(allow_loopback_http=True, active=True))
    statuses = {r.spec.id: r.status for r in bare.posture}
    assert statuses["auth-required"] == "fail"
    assert bare.grade.letter not in ("A", "B")

    storage = f"sqlite:///{tmp_path}/state.db"
    created = CliRunner().invoke(cli, ["keys", "create", "--storage", storage, "--principal", "scanner",
                                       "--roles", "scanner"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    port = free_port()
    with IdentityProvider() as idp:
        gateway = gateway_factory(hardened(port, upstream, storage, idp))
        report = await scan_url(gateway.url, ScanOptions(credentials={"Authorization": f"Bearer {key}"},
                                                         allow_loopback_http=True, active=True))
    failing = {r.spec.id: r.summary for r in report.checks if r.status in ("fail", "unknown")}
    assert failing == {}, gateway.output()
    assert report.grade.score == 100 and report.grade.letter == "A"
    assert report.mcp_grade is not None and report.mcp_grade.letter == "A"
    assert report.authenticated and report.tools  # the scanner saw the upstream's tools through the gateway
    assert key not in str(report.to_dict())
