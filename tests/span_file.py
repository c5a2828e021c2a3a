"""Spans and call chains written to files, for tests that trace `sandbox run` processes: a
process's service module calls `install()`, which sets the OpenTelemetry SDK as the global
tracer provider and appends each span ($SPAN_FILE) and each worker's call_id_stack
($CHAIN_FILE) as a JSON line when it ends."""

import json
import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from sandbox import recorder


def describe(span) -> dict:
    """A span as a dict: name, kind, ids in hex, parent id, call id, whether it failed."""
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format(span.context.trace_id, "032x"),
        "span_id": format(span.context.span_id, "016x"),
        "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
        "call_id": span.attributes.get("sandbox.call_id"),
        "error": span.status.status_code.name == "ERROR",
    }


class FileExporter(SpanExporter):
    def export(self, spans):
        with open(os.environ["SPAN_FILE"], "a") as file:
            file.writelines(json.dumps(describe(span)) + "\n" for span in spans)
        return SpanExportResult.SUCCESS


class ChainFile:
    def worker_finished(self, worker_ctx, result, exc_info):
        with open(os.environ["CHAIN_FILE"], "a") as file:
            file.write(json.dumps([worker_ctx.call_id, worker_ctx.call_id_stack]) + "\n")


def install() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
    trace.set_tracer_provider(provider)
    recorder.add_observer(ChainFile())
