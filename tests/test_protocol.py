from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

import katapult_async as ka
from katapult_async import _protocol as proto
from katapult_async import _requests as build
from katapult_async._budget import PRIORITY_POLL

from .conftest import load_fixture


def test_update_request_with_permalink_and_id() -> None:
    req = build.update_speed_profile_request("vmnet_abc", "1gbps")
    assert req.method == "PATCH"
    assert req.path == (
        "/virtual_machine_network_interfaces/virtual_machine_network_interface/update_speed_profile"
    )
    assert req.body == {
        "virtual_machine_network_interface": {"id": "vmnet_abc"},
        "speed_profile": {"permalink": "1gbps"},
    }
    assert not req.idempotent
    by_id = build.update_speed_profile_request(
        ka.NetworkInterfaceRef("vmnet_abc"), "nsp_H3Mknnus3dtDIbIc"
    )
    assert by_id.body is not None
    assert by_id.body["speed_profile"] == {"id": "nsp_H3Mknnus3dtDIbIc"}
    explicit = build.update_speed_profile_request("vmnet_abc", ka.SpeedProfileRef(permalink="x"))
    assert explicit.body is not None
    assert explicit.body["speed_profile"] == {"permalink": "x"}


@pytest.mark.parametrize(
    ("interface", "profile"),
    [
        ("", "1gbps"),
        ("vmnet a", "1gbps"),
        ("vmnet_a", ""),
        ("vmnet_a\n", "1gbps"),
        ("x" * 200, "1"),
    ],
)
def test_malformed_input_is_refused_before_sending(interface: str, profile: str) -> None:
    with pytest.raises(ValueError):
        build.update_speed_profile_request(interface, profile)


def test_non_string_input_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        build.update_speed_profile_request(123, "1gbps")  # type: ignore[arg-type]


def test_get_task_request_matches_the_recorded_url(
    recorded_interactions: list[dict[str, Any]],
) -> None:
    req = build.get_task_request("task_YJ3S0iREhsADupZw")
    recorded = next(
        i["request"]["url"] for i in recorded_interactions if "/tasks/task?" in i["request"]["url"]
    )
    parts = urlsplit(recorded)
    assert parts.path.endswith(req.path)
    assert dict(parse_qsl(parts.query)) == dict(req.params or {})


def test_task_polls_queue_behind_other_requests() -> None:
    """While the budget binds, the limiter serves a PATCH before a poll (PRIORITY_POLL)."""
    assert build.get_task_request("task_YJ3S0iREhsADupZw").priority == PRIORITY_POLL > 0
    assert build.update_speed_profile_request("vmnet_0YBJdG5GnHNwc15a", "1gbps").priority == 0


def test_list_requests_need_exactly_one_lookup() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        build.list_interfaces_request(virtual_machine_id=None, fqdn=None, page=1, per_page=5)
    with pytest.raises(ValueError, match="exactly one"):
        build.list_speed_profiles_request(organization_id="a", sub_domain="b", page=1, per_page=5)
    req = build.list_speed_profiles_request(
        organization_id=None, sub_domain="acme", page=2, per_page=5
    )
    assert req.params == {"organization[sub_domain]": "acme", "page": "2", "per_page": "5"}


def test_read_meta() -> None:
    meta = proto.read_meta(
        200,
        {"X-Ratelimit-Permitted": "1000", "X-Ratelimit-Remaining": "952", "X-Request-Id": "r"},
    )
    assert (meta.permitted, meta.remaining, meta.request_id) == (1000, 952, "r")
    odd = proto.read_meta(200, {"X-Ratelimit-Permitted": "lots", "X-Ratelimit-Remaining": "-1"})
    assert (odd.permitted, odd.remaining) == (None, None)


def test_fixture_task_with_missing_fields() -> None:
    task = proto.decode_task(load_fixture("task_get.json"))
    assert task == ka.Task(
        id="task_EvA0bkUBGZh6ATca", name="Purge items from trash", status=ka.TaskStatus.COMPLETED
    )
    assert task.status.is_terminal


