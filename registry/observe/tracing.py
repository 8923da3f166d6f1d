"""OpenTelemetry traces (optional extra ``pyregistry[otel]``): a span per request, one per driver call.

Off unless the standard environment asks for it: ``OTEL_TRACES_EXPORTER`` set to something other
than ``none``, or ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set
(and ``OTEL_SDK_DISABLED`` not true). The SDK then reads the rest of the ``OTEL_*`` variables
itself: ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``,
``OTEL_BSP_*``, the exporter's endpoint and headers; ``OTEL_PROPAGATORS`` picks how an incoming
``traceparent`` is read. Exporters: ``otlp`` (``opentelemetry-exporter-otlp-proto-http``, else
``-grpc``) and ``console``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

#: the tracer once :func:`setup` found the environment asking for traces, else None
TRACER: Any = None
_PROVIDER: Any = None


def requested(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def setup(service_version: str = "") -> bool:
    """Install the tracer provider the environment describes; False when traces are off."""
    global TRACER, _PROVIDER
    if TRACER is not None or not requested():
        return TRACER is not None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("tracing: OTEL_* asks for traces but opentelemetry-sdk is not installed "
                    "(pip install 'pyregistry[otel]'); tracing is off")
        return False
    attributes = {"service.name": os.environ.get("OTEL_SERVICE_NAME") or "registry"}
    if service_version:
        attributes["service.version"] = service_version
    provider = TracerProvider(resource=Resource.create(attributes))
    added = 0
    for name in (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(","):
        exporter = _exporter(name.strip().lower())
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
            added += 1
    if not added:
        return False
    trace.set_tracer_provider(provider)
    _PROVIDER = provider
    TRACER = trace.get_tracer("registry", service_version or None)
    log.info("tracing: exporting spans (%s)", os.environ.get("OTEL_TRACES_EXPORTER") or "otlp")
    return True


def _exporter(name: str) -> Any:
    if name in ("", "none"):
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stdout, formatter=_one_line)
    if name == "otlp":
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        try:
            if protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("tracing: the OTLP exporter for %s is not installed "
                        "(pip install 'pyregistry[otel]'); no spans exported", protocol)
            return None
        return OTLPSpanExporter()
    log.warning("tracing: unknown OTEL_TRACES_EXPORTER %r ignored (known: otlp, console, none)", name)
    return None


def _one_line(span: Any) -> str:
    import json

    return json.dumps(json.loads(span.to_json()), separators=(",", ":")) + "\n"


def shutdown() -> None:
    """Flush and stop the exporters (on server shutdown)."""
    if _PROVIDER is not None:
        try:
            _PROVIDER.shutdown()
        except Exception:  # noqa: BLE001 - shutting down anyway
            log.debug("tracing: shutdown failed", exc_info=True)


def extract_context(headers: Mapping[str, str]) -> Any:
    """The remote parent an incoming request names (``traceparent``), per OTEL_PROPAGATORS."""
    from opentelemetry import propagate

    return propagate.extract(headers)
