"""Observability: OpenTelemetry traces and metrics when the application configures them, and the
context of every log record of the ``katapult_async`` logger tree.

This is the one module that imports ``opentelemetry``, and only lazily: :func:`refresh`, which
every new :class:`~katapult_async.KatapultClient` calls, imports ``opentelemetry-api`` (the ``otel``
extra) if it is installed and looks at the global tracer and meter providers. Unless the
application has set one of them (an SDK, or ``opentelemetry-instrument``), :data:`active` stays
``None``: the traced methods are the plain ones (:func:`traced`), and the hot path pays one check
of it per HTTP attempt: no span, no metric, no import. Only the API is used, never the SDK.

Spans (the library's tracer is named ``katapult_async``):

- one INTERNAL span per public call: ``katapult.update_speed_profile``, ``katapult.wait_for_task``
  (every :meth:`TaskPoller.wait <katapult_async.poller.TaskPoller.wait>`, also inside
  ``update_speed_profile(wait=True)`` and bulk items), ``katapult.bulk_update`` (the outcome counts
  set when it ends), ``katapult.select_interfaces``, ``katapult.plan_speed_profiles`` and
  ``katapult.revert_speed_profiles`` (:func:`traced_iteration`);
- one CLIENT span per HTTP attempt, ``{method} {url.template}``, with the semantic conventions'
  ``http.request.method``, ``server.address``, ``server.port``, ``url.template``,
  ``http.response.status_code``, ``error.type`` (the status code from 400 up, else the exception's
  class) and ``http.request.resend_count`` (on a retry), plus ``katapult.operation``,
  ``katapult.request_id`` (``X-Request-Id``), ``katapult.interface_id``, ``katapult.task_id``,
  ``katapult.error.code`` and ``katapult.ratelimit.wait.duration``;
- ``katapult.ratelimit.wait``, an INTERNAL span beside the attempt's, covering the time its start
  waited for the rate-limit budget, when that was at least :data:`WAIT_SPAN_MIN`.

Metrics: ``http.client.request.duration`` (s), ``katapult.requests`` (every attempt, by operation
and status), ``katapult.ratelimit.wait.duration`` (s), the gauges ``katapult.ratelimit.limit`` and
``katapult.ratelimit.remaining`` (the limiter's ``snapshot()``, per rate limiter, told apart by
``katapult.ratelimit.limiter``, a number: the token is never named), ``katapult.task.duration``
(s, by final status), ``katapult.task.polls`` (by ``katapult.task.done``) and
``katapult.bulk.results`` (by outcome).

Logs: the filter :func:`install_log_context` adds to the package's loggers gives every record made
during an HTTP call ``request_id``, ``interface_id``, ``task_id`` and ``attempt`` attributes, where
known (:func:`current_call` finds the call on the stack); this needs no OpenTelemetry.

The token never reaches this module: nothing here reads headers, and exception messages of the
library's errors (which never hold it) are the only free text recorded; of any other exception
only the class is recorded.
"""

from __future__ import annotations

import collections
import functools
import logging
import sys
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Mapping
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, cast
from urllib.parse import urlsplit

from katapult_async._protocol import ResponseMeta
from katapult_async._requests import APIRequest
from katapult_async._version import __version__
from katapult_async.errors import KatapultError
from katapult_async.models import Task, UpdateResult

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Span, TracerProvider

    from katapult_async._ratelimit import RateLimiter, RateLimitState

