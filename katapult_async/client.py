"""The :class:`KatapultClient`: its lifecycle and the endpoint methods, which build a request
(:mod:`katapult_async._requests`), send it through the one HTTP choke point
(:mod:`katapult_async._http`) and decode the answer (:mod:`katapult_async._protocol`). Its options
are a :class:`~katapult_async._config.ClientConfig`."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from katapult_async import _protocol as proto
from katapult_async import _requests as build
from katapult_async import _telemetry
from katapult_async._callbacks import ProgressCallback
from katapult_async._config import (
    DEFAULT_BASE_URL,
    TOKEN_ENV_VAR,
    ClientConfig,
    mask_token,
    request_timeout_arg,
    task_timeout_arg,
    token_from,
)
from katapult_async._http import HTTPTransport
from katapult_async._ratelimit import Pacing, RateLimiter, RateLimitState
from katapult_async._selection import Decode, check_selection, pages, select_interfaces
from katapult_async._validate import validate_base_url
from katapult_async.models import (
    NetworkInterface,
    NetworkInterfaceRef,
    NetworkSpeedProfile,
    SpeedProfileRef,
    Task,
    VirtualMachine,
)
from katapult_async.poller import TaskPoller

if TYPE_CHECKING:
    from katapult_async._plan import PlanItem, PlanTarget
    from katapult_async._rollout import Rollout
    from katapult_async.bulk import BulkProgress, UpdateItem
    from katapult_async.models import UpdateResult

__all__ = ["DEFAULT_BASE_URL", "TOKEN_ENV_VAR", "ClientConfig", "KatapultClient"]

T = TypeVar("T")

_DEFAULTS = ClientConfig()
"""Read by :class:`KatapultClient`'s signature, so that each default is written once, above."""


