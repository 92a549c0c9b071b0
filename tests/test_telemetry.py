"""Observability against the simulator over loopback: OpenTelemetry spans and metrics (recorded
with the SDK's in-memory exporter and reader), the context of log records, the CLI's JSON log
lines, and the package without OpenTelemetry.

The library records to the providers ``_telemetry.use()`` gives it, so each test gets fresh SDK
providers of its own, and no global provider is ever set in this process (OpenTelemetry lets a
process set those only once); the global path is exercised in subprocesses.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import katapult_async as ka
from katapult_async import _telemetry
from katapult_async.testing import FaultKind, KatapultSimulator

ROOT = Path(__file__).resolve().parent.parent
UPDATE_TEMPLATE = (
    "/core/v1/virtual_machine_network_interfaces/virtual_machine_network_interface"
    "/update_speed_profile"
)


@attrs.frozen
class Recorded:
    """What the SDK recorded during one test."""

    exporter: Any
    reader: Any

    def spans(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[Any]:
        return [span for span in self.spans() if span.name == name]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        return [
            point
            for resource in (data.resource_metrics if data is not None else [])
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def total(self, name: str) -> int:
        """A counter's sum over every attribute set (or a histogram's count)."""
        return sum(getattr(point, "count", None) or point.value for point in self.points(name))


@pytest.fixture
def otel() -> Iterator[Recorded]:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    _telemetry.use(tracer_provider, meter_provider)
    try:
        yield Recorded(exporter, reader)
    finally:
        _telemetry.use()
        tracer_provider.shutdown()
        meter_provider.shutdown()


def client_for(sim: KatapultSimulator, **options: Any) -> ka.KatapultClient:
    options.setdefault("max_retries", 3)
    return ka.KatapultClient(sim.token, base_url=sim.base_url, **options)


def client_spans(spans: list[Any], method: str) -> list[Any]:
    from opentelemetry.trace import SpanKind

    found = [s for s in spans if s.kind is SpanKind.CLIENT and s.name.startswith(method + " ")]
    return sorted(found, key=lambda span: span.start_time)


# --- spans ------------------------------------------------------------------------------------


async def test_an_update_is_an_internal_span_with_its_client_children(otel: Recorded) -> None:
    from opentelemetry.trace import SpanKind, StatusCode

    async with KatapultSimulator(task_duration=0.05) as sim:
        (iface,) = sim.add_interfaces(1)
        async with client_for(sim) as client:
            task = await client.update_speed_profile(iface, "1gbps", wait=True)
        spans = otel.spans()
        (update,) = otel.named("katapult.update_speed_profile")
        assert update.kind is SpanKind.INTERNAL
        assert update.parent is None
        assert update.attributes["katapult.interface_id"] == iface
        assert update.attributes["katapult.speed_profile"] == "1gbps"
        assert update.attributes["katapult.task_id"] == task.id
        assert update.attributes["katapult.task.status"] == "completed"
        (patch,) = client_spans(spans, "PATCH")
        assert patch.name == f"PATCH {UPDATE_TEMPLATE}"
        assert patch.parent.span_id == update.context.span_id
        assert patch.status.status_code is StatusCode.UNSET
        recorded = sim.requests
        assert dict(patch.attributes) == {
            "http.request.method": "PATCH",
            "server.address": "127.0.0.1",
            "server.port": sim.port,
            "url.template": UPDATE_TEMPLATE,
            "katapult.operation": "update_speed_profile",
            "katapult.ratelimit.wait.duration": patch.attributes[
                "katapult.ratelimit.wait.duration"
            ],
            "katapult.interface_id": iface,
            "http.response.status_code": 200,
            "katapult.request_id": recorded[0].request_id,
        }
        # the wait: an INTERNAL child of the update, with the polls as its CLIENT children
        (wait,) = otel.named("katapult.wait_for_task")
        assert wait.parent.span_id == update.context.span_id
        assert wait.attributes["katapult.task_id"] == task.id
        polls = client_spans(spans, "GET")
        assert len(polls) == len(recorded) - 1 >= 1
        for poll, request in zip(polls, recorded[1:], strict=True):
            assert poll.parent.span_id == wait.context.span_id
            assert poll.attributes["katapult.task_id"] == task.id
            assert poll.attributes["katapult.request_id"] == request.request_id
            assert "http.request.resend_count" not in poll.attributes


async def test_a_retried_503_shows_resend_count_1_on_the_second_attempt(otel: Recorded) -> None:
    from opentelemetry.trace import StatusCode

    async with KatapultSimulator() as sim:
        (iface,) = sim.add_interfaces(1)
        sim.inject(FaultKind.SERVICE_UNAVAILABLE, times=1, method="PATCH")
        async with client_for(sim) as client:
            await client.update_speed_profile(iface, "1gbps")
        first, second = client_spans(otel.spans(), "PATCH")
        (update,) = otel.named("katapult.update_speed_profile")
        assert first.parent.span_id == second.parent.span_id == update.context.span_id
        assert "http.request.resend_count" not in first.attributes
        assert first.attributes["http.response.status_code"] == 503
        assert first.attributes["error.type"] == "503"
        assert first.attributes["katapult.error.code"] == "service_unavailable"
        assert first.attributes["katapult.request_id"] == sim.requests[0].request_id
        assert first.status.status_code is StatusCode.ERROR
        assert second.attributes["http.request.resend_count"] == 1
        assert second.attributes["http.response.status_code"] == 200
        assert "error.type" not in second.attributes
        requests = {
            (p.attributes["http.response.status_code"], p.attributes.get("error.type")): p.value
            for p in otel.points("katapult.requests")
        }
        assert requests == {(503, "503"): 1, (200, None): 1}


async def test_a_429_sets_error_type_and_the_budget_wait_shows_on_the_trace(
    otel: Recorded,
) -> None:
    async with KatapultSimulator() as sim:
        (iface,) = sim.add_interfaces(1)
        sim.inject(FaultKind.RATE_LIMIT, times=1, retry_after=0.2)
        async with client_for(sim) as client:
            await client.update_speed_profile(iface, "1gbps")
        first, second = client_spans(otel.spans(), "PATCH")
        assert first.attributes["http.response.status_code"] == 429
        assert first.attributes["error.type"] == "429"
        assert first.attributes["katapult.error.code"] == "rate_limit_reached"
        assert second.attributes["http.request.resend_count"] == 1
        assert "error.type" not in second.attributes
        # the retry waited out the 429's pause: a wait span beside it, ending as it starts
        (wait,) = otel.named("katapult.ratelimit.wait")
        assert wait.parent.span_id == second.parent.span_id
        assert first.end_time <= wait.start_time < wait.end_time <= second.start_time
        assert second.attributes["katapult.ratelimit.wait.duration"] > 0
        assert otel.total("katapult.ratelimit.wait.duration") == 2
        rejected = [
            p for p in otel.points("katapult.requests") if p.attributes.get("error.type") == "429"
        ]
        assert [p.value for p in rejected] == [1]
        assert rejected[0].attributes["katapult.operation"] == "update_speed_profile"


async def test_select_interfaces_is_one_span_around_its_pages(otel: Recorded) -> None:
    async with KatapultSimulator() as sim:
        vm = sim.add_virtual_machine()
        sim.add_interfaces(2, vm_id=vm.id)
        async with client_for(sim) as client:
            found = [i async for i in client.select_interfaces(virtual_machines=[vm.id])]
        (select,) = otel.named("katapult.select_interfaces")
        assert select.attributes["katapult.select.results"] == len(found) == 2
        (page,) = client_spans(otel.spans(), "GET")
        assert page.parent.span_id == select.context.span_id


async def test_plan_and_revert_are_spans_with_their_counts(otel: Recorded, tmp_path: Path) -> None:
    async with KatapultSimulator(task_duration=0.05) as sim:
        ifaces = sim.add_interfaces(3, speed_profile="10gbps")
        (unchanged,) = sim.add_interfaces(1, speed_profile="1gbps")
        journal = tmp_path / "run.jsonl"
        async with client_for(sim) as client:
            items = [i async for i in client.plan_speed_profiles([*ifaces, unchanged], "1gbps")]
            (plan,) = otel.named("katapult.plan_speed_profiles")
            assert plan.attributes["katapult.plan.results"] == 4
            assert plan.attributes["katapult.plan.change"] == 3
            assert plan.attributes["katapult.plan.unchanged"] == 1
            reads = client_spans(otel.spans(), "GET")
            assert len(reads) == 4
            assert {s.parent.span_id for s in reads} == {plan.context.span_id}
            pairs = [
                (i.interface_id, "1gbps", "10gbps") for i in items if i.action.value == "change"
            ]
            async for _ in client.bulk_update_speed_profiles(pairs, journal=journal):
                pass
            otel.exporter.clear()
            reverted = [r async for r in client.revert_speed_profiles(journal)]
        assert [r.outcome.value for r in reverted] == ["completed"] * 3
        (revert,) = otel.named("katapult.revert_speed_profiles")
        assert revert.parent is None
        assert revert.attributes["katapult.revert.results"] == 3
        assert revert.attributes["katapult.revert.completed"] == 3
        # the revert's own bulk run is below it
        (run,) = otel.named("katapult.bulk_update")
        assert run.parent.span_id == revert.context.span_id
        assert run.attributes["katapult.bulk.completed"] == 3


# --- metrics ----------------------------------------------------------------------------------


async def test_after_a_bulk_run_the_counters_match_the_results_and_the_request_log(
    otel: Recorded,
) -> None:
    async with KatapultSimulator(rate_limit=500, task_duration=0.05) as sim:
        fresh = sim.add_interfaces(8)
        (assigned,) = sim.add_interfaces(1, speed_profile="1gbps")
        pairs = [(i, "1gbps") for i in [*fresh, assigned]] + [("not an id", "1gbps")]
        async with client_for(sim) as client:
            results = [r async for r in client.bulk_update_speed_profiles(pairs, concurrency=4)]
            limit = client.rate_limit.limit
        outcomes = collections.Counter(r.outcome.value for r in results)
        assert outcomes == {"completed": 8, "already_assigned": 1, "error": 1}
        by_outcome = {
            p.attributes["katapult.bulk.outcome"]: p.value
            for p in otel.points("katapult.bulk.results")
        }
        assert by_outcome == outcomes
        recorded = sim.requests
        assert otel.total("katapult.requests") == len(recorded)
        assert otel.total("http.client.request.duration") == len(recorded)
        statuses = collections.Counter(r.status for r in recorded if r.method == "PATCH")
        assert {
            p.attributes["http.response.status_code"]: p.value
            for p in otel.points("katapult.requests")
            if p.attributes["katapult.operation"] == "update_speed_profile"
        } == statuses
        polls = [r for r in recorded if r.method == "GET"]
        assert otel.total("katapult.task.polls") == len(polls)
        done = [p for p in otel.points("katapult.task.polls") if p.attributes["katapult.task.done"]]
        assert sum(p.value for p in done) == 8
        durations = otel.points("katapult.task.duration")
        assert [(p.attributes["katapult.task.status"], p.count) for p in durations] == [
            ("completed", 8)
        ]
        # the run's span: the counts when it ended, every update below it
        (run,) = otel.named("katapult.bulk_update")
        assert run.attributes["katapult.bulk.results"] == len(results) == len(pairs)
        assert run.attributes["katapult.bulk.completed"] == 8
        assert run.attributes["katapult.bulk.already_assigned"] == 1
        assert run.attributes["katapult.bulk.error"] == 1
        updates = otel.named("katapult.update_speed_profile")
        assert len(updates) == 9
        assert {u.parent.span_id for u in updates} == {run.context.span_id}
        # the budget: the limit the client learned, and what it may start now
        (limit_point,) = otel.points("katapult.ratelimit.limit")
        assert limit_point.value == limit == 500
        (remaining,) = otel.points("katapult.ratelimit.remaining")
        assert remaining.value == client.rate_limit.remaining
        assert 0 < remaining.value < 500 - len(recorded) + 1
        assert limit_point.attributes == remaining.attributes == {"katapult.ratelimit.limiter": 1}


# --- the token --------------------------------------------------------------------------------


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes):
        yield value.decode(errors="replace")
    elif isinstance(value, dict) or hasattr(value, "items"):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
    else:
        yield repr(value)


async def test_no_span_metric_or_log_record_contains_the_token(
    otel: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="katapult_async")
    wrong = "kat-wrong-token-0123456789abcdef"
    async with KatapultSimulator(rate_limit=50, task_duration=0.05) as sim:
        ifaces = sim.add_interfaces(6)
        sim.inject(FaultKind.SERVICE_UNAVAILABLE, times=1, method="PATCH")
        sim.inject(FaultKind.RATE_LIMIT, times=1, retry_after=0.1)
        async with client_for(sim) as client:
            await client.update_speed_profile(ifaces[0], "1gbps", wait=True)
            with pytest.raises(ka.NetworkInterfaceNotFoundError):
                await client.update_speed_profile("vmnet_missing", "1gbps")
            pairs = [(i, "1gbps") for i in ifaces[1:]] + [(ifaces[1], "10gbps")]
            results = [r async for r in client.bulk_update_speed_profiles(pairs)]
        assert len(results) == len(pairs)
        async with ka.KatapultClient(wrong, base_url=sim.base_url) as stranger:
            with pytest.raises(ka.InvalidAPITokenError):
                await stranger.update_speed_profile(ifaces[0], "10gbps")
        secrets = [sim.token, wrong]
    texts: list[str] = []
    for span in otel.spans():
        texts += [span.name, span.status.description or ""]
        texts += _strings(dict(span.attributes))
        for event in span.events:
            texts += [event.name, *_strings(dict(event.attributes))]
    data = otel.reader.get_metrics_data()
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                texts.append(metric.name)
                for point in metric.data.data_points:
                    texts += _strings(dict(point.attributes))
    assert caplog.records
    for record in caplog.records:
        texts += _strings({key: value for key, value in vars(record).items() if key != "args"})
        texts.append(record.getMessage())
    assert len(texts) > 100
    leaks = [text for text in texts for secret in secrets if secret in text]
    assert not leaks
    failed = [s for s in otel.spans() if s.attributes.get("error.type") == "403"]
    assert failed  # the stranger's answer is on the trace, without its token


# --- logs -------------------------------------------------------------------------------------


async def test_log_records_carry_request_id_interface_task_and_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="katapult_async")
    async with KatapultSimulator(rate_limit=1000, task_duration=0.05) as sim:
        (iface,) = sim.add_interfaces(1)
        sim.inject(FaultKind.SERVICE_UNAVAILABLE, times=1, method="PATCH")
        sim.inject(FaultKind.SERVICE_UNAVAILABLE, times=1, method="GET")
        async with client_for(sim) as client:
            task = await client.update_speed_profile(iface, "1gbps", wait=True)
        recorded = sim.requests
    retries = [r for r in caplog.records if r.getMessage().startswith("retrying")]
    assert len(retries) == 2
    patch, poll = retries
    assert vars(patch)["request_id"] == recorded[0].request_id
    assert vars(patch)["interface_id"] == iface
    assert vars(patch)["attempt"] == 1
    assert "task_id" not in vars(patch)
    failed_poll = next(r for r in recorded if r.method == "GET")
    assert vars(poll)["request_id"] == failed_poll.request_id
    assert vars(poll)["task_id"] == task.id
    assert vars(poll)["attempt"] == 1
    # a record made while the first response was read: the limit learned from its headers
    learned = next(r for r in caplog.records if r.name == "katapult_async.ratelimit")
    assert vars(learned)["attempt"] == 1
    assert vars(learned)["request_id"] == recorded[0].request_id


def test_a_record_made_outside_an_http_call_has_no_call_context(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _telemetry.install_log_context()
    caplog.set_level(logging.INFO, logger="katapult_async")
    logging.getLogger("katapult_async").info("between calls")
    (record,) = caplog.records
    assert not {"request_id", "interface_id", "task_id", "attempt"} & set(vars(record))


def test_every_logger_of_the_package_adds_the_context() -> None:
    import katapult_async.cli  # every module that may make a logger
    import katapult_async.testing  # noqa: F401

    _telemetry.install_log_context()
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "katapult_async"]
    assert "katapult_async" in names
    for name in names:
        assert _telemetry._LOG_CONTEXT in logging.getLogger(name).filters, name


def test_while_off_the_public_calls_are_the_plain_methods(otel: Recorded) -> None:
    from katapult_async.poller import TaskPoller

    traced = [ka.KatapultClient.update_speed_profile, TaskPoller.wait]
    assert all(hasattr(method, "__wrapped__") for method in traced)
    _telemetry.use()  # back to the global providers: none in this process
    assert _telemetry.active is None
    plain = [ka.KatapultClient.update_speed_profile, TaskPoller.wait]
    assert [method.__wrapped__ for method in traced] == plain  # type: ignore[attr-defined]
    assert not any(hasattr(method, "__wrapped__") for method in plain)


# --- subprocesses: the CLI, no OpenTelemetry, the global providers ----------------------------


async def run_python(code: str, *args: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    """Run ``code`` in a fresh interpreter while this loop keeps serving; its stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(code),
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode(), err.decode()


