"""What the simulator saw: counters over API requests and the bounded request log."""

from __future__ import annotations

import collections
import json
from typing import Any

from ._endpoints import Endpoint
from ._faults import FaultKind
from ._model import RecordedRequest, SimulatorStats
from ._types import Call


class RequestRecorder:
    """Counts every finished API request and, if asked to, logs it.

    Args:
        record_requests: Keep the log; the counters are kept either way.
        max_recorded_requests: Most log entries kept (oldest dropped first); None for no bound.
    """

    def __init__(self, record_requests: bool, max_recorded_requests: int | None) -> None:
        self.log: collections.deque[RecordedRequest] | None = (
            collections.deque(maxlen=max_recorded_requests) if record_requests else None
        )
        self.reset()

    def reset(self) -> None:
        """Zero every counter (the log is kept)."""
        self.total = 0
        self.by_status: collections.Counter[int] = collections.Counter()
        self.patches = 0
        self.task_polls = 0
        self.tasks_created = 0
        self.dropped = 0
        self.fault_counts: collections.Counter[FaultKind] = collections.Counter()

    def stats(self) -> SimulatorStats:
        """A snapshot of the counters."""
        return SimulatorStats(
            total=self.total,
            by_status=dict(self.by_status),
            rate_limited=self.by_status.get(429, 0),
            patches=self.patches,
            task_polls=self.task_polls,
            tasks_created=self.tasks_created,
            dropped=self.dropped,
            faults=dict(self.fault_counts),
        )

    def record(self, call: Call, status: int | None, raw_body: bytes) -> None:
        """Count a finished request and add it to the log; status None means no response."""
        self.total += 1
        if status is None:
            self.dropped += 1
        else:
            self.by_status[status] += 1
        endpoint = call.endpoint
        if endpoint is Endpoint.UPDATE_SPEED_PROFILE:
            self.patches += 1
        elif endpoint is Endpoint.GET_TASK:
            self.task_polls += 1
        fault = call.fault.kind if call.fault is not None else None
        if fault is not None:
            self.fault_counts[fault] += 1
        if self.log is not None:
            self.log.append(
                RecordedRequest(
                    method=call.method,
                    path=call.path,
                    query=dict(call.query),
                    body=_log_body(raw_body),
                    headers=dict(call.headers),
                    token=call.token,
                    at=call.at,
                    status=status,
                    fault=fault,
                    request_id=call.reply_headers["X-Request-Id"],
                )
            )


def _log_body(raw_body: bytes) -> Any:
    if not raw_body:
        return None
    try:
        return json.loads(raw_body)
    except ValueError:
        return raw_body.decode(errors="replace")