def test_recorded_interactions_parse(recorded_interactions: list[dict[str, Any]]) -> None:
    seen = set()
    for interaction in recorded_interactions:
        response = interaction["response"]
        body = response["body"]
        meta = proto.read_meta(response["status"], response["headers"])
        assert meta.permitted == 1000
        assert meta.remaining is not None
        assert meta.request_id
        if response["status"] >= 400:
            err = proto.decode_error(meta, json.dumps(body).encode())
            assert isinstance(err, ka.NotFoundError)
            assert err.request_id == meta.request_id
            seen.add("error")
        elif "task" in body:
            task = proto.decode_task(body, meta)
            assert task.name == "Change network interface speed profile"
            assert task.created_at is not None
            assert task.created_at.tzinfo is timezone.utc
            if task.status is ka.TaskStatus.COMPLETED:
                assert task.progress == 100
                assert task.finished_at is not None
            seen.add("task")
        elif "virtual_machine_network_interface" in body:
            iface = proto.decode_interface(body, meta)
            assert iface.id.startswith("vmnet_")
            assert iface.speed_profile is not None
            assert iface.speed_profile.permalink in {"1gbps", "10gbps"}
            assert iface.virtual_machine_id == "vm_mrpZcFd2QQBGmjAP"
            seen.add("interface")
        elif "network_speed_profiles" in body:
            profiles, pages = proto.decode_speed_profiles(body, meta)
            assert pages == 1
            assert {p.permalink for p in profiles} >= {"500mbps"}
            assert profiles[0].upload_speed_in_mbit == 500
            seen.add("profiles")
    assert seen == {"error", "task", "interface", "profiles"}


def test_task_times_are_utc_datetimes() -> None:
    task = proto.decode_task(
        {"task": {"id": "t", "status": "running", "created_at": 1738860056, "progress": 5}}
    )
    assert task.created_at == datetime(2025, 2, 6, 16, 40, 56, tzinfo=timezone.utc)
    assert task.progress == 5


def test_times_seen_before_decode_the_same_and_true_is_still_not_a_time() -> None:
    # Converted times are remembered by value; True equals 1 as a key, and must stay refused.
    for created_at in (1, 1.0, 1738860056.5, 1738860056.5):
        task = proto.decode_task({"task": {"id": "t", "created_at": created_at}})
        expected = datetime.fromtimestamp(created_at, tz=timezone.utc)
        assert task.created_at == expected
    for bad in (True, float("nan"), float("inf")):
        with pytest.raises(ka.InvalidResponseError, match="task could not be understood"):
            proto.decode_task({"task": {"id": "t", "created_at": bad}})


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"task": None},
        {"task": {"status": "completed"}},
        {"task": {"id": "t", "status": "exploded"}},
        {"task": {"id": "t", "status": "running", "progress": "5"}},
        {"task": {"id": 5, "status": "running"}},
        {"task": {"id": "t", "created_at": "yesterday"}},
        [],
    ],
)
def test_bodies_that_cannot_be_understood(body: Any) -> None:
    with pytest.raises(ka.InvalidResponseError) as info:
        proto.decode_task(body, proto.ResponseMeta(status=200, request_id="rid"))
    assert info.value.request_id == "rid"


def test_decode_success_rejects_non_json() -> None:
    with pytest.raises(ka.InvalidResponseError, match="Content-Type"):
        proto.decode_success(200, "text/html", b"<html>", None)
    with pytest.raises(ka.InvalidResponseError, match="not valid JSON"):
        proto.decode_success(200, "application/json; charset=utf-8", b"{", None)
    assert proto.decode_success(200, "application/json", b'{"a": 1}', None) == {"a": 1}


def test_page_decoding() -> None:
    items, pages = proto.decode_interfaces(
        load_fixture("virtual_machine_network_interfaces_list.json")
    )
    assert pages == 1
    assert [i.id for i in items][:1] == ["vmnet_olNAz8ThH0emHvdr"]
    profiles, _ = proto.decode_speed_profiles(load_fixture("network_speed_profiles_list.json"))
    assert profiles[0] == ka.NetworkSpeedProfile(
        id="nsp_H3Mknnus3dtDIbIc", name="1 Gbps", permalink="1gbps"
    )


# --- what a response means ---------------------------------------------------------------------

JSON = {"Content-Type": "application/json"}


def error_body(code: str, detail: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"error": {"code": code, "description": code, "detail": detail}}).encode()