async def test_the_cli_writes_json_log_lines_with_the_context() -> None:
    async with KatapultSimulator() as sim:
        (iface,) = sim.add_interfaces(1)
        sim.inject(FaultKind.SERVICE_UNAVAILABLE, times=1, method="PATCH")
        _, err = await run_python(
            "from katapult_async.cli import main; main()",
            *("--base-url", sim.base_url, "--log-format", "json", "-v", "update", iface, "1gbps"),
            env={"KATAPULT_API_TOKEN": sim.token, "PATH": ""},
        )
        recorded = sim.requests
    lines = [json.loads(line) for line in err.splitlines()]
    assert sim.token not in err
    (retry,) = [line for line in lines if line["message"].startswith("retrying")]
    assert retry["level"] == "INFO"
    assert retry["logger"] == "katapult_async"
    assert retry["request_id"] == recorded[0].request_id
    assert retry["interface_id"] == iface
    assert retry["attempt"] == 1


async def test_the_package_imports_and_runs_without_opentelemetry() -> None:
    code = """
        import asyncio, json, sys
        sys.modules["opentelemetry"] = None  # any import of opentelemetry.* now fails

        import katapult_async as ka
        from katapult_async import _telemetry
        from katapult_async.testing import KatapultSimulator

        async def main():
            async with KatapultSimulator(task_duration=0.05) as sim:
                (iface,) = sim.add_interfaces(1)
                pairs = [(i, "1gbps") for i in sim.add_interfaces(3)]
                async with ka.KatapultClient(sim.token, base_url=sim.base_url) as client:
                    task = await client.update_speed_profile(iface, "1gbps", wait=True)
                    results = [r async for r in client.bulk_update_speed_profiles(pairs)]
                    found = [i async for i in client.select_interfaces(virtual_machines=[])]
            loaded = [name for name, module in sys.modules.items()
                      if name.startswith("opentelemetry") and module is not None]
            print(json.dumps({"status": task.status.value, "results": len(results) + len(found),
                              "active": _telemetry.active is not None, "loaded": loaded}))

        asyncio.run(main())
    """
    out, _ = await run_python(code)
    assert json.loads(out) == {"status": "completed", "results": 3, "active": False, "loaded": []}


