from __future__ import annotations

import json
import pickle
import pickletools
import traceback
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import katapult_async as ka
from katapult_async import errors
from katapult_async.errors import ERROR_CLASSES, error_from_response

from .conftest import FIXTURES, load_fixture

TABLE: list[tuple[str, int, type[ka.APIError], dict[str, Any], str | None, Any]] = [
    ("missing_api_token", 400, ka.MissingAPITokenError, {}, None, None),
    (
        "unauthorized_network_for_api_token",
        403,
        ka.UnauthorizedNetworkForAPITokenError,
        {"ip_address": "203.0.113.9"},
        "ip_address",
        "203.0.113.9",
    ),
    ("invalid_api_token", 403, ka.InvalidAPITokenError, {}, None, None),
    ("invalid_capabilities_token", 403, ka.InvalidCapabilitiesTokenError, {}, None, None),
    ("organization_not_found", 404, ka.OrganizationNotFoundError, {}, None, None),
    ("organization_suspended", 403, ka.OrganizationSuspendedError, {}, None, None),
    ("organization_not_activated", 403, ka.OrganizationNotActivatedError, {}, None, None),
    ("virtual_machine_not_found", 404, ka.VirtualMachineNotFoundError, {}, None, None),
    (
        "object_in_trash",
        406,
        ka.ObjectInTrashError,
        {"trash_object": {"id": "trsh_1", "keep_until": 1700000000}},
        "trash_object",
        {"id": "trsh_1", "keep_until": 1700000000},
    ),
    (
        "scope_not_granted",
        403,
        ka.ScopeNotGrantedError,
        {"scopes": ["virtual_machines"]},
        "scopes",
        ("virtual_machines",),
    ),
    (
        "virtual_machine_network_interface_not_found",
        404,
        ka.NetworkInterfaceNotFoundError,
        {},
        None,
        None,
    ),
    ("network_speed_profile_not_found", 404, ka.SpeedProfileNotFoundError, {}, None, None),
    ("task_not_found", 404, ka.TaskNotFoundError, {}, None, None),
    (
        "task_queueing_error",
        406,
        ka.TaskQueueingError,
        {"details": "queue full"},
        "details",
        "queue full",
    ),
    (
        "speed_profile_already_assigned",
        422,
        ka.SpeedProfileAlreadyAssignedError,
        {},
        "after_lost_response",
        False,
    ),
    (
        "rate_limit_reached",
        429,
        ka.RateLimitReachedError,
        {"total_permitted": 1000},
        "total_permitted",
        1000,
    ),
    ("service_unavailable", 503, ka.ServiceUnavailableError, {}, None, None),
]


@pytest.mark.parametrize("wrapped", [True, False], ids=["wrapped", "flat"])
@pytest.mark.parametrize(("code", "status", "cls", "detail", "attr", "value"), TABLE)
def test_every_code_maps_to_its_class_in_both_envelopes(
    code: str,
    status: int,
    cls: type[ka.APIError],
    detail: dict[str, Any],
    attr: str | None,
    value: Any,
    wrapped: bool,
) -> None:
    inner = {"code": code, "description": "Something happened", "detail": detail}
    body = {"error": inner} if wrapped else inner
    err = error_from_response(status, json.dumps(body).encode(), request_id="req-1")
    assert type(err) is cls
    assert err.status == status
    assert err.code == code
    assert err.description == "Something happened"
    assert dict(err.detail) == detail
    assert err.request_id == "req-1"
    assert str(err) == f"{code}: Something happened (HTTP {status}, request id req-1)"
    if attr is not None:
        assert getattr(err, attr) == value


def test_table_covers_the_issue_codes() -> None:
    assert set(ERROR_CLASSES) == {row[0] for row in TABLE}


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*_error.json")), ids=lambda p: p.stem)
def test_live_fixtures_parse(path: Any) -> None:
    body = path.read_bytes()
    err = error_from_response(404, body)
    data = json.loads(body)["error"]
    assert err.code == data["code"]
    assert err.description == data["description"]
    expected = ERROR_CLASSES.get(data["code"])
    if expected is not None:
        assert type(err) is expected
    else:
        assert isinstance(err, ka.APIError)


