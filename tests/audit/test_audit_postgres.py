"""The PostgreSQL audit store against the real server: same chain, same verifier, shared by writers."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import psycopg
import pytest

from mcpwall.audit.postgres import PostgresStore
from mcpwall.audit.signing import load_public_keys
from mcpwall.audit.verify import read_head_file, verify_store
from mcpwall.audit.writer import AuditWriter, WriterOptions
from support.audit_helpers import Chain, call


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    name = f"mcpwall_audit_{secrets.token_hex(4)}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def _writer(url: str, schema: str, chain: Chain, **options: object) -> AuditWriter:
    opts = WriterOptions(head_file=chain.head, retention=0, **options)  # type: ignore[arg-type]
    return AuditWriter(PostgresStore(url, schema=schema), chain.signer, opts)


def _verify(url: str, schema: str, chain: Chain, *, head_file: bool = True):  # type: ignore[no-untyped-def]
    store = PostgresStore(url, schema=schema)
    store.open(create=False)
    try:
        keys = load_public_keys([chain.key.with_name(chain.key.name + ".pub")])
        return verify_store(store, keys, head_file=read_head_file(chain.head) if head_file else None)
    finally:
        store.close()


@pytest.mark.anyio
async def test_postgres_chain_verifies_after_concurrent_traffic(postgres_url: str, schema: str,
                                                                chain_dir: Chain) -> None:
    writer = _writer(postgres_url, schema, chain_dir, checkpoint_every=200, buffer_size=50_000)
    await writer.start()

    async def client(n: int) -> None:
        for i in range(100):
            writer.submit(call(n * 100 + i))
            if i % 10 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(client(n) for n in range(20)))
    done = writer.submit(call(9999), wait=True)
    assert done is not None
    assert await asyncio.wait_for(done, 60) == 2001
    await writer.aclose()
    report = _verify(postgres_url, schema, chain_dir)
    assert report.ok, report.as_dict()
    assert report.records == 2001


def test_postgres_replicas_share_one_chain(postgres_url: str, schema: str, chain_dir: Chain) -> None:
    first = _writer(postgres_url, schema, chain_dir, batch_max=11)
    second = _writer(postgres_url, schema, chain_dir, batch_max=13)
    first.start_thread()
    second.start_thread()
    for i in range(600):
        (first if i % 2 else second).submit(call(i))
    first.close_sync()
    second.close_sync()
    report = _verify(postgres_url, schema, chain_dir, head_file=False)
    assert report.ok, report.as_dict()
    assert report.records == 600


def test_postgres_tampering_is_named(postgres_url: str, schema: str, chain_dir: Chain) -> None:
    writer = _writer(postgres_url, schema, chain_dir, checkpoint_every=10, batch_max=10)
    for i in range(50):
        writer.submit(call(i))
    writer.start_thread()
    writer.close_sync()
    assert _verify(postgres_url, schema, chain_dir).ok
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"UPDATE {schema}.audit_records SET body = replace(body, '\"allow\"', '\"deny\"') WHERE seq = 12")
        conn.execute(f"DELETE FROM {schema}.audit_records WHERE seq = 30")
        conn.execute(f"DELETE FROM {schema}.audit_records WHERE seq > 45")
    report = _verify(postgres_url, schema, chain_dir)
    assert {p.kind: p.seq for p in report.problems} == {"edited": 12, "deleted": 30, "truncated": 46}


def test_postgres_location_hides_credentials() -> None:
    store = PostgresStore("postgresql://auditor:s3cret-pass@db.internal:5432/audit")
    assert "s3cret" not in store.location and "db.internal" in store.location
