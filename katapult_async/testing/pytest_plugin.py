"""A pytest plugin: a fresh Katapult API simulator and a client bound to it, for every test.

Installing ``katapult-async`` registers this module with pytest (the ``pytest11`` entry point
``katapult_async``), so a project that has pytest and pytest-asyncio gets, with no conftest code:

* ``katapult_simulator``: a started :class:`~katapult_async.testing.KatapultSimulator` on
  loopback, new for each test and closed after it;
* ``katapult_client``: a :class:`~katapult_async.KatapultClient` bound to it (token, base URL and
  the simulator's ``rate_limit_window``), closed after the test;
* ``katapult_interfaces``: the ids of the interfaces the marker asked for (10 by default);
* ``katapult_simulator_config``: the :class:`~katapult_async.testing.SimulatorConfig` the
  simulator is built from; override it in a conftest to change the defaults of a whole project;
* the marker ``@pytest.mark.katapult(...)``, taking every field of
  :class:`~katapult_async.testing.SimulatorConfig` (``rate_limit``, ``rate_limit_window``,
  ``task_duration``, ``task_polls``, ``task_failure_rate``, ``fail_profiles``,
  ``task_no_change_rate``, ``seed``, ...) plus ``interfaces``
  (how many to add), ``speed_profile`` (their profile, ``"10gbps"`` by default) and
  ``client_options`` (keyword arguments for the ``KatapultClient``). Markers on a class or module
  apply too; the one closest to the test wins for each argument.

Defaults differ from the simulator's own in two ways, so that tests are fast: tasks take
``task_duration=0.1`` seconds, and the client polls after ``poll_interval=0.05`` seconds
(``max_poll_interval=0.5``).

Example::

    import pytest

    from katapult_async.testing import FaultKind


    @pytest.mark.asyncio  # needed in pytest-asyncio's default strict mode
    @pytest.mark.katapult(task_polls=3, interfaces=2)
    async def test_my_update(katapult_simulator, katapult_client, katapult_interfaces):
        katapult_simulator.inject(FaultKind.SERVICE_UNAVAILABLE, times=1)
        task = await katapult_client.update_speed_profile(katapult_interfaces[0], "1gbps")
        task = await katapult_client.wait_for_task(task)
        assert katapult_simulator.stats.task_polls == 3

The fixtures are async; they are declared with ``pytest_asyncio.fixture``, so they work in both
``asyncio_mode = "auto"`` and ``"strict"`` (where the test needs ``@pytest.mark.asyncio``). Without
pytest-asyncio installed, using one fails with a message saying so. Nothing but pytest is
imported until a fixture or the marker is used.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from katapult_async import KatapultClient
    from katapult_async.testing import KatapultSimulator, SimulatorConfig

__all__ = [
    "CLIENT_DEFAULTS",
    "MARKER",
    "PLUGIN_OPTIONS",
    "SIMULATOR_DEFAULTS",
    "katapult_client",
    "katapult_interfaces",
    "katapult_simulator",
    "katapult_simulator_config",
]

MARKER = "katapult"
"""The marker's name: ``@pytest.mark.katapult(...)``."""

PLUGIN_OPTIONS: Mapping[str, str] = {
    "interfaces": "how many interfaces to add to the simulator (default 10)",
    "speed_profile": 'the speed profile those interfaces start with (default "10gbps")',
    "client_options": "keyword arguments for the KatapultClient of katapult_client",
}
"""The marker's arguments that are not :class:`~katapult_async.testing.SimulatorConfig` fields."""

SIMULATOR_DEFAULTS: Mapping[str, Any] = {"task_duration": 0.1}
"""Simulator options the plugin sets unless the marker gives them."""

CLIENT_DEFAULTS: Mapping[str, Any] = {"poll_interval": 0.05, "max_poll_interval": 0.5}
"""Client options the plugin sets unless ``client_options`` gives them."""

_MARKER_HELP = (
    "katapult(**options): configure the katapult_simulator and katapult_client fixtures; "
    "options are the fields of katapult_async.testing.SimulatorConfig plus "
    + ", ".join(PLUGIN_OPTIONS)
)

_F = TypeVar("_F", bound=Callable[..., Any])


class _Settings:
    """The marker's arguments, checked: simulator options and the plugin's own."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.simulator = {k: v for k, v in options.items() if k not in PLUGIN_OPTIONS}
        self.interfaces: int = options.get("interfaces", 10)
        self.speed_profile: str = options.get("speed_profile", "10gbps")
        self.client_options: Mapping[str, Any] = options.get("client_options", {})


_SETTINGS_KEY = pytest.StashKey[_Settings]()
_INTERFACES_KEY = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``katapult`` marker, so that ``--strict-markers`` accepts it."""
    config.addinivalue_line("markers", _MARKER_HELP)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Check a test's ``katapult`` marker before it runs, even if it uses no fixture of ours."""
    if item.get_closest_marker(MARKER) is not None:
        _settings(item)


def valid_marker_arguments() -> list[str]:
    """The names ``@pytest.mark.katapult`` accepts, sorted.

    Returns:
        Every :class:`~katapult_async.testing.SimulatorConfig` field and every name in
        :data:`PLUGIN_OPTIONS`.
    """
    import attrs

    from katapult_async.testing import SimulatorConfig

    return sorted([field.name for field in attrs.fields(SimulatorConfig)] + list(PLUGIN_OPTIONS))


