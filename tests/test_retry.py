from __future__ import annotations

import pytest

import katapult_async as ka
from katapult_async._retry import backoff_wait, should_retry
from katapult_async.errors import error_from_response


def api(status: int, code: str | None = None) -> ka.APIError:
    if code is None:
        return error_from_response(status, b"<html>proxy</html>")
    return error_from_response(status, {"error": {"code": code}})


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (api(429, "rate_limit_reached"), True),
        (api(503, "service_unavailable"), True),
        (api(406, "task_queueing_error"), True),
        (api(502), True),
        (api(504), True),
        (api(500), True),
        (ka.TransportError("dropped"), True),
        (ka.RequestTimeoutError("slow"), True),
        (api(400, "missing_api_token"), False),
        (api(403, "invalid_api_token"), False),
        (api(403, "scope_not_granted"), False),
        (api(404, "task_not_found"), False),
        (api(422, "speed_profile_already_assigned"), False),
        (api(422, "validation_error"), False),
        (ka.InvalidResponseError("bad json", status=200), False),
        (ka.InvalidResponseError("html", status=502), True),
        (ValueError("bug"), False),
        (RuntimeError("bug"), False),
    ],
)
def test_retry_policy_table(exc: BaseException, retry: bool) -> None:
    assert should_retry(exc) is retry


def test_wait_generator_skips_waiting_after_429() -> None:
    gen = backoff_wait(base=0.5, factor=2.0, max_value=3.0)
    gen.send(None)
    assert gen.send(api(503, "service_unavailable")) == 0.5
    assert gen.send(api(429, "rate_limit_reached")) == 0.0
    assert gen.send(api(503, "service_unavailable")) == 1.0
    assert gen.send(api(503, "service_unavailable")) == 2.0
    assert gen.send(api(503, "service_unavailable")) == 3.0
