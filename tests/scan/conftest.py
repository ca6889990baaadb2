"""Fixture servers for the scanner tests: one hardened server, one per flaw, and one with every flaw.

All of them run in one background event loop (see ``fixtures.scan_servers.ServerPool``) for the
whole test session; TLS servers use a throwaway CA that scans trust through ``cafile``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.scan_servers import ALL_FLAWS, MCP_FLAWS, POSTURE_FLAWS, Fleet, ServerPool, make_app, make_certs


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    certs = make_certs(Path(tmp_path_factory.mktemp("certs")))
    pool = ServerPool()
    fleet = Fleet(certs)

    def tls(name: str, flaws: frozenset[str] | set[str] = frozenset(), **kw: str) -> None:
        fleet.urls[name] = pool.add(make_app(flaws, **kw), cert=certs.cert, key=certs.key) + "/mcp"

    tls("hardened")
    tls("modern", era="modern")
    fleet.urls["sse"] = pool.add(make_app(sse=True), cert=certs.cert, key=certs.key) + "/mcp"
    for flaw in [*POSTURE_FLAWS, *MCP_FLAWS]:
        if flaw == "plaintext":
            tls(flaw)
            # The same hardened app also answers on a plaintext port: HTTPS is not enforced.
            plain = pool.add(make_app())
            fleet.plain_ports[flaw] = int(plain.rsplit(":", 1)[1])
        else:
            tls(flaw, {flaw})
    fleet.urls["all"] = pool.add(make_app(ALL_FLAWS - {"plaintext"})) + "/mcp"
    fleet.urls["expired"] = pool.add(make_app(), cert=certs.expired_cert, key=certs.expired_key) + "/mcp"
    fleet.urls["plain_hardened"] = pool.add(make_app()) + "/mcp"
    pool.start()
    try:
        yield fleet
    finally:
        pool.stop()
