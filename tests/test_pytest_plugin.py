"""The pytest plugin, run the way a user's project runs it: small test files through ``pytester``.

The plugin is found through the ``pytest11`` entry point of the installed package, so the inner
runs have no conftest code of ours, only an ini file like a user's (warnings are errors there
too, so an unclosed session or server fails the inner run).
"""

from __future__ import annotations

import gc
import importlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

# Imported here, before any in-process pytester run: pytester drops the modules a run imported
# when it ends, while the package's lazy re-exports keep what they handed out, so a class first
# imported inside one run (an error class, say) would differ from the same class re-imported by
# the next and `pytest.raises` would miss it. The whole suite imports these first anyway.
import katapult_async.client
import katapult_async.errors
import katapult_async.testing  # noqa: F401 (see above)

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_mode = {mode}
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error
"""


def run(pytester: pytest.Pytester, source: str, *args: str, mode: str = "auto") -> pytest.RunResult:
    pytester.makeini(INI.format(mode=mode))
    pytester.makepyfile(test_user=source)
    return pytester.runpytest("-p", "no:cacheprovider", "--strict-markers", *args)


def test_fixtures_need_no_conftest_and_each_test_gets_a_fresh_simulator(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        from katapult_async import KatapultClient
        from katapult_async.testing import KatapultSimulator

        def test_the_client_is_bound_to_the_simulator(
            katapult_simulator, katapult_client, katapult_interfaces
        ):
            assert isinstance(katapult_simulator, KatapultSimulator)
            assert isinstance(katapult_client, KatapultClient)
            assert katapult_client.config.base_url == katapult_simulator.base_url
            assert len(katapult_interfaces) == 10

        async def test_one_update(katapult_simulator, katapult_client, katapult_interfaces):
            await katapult_client.update_speed_profile(katapult_interfaces[0], "1gbps", wait=True)
            assert katapult_simulator.stats.patches == 1
            assert len(katapult_simulator.tasks) == 1

        async def test_state_is_fresh(katapult_simulator, katapult_interfaces):
            assert katapult_simulator.stats.total == 0
            assert not katapult_simulator.tasks
            profile = katapult_simulator.profile_by_permalink("10gbps").id
            assert katapult_simulator.interfaces[katapult_interfaces[0]].speed_profile_id == profile
        """,
    )
    result.assert_outcomes(passed=3)


def test_the_marker_configures_simulator_and_client(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        pytestmark = pytest.mark.katapult(rate_limit=50, seed=7)

        @pytest.mark.katapult(rate_limit=5, rate_limit_window=0.5, interfaces=3,
                              speed_profile="1gbps", client_options={"max_retries": 0})
        async def test_marker(katapult_simulator, katapult_client, katapult_interfaces):
            config = katapult_simulator.config
            assert (config.rate_limit, config.rate_limit_window, config.seed) == (5, 0.5, 7)
            assert katapult_client.config.rate_limit_window == 0.5
            assert katapult_client.config.max_retries == 0
            assert len(katapult_interfaces) == 3
            for interface_id in katapult_interfaces:
                interface = katapult_simulator.interfaces[interface_id]
                assert interface.speed_profile_id == katapult_simulator.profile_by_permalink("1gbps").id

        async def test_module_marker_and_plugin_defaults(katapult_simulator, katapult_client):
            config = katapult_simulator.config
            assert (config.rate_limit, config.rate_limit_window) == (50, 60.0)
            assert config.task_duration == 0.1
            assert katapult_client.config.poll_interval == 0.05
        """,
    )
    result.assert_outcomes(passed=2)


def test_the_marker_is_registered_for_strict_markers(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(mode="auto"))
    result = pytester.runpytest("-p", "no:cacheprovider", "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.katapult(**options)*SimulatorConfig*"])


def test_an_unknown_marker_argument_names_the_valid_ones(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.katapult(rate_limt=5)
        async def test_typo(katapult_simulator):
            pass

        @pytest.mark.katapult(rate_limt=5)
        def test_typo_without_fixture():
            pass

        @pytest.mark.katapult(rate_limit=0)
        async def test_bad_value(katapult_simulator):
            pass

        @pytest.mark.katapult(5)
        async def test_positional(katapult_simulator):
            pass
        """,
    )
    result.assert_outcomes(errors=4)
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.katapult got unknown argument(s) 'rate_limt' (did you mean "
            "'rate_limit'?); valid arguments: *client_options*interfaces*rate_limit, "
            "rate_limit_headers, rate_limit_mode, rate_limit_window*task_polls*",
            "*@pytest.mark.katapult: rate_limit must be at least 1 or None, got 0*",
            "*@pytest.mark.katapult takes keyword arguments only, got (5,)*",
        ]
    )