async def test_the_cli_reports_to_the_global_providers_an_application_sets(
    tmp_path: Path,
) -> None:
    """What ``opentelemetry-instrument katapult-async bulk ...`` does: global SDK providers set
    before the command runs; the command's spans and metrics reach them with no code of ours."""
    pytest.importorskip("opentelemetry.sdk")
    code = """
        import json, sys
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(tracer_provider)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

        from katapult_async.cli import main
        try:
            main(sys.argv[1:])
        except SystemExit as exit:
            assert not exit.code, exit.code
        spans = [{"name": s.name, "id": s.context.span_id,
                  "parent": s.parent.span_id if s.parent else None,
                  "results": s.attributes.get("katapult.bulk.results")}
                 for s in exporter.get_finished_spans()]
        data = reader.get_metrics_data()
        names = sorted({m.name for r in data.resource_metrics for s in r.scope_metrics
                        for m in s.metrics})
        print(json.dumps({"spans": spans, "metrics": names}))
    """
    async with KatapultSimulator(rate_limit=1000, task_duration=0.05) as sim:
        ifaces = sim.add_interfaces(3)
        source = tmp_path / "updates.csv"
        source.write_text("interface,speed_profile\n" + "".join(f"{i},1gbps\n" for i in ifaces))
        out, _ = await run_python(
            code,
            *("--base-url", sim.base_url, "bulk", str(source)),
            env={"KATAPULT_API_TOKEN": sim.token, "PATH": ""},
        )
    report = json.loads(out.splitlines()[-1])
    (run,) = [s for s in report["spans"] if s["name"] == "katapult.bulk_update"]
    assert run["parent"] is None
    assert run["results"] == 3
    updates = [s for s in report["spans"] if s["name"] == "katapult.update_speed_profile"]
    assert [u["parent"] for u in updates] == [run["id"]] * 3
    assert {
        "http.client.request.duration",
        "katapult.bulk.results",
        "katapult.ratelimit.limit",
        "katapult.requests",
        "katapult.task.polls",
    } <= set(report["metrics"])
