"""Fixtures for the audit trail tests: a signing key, a 100-record chain, the real PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcpwall.audit.signing import load_or_create
from support.audit_helpers import PG_URL, Chain, call


@pytest.fixture
def chain_dir(tmp_path: Path) -> Chain:
    key = tmp_path / "audit.key"
    return Chain(tmp_path, tmp_path / "audit.db", key, tmp_path / "audit.db.head", load_or_create(key))


@pytest.fixture
def chain100(chain_dir: Chain) -> Chain:
    """A 100-record chain with a stored checkpoint every 10 records."""
    chain_dir.write([call(i) for i in range(100)], checkpoint_every=10, batch_max=10)
    return chain_dir


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The real PostgreSQL server: a failure under CI, a skip with the reason elsewhere."""
    try:
        import psycopg
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("psycopg is not installed")
        pytest.skip("psycopg is not installed")
    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_URL} is unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable: {exc}")
    yield PG_URL