__all__ = [
    "LOGGER_NAME",
    "WAIT_SPAN_MIN",
    "Telemetry",
    "active",
    "current_call",
    "install_log_context",
    "log_context_from",
    "refresh",
    "request_ids",
    "traced",
    "traced_iteration",
    "use",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

Attributes = dict[str, str | int | float | bool]

LOGGER_NAME = "katapult_async"

WAIT_SPAN_MIN = 0.001
"""Seconds of waiting for the budget from which an attempt gets a ``katapult.ratelimit.wait``
span (shorter waits are only in the histogram and the attempt's attribute)."""

# The semantic conventions' advice for http.client.request.duration, in seconds; also used for the
# rate-limit waits. Task durations run longer.
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
_TASK_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


# --- the context of log records -----------------------------------------------------------------


class CallView(Protocol):
    """What the log context reads of an HTTP call (the transport's per-call state)."""

    @property
    def request(self) -> APIRequest: ...

    @property
    def attempts(self) -> int: ...

    @property
    def meta(self) -> ResponseMeta | None: ...


_CALL_CODES: set[CodeType] = set()  # the code of the transport's request_with_meta


def log_context_from(method: Callable[..., Any]) -> None:
    """Records made while ``method`` runs get the context of its local ``state`` (a
    :class:`CallView`): the transport registers its ``request_with_meta``."""
    _CALL_CODES.add(method.__code__)


def current_call() -> CallView | None:
    """The HTTP call whose coroutine chain is running now, if any.

    Found by walking the stack up to the transport's registered method, and only when a record
    is made: so the calls themselves pay nothing for their log context, which a context variable
    set for every call would cost (about 1 % of a request's CPU in the overhead benchmark).
    While a coroutine runs, the frames of the coroutines awaiting it are its callers.
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code in _CALL_CODES:
            state: CallView | None = frame.f_locals.get("state")
            return state
        frame = frame.f_back
    return None


def request_ids(request: APIRequest) -> tuple[str | None, str | None]:
    """The interface id and the task id that ``request`` names, where it names one."""
    interface_id = task_id = None
    params = request.params
    if isinstance(params, Mapping):
        interface_id = params.get("virtual_machine_network_interface[id]")
        task_id = params.get("task[id]")
    body = request.body
    if body is not None:
        lookup = body.get("virtual_machine_network_interface")
        if isinstance(lookup, Mapping):
            interface_id = lookup.get("id")
    return interface_id, task_id


class _LogContext(logging.Filter):
    """Adds ``request_id``, ``interface_id``, ``task_id`` and ``attempt`` to a record made during
    an HTTP call, where known and not given by the caller (``extra=``). ``attempt`` is the number
    of the latest attempt started, ``request_id`` the ``X-Request-Id`` of its response."""

    def filter(self, record: logging.LogRecord) -> bool:
        call = current_call()
        if call is None:
            return True
        interface_id, task_id = request_ids(call.request)
        meta = call.meta
        fields = record.__dict__
        for key, value in (
            ("request_id", meta.request_id if meta is not None else None),
            ("interface_id", interface_id),
            ("task_id", task_id),
            ("attempt", call.attempts or None),
        ):
            if value is not None and key not in fields:
                fields[key] = value
        return True


_LOG_CONTEXT = _LogContext()


def install_log_context() -> None:
    """Add the log-context filter to every logger of the ``katapult_async`` tree that exists."""
    names = [name for name in list(logging.root.manager.loggerDict) if name.startswith(LOGGER_NAME)]
    for name in names:
        if name != LOGGER_NAME and not name.startswith(LOGGER_NAME + "."):
            continue
        logger = logging.getLogger(name)
        if _LOG_CONTEXT not in logger.filters:
            logger.addFilter(_LOG_CONTEXT)


# --- turning OpenTelemetry on -------------------------------------------------------------------

active: Telemetry | None = None
"""The instruments while OpenTelemetry is on, else ``None``: the one check of the hot path."""

_pinned = False  # use() chose the providers: refresh() leaves them
_missing = False  # opentelemetry-api could not be imported (not looked for again)


def refresh() -> Telemetry | None:
    """Turn telemetry on or off after the global OpenTelemetry providers; return :data:`active`.

    Called when a client is created, so that an application configures OpenTelemetry first.
    """
    global active
    install_log_context()
    if _pinned:
        return active
    providers = _global_providers()
    if providers is None:
        active = None
    elif active is None or active.providers != providers:
        active = Telemetry(*providers)
    _swap()
    return active


def use(
    tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
) -> Telemetry | None:
    """Record to these providers rather than the global ones (tests); with neither, go back to
    the global providers. Returns :data:`active`."""
    global active, _pinned
    if tracer_provider is None and meter_provider is None:
        _pinned = False
        active = None
        return refresh()
    from opentelemetry import metrics, trace

    _pinned = True
    active = Telemetry(
        tracer_provider or trace.NoOpTracerProvider(), meter_provider or metrics.NoOpMeterProvider()
    )
    _swap()
    return active


def _global_providers() -> tuple[TracerProvider, MeterProvider] | None:
    """The global providers, unless neither is configured (or opentelemetry-api is missing)."""
    global _missing
    if _missing:
        return None
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        _missing = True
        return None
    tracer_provider = trace.get_tracer_provider()
    meter_provider = metrics.get_meter_provider()
    traces = not isinstance(tracer_provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
    # The API's default meter provider is a private proxy class; both it and the no-op one record
    # nothing.
    measures = type(meter_provider).__name__ not in ("_ProxyMeterProvider", "NoOpMeterProvider")
    if not (traces or measures):
        return None
    return tracer_provider, meter_provider


# --- what the rest of the package calls ---------------------------------------------------------


class _Traced:
    """A method made a traced public call by :func:`traced`.

    In the class body it replaces itself by the plain method (``__set_name__``), and
    :func:`_swap` puts the traced version in its place while telemetry is on: when it is off,
    calling the method costs nothing more than calling the plain function.
    """

    def __init__(self, name: str, describe: Callable[..., Attributes], fn: Any) -> None:
        self.name = name
        self.describe = describe
        self.fn = fn
        self.owner: type | None = None
        self.attribute = ""

        @functools.wraps(fn)
        async def call(*args: Any, **kwargs: Any) -> Any:
            telemetry = active
            if telemetry is None:  # turned off since the swap
                return await fn(*args, **kwargs)
            return await telemetry.call(name, describe(*args, **kwargs), fn(*args, **kwargs))

        self.traced = call

    def __set_name__(self, owner: type, attribute: str) -> None:
        self.owner, self.attribute = owner, attribute
        _TRACED.append(self)
        self.swap()

    def swap(self) -> None:
        """Put the traced method in the class while telemetry is on, else the plain one."""
        setattr(self.owner, self.attribute, self.traced if active is not None else self.fn)


_TRACED: list[_Traced] = []


def _swap() -> None:
    for method in _TRACED:
        method.swap()


def traced(
    name: str, describe: Callable[..., Attributes]
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Make an async method a public call, in an INTERNAL span ``name`` while telemetry is on
    (and plain, at no cost, while it is off).

    ``describe`` is called with the method's arguments for the span's first attributes; a
    :class:`Task` returned adds its id and status.
    """

    def decorate(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        # A _Traced in the class body, which __set_name__ turns into the method itself.
        return cast("Callable[P, Coroutine[Any, Any, R]]", _Traced(name, describe, fn))

    return decorate


def traced_iteration(
    name: str, items: AsyncGenerator[T, None], **options: Any
) -> AsyncGenerator[T, None]:
    """``items`` (what a public call that iterates returns), in the span ``name`` while telemetry
    is on, what it yields counted (see :data:`_ITERATIONS`); ``items`` itself when it is off.

    ``options`` that are plain values become the span's ``<prefix>.<option>`` attributes.
    """
    telemetry = active
    if telemetry is None:
        return items
    return telemetry.iteration(name, items, options)


def describe_update(
    _client: object, interface: object, speed_profile: object, **options: object
) -> Attributes:
    """The first attributes of ``katapult.update_speed_profile``."""
    return {
        "katapult.interface_id": _text(getattr(interface, "id", interface)),
        "katapult.speed_profile": _text(
            getattr(speed_profile, "id", None) or getattr(speed_profile, "permalink", speed_profile)
        ),
        "katapult.wait": bool(options.get("wait", False)),
    }


def describe_wait(_poller: object, task: object, **_options: object) -> Attributes:
    """The first attributes of ``katapult.wait_for_task``."""
    return {"katapult.task_id": _text(getattr(task, "id", task))}


def _text(value: object) -> str:
    return value if isinstance(value, str) else type(value).__name__


def _error_type(status: int | None, exc: BaseException) -> str:
    """The semantic conventions' ``error.type``: the status code of an error answer, else the
    exception's class."""
    if status is not None and status >= 400:
        return str(status)
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _message(exc: BaseException) -> str:
    """What a span may say of an error: a library error's message (never holding the token),
    else only the class (anything else may quote anything)."""
    return str(exc) if isinstance(exc, KatapultError) else type(exc).__name__


@functools.lru_cache(maxsize=64)
def _route(base_url: str, path: str) -> tuple[str, int, str]:
    """``server.address``, ``server.port`` and ``url.template`` of a request."""
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", port, parts.path.rstrip("/") + path


def _outcome(result: UpdateResult) -> str:
    return result.outcome.value


def _action(item: Any) -> str:
    return str(item.action.value)


_ITERATIONS: dict[str, tuple[str, Callable[[Any], str | None], bool]] = {
    # span name: (attribute prefix, an item's key to count by, whether katapult.bulk.results too)
    "katapult.bulk_update": ("katapult.bulk", _outcome, True),
    "katapult.revert_speed_profiles": ("katapult.revert", _outcome, False),
    "katapult.plan_speed_profiles": ("katapult.plan", _action, False),
    "katapult.select_interfaces": ("katapult.select", lambda _interface: None, False),
}
"""How each public call that iterates counts what it yields."""


class Telemetry:
    """The tracer and the instruments, made from one pair of providers.

    Args:
        tracer_provider: Where spans go.
        meter_provider: Where measurements go.
    """

    def __init__(self, tracer_provider: TracerProvider, meter_provider: MeterProvider) -> None:
        from opentelemetry import context, trace
        from opentelemetry.metrics import Observation

        self.providers = (tracer_provider, meter_provider)
        self._trace = trace
        self._context = context
        self._observation = Observation
        self._tracer = tracer_provider.get_tracer(LOGGER_NAME, __version__)
        meter = meter_provider.get_meter(LOGGER_NAME, __version__)
        self._duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests (each attempt).",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )
        self._requests = meter.create_counter(
            "katapult.requests",
            unit="{request}",
            description="HTTP requests sent, retries included, by operation and status.",
        )
        self._wait = meter.create_histogram(
            "katapult.ratelimit.wait.duration",
            unit="s",
            description="Time a request waited for the rate-limit budget before it started.",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )
        self._task_duration = meter.create_histogram(
            "katapult.task.duration",
            unit="s",
            description="Time from a task's submission to the poll that saw it finished.",
            explicit_bucket_boundaries_advisory=_TASK_BUCKETS,
        )
        self._polls = meter.create_counter(
            "katapult.task.polls",
            unit="{poll}",
            description="Task polls answered with the task, by whether it was done.",
        )
        self._results = meter.create_counter(
            "katapult.bulk.results",
            unit="{result}",
            description="Results of bulk updates, by outcome.",
        )
        # Each rate limiter seen (one token's budget), by number: the token is never named.
        self._limiters: weakref.WeakKeyDictionary[RateLimiter, int] = weakref.WeakKeyDictionary()
        meter.create_observable_gauge(
            "katapult.ratelimit.limit",
            callbacks=[self._observe_limits],
            unit="{request}",
            description="The requests a rate limiter lets start per window (once known).",
        )
        meter.create_observable_gauge(
            "katapult.ratelimit.remaining",
            callbacks=[self._observe_remaining],
            unit="{request}",
            description="Requests that may start now without waiting (RateLimitState.remaining).",
        )

    # --- HTTP attempts --------------------------------------------------------------------------

    async def attempt(
        self,
        state: CallView,
        base_url: str,
        limiter: RateLimiter,
        acquire: Callable[[], Coroutine[Any, Any, float]],
        send: Callable[[float], Coroutine[Any, Any, T]],
    ) -> T:
        """One HTTP attempt: ``acquire()`` the budget (timed), then ``send(started)`` in a CLIENT
        span; record the attempt's metrics however it ends."""
        request = state.request
        operation = request.kind or request.method
        limiter_number = self._number(limiter)
        wall_start = time.time_ns()
        began = time.perf_counter()
        started = await acquire()
        sent = time.perf_counter()
        waited = sent - began
        self._wait.record(
            waited, {"katapult.operation": operation, "katapult.ratelimit.limiter": limiter_number}
        )
        address, port, template = _route(base_url, request.path)
        common: Attributes = {
            "http.request.method": request.method,
            "server.address": address,
            "server.port": port,
            "url.template": template,
        }
        attributes: Attributes = {
            **common,
            "katapult.operation": operation,
            "katapult.ratelimit.wait.duration": waited,
        }
        if state.attempts > 1:
            attributes["http.request.resend_count"] = state.attempts - 1
        interface_id, task_id = request_ids(request)
        if interface_id is not None:
            attributes["katapult.interface_id"] = interface_id
        if task_id is not None:
            attributes["katapult.task_id"] = task_id
        tracer = self._tracer
        if waited >= WAIT_SPAN_MIN:
            tracer.start_span(
                "katapult.ratelimit.wait",
                start_time=wall_start,
                attributes={
                    "katapult.operation": operation,
                    "katapult.ratelimit.wait.duration": waited,
                },
            ).end(end_time=wall_start + int(waited * 1e9))
        with tracer.start_as_current_span(
            f"{request.method} {template}",
            kind=self._trace.SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            error: BaseException | None = None
            try:
                return await send(started)
            except BaseException as exc:
                error = exc
                raise
            finally:
                self._end_attempt(state, span, common, operation, error, sent)

    def _end_attempt(
        self,
        state: CallView,
        span: Span,
        common: Attributes,
        operation: str,
        error: BaseException | None,
        sent: float,
    ) -> None:
        duration = time.perf_counter() - sent
        meta = state.meta
        status: int | None = meta.status if meta is not None else None
        if status is None and error is not None:
            status = getattr(error, "status", None)
        measured = dict(common)
        if status is not None:
            measured["http.response.status_code"] = status
            span.set_attribute("http.response.status_code", status)
        if meta is not None and meta.request_id:
            span.set_attribute("katapult.request_id", meta.request_id)
        if error is not None:
            error_type = _error_type(status, error)
            measured["error.type"] = error_type
            span.set_attribute("error.type", error_type)
            code = getattr(error, "code", None)
            if isinstance(code, str):
                span.set_attribute("katapult.error.code", code)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, _message(error)))
        self._duration.record(duration, measured)
        measured["katapult.operation"] = operation
        self._requests.add(1, measured)

    def _number(self, limiter: RateLimiter) -> int:
        number = self._limiters.get(limiter)
        if number is None:
            number = self._limiters[limiter] = len(self._limiters) + 1
        return number

    def _observe_limits(self, _options: CallbackOptions) -> list[Observation]:
        return self._per_limiter(lambda state: state.limit)

    def _observe_remaining(self, _options: CallbackOptions) -> list[Observation]:
        return self._per_limiter(lambda state: state.remaining)

    def _per_limiter(self, read: Callable[[RateLimitState], int | None]) -> list[Observation]:
        """One observation per rate limiter whose ``read(snapshot)`` is known."""
        observations = []
        for limiter, number in list(self._limiters.items()):
            value = read(limiter.snapshot())
            if value is not None:
                attributes = {"katapult.ratelimit.limiter": number}
                observations.append(self._observation(value, attributes))
        return observations

    # --- tasks ----------------------------------------------------------------------------------

    def poll(self, task: Task) -> None:
        """Count a poll answered with ``task``."""
        self._polls.add(1, {"katapult.task.done": task.status.is_terminal})

    def task_finished(self, task: Task, seconds: float) -> None:
        """Record the duration of a task seen finished, ``seconds`` after its submission."""
        self._task_duration.record(seconds, {"katapult.task.status": task.status.value})

    # --- public calls ---------------------------------------------------------------------------

    async def call(self, name: str, attributes: Attributes, work: Coroutine[Any, Any, R]) -> R:
        """Await ``work`` in an INTERNAL span."""
        with self._tracer.start_as_current_span(
            name, attributes=attributes, record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                result = await work
            except BaseException as exc:
                self._failed(span, exc)
                raise
            if isinstance(result, Task):
                span.set_attribute("katapult.task_id", result.id)
                span.set_attribute("katapult.task.status", result.status.value)
            return result

    def _failed(self, span: Span, exc: BaseException) -> None:
        error_type = _error_type(None, exc)
        span.set_attribute("error.type", error_type)
        span.add_event(
            "exception", {"exception.type": error_type, "exception.message": _message(exc)}
        )
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, _message(exc)))

    def iteration(
        self, name: str, items: AsyncGenerator[T, None], options: Mapping[str, Any]
    ) -> AsyncGenerator[T, None]:
        """``items`` in the INTERNAL span ``name``; what it yields counted, the counts set on the
        span when it ends (``<prefix>.results`` and ``<prefix>.<key>``)."""
        prefix, key, counted = _ITERATIONS[name]
        counts: collections.Counter[str] = collections.Counter()
        total = 0
        add = self._results.add

        def count(item: T) -> None:
            nonlocal total
            total += 1
            value = key(item)
            if value is not None:
                counts[value] += 1
                if counted:
                    add(1, {f"{prefix}.outcome": value})

        def finish(span: Span) -> None:
            span.set_attribute(f"{prefix}.results", total)
            for value, number in counts.items():
                span.set_attribute(f"{prefix}.{value}", number)

        attributes: Attributes = {
            f"{prefix}.{option}": value
            for option, value in options.items()
            if isinstance(value, (str, int, float, bool))
        }
        return self._iterate(name, attributes, items, count, finish)

    async def _iterate(
        self,
        name: str,
        attributes: Attributes,
        items: AsyncGenerator[T, None],
        count: Callable[[T], None],
        finish: Callable[[Span], None],
    ) -> AsyncGenerator[T, None]:
        """``items``, advanced with the span current (a worker task started while it is current
        is its child), but never current across a ``yield``: the caller's context stays its own."""
        span = self._tracer.start_span(name, attributes=attributes)
        current = self._trace.set_span_in_context(span)
        attach, detach = self._context.attach, self._context.detach
        iterator: AsyncIterator[T] = items
        try:
            while True:
                token = attach(current)
                try:
                    item = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    detach(token)
                count(item)
                yield item
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                self._failed(span, exc)
            raise
        finally:
            try:
                await items.aclose()
            finally:
                finish(span)
                span.end()
