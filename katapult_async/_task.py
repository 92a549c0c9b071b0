"""The task values, :class:`Task` and :class:`TaskStatus`: the bottom layer, importing nothing of
the package, so that :mod:`katapult_async.errors` (whose task errors carry a ``Task``) and
:mod:`katapult_async.models` (which re-exports both, their public home) both import them downward.
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

__all__ = ["Task", "TaskStatus"]


class TaskStatus(str, enum.Enum):
    """The state of a Katapult background task."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        """Whether the task has finished (completed or failed) and will not change again."""
        return self is TaskStatus.COMPLETED or self is TaskStatus.FAILED

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class Task:
    """A Katapult background task, as returned by the API.

    Attributes:
        id: The task id (``task_...``).
        name: What the task does, e.g. ``"Change network interface speed profile"``.
        status: Where the task is in its lifecycle.
        created_at: When the task was created (UTC), if the API said.
        started_at: When it started running (UTC), or ``None``.
        finished_at: When it finished (UTC), or ``None``.
        progress: Percent done, 0-100 (0 when the API omits it).
    """

    id: str
    name: str | None = None
    status: TaskStatus = TaskStatus.PENDING
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: int = 0
