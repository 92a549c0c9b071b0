"""Security: the token stays secret, the transport is safe, responses and inputs are distrusted.

* **Token secrecy**: never in a repr, str, exception (str, repr, args, the formatted traceback, for
  every exception in the ``__cause__``/``__context__`` chain), log record (``katapult_async``,
  ``aiohttp`` and ``backoff`` at DEBUG), journal, result, or the CLI's output and files.
* **Transport**: TLS verification stays on; plain ``http://`` only to loopback (or when allowed);
  redirects are not followed, and the ``Authorization`` header never reaches the redirect target.
* **Responses**: bodies over the size cap are refused, with or without ``Content-Length``; a 2xx
  that is not JSON is an :class:`InvalidResponseError`; the parsers only raise documented errors
  on any input (hypothesis; extends ``test_errors.py`` and ``test_protocol.py``).
* **Inputs**: malformed ids and permalinks are refused before any request; query values arrive at
  the server intact, as one value.

"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gzip
import json
import logging
import os
import pickle
import random
import ssl
import string
import tempfile
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import katapult_async as ka
from katapult_async import _protocol as proto
from katapult_async import _requests as build
from katapult_async._protocol import parse_retry_after
from katapult_async.bulk._journal import JournalRecord, _Journal, loads
from katapult_async.errors import error_from_response
from katapult_async.models import Outcome
from katapult_async.testing import FaultKind, KatapultSimulator
from tests.chaos.simthread import SimulatorThread

TOKEN = "kat-SECRET-" + "q7Zx" * 6
"""The secret under test; distinctive, so that any copy of it is found."""
WRONG_TOKEN = "kat-WRONG-" + "m3Pv" * 6
"""A token the server refuses: a secret too, it must not leak either."""
SECRETS = (TOKEN, TOKEN[:-4], WRONG_TOKEN, WRONG_TOKEN[:-4])
TASK = {"id": "task_aaaaaaaaaaaaaaaa", "name": "x", "status": "pending", "progress": 0}


def leaked(text: str) -> list[str]:
    """The secrets (or their unmasked parts) that appear in ``text``."""
    return [secret for secret in SECRETS if secret in text]


def exception_texts(exc: BaseException) -> list[str]:
    """str, repr, args and the formatted traceback of ``exc`` and every exception it chains."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args), repr(vars(current))]
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
        todo += list(getattr(current, "exceptions", ()))
    return texts


def record_texts(records: list[logging.LogRecord]) -> list[str]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    texts = []
    for record in records:
        texts += [formatter.format(record), repr(record.args), repr(vars(record))]
        if record.exc_info and record.exc_info[1] is not None:
            texts += exception_texts(record.exc_info[1])
    return texts


def assert_secret(texts: list[str]) -> None:
    found = {secret for text in texts for secret in leaked(text)}
    bad = next((text for text in texts if leaked(text)), "")
    assert not found, f"secret found in: {bad[:2000]}"


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in ("katapult_async", "aiohttp", "backoff", None):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture
async def sim() -> AsyncIterator[KatapultSimulator]:
    async with KatapultSimulator(token=TOKEN, task_duration=0.05, seed=3) as simulator:
        yield simulator


def client_for(base_url: str, token: str = TOKEN, **options: Any) -> ka.KatapultClient:
    options.setdefault("max_retries", 1)
    options.setdefault("request_timeout", 2.0)
    options.setdefault("poll_interval", 0.02)
    options.setdefault("max_poll_interval", 0.05)
    return ka.KatapultClient(token, base_url=base_url, **options)