class KatapultClient:
    """An asyncio client for changing network speed profiles on Katapult.

    Use it as an async context manager (or call :meth:`close`)::

        async with KatapultClient() as client:          # token from KATAPULT_API_TOKEN
            task = await client.update_speed_profile("vmnet_abc", "1gbps", wait=True)

    The options are normalised once into a frozen :class:`ClientConfig`, ``client.config``.

    Every request, PATCHes and task polls alike, goes through one rate limiter shared by the whole
    client (pass ``limiter=`` to share it between clients of the same token). The limiter learns the
    limit from ``rate_limit``, else from the ``X-Ratelimit-Permitted``/``-Remaining`` headers of every
    response, else from the first 429's ``total_permitted``, and paces requests so that no more than
    the limit start within any window.

    Retry policy: 429 (after the limiter's pause, with no extra wait), 503, 502/504 and other 5xx,
    406 ``task_queueing_error``, connection errors and timeouts are retried up to ``max_retries``
    times, with exponential backoff (0.5 s, doubling, at most 30 s) and full jitter
    (``max_retries=0``: one attempt). A PATCH whose response was lost is retried too; if the retry
    is answered ``speed_profile_already_assigned``, the error says ``after_lost_response``. Other
    4xx, and responses the client cannot understand, are not retried.

    Args:
        token: The API token; ``None`` reads ``KATAPULT_API_TOKEN``. Never shown in reprs or logs.
        base_url: The Core API base URL (default ``https://api.katapult.io/core/v1``). Plain
            ``http://`` is refused unless the host is loopback or ``allow_insecure_http=True``.
        rate_limit: Requests permitted per ``rate_limit_window`` seconds, when known up front
            (default ``None``: learned from the responses).
        rate_limit_window: The length of the server's rate-limit window (default 60 s, as on
            Katapult).
        request_timeout: Seconds for each HTTP request (default 30).
        max_retries: Retries after the first attempt (default 8).
        poll_interval: First task poll interval in seconds (default 1).
        max_poll_interval: Longest interval between task polls (default 15).
        session: An ``aiohttp.ClientSession`` to use; the client never closes a caller's session.
        limiter: A :class:`RateLimiter` to share with other clients of the same token (default: a
            new one, from ``rate_limit`` and ``rate_limit_window``).
        max_response_size: Bodies larger than this many bytes are refused (default 1 MiB).
        allow_insecure_http: Permit plain ``http://`` to non-loopback hosts (default False).
        probe_timeout: The first request goes alone until it is answered, or for this many
            seconds (default 0.3); then the others start gradually. ``None`` waits for the answer.
        pacing: How the rate-limit budget is spent. ``"burst"`` (default): requests start as
            long as the budget has room, and wait only once it is spent, until it comes back, so
            a job whose requests fit in what is left ends with its slowest task. ``"smooth"``:
            the budget is spread evenly over the window (for a token shared with people at a
            console).
        reserve: The share of the limit left for other users of the token (default: none with
            burst pacing, 1 % with smooth; burst keeps 2 requests back while others are seen).
        timeout: Deprecated spelling of ``request_timeout`` (warns; removed in 0.4).

    Raises:
        ConfigurationError: when no token is available or an option is invalid.
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        base_url: str = _DEFAULTS.base_url,
        rate_limit: int | None = _DEFAULTS.rate_limit,
        rate_limit_window: float = _DEFAULTS.rate_limit_window,
        request_timeout: float = _DEFAULTS.request_timeout,
        max_retries: int = _DEFAULTS.max_retries,
        poll_interval: float = _DEFAULTS.poll_interval,
        max_poll_interval: float = _DEFAULTS.max_poll_interval,
        session: aiohttp.ClientSession | None = None,
        limiter: RateLimiter | None = None,
        max_response_size: int = _DEFAULTS.max_response_size,
        allow_insecure_http: bool = _DEFAULTS.allow_insecure_http,
        probe_timeout: float | None = _DEFAULTS.probe_timeout,
        pacing: Pacing = _DEFAULTS.pacing,
        reserve: float | None = _DEFAULTS.reserve,
        timeout: float | None = None,
    ) -> None:
        request_timeout = request_timeout_arg(timeout, request_timeout)
        _telemetry.refresh()  # OpenTelemetry, if the application configured it (the otel extra)
        self._token = token_from(token)
        self.config = config = ClientConfig(
            base_url=validate_base_url(base_url, allow_insecure_http=allow_insecure_http),
            rate_limit=rate_limit,
            rate_limit_window=rate_limit_window,
            request_timeout=request_timeout,
            max_retries=max_retries,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            max_response_size=max_response_size,
            allow_insecure_http=allow_insecure_http,
            probe_timeout=probe_timeout,
            pacing=pacing,
            reserve=reserve,
        )
        self._limiter = limiter or RateLimiter(
            config.rate_limit,
            config.rate_limit_window,
            pacing=config.pacing,
            reserve=config.reserve,
            probe_timeout=config.probe_timeout,
        )
        self._transport = HTTPTransport(
            config.transport_config(), token=self._token, limiter=self._limiter, session=session
        )
        self._poller = TaskPoller(
            self.get_task,
            poll_interval=config.poll_interval,
            max_poll_interval=config.max_poll_interval,
            budget_binding=lambda: self._limiter.waiting > 0,
            budget_left=self._limiter.left,
        )

    def __repr__(self) -> str:
        return (
            f"<KatapultClient base_url={self.config.base_url!r} token={mask_token(self._token)!r}>"
        )

    def __getstate__(self) -> Any:
        raise TypeError("KatapultClient cannot be pickled (it holds a live session and the token)")

    async def __aenter__(self) -> KatapultClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session the client created (a caller's session stays open)."""
        await self._transport.close()

    @property
    def limiter(self) -> RateLimiter:
        """The rate limiter shared by every request of this client."""
        return self._limiter

    @property
    def rate_limit(self) -> RateLimitState:
        """A snapshot of the limiter: current limit, requests in the window, 429s seen."""
        return self._limiter.snapshot()

    @property
    def poller(self) -> TaskPoller:
        """The task poller (it learns task durations across calls)."""
        return self._poller

    # --- endpoints ---------------------------------------------------------------------------

    @_telemetry.traced("katapult.update_speed_profile", _telemetry.describe_update)
    async def update_speed_profile(
        self,
        interface: str | NetworkInterfaceRef,
        speed_profile: str | SpeedProfileRef,
        *,
        wait: bool = False,
        on_progress: ProgressCallback[Task] | None = None,
        task_timeout: float | None = None,
        timeout: float | None = None,
    ) -> Task:
        """Assign a network speed profile to an interface.

        Args:
            interface: An interface id (``vmnet_...``) or :class:`NetworkInterfaceRef`.
            speed_profile: A :class:`SpeedProfileRef`, or a string: ``nsp_...`` is an id, anything
                else a permalink (``"1gbps"``).
            wait: Also wait for the task to finish and return the final task.
            on_progress: With ``wait=True``, called with each new state of the task.
            task_timeout: With ``wait=True``, seconds to wait for the task before
                :class:`TaskTimeoutError`.
            timeout: Deprecated spelling of ``task_timeout`` (warns; removed in 0.4).

        Returns:
            The task the API created (pending), or with ``wait=True`` the completed task.

        Raises:
            ValueError: for a malformed id or permalink (nothing is sent).
            SpeedProfileAlreadyAssignedError: the interface already has that profile.
            TaskFailedError, TaskTimeoutError: with ``wait=True``.
            APIError, TransportError: see :mod:`katapult_async.errors`.
        """
        task_timeout = task_timeout_arg(timeout, task_timeout)
        request = build.update_speed_profile_request(interface, speed_profile)
        data, meta = await self._transport.request_with_meta(request)
        submitted_at = self._poller.now()  # on the poller's clock, which may not be monotonic()
        task = proto.decode_task(data, meta)
        if not wait:
            return task
        return await self._poller.wait(
            task, on_progress=on_progress, timeout=task_timeout, submitted_at=submitted_at
        )

    async def get_task(self, task_id: str) -> Task:
        """Fetch a task by id (``GET /tasks/task?task[id]=...``).

        Raises:
            TaskNotFoundError: no such task.
        """
        request = build.get_task_request(task_id)
        data, meta = await self._transport.request_with_meta(request)
        return proto.decode_task(data, meta)

    async def wait_for_task(
        self,
        task: Task | str,
        *,
        on_progress: ProgressCallback[Task] | None = None,
        task_timeout: float | None = None,
        poll_interval: float | None = None,
        timeout: float | None = None,
    ) -> Task:
        """Poll a task until it completes and return it.

        The schedule learns how long tasks of each name take, so that most tasks are polled about
        once after they finish. Every poll goes through the rate limiter.

        Args:
            task: A :class:`Task` or a task id.
            on_progress: Called (sync or async) on the first observation, on every change of
                status or progress, and on the final one.
            task_timeout: Seconds to wait before :class:`TaskTimeoutError`.
            poll_interval: Overrides the client's first poll interval for this wait.
            timeout: Deprecated spelling of ``task_timeout`` (warns; removed in 0.4).

        Raises:
            TaskFailedError: the task ended ``failed`` (``.task`` is the final task).
            TaskTimeoutError: ``task_timeout`` passed first (``.task`` is the last one seen).
        """
        task_timeout = task_timeout_arg(timeout, task_timeout)
        return await self._poller.wait(
            task, on_progress=on_progress, timeout=task_timeout, poll_interval=poll_interval
        )

    async def get_network_interface(self, interface: str | NetworkInterfaceRef) -> NetworkInterface:
        """Fetch one virtual machine network interface, with its current speed profile."""
        request = build.get_interface_request(interface)
        data, meta = await self._transport.request_with_meta(request)
        return proto.decode_interface(data, meta)

    async def list_network_interfaces(
        self,
        *,
        virtual_machine_id: str | None = None,
        fqdn: str | None = None,
        per_page: int = build.DEFAULT_PER_PAGE,
    ) -> list[NetworkInterface]:
        """Every network interface of one virtual machine (by id or FQDN), walking all pages."""
        return await self._all_pages(
            lambda page: build.list_interfaces_request(
                virtual_machine_id=virtual_machine_id, fqdn=fqdn, page=page, per_page=per_page
            ),
            proto.decode_interfaces,
        )

    async def list_speed_profiles(
        self,
        *,
        organization_id: str | None = None,
        sub_domain: str | None = None,
        per_page: int = build.DEFAULT_PER_PAGE,
    ) -> list[NetworkSpeedProfile]:
        """Every network speed profile of an organisation (by id or sub-domain), all pages."""
        return await self._all_pages(
            lambda page: build.list_speed_profiles_request(
                organization_id=organization_id, sub_domain=sub_domain, page=page, per_page=per_page
            ),
            proto.decode_speed_profiles,
        )

    async def _all_pages(
        self,
        request_for: Callable[[int], build.APIRequest],
        decode: Decode[T],
    ) -> list[T]:
        """Every page's items, in order."""
        send = self._transport.request_with_meta
        return [item async for batch in pages(send, request_for, decode) for item in batch]

    async def list_virtual_machines(
        self,
        organization: str,
        *,
        annotations: build.Annotations | None = None,
        per_page: int = build.DEFAULT_PER_PAGE,
    ) -> list[VirtualMachine]:
        """Every virtual machine of an organization, walking all pages.

        Args:
            organization: An organization id (``org_...``) or its sub-domain (``"acme"``).
            annotations: Only VMs with all of these annotations: a ``{key: value}`` mapping or
                ``(key, value)`` pairs.
            per_page: VMs per request.

        Raises:
            ValueError: for a malformed organization or annotation (nothing is sent).
            OrganizationNotFoundError, OrganizationSuspendedError, OrganizationNotActivatedError:
                see :mod:`katapult_async.errors`.
        """
        pairs = build.annotation_pairs(annotations)
        build.organization_lookup(organization)  # checked before any request
        return await self._all_pages(
            lambda page: build.list_virtual_machines_request(
                organization, annotations=pairs, page=page, per_page=per_page
            ),
            proto.decode_virtual_machines,
        )

    def select_interfaces(
        self,
        *,
        organization: str | None = None,
        annotations: build.Annotations | None = None,
        virtual_machines: Iterable[str] | None = None,
        per_page: int = build.DEFAULT_PER_PAGE,
    ) -> AsyncGenerator[NetworkInterface, None]:
        """The network interfaces of the selected virtual machines, each interface once, lazily.

        The VMs selected are those of ``organization`` that carry every one of ``annotations``
        (all its VMs without annotations), together with the ``virtual_machines`` named (ids
        ``vm_...`` or FQDNs). Pages are requested one at a time as the caller iterates, every
        request through the client's rate limiter. The interfaces come from the per-VM list, so
        they carry no speed profile; ``virtual_machine_id`` is filled in where the VM id is
        known (always for an organization's VMs). The output feeds a bulk update directly::

            interfaces = client.select_interfaces(organization="acme", annotations={"role": "db"})
            pairs = ((iface, "10gbps") async for iface in interfaces)
            async for result in client.bulk_update_speed_profiles(pairs):
                ...

        Args:
            organization: An organization id (``org_...``) or sub-domain.
            annotations: With ``organization``: a ``{key: value}`` mapping or ``(key, value)``
                pairs that a VM must all match.
            virtual_machines: VM ids (``vm_...``) or FQDNs.
            per_page: Items per request.

        Raises:
            ValueError: at once (before any request) when nothing is selected, ``annotations``
                come without ``organization``, or a value is malformed.
            OrganizationNotFoundError, VirtualMachineNotFoundError, ...: while iterating.
        """
        pairs, vms = check_selection(organization, annotations, virtual_machines)
        return _telemetry.traced_iteration(
            "katapult.select_interfaces",
            select_interfaces(
                self._transport.request_with_meta, organization, pairs, vms, per_page
            ),
            organization=organization,
        )

    def plan_speed_profiles(
        self,
        interfaces: Iterable[PlanTarget] | AsyncIterable[PlanTarget],
        speed_profile: str | SpeedProfileRef | None = None,
        *,
        concurrency: int = 8,
    ) -> AsyncGenerator[PlanItem, None]:
        """What a bulk update would do, read from the API: one :class:`PlanItem` per item.

        Each interface is read once (paced) and compared with its target; nothing is changed.
        Items come in input order, each with its ``action`` (``change``, ``unchanged`` or
        ``error``) and ``current_speed_profile``::

            async for item in client.plan_speed_profiles(client.select_interfaces(
                organization="acme", annotations={"role": "db"}), "1gbps"):
                print(item.interface_id, item.current_speed_profile, item.action)

        Args:
            interfaces: Interfaces (ids, refs, the values ``select_interfaces`` yields), or
                ``(interface, speed_profile)`` pairs with their own targets; sync or async.
            speed_profile: The target of the bare interfaces.
            concurrency: Interfaces read at once.

        See :func:`katapult_async._plan.plan_speed_profiles` for the details.
        """
        from katapult_async._plan import plan_speed_profiles

        return plan_speed_profiles(self, interfaces, speed_profile, concurrency=concurrency)

    def revert_speed_profiles(
        self,
        journal: str | os.PathLike[str],
        *,
        force: bool = False,
        revert_journal: str | os.PathLike[str] | None = None,
        concurrency: int = 16,
        on_progress: ProgressCallback[BulkProgress] | None = None,
        task_timeout: float | None = None,
        journal_fsync: bool = False,
        last_run: bool = False,
    ) -> AsyncGenerator[UpdateResult, None]:
        """Put every interface a journaled bulk run changed back on its previous profile.

        One :class:`UpdateResult` per interface the run completed: reverted (``COMPLETED``),
        in place already (``ALREADY_ASSIGNED``, nothing sent), changed since by someone else
        (``SKIPPED`` with a :class:`DriftedError`, unless ``force``), without a recorded
        previous profile (``SKIPPED``, :class:`NoPreviousProfileError`), or ``FAILED``/``ERROR``.
        Each interface is read before its revert (paced); the reverts are a bulk run of their
        own, journaled in ``revert_journal`` (default ``JOURNAL.undo.jsonl``), so that a rerun
        resumes them. ``last_run=True`` reverts only the journal's last run (resumed or not).

        See :func:`katapult_async._revert.revert_speed_profiles` for the details.
        """
        from katapult_async._revert import revert_speed_profiles

        return revert_speed_profiles(
            self,
            journal,
            force=force,
            revert_journal=revert_journal,
            concurrency=concurrency,
            on_progress=on_progress,
            task_timeout=task_timeout,
            journal_fsync=journal_fsync,
            last_run=last_run,
        )

    def bulk_update_speed_profiles(
        self,
        updates: Iterable[UpdateItem] | AsyncIterable[UpdateItem],
        *,
        concurrency: int = 16,
        max_tasks: int = 1000,
        wait: bool = True,
        on_progress: ProgressCallback[BulkProgress] | None = None,
        journal: str | os.PathLike[str] | None = None,
        task_timeout: float | None = None,
        total: int | None = None,
        journal_fsync: bool = False,
        record_previous: bool = False,
        confirm_horizon: float | None = None,
        timeout: float | None = None,
        resume: bool | None = None,
        rollout: Rollout | None = None,
    ) -> AsyncGenerator[UpdateResult, None]:
        """Update many interfaces concurrently; yield one :class:`UpdateResult` per input pair.

        This is :func:`katapult_async.bulk_update` with this client, and takes its keywords, with
        the same names and defaults: each is documented there, with the outcomes, halting, the
        journal and resuming, and stopping early. Every input pair gets exactly one result, in
        the order items finish (``.index`` says which). Use it with ``contextlib.aclosing`` when
        you may stop early::

            async with aclosing(client.bulk_update_speed_profiles(pairs)) as results:
                async for result in results:
                    print(result.interface_id, result.outcome)
        """
        from katapult_async.bulk import bulk_update

        return bulk_update(
            self,
            updates,
            concurrency=concurrency,
            max_tasks=max_tasks,
            wait=wait,
            on_progress=on_progress,
            journal=journal,
            task_timeout=task_timeout_arg(timeout, task_timeout),
            total=total,
            journal_fsync=journal_fsync,
            record_previous=record_previous,
            confirm_horizon=confirm_horizon,
            resume=resume,
            rollout=rollout,
        )