def test_a_2xx_response_is_its_json_body() -> None:
    meta = proto.ResponseMeta(status=200, request_id="rid")
    assert proto.decode_response(meta, JSON, b'{"task": {"id": "t"}}') == {"task": {"id": "t"}}
    with pytest.raises(ka.InvalidResponseError, match="Content-Type") as info:
        proto.decode_response(meta, {"Content-Type": "text/html"}, b"<html>")
    assert info.value.request_id == "rid"


def test_a_redirect_is_refused_with_its_location() -> None:
    meta = proto.ResponseMeta(status=302, request_id="rid")
    with pytest.raises(ka.InvalidResponseError, match="redirect to 'https://elsewhere/'") as info:
        proto.decode_response(meta, {"Location": "https://elsewhere/"}, b"")
    assert info.value.status == 302


def test_an_error_response_raises_its_class() -> None:
    meta = proto.ResponseMeta(status=404, request_id="rid")
    with pytest.raises(ka.TaskNotFoundError) as info:
        proto.decode_response(meta, JSON, error_body("task_not_found"))
    assert info.value.request_id == "rid"
    with pytest.raises(ka.APIError) as html:
        proto.decode_response(proto.ResponseMeta(status=502), {}, b"<html>", reason="Bad Gateway")
    assert html.value.status == 502


@pytest.mark.parametrize(("header", "expected"), [("7", 7.0), (None, None), ("soon", None)])
def test_a_429_carries_its_retry_after(header: str | None, expected: float | None) -> None:
    meta = proto.ResponseMeta(status=429, retry_after=header)
    body = error_body("rate_limit_reached", {"total_permitted": 100})
    with pytest.raises(ka.RateLimitReachedError) as info:
        proto.decode_response(meta, JSON, body)
    assert info.value.retry_after == expected
    assert info.value.total_permitted == 100


@pytest.mark.parametrize("lost", [False, True])
def test_already_assigned_says_whether_an_earlier_response_was_lost(lost: bool) -> None:
    meta = proto.ResponseMeta(status=422)
    body = error_body("speed_profile_already_assigned")
    with pytest.raises(ka.SpeedProfileAlreadyAssignedError) as info:
        proto.decode_response(meta, JSON, body, after_lost_response=lost)
    assert info.value.after_lost_response is lost


def test_only_already_assigned_is_marked_after_a_lost_response() -> None:
    meta = proto.ResponseMeta(status=422)
    with pytest.raises(ka.APIError) as info:
        proto.decode_response(meta, JSON, error_body("validation_error"), after_lost_response=True)
    assert not isinstance(info.value, ka.SpeedProfileAlreadyAssignedError)


# --- parse_retry_after -----------------------------------------------------------------------

NOW = datetime(2015, 10, 21, 7, 27, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 60.0),
        ("Wed, 21 Oct 2015 07:28:30 -0000", 90.0),
        ("Wed, 21 Oct 2015 07:26:00 GMT", 0.0),  # in the past
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("nan", None),
        ("inf", None),
        ("Wed, 32 Oct 2015 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert proto.parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_naive_now_is_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    assert proto.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=naive) == 60.0


def test_parse_retry_after_defaults_to_the_current_time() -> None:
    soon = datetime.now(timezone.utc) + timedelta(hours=1)
    seconds = proto.parse_retry_after(soon.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert seconds is not None
    assert 3500 < seconds <= 3600


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["task", "id", "name", "status", "created_at", "progress", "started_at"]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=15,
)


@given(body=json_values)
def test_task_parser_only_raises_invalid_response(body: Any) -> None:
    with contextlib.suppress(ka.InvalidResponseError):
        proto.decode_task(body)


@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_invalid_response(raw: bytes) -> None:
    with contextlib.suppress(ka.InvalidResponseError):
        proto.decode_task(proto.decode_success(200, "application/json", raw, None))


def test_an_interface_with_a_malformed_id_is_named_as_an_interface() -> None:
    body = {"virtual_machine_network_interface": {"id": "vmnet has spaces"}}
    with pytest.raises(ka.InvalidResponseError, match="interface id 'vmnet has spaces'"):
        proto.decode_interface(body)