def test_deterministic_tasks_end_on_a_given_poll(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        from katapult_async import TaskFailedError, TaskStatus

        @pytest.mark.katapult(task_polls=3)
        async def test_completes_on_the_third_poll(
            katapult_simulator, katapult_client, katapult_interfaces
        ):
            task = await katapult_client.update_speed_profile(katapult_interfaces[0], "1gbps")
            seen = [(await katapult_client.get_task(task.id)).status for _ in range(4)]
            assert seen == [TaskStatus.RUNNING, TaskStatus.RUNNING, TaskStatus.COMPLETED,
                            TaskStatus.COMPLETED]
            assert katapult_simulator.stats.task_polls == 4

        @pytest.mark.katapult(task_polls=2)
        async def test_wait_for_task_polls_exactly(katapult_simulator, katapult_client,
                                                   katapult_interfaces):
            await katapult_client.update_speed_profile(katapult_interfaces[0], "1gbps", wait=True)
            assert katapult_simulator.stats.task_polls == 2

        @pytest.mark.katapult(task_polls=2, task_failure_rate=1.0)
        async def test_fails_on_the_second_poll_and_reverts(
            katapult_simulator, katapult_client, katapult_interfaces
        ):
            with pytest.raises(TaskFailedError):
                await katapult_client.update_speed_profile(
                    katapult_interfaces[0], "1gbps", wait=True
                )
            assert katapult_simulator.stats.task_polls == 2
            interface = katapult_simulator.interfaces[katapult_interfaces[0]]
            assert interface.speed_profile_id == katapult_simulator.profile_by_permalink("10gbps").id
        """,
    )
    result.assert_outcomes(passed=3)


def test_faults_injected_from_a_test(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        from katapult_async import ServiceUnavailableError
        from katapult_async.testing import FaultKind

        async def test_retried(katapult_simulator, katapult_client, katapult_interfaces):
            katapult_simulator.inject(FaultKind.SERVICE_UNAVAILABLE, times=2, method="PATCH")
            await katapult_client.update_speed_profile(katapult_interfaces[0], "1gbps", wait=True)
            statuses = [r.status for r in katapult_simulator.requests if r.method == "PATCH"]
            assert statuses == [503, 503, 200]

        @pytest.mark.katapult(client_options={"max_retries": 0})
        async def test_not_retried(katapult_simulator, katapult_client, katapult_interfaces):
            katapult_simulator.inject(FaultKind.SERVICE_UNAVAILABLE)
            with pytest.raises(ServiceUnavailableError):
                await katapult_client.update_speed_profile(katapult_interfaces[0], "1gbps")
        """,
    )
    result.assert_outcomes(passed=2)


def test_strict_mode(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.asyncio
        @pytest.mark.katapult(task_polls=1)
        async def test_strict(katapult_simulator, katapult_client, katapult_interfaces):
            await katapult_client.update_speed_profile(katapult_interfaces[0], "1gbps", wait=True)
            assert katapult_simulator.stats.task_polls == 1
        """,
        mode="strict",
    )
    result.assert_outcomes(passed=1)


def test_no_server_or_session_outlives_the_run(pytester: pytest.Pytester) -> None:
    ports = pytester.path / "ports.txt"
    result = run(
        pytester,
        f"""
        import pytest

        @pytest.mark.parametrize("n", range(3))
        async def test_uses_both(n, katapult_simulator, katapult_client, katapult_interfaces):
            with open({str(ports)!r}, "a") as f:
                f.write(f"{{katapult_simulator.port}}\\n")
            await katapult_client.update_speed_profile(katapult_interfaces[n], "1gbps")

        async def test_fails_but_still_cleans_up(katapult_simulator, katapult_client):
            with open({str(ports)!r}, "a") as f:
                f.write(f"{{katapult_simulator.port}}\\n")
            raise AssertionError("boom")
        """,
    )
    result.assert_outcomes(passed=3, failed=1)
    for port in map(int, ports.read_text().split()):
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
            pass
    gc.collect()
    sessions = [o for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession)]
    assert all(session.closed for session in sessions)


# pytest-asyncio's own advice to a project that has not set the option; not about our fixtures


@pytest.mark.parametrize("mode", [None, "auto"])
def test_the_documented_example_file_passes_as_written_from_a_bare_folder(
    pytester: pytest.Pytester, mode: str | None
) -> None:
    """As a new project runs it: no ini file, no conftest; pytest-asyncio's default mode (strict)
    and auto."""
    example = Path(__file__).resolve().parent.parent / "docs" / "examples" / "test_speed_job.py"
    pytester.makepyfile(test_speed_job=example.read_text())
    options = ["-o", f"asyncio_mode={mode}"] if mode is not None else []
    # (No -W error here: pytest-asyncio's own deprecation warning about the unset loop scope is
    # raised while pytest configures, where the lowest pytest we support turns it into an
    # INTERNALERROR whatever -W ignore says. A new project sees that warning too; it is theirs.)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *options)
    result.assert_outcomes(passed=5)
    assert "katapult_async" not in result.stdout.str()  # no warning of ours in the summary


def test_importing_the_plugin_imports_neither_aiohttp_nor_the_library() -> None:
    """pytest imports the plugin whenever it starts, in any project with the package installed:
    that must not load aiohttp, attrs, cattrs or the client (about 0.3 s) into every test run."""
    code = (
        "import json, sys\n"
        "import katapult_async.testing.pytest_plugin\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(json.loads(done.stdout))
    heavy = {"aiohttp", "attrs", "cattrs", "backoff", "katapult_async.client"}
    assert loaded & heavy == set()
    assert {m for m in loaded if m.startswith("katapult_async")} == {
        "katapult_async",
        "katapult_async._lazy",
        "katapult_async._version",
        "katapult_async.testing",
        "katapult_async.testing.pytest_plugin",
    }


@pytest.mark.parametrize("package", ["katapult_async", "katapult_async.testing"])
def test_every_lazily_exported_name_imports(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        module.no_such_name  # noqa: B018
    assert importlib.import_module("katapult_async").client.KatapultClient is not None
