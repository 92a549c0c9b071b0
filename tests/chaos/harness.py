"""Seeded chaos runs of the bulk engine against the simulator, and the invariants they must keep.

:func:`run_chaos` draws everything from one seed (simulator and client options, the input's mix of
good, bad, duplicate and already-assigned pairs, background fault rates and bursts of every
:class:`FaultKind` injected as the run progresses), runs one ``bulk_update`` with a per-task
``timeout`` against a :class:`KatapultSimulator` on loopback, and checks the invariants below
from the results and the simulator's request log. It returns a :class:`ChaosReport` whose
``violations`` list is empty when every invariant held; nothing here raises on a violation, so the
benchmarks' soak mode can run it in a loop and print the report.

Invariants (``t`` are ``time.monotonic()`` values, the simulator's clock too):

* **one result each**: the run yields exactly ``n_items`` results whose ``index`` values are exactly
  ``0 .. n_items - 1``; none is ``SUBMITTED`` (the run waits). Pairs that are malformed, repeat an
  interface, or name an unknown interface or profile are ``ERROR`` (of the right class where the
  class is determined), and no request ever carries a malformed pair's interface.
* **truthful**: once every task that will finish has finished and failed tasks' reverts are applied
  (``sim.wait_for_tasks()``), each interface reported ``COMPLETED`` or ``ALREADY_ASSIGNED`` has the
  requested profile. A ``COMPLETED`` result's task is a simulator task of that interface and
  profile whose outcome is ``completed``; a ``FAILED`` result's task is one whose outcome is
  ``failed``. Pairs whose interface already had the profile are ``ALREADY_ASSIGNED`` or ``ERROR``.
* **no PATCH after completion**: no PATCH for an interface arrives after the earlier of (a) the
  moment its result was yielded and (b) the arrival of the first task read that answered 200 for
  the result's completed task at or after the task's finish time (the client saw it completed).
* **paced**: let ``t_learned`` be the moment the client's limiter first knew a limit (at the start
  when configured, else on the response that revealed it). Among the requests that arrived at the
  simulator at or after ``t_learned``, no window-long interval ``(t - window, t]`` holds more than
  the simulator's ``rate_limit``.
* **confirmed**: no item ends ``ERROR`` with :class:`UnconfirmedUpdateError` unless its
  confirmation was itself faulted: its interface's PATCHes hold a fault besides the lost response
  that called for the confirmation.
* **ends**: the run finishes within :meth:`ChaosSchedule.bound`, computed from the schedule
  (``asyncio.wait_for``), and no request arrives after the last result was yielded.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import io
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from katapult_async import KatapultClient
from katapult_async.bulk import DuplicateItemError, UnconfirmedUpdateError
from katapult_async.errors import (
    NetworkInterfaceNotFoundError,
    SpeedProfileNotFoundError,
)
from katapult_async.models import Outcome, UpdateResult
from katapult_async.testing import FaultKind, KatapultSimulator, RecordedRequest, TaskOutcome

__all__ = ["ChaosReport", "ChaosSchedule", "FaultSpec", "draw_schedule", "run_chaos"]

PATCH_SUFFIX = "/update_speed_profile"
TASK_PREFIX = "/core/v1/tasks/"
TARGETS = ("1gbps", "100mbps", "500mbps", "id:1gbps")
ALREADY_PROFILE = "1gbps"
INITIAL_PROFILE = "10gbps"

# Pairs refused before any request: (interface, profile) or something that is not a pair.
MALFORMED: tuple[object, ...] = (
    ("vmnet bad", "1gbps"),
    ("", "1gbps"),
    (None, "1gbps"),
    ("vmnet_ok\x00", "1gbps"),
    ("vmnet_" + "x" * 200, "1gbps"),
    ("vmnet_tab\there", "1gbps"),
    ("vmnet_okokokokokokokok", "not a permalink"),
    "not a pair",
    ("vmnet_a", "1gbps", "10gbps", "extra"),
)
UNKNOWN_INTERFACE = "vmnet_ZZZZZZZZZZZZZZZZ"
UNKNOWN_PROFILE = "no-such-profile"


@dataclasses.dataclass(frozen=True)
class FaultSpec:
    """A fault rule injected once ``after`` results have been yielded (0: at the start).

    Counting results rather than seconds puts every burst in the busy part of the run whatever
    the machine's speed; a burst injected at the tail would hit one straggler's retries only.
    """

    after: int
    kind: FaultKind
    times: int | None = 1
    method: str | None = None
    probability: float = 1.0
    delay: float = 0.0
    retry_after: float | None = None

    def inject(self, sim: KatapultSimulator) -> None:
        sim.inject(
            self.kind,
            times=self.times,
            method=self.method,
            probability=self.probability,
            delay=self.delay,
            retry_after=self.retry_after,
        )


@dataclasses.dataclass(frozen=True)
class ChaosSchedule:
    """Everything one chaos run does, drawn from its seed."""

    seed: int
    n_items: int
    concurrency: int
    rate_limit: int
    window: float
    rate_limit_mode: str
    limit_source: str  # "headers", "429" (no rate headers: learnt from a 429 body), "configured"
    task_duration: float
    task_jitter: float
    failure_rate: float
    never_finish_rate: float
    client_timeout: float
    task_timeout: float
    max_retries: int
    poll_interval: float
    max_poll_interval: float
    n_already: int
    n_malformed: int
    n_duplicates: int
    n_unknown_interface: int
    n_unknown_profile: int
    faults: tuple[FaultSpec, ...]

    @property
    def n_valid(self) -> int:
        """Pairs for fresh interfaces that should end COMPLETED (or FAILED, ERROR...)."""
        return (
            self.n_items
            - self.n_already
            - self.n_malformed
            - self.n_duplicates
            - self.n_unknown_interface
            - self.n_unknown_profile
        )

    @property
    def confirm_horizon(self) -> float:
        """The wait before a confirming PATCH: past the longest task, with a margin."""
        return round(2 * self.task_duration * (1 + self.task_jitter) + 0.1, 3)

    def expected_requests(self) -> float:
        """A generous estimate of the requests the run sends, faults included."""
        per_item = 1 + 3  # the PATCH and a few polls
        injected = sum(f.times or 0 for f in self.faults)
        background = sum(f.probability for f in self.faults if f.times is None)
        return self.n_items * per_item * (1 + 2 * background) + 2 * injected

    def bound(self) -> float:
        """Seconds within which the run must end: twice a pessimistic estimate, plus slack."""
        usable = max(1, self.rate_limit - max(1, math.ceil(0.03 * self.rate_limit)))
        span = self.window + max(0.05, 0.02 * self.window)
        paced = self.expected_requests() * span / usable
        rounds = math.ceil(self.n_items / self.concurrency)
        tasks = rounds * (self.task_duration * (1 + self.task_jitter) + 4 * self.max_poll_interval)
        never = (self.n_items * self.never_finish_rate / self.concurrency + 1) * self.task_timeout
        penalties = 0.0
        for fault in self.faults:
            hits = fault.times if fault.times is not None else 3
            if fault.kind is FaultKind.SLOW_RESPONSE:
                penalties += hits * (self.client_timeout + fault.delay)
            elif fault.kind is FaultKind.RATE_LIMIT:
                penalties += hits * (fault.retry_after or 2 * span)
            elif fault.kind is FaultKind.LOST_RESPONSE:
                lost = fault.times if fault.times is not None else self.n_items * fault.probability
                penalties += (lost / self.concurrency + 1) * self.confirm_horizon
        # Exponential backoff (0.5 s doubling, full jitter) of the unluckiest item, serially.
        backoff = 0.5 * (2**4)
        return 2 * (paced + tasks + never + penalties + backoff) + 10.0


def draw_schedule(seed: int, n_items: int = 250, **overrides: Any) -> ChaosSchedule:
    """Draw a run's schedule from ``seed``; keyword arguments override drawn fields."""
    rng = random.Random(seed)
    window = rng.choice([0.25, 0.5])
    task_duration = round(rng.uniform(0.05, 0.25), 3)
    task_jitter = rng.choice([0.0, 0.2, 0.4])
    client_timeout = round(rng.uniform(0.3, 0.5), 2)
    # Aim the limit at about a second of requests, so that pacing binds for part of the run.
    target = rng.uniform(0.6, 1.2)
    rate_limit = max(30, int(n_items * 3 / target * window))
    extras = {
        "n_already": rng.randint(2, max(2, n_items // 20)),
        "n_malformed": rng.randint(1, len(MALFORMED)),
        "n_duplicates": rng.randint(1, 5),
        "n_unknown_interface": rng.randint(0, 2),
        "n_unknown_profile": rng.randint(0, 2),
    }
    faults: list[FaultSpec] = []
    # Background noise for the whole run.
    for kind, method, top in (
        (FaultKind.DROP_CONNECTION, None, 0.015),
        (FaultKind.LOST_RESPONSE, "PATCH", 0.06),
        (FaultKind.TASK_NOT_FOUND, None, 0.05),
        (FaultKind.HTML_502, None, 0.01),
        (FaultKind.SERVICE_UNAVAILABLE, None, 0.01),
    ):
        if rng.random() < 0.8:
            probability = round(rng.uniform(0.002, top), 4)
            faults.append(FaultSpec(0, kind, None, method, probability))
    # Bursts at random points of the first 70% of the run: one of each kind, then a few more.
    kinds = list(FaultKind)
    kinds += rng.choices(kinds, k=rng.randint(0, 4))
    for kind in kinds:
        at = rng.randint(0, n_items * 7 // 10)
        if kind in (FaultKind.SERVICE_UNAVAILABLE, FaultKind.TASK_QUEUEING_ERROR):
            spec = FaultSpec(at, kind, rng.randint(2, 6))
        elif kind is FaultKind.DROP_CONNECTION:
            spec = FaultSpec(at, kind, rng.randint(1, 4))
        elif kind is FaultKind.LOST_RESPONSE:
            spec = FaultSpec(at, kind, rng.randint(1, 4), method="PATCH")
        elif kind is FaultKind.SLOW_RESPONSE:
            delay = round(client_timeout * rng.uniform(1.5, 2.0), 3)
            spec = FaultSpec(at, kind, rng.randint(1, 3), delay=delay)
        elif kind is FaultKind.HTML_502:
            spec = FaultSpec(at, kind, rng.randint(2, 5))
        elif kind is FaultKind.RATE_LIMIT:
            retry_after = rng.choice([None, round(rng.uniform(0.05, 0.3), 3)])
            spec = FaultSpec(at, kind, 1, retry_after=retry_after)
        else:
            spec = FaultSpec(at, kind, rng.randint(1, 5))
        faults.append(spec)
    faults.sort(key=lambda f: f.after)
    fields: dict[str, Any] = {
        "seed": seed,
        "n_items": n_items,
        "concurrency": rng.choice([48, 64, 96]),
        "rate_limit": rate_limit,
        "window": window,
        "rate_limit_mode": rng.choice(["fixed", "sliding"]),
        "limit_source": rng.choices(["headers", "429", "configured"], weights=[3, 1, 1])[0],
        "task_duration": task_duration,
        "task_jitter": task_jitter,
        "failure_rate": rng.choice([0.0, 0.1, 0.3]),
        "never_finish_rate": rng.choice([0.0, 0.02, 0.04]),
        "client_timeout": client_timeout,
        "task_timeout": round(max(0.8, 4 * task_duration * (1 + task_jitter)), 3),
        "max_retries": rng.randint(6, 8),
        "poll_interval": 0.05,
        "max_poll_interval": 0.3,
        **extras,
        "faults": tuple(faults),
    }
    fields.update(overrides)
    return ChaosSchedule(**fields)


@dataclasses.dataclass(frozen=True)
class _Expect:
    """What the harness knows about one input pair."""

    # "fresh", "already", "malformed", "duplicate", "unknown_interface" or "unknown_profile"
    kind: str
    interface_id: str | None
    profile_id: str | None


@dataclasses.dataclass
class ChaosReport:
    """What one chaos run did, and the invariants it broke (``violations``)."""

    schedule: ChaosSchedule
    elapsed: float = 0.0
    bound: float = 0.0
    finished: bool = False
    outcomes: Counter[str] = dataclasses.field(default_factory=Counter)
    requests: int = 0
    faults: dict[str, int] = dataclasses.field(default_factory=dict)
    limit_learned_after: float | None = None
    busiest_window: int = 0
    real_429s_after_learning: int = 0
    violations: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.finished and not self.violations

    def summary(self) -> str:
        s = self.schedule
        learned = (
            "never" if self.limit_learned_after is None else f"{self.limit_learned_after:.2f}s"
        )
        lines = [
            f"seed {s.seed}: {s.n_items} items, concurrency {s.concurrency}, limit {s.rate_limit}"
            f"/{s.window}s {s.rate_limit_mode} via {s.limit_source}, tasks {s.task_duration}s"
            f"±{s.task_jitter:.0%}, fail {s.failure_rate}, never {s.never_finish_rate}",
            f"  {self.elapsed:.2f}s of {self.bound:.1f}s bound; {self.requests} requests; "
            f"outcomes {dict(self.outcomes)}; faults {self.faults}",
            f"  limit learnt after {learned}; busiest window {self.busiest_window}; "
            f"real 429s after learning {self.real_429s_after_learning}",
        ]
        lines += [f"  VIOLATION: {v}" for v in self.violations[:30]]
        if len(self.violations) > 30:
            lines.append(f"  ... and {len(self.violations) - 30} more")
        return "\n".join(lines)


def _build_items(
    schedule: ChaosSchedule, sim: KatapultSimulator, rng: random.Random
) -> tuple[list[object], list[_Expect]]:
    def resolve(target: str) -> tuple[str, str]:
        if target.startswith("id:"):
            profile = sim.profile_by_permalink(target[3:])
            return profile.id, profile.id
        return target, sim.profile_by_permalink(target).id

    entries: list[tuple[object, _Expect]] = []
    fresh = sim.add_interfaces(
        schedule.n_valid + schedule.n_unknown_profile, speed_profile=INITIAL_PROFILE
    )
    for interface_id in fresh[: schedule.n_valid]:
        given, profile_id = resolve(rng.choice(TARGETS))
        entries.append(((interface_id, given), _Expect("fresh", interface_id, profile_id)))
    for interface_id in fresh[schedule.n_valid :]:
        entries.append(
            ((interface_id, UNKNOWN_PROFILE), _Expect("unknown_profile", interface_id, None))
        )
    for interface_id in sim.add_interfaces(schedule.n_already, speed_profile=ALREADY_PROFILE):
        given, profile_id = resolve(rng.choice([ALREADY_PROFILE, "id:" + ALREADY_PROFILE]))
        entries.append(((interface_id, given), _Expect("already", interface_id, profile_id)))
    for index in range(schedule.n_malformed):
        entries.append((MALFORMED[index % len(MALFORMED)], _Expect("malformed", None, None)))
    for _ in range(schedule.n_unknown_interface):
        entries.append(((UNKNOWN_INTERFACE, "1gbps"), _Expect("unknown_interface", None, None)))
    rng.shuffle(entries)
    # Duplicates go after their original, so that the original is the one sent.
    for _ in range(schedule.n_duplicates):
        position = rng.randrange(len(entries))
        original = entries[position]
        if original[1].kind != "fresh":
            original = next(e for e in entries if e[1].kind == "fresh")
        position = entries.index(original)
        pair = original[0]
        assert isinstance(pair, tuple)
        duplicate = (pair[0], rng.choice(["1gbps", "10mbps"]))
        where = rng.randint(position + 1, len(entries))
        entries.insert(where, (duplicate, _Expect("duplicate", original[1].interface_id, None)))
    return [pair for pair, _ in entries], [expect for _, expect in entries]


class _LimitWatch:
    """Notes when the client's limiter first knows a limit (wraps its two observe methods)."""

    def __init__(self, client: KatapultClient) -> None:
        self.learned_at: float | None = None
        limiter = client.limiter
        if limiter.limit is not None:
            self.learned_at = time.monotonic()
            return
        for name in ("observe", "observe_rate_limited"):
            setattr(limiter, name, self._wrap(limiter, getattr(limiter, name)))

    def _wrap(self, limiter: Any, method: Callable[..., None]) -> Callable[..., None]:
        def wrapped(**kwargs: Any) -> None:
            method(**kwargs)
            if self.learned_at is None and limiter.limit is not None:
                self.learned_at = time.monotonic()

        return wrapped


def _describe_tasks(limit: int = 8) -> str:
    """The stacks of the event loop's other tasks, for a run that did not end."""
    out = io.StringIO()
    current = asyncio.current_task()
    for task in list(asyncio.all_tasks())[:limit]:
        if task is not current:
            task.print_stack(limit=6, file=out)
    return out.getvalue()


def _patched_interface(request: RecordedRequest) -> str | None:
    if request.method != "PATCH" or not request.path.endswith(PATCH_SUFFIX):
        return None
    body = request.body
    if not isinstance(body, dict):
        return None
    lookup = body.get("virtual_machine_network_interface")
    value = lookup.get("id") if isinstance(lookup, dict) else None
    return value if isinstance(value, str) else None


def _task_read_id(request: RecordedRequest) -> str | None:
    if request.method != "GET" or not request.path.startswith(TASK_PREFIX):
        return None
    return request.query.get("task[id]") or request.path[len(TASK_PREFIX) :]


def busiest_window(arrivals: Sequence[float], window: float) -> int:
    """The most arrivals in any interval ``(t - window, t]`` (``arrivals`` sorted)."""
    best = 0
    for j, t in enumerate(arrivals):
        first = bisect.bisect_right(arrivals, t - window, 0, j + 1)
        best = max(best, j + 1 - first)
    return best


async def run_chaos(
    seed: int,
    n_items: int = 250,
    *,
    schedule: ChaosSchedule | None = None,
    **overrides: Any,
) -> ChaosReport:
    """Run one seeded chaos scenario and check its invariants (see the module documentation).

    Args:
        seed: Draws the schedule and seeds the simulator.
        n_items: Input pairs, bad ones included.
        schedule: A ready schedule (``seed``/``n_items``/overrides are then ignored).
        overrides: Fields of :class:`ChaosSchedule` to force.

    Returns:
        The report; ``report.ok`` is False if the run hung or broke an invariant.
    """
    schedule = schedule or draw_schedule(seed, n_items, **overrides)
    report = ChaosReport(schedule, bound=schedule.bound())
    rng = random.Random(f"items-{schedule.seed}")
    async with KatapultSimulator(
        rate_limit=schedule.rate_limit,
        rate_limit_window=schedule.window,
        rate_limit_mode=schedule.rate_limit_mode,  # type: ignore[arg-type]
        rate_limit_headers=schedule.limit_source != "429",
        task_duration=schedule.task_duration,
        task_duration_jitter=schedule.task_jitter,
        task_failure_rate=schedule.failure_rate,
        task_never_finish_rate=schedule.never_finish_rate,
        seed=schedule.seed,
    ) as sim:
        items, expects = _build_items(schedule, sim, rng)
        results: list[tuple[UpdateResult, float]] = []
        async with KatapultClient(
            sim.token,
            base_url=sim.base_url,
            rate_limit=schedule.rate_limit if schedule.limit_source == "configured" else None,
            rate_limit_window=schedule.window,
            # Smooth pacing: the "paced" check counts arrivals in any window-long interval, and
            # under a loaded CPU a burst's arrivals can bunch a millisecond or two tighter than
            # the time margin allows (one request over in 1-2 of 22 seeds on CI, the server
            # itself counting no 429); burst pacing's safety is proven in tests/test_budget.py.
            pacing="smooth",
            request_timeout=schedule.client_timeout,
            max_retries=schedule.max_retries,
            poll_interval=schedule.poll_interval,
            max_poll_interval=schedule.max_poll_interval,
        ) as client:
            watch = _LimitWatch(client)

            pending = list(schedule.faults)

            def inject_due() -> None:
                while pending and pending[0].after <= len(results):
                    pending.pop(0).inject(sim)

            async def consume() -> None:
                inject_due()
                run = client.bulk_update_speed_profiles(
                    items,
                    concurrency=schedule.concurrency,
                    task_timeout=schedule.task_timeout,
                    confirm_horizon=schedule.confirm_horizon,
                )
                async with contextlib.aclosing(run) as results_:
                    async for result in results_:
                        results.append((result, time.monotonic()))
                        inject_due()

            t0 = time.monotonic()
            runner = asyncio.create_task(consume())
            try:
                # shield: on timeout the run is still there to be described, then cancelled.
                await asyncio.wait_for(asyncio.shield(runner), report.bound)
                report.finished = True
            except asyncio.TimeoutError:
                report.violations.append(
                    f"ends: the run did not finish within its {report.bound:.1f}s bound "
                    f"({len(results)} of {len(items)} results); still running:\n"
                    + _describe_tasks()
                )
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
            t_end = time.monotonic()
            report.elapsed = t_end - t0
        # Let every task that will finish do so (failed ones revert), then check the world.
        sim.clear_faults()
        await sim.wait_for_tasks(timeout=10)
        log = sim.requests
        report.requests = len(log)
        report.faults = {kind.value: n for kind, n in sim.stats.faults.items()}
        report.outcomes = Counter(result.outcome.value for result, _ in results)
        if watch.learned_at is not None:
            report.limit_learned_after = max(0.0, watch.learned_at - t0)
        _check(report, sim, log, items, expects, results, watch.learned_at, t_end)
    return report


def _check(
    report: ChaosReport,
    sim: KatapultSimulator,
    log: Sequence[RecordedRequest],
    items: Sequence[object],
    expects: Sequence[_Expect],
    results: Sequence[tuple[UpdateResult, float]],
    learned_at: float | None,
    t_end: float,
) -> None:
    schedule = report.schedule
    bad = report.violations.append
    interfaces = sim.interfaces
    tasks = sim.tasks

    # --- one result each -----------------------------------------------------------------------
    by_index: dict[int, tuple[UpdateResult, float]] = {}
    for result, at in results:
        if result.index in by_index:
            bad(f"one result: index {result.index} got a second result {result.outcome}")
        by_index[result.index] = (result, at)
    if report.finished:
        missing = sorted(set(range(len(items))) - set(by_index))
        if missing:
            bad(f"one result: {len(missing)} items got no result, e.g. {missing[:5]}")
    extra = sorted(set(by_index) - set(range(len(items))))
    if extra:
        bad(f"one result: results for indexes not in the input: {extra[:5]}")

    patches: dict[str, list[float]] = {}
    patch_faults: Counter[str] = Counter()
    for request in log:
        interface_id = _patched_interface(request)
        if interface_id is not None:
            patches.setdefault(interface_id, []).append(request.at)
            if request.fault is not None:
                patch_faults[interface_id] += 1
    completed_seen: dict[str, float] = {}  # task id -> first 200 read at or after its finish
    for request in log:
        task_id = _task_read_id(request)
        if task_id is None or request.status != 200 or task_id in completed_seen:
            continue
        task = tasks.get(task_id)
        finishes_at = task.finishes_at if task is not None else None
        if finishes_at is not None and request.at >= finishes_at:
            completed_seen[task_id] = request.at

    for index, (result, emitted_at) in sorted(by_index.items()):
        if index >= len(expects):
            continue
        expect = expects[index]
        where = f"item {index} {items[index]!r} ({expect.kind})"
        outcome = result.outcome
        if outcome is Outcome.SUBMITTED:
            bad(f"one result: {where} is SUBMITTED although the run waits")
        if expect.kind in ("malformed", "duplicate", "unknown_interface", "unknown_profile"):
            if outcome is not Outcome.ERROR:
                bad(f"one result: {where} is {outcome}, expected ERROR")
            elif expect.kind == "malformed" and not isinstance(
                result.error, (TypeError, ValueError)
            ):
                bad(f"one result: {where} failed with {result.error!r}, not a validation error")
            elif expect.kind == "duplicate" and not isinstance(result.error, DuplicateItemError):
                bad(f"one result: {where} failed with {result.error!r}, not DuplicateItemError")
            elif expect.kind == "unknown_interface" and isinstance(
                result.error, SpeedProfileNotFoundError
            ):
                bad(f"one result: {where} blamed the profile: {result.error!r}")
            elif expect.kind == "unknown_profile" and isinstance(
                result.error, NetworkInterfaceNotFoundError
            ):
                bad(f"one result: {where} blamed the interface: {result.error!r}")
            continue
        interface_id, profile_id = expect.interface_id, expect.profile_id
        assert interface_id is not None
        assert profile_id is not None
        # --- confirmed -----------------------------------------------------------------------
        if isinstance(result.error, UnconfirmedUpdateError) and patch_faults[interface_id] < 2:
            bad(f"confirmed: {where} is unconfirmed but its confirmation was not faulted")
        # --- truthful ------------------------------------------------------------------------
        actual = interfaces[interface_id].speed_profile_id
        if outcome in (Outcome.COMPLETED, Outcome.ALREADY_ASSIGNED) and actual != profile_id:
            bad(
                f"truthful: {where} reported {outcome} but the interface has {actual}, "
                f"not {profile_id} (error {result.error!r})"
            )
        if expect.kind == "already" and outcome not in (Outcome.ALREADY_ASSIGNED, Outcome.ERROR):
            bad(f"truthful: {where} already had the profile but is {outcome}")
        if outcome in (Outcome.COMPLETED, Outcome.FAILED):
            task = tasks.get(result.task.id) if result.task is not None else None
            wanted = TaskOutcome.COMPLETED if outcome is Outcome.COMPLETED else TaskOutcome.FAILED
            if task is None:
                bad(f"truthful: {where} is {outcome} with unknown task {result.task!r}")
            elif (task.interface_id, task.speed_profile_id, task.outcome) != (
                interface_id,
                profile_id,
                wanted,
            ):
                bad(f"truthful: {where} is {outcome} but its task is {task!r}")
        # --- no PATCH after completion -------------------------------------------------------
        known = emitted_at
        if outcome is Outcome.COMPLETED and result.task is not None:
            known = min(known, completed_seen.get(result.task.id, math.inf))
        late = [at for at in patches.get(interface_id, ()) if at > known]
        if late:
            bad(
                f"no PATCH after completion: {where} ({outcome}) was PATCHed {len(late)} more "
                f"time(s), {late[0] - known:.3f}s after its update was known to be done"
            )

    # Malformed pairs never reach the API.
    sent_ids = set(patches)
    for index, expect in enumerate(expects):
        if expect.kind == "malformed":
            pair = items[index]
            if isinstance(pair, tuple) and pair and pair[0] in sent_ids:
                bad(f"one result: malformed item {index} {pair!r} was sent")

    # --- paced ---------------------------------------------------------------------------------
    if learned_at is not None:
        arrivals = sorted(r.at for r in log if r.at >= learned_at)
        report.busiest_window = busiest_window(arrivals, schedule.window)
        report.real_429s_after_learning = sum(
            1 for r in log if r.at >= learned_at and r.status == 429 and r.fault is None
        )
        if report.busiest_window > schedule.rate_limit:
            bad(
                f"paced: {report.busiest_window} requests arrived within one {schedule.window}s "
                f"window after the limit ({schedule.rate_limit}) was known"
            )
    elif report.requests:
        bad("paced: the client never learnt the rate limit")

    # --- ends: nothing is sent once the results are all out --------------------------------------
    if report.finished:
        after = [r for r in log if r.at > t_end]
        if after:
            bad(f"ends: {len(after)} requests arrived after the run ended, first {after[0]!r}")