def test_unknown_code_is_plain_api_error_and_not_found_codes_are_not_found() -> None:
    err = error_from_response(422, load_fixture("validation_error.json"))
    assert type(err) is ka.APIError
    assert err.detail["errors"][0] == "Failed reticulating 3-dimensional splines"
    other = error_from_response(404, {"error": {"code": "trash_object_not_found"}})
    assert type(other) is ka.NotFoundError


def test_html_502_from_a_proxy() -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    err = error_from_response(502, page, reason="Bad Gateway", request_id=None)
    assert type(err) is ka.APIError
    assert err.status == 502
    assert err.code is None
    assert "502 Bad Gateway" in str(err)
    assert "non-JSON" in str(err)


def test_empty_and_shapeless_bodies() -> None:
    assert "empty body" in str(error_from_response(500, b""))
    assert "no error code" in str(error_from_response(500, b"[1, 2]"))
    assert "no error code" in str(error_from_response(500, {"error": "boom"}))


def test_api_errors_pickle_round_trip() -> None:
    err = error_from_response(
        429, {"error": {"code": "rate_limit_reached", "detail": {"total_permitted": 5}}}
    )
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is ka.RateLimitReachedError
    assert copy.total_permitted == 5


def test_errors_are_named_from_katapult_async_errors_wherever_defined() -> None:
    # What users see in tracebacks, in a span's error.type and in pickles: the public path.
    for name in errors.__all__:
        assert getattr(errors, name).__module__ == "katapult_async.errors", name
    halted = ka.RolloutHaltedError("canary failed", failures=1, finished=1)
    shown = traceback.format_exception_only(type(halted), halted)[-1]
    assert shown.startswith("katapult_async.errors.RolloutHaltedError: rollout halted")
    err = error_from_response(429, {"error": {"code": "rate_limit_reached"}})
    globals_named = {
        str(arg).split()[0]
        for op, arg, _ in pickletools.genops(pickle.dumps(err, protocol=2))
        if op.name == "GLOBAL"
    }
    assert globals_named == {"katapult_async.errors"}


def test_every_error_class_is_exported_and_drawn_in_the_tree() -> None:
    classes = [
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, ka.KatapultError)
    ]
    assert "DuplicateItemError" in classes
    assert "UnconfirmedUpdateError" in classes
    for name in classes:
        assert name in errors.__all__, name
        assert name in (errors.__doc__ or "").split(), name


def test_stdlib_bases() -> None:
    assert issubclass(ka.TransportError, ConnectionError)
    assert issubclass(ka.RequestTimeoutError, TimeoutError)
    assert issubclass(ka.TaskTimeoutError, TimeoutError)
    assert issubclass(ka.ConfigurationError, ValueError)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["error", "code", "description", "detail", "x"]) | st.text(),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(status=st.integers(100, 599), body=json_values)
def test_any_json_error_body_yields_an_api_error(status: int, body: Any) -> None:
    err = error_from_response(status, json.dumps(body).encode())
    assert isinstance(err, ka.APIError)
    str(err)


@given(status=st.integers(100, 599), body=st.binary(max_size=300))
def test_any_bytes_yield_an_api_error(status: int, body: bytes) -> None:
    assert isinstance(error_from_response(status, body), ka.APIError)


@given(
    code=st.sampled_from(sorted(ERROR_CLASSES)),
    detail=st.dictionaries(
        st.sampled_from(["scopes", "ip_address", "details", "total_permitted"]), json_values
    ),
)
def test_known_codes_with_odd_details_never_crash(code: str, detail: dict[str, Any]) -> None:
    err = error_from_response(400, {"error": {"code": code, "detail": detail}})
    assert isinstance(err, ERROR_CLASSES[code])
