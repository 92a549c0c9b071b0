"""The HTTP layer: serves the API and the admin routes with aiohttp.web on one socket.

It moves bytes between the socket and :class:`~._api.ApiCore`, and acts out the faults that work on
the connection rather than the response: ``DROP_CONNECTION``, ``LOST_RESPONSE`` and
``SLOW_RESPONSE``.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ._admin import ADMIN_PREFIX, AdminApi
from ._api import ApiCore, Reply
from ._faults import FaultKind


class HttpServer:
    """One listening socket for an :class:`ApiCore` and its :class:`AdminApi`.

    Args:
        core: Answers API requests.
        admin: Answers requests under ``/_sim/``.
        host: Address to listen on.
        port: Port to listen on; 0 picks a free one.
        latency: Seconds added before every API response.
    """

    def __init__(
        self, core: ApiCore, admin: AdminApi, host: str, port: int, latency: float
    ) -> None:
        self._core = core
        self._admin = admin
        self._host = host
        self._requested_port = port
        self._latency = latency
        self._runner: web.ServerRunner | None = None
        self.port: int | None = None
        """The port listened on; None until started."""

    async def start(self) -> None:
        """Start listening. Does nothing if already started."""
        if self._runner is not None:
            return
        server = web.Server(self._handle, access_log=None)
        # A short shutdown grace: a SLOW_RESPONSE in flight must not hold up close().
        runner = web.ServerRunner(server, shutdown_timeout=0.2)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def close(self) -> None:
        """Stop listening and close open connections. Safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path.startswith(ADMIN_PREFIX):
            return await self._admin.handle(request)
        raw_body = await request.read() if request.body_exists else b""
        core = self._core
        recorder = core.recorder
        call = core.begin(request.method, path, request.query, request.headers, request.remote)
        rule = call.fault
        reply: Reply
        if rule is None:
            reply = core.respond(call, raw_body, request.content_type)
        else:
            if rule.delay > 0:
                await asyncio.sleep(rule.delay)
            kind = rule.kind
            if kind is FaultKind.DROP_CONNECTION or (
                kind is FaultKind.SLOW_RESPONSE and _client_gone(request)
            ):
                recorder.record(call, None, raw_body)
                return _drop(request)
            if kind is FaultKind.LOST_RESPONSE or kind is FaultKind.SLOW_RESPONSE:
                reply = core.respond(call, raw_body, request.content_type)
                if kind is FaultKind.LOST_RESPONSE:
                    recorder.record(call, None, raw_body)
                    return _drop(request)
            else:
                reply = core.fault_reply(call, rule)
        recorder.record(call, reply.status, raw_body)
        if self._latency:
            await asyncio.sleep(self._latency)
        return web.Response(
            status=reply.status,
            body=reply.body,
            headers=reply.headers,
            content_type=reply.content_type,
        )


def _client_gone(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _drop(request: web.BaseRequest) -> web.StreamResponse:
    # Closing the transport makes aiohttp's attempt to write the returned response fail with a
    # ConnectionError, which it treats as a client that went away: no response, no log noise.
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response()