@contextlib.asynccontextmanager
async def serving(
    routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]],
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A tiny app on 127.0.0.1 answering any method at the given paths; yields (root, requests)."""
    seen: list[web.Request] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(request)
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application(middlewares=[record])
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    scheme = "https" if ssl_context is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


# --- token secrecy ------------------------------------------------------------------------------


def test_client_repr_shows_a_masked_token() -> None:
    client = ka.KatapultClient(TOKEN, base_url="https://api.example.com/core/v1")
    for text in (repr(client), str(client), f"{client}", format(client, "")):
        assert "token='****" + TOKEN[-4:] + "'" in text
    short = ka.KatapultClient("short-token-123", base_url="https://api.example.com/core/v1")
    assert "token='****'" in repr(short)
    assert "short-token" not in repr(short)
    assert_secret(
        [
            repr(client),
            repr(client.config),
            repr(client.limiter),
            repr(client.rate_limit),
            repr(client.poller),
            repr(client.poller.stats),
        ]
    )
    for copy in (pickle.dumps, lambda c: __import__("copy").copy(c)):
        with pytest.raises(TypeError) as info:
            copy(client)
        assert_secret(exception_texts(info.value))


async def test_configuration_errors_never_echo_the_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Surrounding whitespace is stripped; anything inside is refused, without echoing it.
    bad_tokens = [TOKEN[:10] + " " + TOKEN[10:], TOKEN + "\x00", "\x1b" + TOKEN, TOKEN + "\u200b"]
    for bad in bad_tokens:
        with pytest.raises(ka.ConfigurationError) as info:
            ka.KatapultClient(bad)
        assert_secret(exception_texts(info.value))
    monkeypatch.setenv("KATAPULT_API_TOKEN", TOKEN)
    with pytest.raises(ka.ConfigurationError) as info:
        ka.KatapultClient(base_url=f"http://user:{TOKEN}@api.example.com/core/v1")
    assert_secret(exception_texts(info.value))
    with pytest.raises(ka.ConfigurationError) as info:
        ka.KatapultClient(base_url="http://api.example.com/core/v1")
    assert_secret(exception_texts(info.value))


async def test_no_secret_in_errors_logs_or_reprs_under_every_fault(
    sim: KatapultSimulator, debug_logs: pytest.LogCaptureFixture
) -> None:
    ids = sim.add_interfaces(12)
    texts: list[str] = []

    async def expect_error(call: Awaitable[Any]) -> None:
        with pytest.raises(Exception) as info:
            await call
        texts.extend(exception_texts(info.value))

    async with client_for(sim.base_url, request_timeout=0.3) as client:
        texts.append(repr(client))
        for kind, extra in [
            (FaultKind.SERVICE_UNAVAILABLE, {}),
            (FaultKind.DROP_CONNECTION, {}),
            (FaultKind.LOST_RESPONSE, {}),
            (FaultKind.HTML_502, {}),
            (FaultKind.SLOW_RESPONSE, {"delay": 0.5}),
            (FaultKind.RATE_LIMIT, {"retry_after": 0.01}),
            (FaultKind.TASK_QUEUEING_ERROR, {}),
        ]:
            sim.inject(kind, times=2, **extra)
            await expect_error(client.update_speed_profile(ids.pop(), "1gbps"))
        sim.inject(FaultKind.TASK_NOT_FOUND, times=1)
        await expect_error(client.get_task("task_missing"))
        await expect_error(client.update_speed_profile("vmnet_doesnotexist00", "1gbps"))
        await expect_error(client.update_speed_profile(ids.pop(), "no-such-profile"))
        texts += [repr(client.rate_limit), repr(client.poller.stats)]
    async with client_for(sim.base_url, token=WRONG_TOKEN) as wrong:
        await expect_error(wrong.get_task("task_x"))
    async with KatapultSimulator(token=TOKEN, task_duration=0.05, task_failure_rate=1.0) as failing:
        (iface,) = failing.add_interfaces(1)
        async with client_for(failing.base_url) as client:
            await expect_error(client.update_speed_profile(iface, "1gbps", wait=True))
    async with KatapultSimulator(token=TOKEN, task_never_finish_rate=1.0) as stuck:
        (iface,) = stuck.add_interfaces(1)
        async with client_for(stuck.base_url) as client:
            await expect_error(
                client.update_speed_profile(iface, "1gbps", wait=True, task_timeout=0.1)
            )
    # Nothing listens on a port just closed: a connection refused.
    async with serving({}) as (root, _):
        closed = root
    async with client_for(closed + "/core/v1") as client:
        await expect_error(client.get_task("task_x"))
    texts += record_texts(debug_logs.records)
    assert any("retrying" in text for text in texts), "the retry log lines were not captured"
    assert_secret(texts)


async def test_no_secret_in_bulk_results_or_journal(
    sim: KatapultSimulator, debug_logs: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    ids = sim.add_interfaces(20)
    sim.inject(FaultKind.DROP_CONNECTION, times=3)
    sim.inject(FaultKind.LOST_RESPONSE, times=2, method="PATCH")
    sim.inject(FaultKind.SERVICE_UNAVAILABLE, times=None, probability=0.2)
    journal = tmp_path / "bulk.journal.jsonl"
    pairs: list[Any] = [(i, "1gbps") for i in ids]
    pairs += [("vmnet_doesnotexist00", "1gbps"), ("bad id", "1gbps"), (ids[0], "10mbps")]
    async with client_for(sim.base_url, request_timeout=0.5) as client:
        results = [r async for r in client.bulk_update_speed_profiles(pairs, journal=journal)]
    assert sorted(r.index for r in results) == list(range(len(pairs)))
    assert {r.outcome for r in results} >= {Outcome.COMPLETED, Outcome.ERROR}
    texts = [repr(r) for r in results] + [str(r) for r in results]
    for result in results:
        if result.error is not None:
            texts += exception_texts(result.error)
    texts += record_texts(debug_logs.records)
    texts.append(journal.read_text())
    assert_secret(texts)


def test_no_secret_in_cli_bulk_output_or_files(tmp_path: Path) -> None:
    cli = pytest.importorskip("katapult_async.cli", reason="the CLI module is not there yet")
    from click.testing import CliRunner

    with SimulatorThread(token=TOKEN, task_duration=0.05, seed=9) as sim:
        ids = sim.add_interfaces(8)
        sim.inject(FaultKind.DROP_CONNECTION, times=2)
        sim.inject(FaultKind.SERVICE_UNAVAILABLE, times=2)
        source = tmp_path / "items.csv"
        source.write_text(
            "interface,speed_profile\n"
            + "".join(f"{i},1gbps\n" for i in ids)
            + "vmnet_doesnotexist00,1gbps\nbad id,1gbps\n"
        )
        output = tmp_path / "results.jsonl"
        journal = tmp_path / "run.journal.jsonl"
        argv = ["-vv", "--base-url", sim.base_url, "bulk", str(source)]
        argv += ["--output", str(output), "--journal", str(journal), "--concurrency", "16"]
        result = CliRunner().invoke(cli.main, argv, env={"KATAPULT_API_TOKEN": TOKEN})
        assert result.exit_code == 1, result.output  # some items failed, on purpose
        texts = [result.output, output.read_text(), journal.read_text()]
        with contextlib.suppress(ValueError):
            texts.append(result.stderr)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            texts += exception_texts(result.exception)
        assert len(output.read_text().splitlines()) == len(ids) + 2
        assert_secret(texts)
        # The wrong token, from a file, under -vv: refused by the API, still never shown.
        token_file = tmp_path / "token"
        token_file.write_text(WRONG_TOKEN + "\n")
        argv = ["-vv", "--token-file", str(token_file), "--base-url", sim.base_url]
        argv += ["update", ids[0], "1gbps"]
        result = CliRunner().invoke(cli.main, argv, env={"KATAPULT_API_TOKEN": None})
        assert result.exit_code == 1
        assert "invalid_api_token" in result.output
        assert_secret([result.output])


async def test_a_malformed_http_response_does_not_leak_the_token_through_the_cause() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 abc Nonsense\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with client_for(f"http://127.0.0.1:{port}/core/v1", max_retries=0) as client:
            with pytest.raises(ka.TransportError) as info:
                await client.get_task("task_x")
    finally:
        server.close()
        await server.wait_closed()
    assert_secret(exception_texts(info.value))


# --- transport ----------------------------------------------------------------------------------


def self_signed_context() -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    directory = tempfile.mkdtemp()
    cert_path, key_path = Path(directory, "cert.pem"), Path(directory, "key.pem")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    for path in (cert_path, key_path):
        path.unlink()
    os.rmdir(directory)
    return context


async def answer_task(request: web.Request) -> web.Response:
    return web.json_response({"task": TASK})


async def test_tls_certificates_are_verified_by_default() -> None:
    context = self_signed_context()
    routes = {"/core/v1/tasks/task": answer_task}
    async with serving(routes, ssl_context=context) as (root, seen):
        client = client_for(root + "/core/v1", max_retries=0)
        async with client:
            with pytest.raises(ka.TransportError) as info:
                await client.get_task("task_x")
    assert "certificate" in str(info.value).lower()
    assert not seen, "a request (with the token) got through an unverified TLS connection"


async def test_requests_never_turn_tls_verification_off(
    sim: KatapultSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    original = aiohttp.ClientSession._request

    async def spy(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(aiohttp.ClientSession, "_request", spy)
    (iface,) = sim.add_interfaces(1)
    async with client_for(sim.base_url) as client:
        await client.update_speed_profile(iface, "1gbps", wait=True)
    async with aiohttp.ClientSession() as session, client_for(sim.base_url, session=session) as c:
        await c.get_task((await c.update_speed_profile(iface, "10gbps")).id)
    assert len(calls) >= 4
    for kwargs in calls:
        assert kwargs.get("ssl", True) is not False
        assert kwargs.get("verify_ssl", True) is not False
        assert "fingerprint" not in kwargs
        assert kwargs.get("allow_redirects") is False


@pytest.mark.parametrize(
    "base_url",
    [
        "http://api.katapult.io/core/v1",
        "http://10.0.0.1/core/v1",
        "http://192.168.1.10:8080/core/v1",
        "http://127.0.0.1.nip.io/core/v1",
        "http://0x7f000001/core/v1",
        "http://2130706433/core/v1",
        "http://[::ffff:8.8.8.8]/core/v1",
        "ftp://127.0.0.1/core/v1",
        "file:///etc/passwd",
        "//api.katapult.io/core/v1",
        "api.katapult.io/core/v1",
        f"https://x:{TOKEN}@api.katapult.io/core/v1",
    ],
)
def test_insecure_or_odd_base_urls_are_refused(base_url: str) -> None:
    with pytest.raises(ka.ConfigurationError) as info:
        ka.KatapultClient(TOKEN, base_url=base_url)
    assert_secret(exception_texts(info.value))


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:8080/core/v1",
        "http://127.9.9.9/core/v1",
        "http://[::1]:8080/core/v1",
        "http://localhost:8080/core/v1",
        "https://api.katapult.io/core/v1",
    ],
)
def test_loopback_http_and_https_are_accepted(base_url: str) -> None:
    ka.KatapultClient(TOKEN, base_url=base_url)


def test_insecure_http_only_when_allowed() -> None:
    url = "http://api.katapult.io/core/v1"
    client = ka.KatapultClient(TOKEN, base_url=url, allow_insecure_http=True)
    assert client.config.allow_insecure_http


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("own_session", [True, False], ids=["own-session", "callers-session"])
async def test_redirects_are_not_followed_and_the_token_stays_home(
    status: int, own_session: bool
) -> None:
    async with serving({"/{tail:.*}": answer_task}) as (elsewhere, stolen):

        async def redirect(request: web.Request) -> web.Response:
            location = elsewhere + request.path_qs
            return web.Response(status=status, headers={"Location": location})

        async with (
            serving({"/{tail:.*}": redirect}) as (root, seen),
            contextlib.AsyncExitStack() as stack,
        ):
            session = None
            if not own_session:
                session = await stack.enter_async_context(aiohttp.ClientSession())
            client = client_for(root + "/core/v1", max_retries=3, session=session)
            await stack.enter_async_context(client)
            with pytest.raises(ka.InvalidResponseError) as get_info:
                await client.get_task("task_x")
            with pytest.raises(ka.InvalidResponseError) as patch_info:
                await client.update_speed_profile("vmnet_aaaaaaaaaaaaaaaa", "1gbps")
    for info in (get_info, patch_info):
        assert info.value.status == status
        assert "redirect" in str(info.value)
    assert len(seen) == 2, "a redirect was retried"
    assert all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in seen)
    assert not stolen, [dict(r.headers) for r in stolen]


# --- responses ----------------------------------------------------------------------------------

CAP = 1024 * 1024


def task_body(size: int) -> bytes:
    """A valid task JSON body of exactly ``size`` bytes."""
    head = json.dumps({"task": {**TASK, "pad": ""}}).encode()
    return head.replace(b'"pad": ""', b'"pad": "' + b"x" * (size - len(head)) + b'"')


async def sized(request: web.Request) -> web.StreamResponse:
    """Answers by the task id asked for: ``<size>``, ``chunked-<size>``, ``endless``, ``gzip-<size>``."""
    what = request.query["task[id]"]
    if what.startswith("gzip-"):
        raw = task_body(int(what[5:]))
        return web.Response(
            body=gzip.compress(raw),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
    if what.startswith("error-"):
        return web.Response(status=503, body=b"x" * int(what[6:]), content_type="text/plain")
    if what.startswith("chunked-") or what == "endless":
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        body = task_body(int(what[8:])) if what != "endless" else None
        with contextlib.suppress(ConnectionError):
            if body is not None:
                for start in range(0, len(body), 65536):
                    await response.write(body[start : start + 65536])
            else:
                for _ in range(10_000):  # 640 MiB: far more than any cap; the client hangs up
                    await response.write(b" " * 65536)
        return response
    return web.Response(body=task_body(int(what)), content_type="application/json")


@pytest.fixture
async def sizes() -> AsyncIterator[str]:
    async with serving({"/core/v1/tasks/task": sized}) as (root, _):
        yield root + "/core/v1"


@pytest.mark.parametrize("form", ["{}", "chunked-{}"])
async def test_bodies_over_the_cap_are_refused(sizes: str, form: str) -> None:
    async with client_for(sizes) as client:
        assert (await client.get_task(form.format(CAP))).id == TASK["id"]
        with pytest.raises(ka.InvalidResponseError, match="larger than the 1048576-byte cap"):
            await client.get_task(form.format(CAP + 1))
    async with client_for(sizes, max_response_size=4096) as small:
        assert (await small.get_task(form.format(4096))).id == TASK["id"]
        with pytest.raises(ka.InvalidResponseError, match="4096-byte cap"):
            await small.get_task(form.format(4097))


async def test_an_endless_body_is_cut_off_at_the_cap(sizes: str) -> None:
    async with client_for(sizes, max_response_size=4096, max_retries=0) as client:
        with pytest.raises(ka.InvalidResponseError, match="cap"):
            await asyncio.wait_for(client.get_task("endless"), 5)


async def test_an_oversized_error_body_is_refused_and_retried_like_a_5xx(sizes: str) -> None:
    async with client_for(sizes, max_response_size=4096, max_retries=1) as client:
        with pytest.raises(ka.InvalidResponseError, match="cap") as info:
            await client.get_task(f"error-{10 * 4096}")
    assert info.value.status == 503
    assert info.value.attempts == 2


async def test_a_compressed_body_is_capped_by_its_decompressed_size(sizes: str) -> None:
    async with client_for(sizes, max_retries=0) as client:
        with pytest.raises(ka.InvalidResponseError, match="cap"):
            await client.get_task(f"gzip-{16 * CAP}")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/html", b"<html><body>maintenance</body></html>"),
        ("text/plain", json.dumps({"task": TASK}).encode()),
        ("application/octet-stream", json.dumps({"task": TASK}).encode()),
        ("application/jsonp", json.dumps({"task": TASK}).encode()),
        ("application/json", b"{not json"),
        ("application/json", b""),
        ("application/json", b"\xff\xfe\x00garbage"),
        ("application/json", b"[]"),
        ("application/json", b'{"task": {"id": 5}}'),
        ("application/json", b"[" * 100_000 + b"]" * 100_000),
    ],
)
async def test_a_2xx_that_is_not_a_json_task_is_an_invalid_response(
    content_type: str, body: bytes
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": content_type})

    async with serving({"/{tail:.*}": answer}) as (root, seen):
        client = client_for(root + "/core/v1", max_retries=3)
        async with client:
            with pytest.raises(ka.InvalidResponseError) as info:
                await client.get_task("task_x")
            with pytest.raises(ka.InvalidResponseError):
                await client.update_speed_profile("vmnet_aaaaaaaaaaaaaaaa", "1gbps")
    assert info.value.status == 200
    assert len(seen) == 2, "a 2xx that cannot be understood was retried"


async def test_json_media_types_with_parameters_or_suffix_are_accepted() -> None:
    async def answer(request: web.Request) -> web.Response:
        content_type = request.query["task[id]"].replace("_", "/").replace("-", "+")
        return web.Response(
            body=json.dumps({"task": TASK}).encode(),
            headers={"Content-Type": content_type + "; charset=utf-8"},
        )

    async with serving({"/{tail:.*}": answer}) as (root, _):
        client = client_for(root + "/core/v1")
        async with client:
            for media in ("application_json", "application_vnd.katapult-json", "APPLICATION_JSON"):
                assert (await client.get_task(media)).id == TASK["id"]


async def test_a_huge_retry_after_does_not_stall_the_client() -> None:
    # The server's window bounds any wait a rate limit can need; a longer Retry-After is either
    # a broken server or a hostile one. A client that waits a window and asks again loses nothing.
    async with KatapultSimulator(token=TOKEN, rate_limit=100, rate_limit_window=0.5) as sim:
        sim.inject(FaultKind.RATE_LIMIT, times=1, retry_after=3600)
        async with client_for(sim.base_url, rate_limit_window=0.5, max_retries=2) as client:
            with pytest.raises(ka.TaskNotFoundError):
                await asyncio.wait_for(client.get_task("task_x"), 2)


# --- inputs -------------------------------------------------------------------------------------

BAD_IDENTIFIERS: list[Any] = [
    "",
    " ",
    "vmnet_a b",
    "vmnet_\ta",
    "vmnet_a\n",
    "\rvmnet_a",
    "vmnet_\x00",
    "vmnet_\x1b[31m",
    "vmnet_\x7f",
    "vmnet_\x85",
    "vmnet_\u00a0a",
    "vmnet_\u200b",
    "vmnet_\u2028",
    "vmnet_\u3000",
    "vmnet_\ufeff",
    "vmnet_\ud800",
    "x" * 129,
    None,
    123,
    b"vmnet_aaaa",
    ["vmnet_a"],
]


@pytest.mark.parametrize("bad", BAD_IDENTIFIERS, ids=[repr(b)[:20] for b in BAD_IDENTIFIERS])
async def test_malformed_ids_are_refused_before_any_request(
    sim: KatapultSimulator, bad: Any
) -> None:
    (iface,) = sim.add_interfaces(1)
    async with client_for(sim.base_url) as client:
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: client.update_speed_profile(bad, "1gbps"),
            lambda: client.update_speed_profile(iface, bad),
            lambda: client.get_task(bad),
            lambda: client.wait_for_task(bad),
            lambda: client.get_network_interface(bad),
            lambda: client.list_network_interfaces(virtual_machine_id=bad),
            lambda: client.list_network_interfaces(fqdn=bad),
            lambda: client.list_speed_profiles(organization_id=bad),
            lambda: client.list_speed_profiles(sub_domain=bad),
        ]
        for call in calls:
            with pytest.raises((ValueError, TypeError)):
                await call()
        results = [
            r
            async for r in client.bulk_update_speed_profiles(
                [(bad, "1gbps"), (iface, bad), (iface, "1gbps")]
            )
        ]
    assert sorted(r.outcome for r in results if r.index < 2) == [Outcome.ERROR, Outcome.ERROR]
    # Only the one good pair was sent, then its task polled.
    patches = [r for r in sim.requests if r.method == "PATCH"]
    assert [r.body["virtual_machine_network_interface"]["id"] for r in patches] == [iface]
    task_ids = {r.task.id for r in results if r.task is not None}
    polls = [r for r in sim.requests if r.method == "GET"]
    assert all(dict(r.query) == {"task[id]": t} for r in polls for t in task_ids)


async def test_the_longest_allowed_id_is_sent(sim: KatapultSimulator) -> None:
    async with client_for(sim.base_url) as client:
        with pytest.raises(ka.TaskNotFoundError):
            await client.get_task("t" * 128)
    assert sim.requests[-1].query == {"task[id]": "t" * 128}


TRICKY = [
    "task_a&task[id]=task_b",
    "task_a#fragment",
    "task_%41%26",
    "task_a=b",
    "task_a+b",
    "task_a;b=c",
    "task_a?b",
    "task_../../admin",
    "task_[id]",
    "task_'\"<>`{}|\\^",
    "task_ü€😀",
    "%00",
    "%zz",
]


async def test_query_values_arrive_intact_as_one_value(sim: KatapultSimulator) -> None:
    rng = random.Random(2024)
    alphabet = string.ascii_letters + string.digits + string.punctuation + "éß€😀ḁ"
    values = TRICKY + ["".join(rng.choices(alphabet, k=rng.randint(1, 40))) for _ in range(150)]
    async with client_for(sim.base_url) as client:
        for value in values:
            with pytest.raises(ka.TaskNotFoundError):
                await client.get_task(value)
            request = sim.requests[-1]
            assert request.path == "/core/v1/tasks/task", value
            assert dict(request.query) == {"task[id]": value}
        # Ids in JSON bodies arrive intact too.
        for value in TRICKY:
            with pytest.raises(ka.NetworkInterfaceNotFoundError):
                await client.update_speed_profile("vmnet_" + value, "1gbps")
            body = sim.requests[-1].body
            assert body["virtual_machine_network_interface"] == {"id": "vmnet_" + value}


# --- parsers on any input (extends test_errors.py / test_protocol.py) ---------------------------

any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | any_text
)
json_like = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["error", "code", "description", "detail", "task", "id", "status"])
            | st.sampled_from(["event", "interface_id", "speed_profile", "outcome", "task_id"])
            | any_text,
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
task_fields = st.fixed_dictionaries(
    {},
    optional={
        "id": json_scalars,
        "name": json_scalars,
        "status": st.sampled_from(["pending", "running", "completed", "failed"]) | json_scalars,
        "created_at": json_scalars,
        "started_at": json_scalars,
        "finished_at": json_scalars,
        "progress": json_scalars,
    },
)


@given(status=st.integers(100, 599), body=json_like, reason=st.none() | any_text)
def test_error_parser_on_decoded_values_with_any_characters(
    status: int, body: Any, reason: str | None
) -> None:
    error = error_from_response(status, body, request_id="rid", reason=reason)
    assert isinstance(error, ka.APIError)
    assert error.status == status
    str(error), repr(error)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    attributes = ("status", "code", "description", "detail", "request_id")
    assert [getattr(copy, a) for a in attributes] == [getattr(error, a) for a in attributes]


def test_a_pickled_api_error_keeps_its_message() -> None:
    error = error_from_response(404, {"error": {"code": "task_not_found"}}, request_id="rid")
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


@given(body=json_like, encoding=st.sampled_from(["utf-8", "utf-16", "utf-32", "utf-8-sig"]))
def test_error_parser_on_json_in_any_unicode_encoding(body: Any, encoding: str) -> None:
    raw = json.dumps(body).encode(encoding)
    assert isinstance(error_from_response(500, raw), ka.APIError)


@given(task=task_fields)
def test_task_parser_on_any_field_values(task: dict[str, Any]) -> None:
    try:
        decoded = proto.decode_task({"task": task})
    except ka.InvalidResponseError:
        return
    assert isinstance(decoded.status, ka.TaskStatus)
    assert isinstance(decoded.progress, int)


@pytest.mark.parametrize("task_id", ["", "a b", "task_\x00", "t" * 129])
def test_a_decoded_task_can_always_be_polled(task_id: str) -> None:
    # Plain examples, not hypothesis: a failing @given test trips hypothesis' report hook.
    try:
        decoded = proto.decode_task({"task": {"id": task_id}})
    except ka.InvalidResponseError:
        return
    build.get_task_request(decoded.id)


@given(content_type=st.none() | any_text, raw=st.binary(max_size=200))
def test_success_decoder_on_any_content_type_and_bytes(
    content_type: str | None, raw: bytes
) -> None:
    with contextlib.suppress(ka.InvalidResponseError):
        proto.decode_task(proto.decode_success(200, content_type, raw, None))


@given(
    headers=st.dictionaries(
        st.sampled_from(
            ["X-Request-Id", "X-Ratelimit-Permitted", "X-Ratelimit-Remaining", "Retry-After"]
        ),
        any_text | st.integers().map(str) | st.just("9" * 5000),
    )
)
def test_response_headers_never_break_the_client(headers: dict[str, str]) -> None:
    meta = proto.read_meta(200, headers)
    for count in (meta.permitted, meta.remaining):
        assert count is None or (isinstance(count, int) and count >= 0)
    delay = parse_retry_after(meta.retry_after)
    assert delay is None or (delay >= 0 and delay != float("inf"))


@given(value=any_text | st.from_regex(r"\d{1,400}(\.\d+)?", fullmatch=True))
def test_retry_after_parser_on_any_text(value: str) -> None:
    delay = parse_retry_after(value)
    assert delay is None or 0 <= delay < float("inf")


journal_records = st.fixed_dictionaries(
    {},
    optional={
        "event": st.sampled_from(["submitted", "result"]) | json_scalars,
        "index": json_scalars,
        "interface_id": st.just("vmnet_aaaaaaaaaaaaaaaa") | json_like,
        "speed_profile": st.just("1gbps") | json_like,
        "outcome": st.sampled_from([o.value for o in Outcome]) | json_like,
        "task_id": st.just("task_aaaaaaaaaaaaaaaa") | json_like,
    },
).map(lambda record: json.dumps(record).encode())


@given(
    raw=st.binary(max_size=300) | json_like.map(lambda v: json.dumps(v).encode()) | journal_records
)
def test_journal_lines_of_any_content_are_parsed_or_skipped(raw: bytes) -> None:
    record = loads(raw)
    assert record is None or isinstance(record, JournalRecord)


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(st.binary(max_size=80) | journal_records, max_size=8))
def test_a_journal_file_of_any_content_loads(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory, "j.jsonl")
        path.write_bytes(b"\n".join(lines))
        journal = _Journal(str(path))
        journal.close()
        assert all(isinstance(k, str) for k in journal.resumable)
