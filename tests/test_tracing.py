"""OpenTelemetry tracing: a server span per call, child spans per guard and upstream, traceparent in _meta."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from mcpwall.gateway.call import Call, Principal
from mcpwall.pipeline.guard import Outcome
from mcpwall.tracing import Tracing

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_PARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"


@pytest.fixture
def traced() -> Iterator[tuple[Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing(provider), exporter
    provider.shutdown()


def make_call(meta: dict[str, object] | None = None) -> Call:
    params: dict[str, object] = {"name": "fs__read", "arguments": {}}
    if meta is not None:
        params["_meta"] = meta
    return Call(message={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params},
                principal=Principal("alice"), era="modern", protocol_version="2026-07-28", transport="http",
                server="fs", target="read", exposed_name="fs__read")


def test_call_guard_and_upstream_spans_share_the_clients_trace(traced: tuple[Tracing, InMemorySpanExporter]) -> None:
    tracing, exporter = traced
    call = make_call({"traceparent": CLIENT_PARENT, "tracestate": "vendor=1"})
    with tracing.call_span(call) as span:
        with tracing.guard_span("policy"):
            pass
        with tracing.upstream_span("fs", "tools/call"):
            upstream_params = tracing.inject_meta(call.params)
        tracing.record_outcome(span, Outcome(decision="deny", error_code=-31403))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    server, guard, upstream = spans["tools/call fs__read"], spans["guard policy"], spans["upstream fs tools/call"]
    assert server.kind == SpanKind.SERVER and upstream.kind == SpanKind.CLIENT
    assert {format(s.context.trace_id, "032x") for s in spans.values()} == {CLIENT_TRACE}
    assert server.parent is not None and format(server.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert guard.parent is not None and guard.parent.span_id == server.context.span_id
    assert server.attributes["mcpwall.decision"] == "deny" and server.attributes["gen_ai.tool.name"] == "fs__read"
    # The upstream sees the gateway's upstream span as its parent, in the same trace.
    meta = upstream_params["_meta"]
    assert meta["traceparent"] == f"00-{CLIENT_TRACE}-{format(upstream.context.span_id, '016x')}-01"
    assert call.params["_meta"]["traceparent"] == CLIENT_PARENT  # the client's params are not changed
    assert call.scratch["trace_id"] == CLIENT_TRACE


def test_malformed_traceparent_starts_a_new_trace(traced: tuple[Tracing, InMemorySpanExporter]) -> None:
    tracing, exporter = traced
    with tracing.call_span(make_call({"traceparent": "garbage" * 40})):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.parent is None


def test_without_a_provider_everything_is_a_no_op() -> None:
    tracing = Tracing()
    call = make_call()
    with tracing.call_span(call) as span, tracing.guard_span("x") as child:
        assert span is None and child is None
    params = {"a": 1}
    assert tracing.inject_meta(params) is params
