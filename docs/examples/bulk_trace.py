"""One bulk run traced with OpenTelemetry against the API simulator, drawn as a picture.

    python docs/examples/bulk_trace.py docs/img/trace.png

It configures the SDK as a service would (here with an in-memory exporter instead of OTLP), runs a
bulk update of 8 interfaces against the simulator (a budget of 8 requests a second, 30 ms of
latency, tasks of 0.4 s, one 503 and one 429 injected), and draws every span of the run on a time line
with matplotlib (the ``docs`` extra): one row per interface, the run on top. Needs
``opentelemetry-sdk`` (the ``test`` extra).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from katapult_async import KatapultClient
from katapult_async.testing import FaultKind, KatapultSimulator


def configure() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    """What an application does once at startup; the library then reports with no code of its own."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return exporter, reader


async def bulk_run() -> None:
    async with KatapultSimulator(
        rate_limit=8, rate_limit_window=1.0, task_duration=0.4, latency=0.03, seed=3
    ) as sim:
        pairs = [(interface, "1gbps") for interface in sim.add_interfaces(8)]
        sim.inject(FaultKind.SERVICE_UNAVAILABLE, times=1, method="PATCH")
        sim.inject(FaultKind.RATE_LIMIT, times=1, method="GET", retry_after=0.3)
        async with KatapultClient(
            sim.token, base_url=sim.base_url, rate_limit_window=1.0
        ) as client:
            async for result in client.bulk_update_speed_profiles(pairs, concurrency=4):
                print(result.interface_id, result.outcome.value)


def rows(spans: Sequence[ReadableSpan]) -> tuple[ReadableSpan, dict[str, list[ReadableSpan]]]:
    """The run's span, and every other span under the interface it was for."""
    by_id = {span.context.span_id: span for span in spans}
    (run,) = [span for span in spans if span.name == "katapult.bulk_update"]
    interface_of_task = {
        span.attributes["katapult.task_id"]: span.attributes["katapult.interface_id"]
        for span in spans
        if span.name == "katapult.update_speed_profile" and "katapult.task_id" in span.attributes
    }

    def interface(span: ReadableSpan) -> Any:
        while span.parent is not None and span is not run:
            attributes = span.attributes or {}
            if span.name == "katapult.update_speed_profile":
                return attributes["katapult.interface_id"]
            if span.name == "katapult.wait_for_task":
                return interface_of_task.get(attributes["katapult.task_id"])
            span = by_id[span.parent.span_id]
        return None

    grouped: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        key = interface(span)
        if key is not None:
            grouped.setdefault(key, []).append(span)
    return run, grouped


def draw(spans: Sequence[ReadableSpan], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    run, grouped = rows(spans)
    t0 = run.start_time or 0

    def x(span: ReadableSpan) -> tuple[float, float]:
        start = ((span.start_time or 0) - t0) / 1e9
        return start, ((span.end_time or 0) - (span.start_time or 0)) / 1e9

    styles = {
        "katapult.update_speed_profile": ("#c6dbef", 0.8, 0.0),
        "katapult.wait_for_task": ("#e5e5e5", 0.8, 0.0),
        "katapult.ratelimit.wait": ("#fdae6b", 0.36, 0.0),
        "PATCH": ("#2171b5", 0.36, 0.0),
        "GET": ("#41ab5d", 0.36, 0.0),
    }
    order = sorted(grouped, key=lambda key: min(s.start_time or 0 for s in grouped[key]))
    fig, ax = plt.subplots(figsize=(11, 0.55 * (len(order) + 1) + 1.2))
    start, width = x(run)
    ax.broken_barh([(start, width)], (len(order) - 0.4, 0.8), color="#9e9ac8")
    ax.text(start + 0.01, len(order), "katapult.bulk_update", va="center", fontsize=8)
    for row, key in enumerate(reversed(order)):
        # the calls first, then the waits for the budget, then the HTTP attempts on top
        for span in sorted(
            grouped[key], key=lambda s: (s.kind.value, s.name == "katapult.ratelimit.wait")
        ):
            kind = span.name.split(" ", 1)[0]
            color, height, _ = styles.get(span.name, styles.get(kind, ("#999999", 0.36, 0.0)))
            failed = (span.attributes or {}).get("error.type")
            ax.broken_barh(
                [x(span)],
                (row - height / 2, height),
                color="#d62728" if failed else color,
                edgecolor="white",
                linewidth=0.5,
            )
            if failed:
                begin, length = x(span)
                ax.text(begin + length, row + 0.22, str(failed), fontsize=7, color="#d62728")
    ax.set_yticks(range(len(order) + 1), [*reversed(order), "run"], fontsize=8)
    ax.set_xlabel("seconds since the run started")
    ax.set_title("One bulk run of 8 interfaces: spans by interface (a budget of 8 requests/s)")
    ax.legend(
        handles=[
            Patch(color=styles["katapult.update_speed_profile"][0], label="update_speed_profile"),
            Patch(color=styles["katapult.wait_for_task"][0], label="wait_for_task"),
            Patch(color=styles["PATCH"][0], label="PATCH (CLIENT)"),
            Patch(color=styles["GET"][0], label="GET task (CLIENT)"),
            Patch(color=styles["katapult.ratelimit.wait"][0], label="waiting for the budget"),
            Patch(color="#d62728", label="error answer (error.type)"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12 - 0.3 / len(order)),
        ncol=6,
        fontsize=8,
        frameon=False,
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Sequence[str]) -> None:
    exporter, _reader = configure()
    asyncio.run(bulk_run())
    if argv:
        draw(exporter.get_finished_spans(), argv[0])


if __name__ == "__main__":
    main(sys.argv[1:])
