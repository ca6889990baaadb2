"""OpenTelemetry tracing, optional: install ``mcpwall[otel]`` to get spans, nothing breaks without.

What the core calls, per client request:

    with tracing.call_span(call) as span:            # SERVER span, parent from _meta.traceparent
        with tracing.guard_span("policy"): ...        # one child per guard hook
        with tracing.upstream_span(call.server, call.method):
            params = tracing.inject_meta(params)      # _meta.traceparent/tracestate for the upstream
            ...
        tracing.record_outcome(span, outcome)

MCP carries W3C trace context in ``params._meta`` (keys ``traceparent``, ``tracestate``), as the
2026-07-28 spec reserves them. The client's context becomes the parent of the gateway's span; the
upstream receives the gateway's span as its parent, so a trace shows client → gateway → guards →
upstream. Everything is a cheap no-op (no span objects, params returned as they are) until a tracer
provider is configured — by the application, or by :func:`setup_from_env` when
``OTEL_TRACES_EXPORTER``/``OTEL_EXPORTER_OTLP_ENDPOINT`` are set.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from mcpwall.gateway.call import Call
from mcpwall.pipeline.guard import Outcome

log = logging.getLogger("mcpwall.tracing")

try:
    from opentelemetry import trace as _trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the otel extra is not installed
    _trace = None  # type: ignore[assignment]
    TraceContextTextMapPropagator = None  # type: ignore[assignment,misc]

_MAX_TRACEPARENT = 128
_MAX_TRACESTATE = 512


class Tracing:
    def __init__(self, provider: Any = None) -> None:
        self._provider = provider
        self._tracer: Any = None
        self._propagator: Any = TraceContextTextMapPropagator() if _trace is not None else None

    @property
    def available(self) -> bool:
        return _trace is not None

    @property
    def enabled(self) -> bool:
        return self._get_tracer() is not None

    def _get_tracer(self) -> Any:
        if self._tracer is not None or _trace is None:
            return self._tracer
        provider = self._provider or _trace.get_tracer_provider()
        if isinstance(provider, _trace.ProxyTracerProvider | _trace.NoOpTracerProvider):
            return None  # nothing would record: stay a no-op, check again next time
        self._tracer = provider.get_tracer("mcpwall")
        return self._tracer

    @contextlib.contextmanager
    def call_span(self, call: Call) -> Iterator[Any]:
        tracer = self._get_tracer()
        if tracer is None:
            yield None
            return
        parent = self._propagator.extract(_carrier(call.params.get("_meta")))
        target = call.exposed_name or call.target
        attributes: dict[str, Any] = {
            "mcp.method.name": call.method,
            "mcp.protocol.version": call.protocol_version,
            "network.transport": "pipe" if call.transport == "stdio" else "tcp",
            "mcpwall.decision_id": call.decision_id,
            "mcpwall.era": call.era,
            "enduser.id": call.principal.id,
        }
        if target:
            attributes["gen_ai.tool.name" if call.method == "tools/call" else "mcpwall.target"] = target
        if call.server:
            attributes["mcpwall.upstream"] = call.server
        name = f"{call.method} {target}" if target else (call.method or "mcp")
        with tracer.start_as_current_span(name, context=parent, kind=_trace.SpanKind.SERVER,
                                          attributes=attributes) as span:
            context = span.get_span_context()
            if context.is_valid:
                call.scratch["trace_id"] = format(context.trace_id, "032x")
            yield span

    @contextlib.contextmanager
    def guard_span(self, guard: str, hook: str = "on_request") -> Iterator[Any]:
        tracer = self._get_tracer()
        if tracer is None:
            yield None
            return
        with tracer.start_as_current_span(f"guard {guard}", kind=_trace.SpanKind.INTERNAL,
                                          attributes={"mcpwall.guard": guard, "mcpwall.hook": hook}) as span:
            yield span

    @contextlib.contextmanager
    def upstream_span(self, upstream: str | None, method: str) -> Iterator[Any]:
        tracer = self._get_tracer()
        if tracer is None:
            yield None
            return
        with tracer.start_as_current_span(f"upstream {upstream} {method}", kind=_trace.SpanKind.CLIENT,
                                          attributes={"mcpwall.upstream": upstream or "", "mcp.method.name": method}
                                          ) as span:
            yield span

    def inject_meta(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` with ``_meta.traceparent``/``tracestate`` set to the current span (a copy;
        the input is not changed). Unchanged when tracing is off or no span is current."""
        if self._get_tracer() is None:
            return params
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        if "traceparent" not in carrier:
            return params
        meta = params.get("_meta")
        new_meta = dict(meta) if isinstance(meta, dict) else {}
        new_meta.pop("tracestate", None)
        new_meta.update(carrier)
        return {**params, "_meta": new_meta}

    @staticmethod
    def record_outcome(span: Any, outcome: Outcome) -> None:
        if span is None or _trace is None:
            return
        span.set_attribute("mcpwall.decision", outcome.decision)
        if outcome.error_code is not None:
            span.set_attribute("rpc.jsonrpc.error_code", outcome.error_code)
        if outcome.decision == "error":
            span.set_status(_trace.Status(_trace.StatusCode.ERROR))


def _carrier(meta: Any) -> dict[str, str]:
    """The trace context a client sent, if well-formed and small: this is untrusted input."""
    if not isinstance(meta, dict):
        return {}
    carrier: dict[str, str] = {}
    parent = meta.get("traceparent")
    if isinstance(parent, str) and len(parent) <= _MAX_TRACEPARENT:
        carrier["traceparent"] = parent
        state = meta.get("tracestate")
        if isinstance(state, str) and len(state) <= _MAX_TRACESTATE:
            carrier["tracestate"] = state
    return carrier


def setup_from_env(environ: dict[str, str] | None = None) -> bool:
    """Install an SDK tracer provider when the standard OTEL_* variables ask for one and the
    SDK is installed. Returns whether tracing is now configured."""
    env = os.environ if environ is None else environ
    exporter_name = env.get("OTEL_TRACES_EXPORTER", "otlp" if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") else "")
    if not exporter_name or exporter_name == "none" or _trace is None:
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("OTEL_* tracing variables are set but the OpenTelemetry SDK is not installed "
                    "(pip install 'mcpwall[otel]')")
        return False
    exporter: Any
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("OTLP trace export needs opentelemetry-exporter-otlp-proto-http")
            return False
        exporter = OTLPSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", "mcpwall")}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _trace.set_tracer_provider(provider)
    return True


TRACING = Tracing()


def call_span(call: Call) -> contextlib.AbstractContextManager[Any]:
    return TRACING.call_span(call)


def guard_span(guard: str, hook: str = "on_request") -> contextlib.AbstractContextManager[Any]:
    return TRACING.guard_span(guard, hook)


def upstream_span(upstream: str | None, method: str) -> contextlib.AbstractContextManager[Any]:
    return TRACING.upstream_span(upstream, method)


def inject_meta(params: dict[str, Any]) -> dict[str, Any]:
    return TRACING.inject_meta(params)
