"""The simulator as a separate process, and its ``/_sim/*`` admin endpoints.

Scenarios that measure the client's CPU or memory run the simulator in its own process
(``python -m katapult_async.testing ...``), so that only the client's work shows in the
benchmark process's ``process_time`` and ``ru_maxrss``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from typing import IO, Any

import aiohttp

__all__ = ["SimProcess", "WorkerProcess", "running_simulators"]

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 5.0


class SimProcess:
    """One ``python -m katapult_async.testing`` process and a session for its admin endpoints.

    Args:
        args: Command-line options for the simulator (``--rate-limit``, ``--window``, ...).
    """

    def __init__(self, args: Sequence[str]) -> None:
        self.args = list(args)
        self.base_url = ""
        self.admin_url = ""
        self.token = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr: IO[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def pid(self) -> int:
        """The simulator's process id."""
        assert self._proc is not None
        return self._proc.pid

    async def start(self) -> None:
        """Start the process and read its JSON line (base_url, admin_url, token)."""
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "katapult_async.testing",
            "--host",
            "127.0.0.1",
            *self.args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
        )
        assert self._proc.stdout is not None
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), _START_TIMEOUT)
        except asyncio.TimeoutError:
            line = b""
        if not line:
            await self.stop()
            raise RuntimeError(f"the simulator did not start: {self._stderr_text()}")
        info = json.loads(line)
        self.base_url = info["base_url"]
        self.admin_url = info["admin_url"]
        self.token = info["token"]
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=4),
            timeout=aiohttp.ClientTimeout(total=120),
        )

    async def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after a few seconds)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), _STOP_TIMEOUT)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-2000:]

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        """Call an admin endpoint (``path`` below ``/_sim``) and return its decoded JSON."""
        assert self._session is not None
        async with self._session.request(method, self.admin_url + path, json=body) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                raise RuntimeError(f"admin {method} {path}: {resp.status} {data}")
            return data

    async def state(self) -> dict[str, Any]:
        """``GET /_sim/state``: stats, interfaces' profiles, tasks with their times."""
        data: dict[str, Any] = await self.admin("GET", "/state")
        return data

    async def stats(self) -> dict[str, Any]:
        """The ``stats`` part of :meth:`state`."""
        stats: dict[str, Any] = (await self.state())["stats"]
        return stats

    async def reset_stats(self) -> None:
        """``POST /_sim/reset_stats`` (rate-limit counts are kept)."""
        await self.admin("POST", "/reset_stats")

    async def add_interfaces(self, count: int) -> list[str]:
        """Create ``count`` interfaces on the default VM and return their ids."""
        data = await self.admin("POST", "/interfaces", {"count": count})
        ids: list[str] = data["interfaces"]
        return ids

    async def interfaces(self) -> list[str]:
        """The ids of the interfaces on the default VM."""
        data = await self.admin("GET", "/interfaces")
        ids: list[str] = data["interfaces"]
        return ids

    async def requests(self) -> list[dict[str, Any]]:
        """The request log (empty when started with ``--no-record``)."""
        data = await self.admin("GET", "/requests")
        log: list[dict[str, Any]] = data["requests"]
        return log

    async def clear_requests(self) -> None:
        """Empty the request log."""
        await self.admin("DELETE", "/requests")

    async def inject(self, **rule: Any) -> None:
        """``POST /_sim/faults`` with ``KatapultSimulator.inject``'s arguments."""
        await self.admin("POST", "/faults", rule)

    async def clear_faults(self) -> None:
        """Drop every queued fault."""
        await self.admin("DELETE", "/faults")


@contextlib.asynccontextmanager
async def running_simulators(*arg_lists: Sequence[str]) -> AsyncIterator[list[SimProcess]]:
    """Start one simulator per argument list, in parallel, and stop them all on exit."""
    sims = [SimProcess(args) for args in arg_lists]
    try:
        await asyncio.gather(*(sim.start() for sim in sims))
        yield sims
    finally:
        await asyncio.gather(*(sim.stop() for sim in sims), return_exceptions=True)


class WorkerProcess:
    """A ``python -m benchmarks.worker`` process: one bulk run in a fresh process.

    Args:
        args: The worker's command-line options.
        sync_start: Hold the run until :meth:`go` (to start two clients together).
    """

    def __init__(self, args: Sequence[str], *, sync_start: bool = False) -> None:
        self.args = [*args, "--sync-start"] if sync_start else list(args)
        self.ready: dict[str, Any] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr: IO[bytes] | None = None

    async def start(self) -> None:
        """Start the process and wait until it says it is ready."""
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in finish())
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.worker",
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
        )
        self.ready = await self._line(_START_TIMEOUT)

    def go(self) -> None:
        """Let a ``sync_start`` worker begin."""
        assert self._proc is not None
        assert self._proc.stdin is not None
        self._proc.stdin.write(b"go\n")

    async def finish(self, timeout: float = 600.0) -> dict[str, Any]:
        """Wait for the worker's result line and for it to exit."""
        assert self._proc is not None
        try:
            result = await self._line(timeout)
            await asyncio.wait_for(self._proc.wait(), _STOP_TIMEOUT)
            return result
        finally:
            await self.kill()

    async def kill(self) -> None:
        """End the process if it is still running."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    async def _line(self, timeout: float) -> dict[str, Any]:
        assert self._proc is not None
        assert self._proc.stdout is not None
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            line = b""
        if not line:
            stderr = ""
            if self._stderr is not None:
                self._stderr.seek(0)
                stderr = self._stderr.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"the worker stopped without a result: {stderr}")
        data: dict[str, Any] = json.loads(line)
        return data