def _settings(node: pytest.Item) -> _Settings:
    """The merged, checked ``katapult`` markers of a test; fail the test on a bad one."""
    settings = node.stash.get(_SETTINGS_KEY, None)
    if settings is not None:
        return settings
    options: dict[str, Any] = {}
    # iter_markers yields the closest first (function, class, module); the closest must win
    for marker in reversed(list(node.iter_markers(MARKER))):
        if marker.args:
            pytest.fail(
                f"@pytest.mark.{MARKER} takes keyword arguments only, got {marker.args!r}",
                pytrace=False,
            )
        options.update(marker.kwargs)
    valid = valid_marker_arguments()
    unknown = sorted(set(options) - set(valid))
    if unknown:
        hints = [
            f"{name!r} (did you mean {close[0]!r}?)"
            if (close := difflib.get_close_matches(name, valid, n=1))
            else repr(name)
            for name in unknown
        ]
        pytest.fail(
            f"@pytest.mark.{MARKER} got unknown argument(s) {', '.join(hints)}; "
            f"valid arguments: {', '.join(valid)}",
            pytrace=False,
        )
    settings = _Settings(options)
    if not isinstance(settings.interfaces, int) or settings.interfaces < 0:
        pytest.fail(
            f"@pytest.mark.{MARKER}: interfaces must be a non-negative int, "
            f"got {settings.interfaces!r}",
            pytrace=False,
        )
    if not isinstance(settings.client_options, Mapping):
        pytest.fail(
            f"@pytest.mark.{MARKER}: client_options must be a mapping, "
            f"got {settings.client_options!r}",
            pytrace=False,
        )
    node.stash[_SETTINGS_KEY] = settings
    return settings


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only where pytest-asyncio is absent

    def _async_fixture(function: _F) -> _F:
        name = function.__name__

        def missing() -> None:
            pytest.fail(
                f"the {name} fixture needs pytest-asyncio: pip install pytest-asyncio",
                pytrace=False,
            )

        missing.__name__ = name
        missing.__doc__ = function.__doc__
        return pytest.fixture(name=name)(missing)  # type: ignore[return-value]

else:

    def _async_fixture(function: _F) -> _F:
        return typing.cast("_F", pytest_asyncio.fixture(function))


@pytest.fixture
def katapult_simulator_config(request: pytest.FixtureRequest) -> SimulatorConfig:
    """The :class:`~katapult_async.testing.SimulatorConfig` of this test's simulator.

    The plugin's :data:`SIMULATOR_DEFAULTS`, then the ``katapult`` marker's simulator options.
    """
    from katapult_async.testing import SimulatorConfig

    settings = _settings(request.node)
    try:
        return SimulatorConfig(**{**SIMULATOR_DEFAULTS, **settings.simulator})
    except (TypeError, ValueError) as exc:
        pytest.fail(f"@pytest.mark.{MARKER}: {exc}", pytrace=False)


@_async_fixture
async def katapult_simulator(
    request: pytest.FixtureRequest, katapult_simulator_config: SimulatorConfig
) -> AsyncIterator[KatapultSimulator]:
    """A started :class:`~katapult_async.testing.KatapultSimulator` on loopback, new per test.

    It holds the interfaces the marker asked for (see ``katapult_interfaces``) and is closed
    after the test.
    """
    from katapult_async.testing import KatapultSimulator

    settings = _settings(request.node)
    simulator = KatapultSimulator.from_config(katapult_simulator_config)
    try:
        ids = simulator.add_interfaces(settings.interfaces, speed_profile=settings.speed_profile)
    except KeyError as exc:
        pytest.fail(f"@pytest.mark.{MARKER}: {exc.args[0]}", pytrace=False)
    request.node.stash[_INTERFACES_KEY] = ids
    async with simulator:
        yield simulator


@pytest.fixture
def katapult_interfaces(
    request: pytest.FixtureRequest, katapult_simulator: KatapultSimulator
) -> list[str]:
    """Ids of the interfaces the marker's ``interfaces=`` added (10 by default), in order."""
    return list(request.node.stash[_INTERFACES_KEY])


@_async_fixture
async def katapult_client(
    request: pytest.FixtureRequest, katapult_simulator: KatapultSimulator
) -> AsyncIterator[KatapultClient]:
    """A :class:`~katapult_async.KatapultClient` bound to ``katapult_simulator``, closed after.

    It is given the simulator's token, base URL and ``rate_limit_window`` (it learns the limit
    from the response headers, as against the live API), the plugin's :data:`CLIENT_DEFAULTS`
    and the marker's ``client_options``.
    """
    from katapult_async import KatapultClient

    settings = _settings(request.node)
    options = {
        "rate_limit_window": katapult_simulator.config.rate_limit_window,
        **CLIENT_DEFAULTS,
        **settings.client_options,
    }
    try:
        client = KatapultClient(
            katapult_simulator.token, base_url=katapult_simulator.base_url, **options
        )
    except (TypeError, ValueError) as exc:
        pytest.fail(f"@pytest.mark.{MARKER}: client_options: {exc}", pytrace=False)
    async with client:
        yield client
