"""The client side of the tasks extension (``io.modelcontextprotocol/tasks``, SEP-2663).

A session that declares the extension (``ClientSession(tasks=True)``) may be
answered a ``tools/call`` with a *task*: a handle to poll with ``tasks/get``
until it is ``completed`` (its result inlined), ``failed`` (the JSON-RPC error
inlined) or ``cancelled``.  :meth:`ClientSession.call_tool` hides that and
returns the final result, as the SEP advises; :meth:`ClientSession.start_tool`
and the ``*_task`` methods expose the lifecycle to an application that wants it
(start now, poll later, show ``statusMessage``, cancel).

While polling, the questions a task asks (``input_required`` and its
``inputRequests``: elicitation, sampling, roots) are answered with the
session's handlers and sent with ``tasks/update``, each key once.  Polls are
``pollIntervalMs`` apart (at least :data:`MIN_POLL_INTERVAL`); the wait ends
at a terminal status, or with the server's -32602 once it has forgotten the
task (its TTL ended), so it is bounded by the server's TTL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import mcp_types
import pydantic

from .._errors import MCPError
from ._errors import ProtocolError

__all__ = ["MIN_POLL_INTERVAL", "TASKS_EXTENSION", "TaskInfo", "TaskStatusCallback"]

TASKS_EXTENSION: Final = "io.modelcontextprotocol/tasks"
MIN_POLL_INTERVAL: Final = 0.05
"""Seconds: the shortest wait between two polls, whatever the server suggests."""
DEFAULT_POLL_INTERVAL: Final = 1.0
"""Seconds between polls when the server suggests none."""
_STATUSES: Final = frozenset({"working", "input_required", "completed", "failed", "cancelled"})
_TERMINAL: Final = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """One look at a task: what ``tasks/get`` (or the ``CreateTaskResult``) said."""

    task_id: str
    status: str
    """``working``, ``input_required``, ``completed``, ``failed`` or ``cancelled``."""
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    """How long the server keeps the task from its creation (``None``: no limit)."""
    poll_interval_ms: int | None = None
    status_message: str | None = None
    result: mcp_types.CallToolResult | None = None
    """The tool's result, once ``completed``."""
    error: Mapping[str, Any] | None = None
    """The JSON-RPC error (``code``, ``message``, ``data``), once ``failed``."""
    input_requests: Mapping[str, Any] = field(default_factory=dict)
    """The questions outstanding while ``input_required``, by key."""

    @property
    def terminal(self) -> bool:
        """The task has ended (``completed``, ``failed`` or ``cancelled``): it will not change again."""
        return self.status in _TERMINAL

    @property
    def poll_interval(self) -> float:
        """Seconds to wait before the next poll: the server's suggestion, within sane bounds."""
        if self.poll_interval_ms is None:
            return DEFAULT_POLL_INTERVAL
        return max(MIN_POLL_INTERVAL, self.poll_interval_ms / 1000)

    def changed_to(self, later: TaskInfo) -> bool:
        """``later`` says something new: another status, message, question or update time."""
        return (self.status, self.status_message, self.last_updated_at, tuple(self.input_requests)) != (
            later.status, later.status_message, later.last_updated_at, tuple(later.input_requests)
        )

    @classmethod
    def from_wire(cls, method: str, data: Mapping[str, Any]) -> TaskInfo:
        """Parse a ``Task`` / ``DetailedTask``; :class:`ProtocolError` naming what is wrong."""
        task_id, status = data.get("taskId"), data.get("status")
        if not isinstance(task_id, str) or not task_id:
            raise ProtocolError(f"{method}: the server's task has no taskId")
        if status not in _STATUSES:
            raise ProtocolError(f"{method}: the server's task {task_id} has an unknown status {status!r}")
        ttl, poll = data.get("ttlMs"), data.get("pollIntervalMs")
        if ttl is not None and not (isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0):
            raise ProtocolError(f"{method}: the server's task {task_id} has an invalid ttlMs {ttl!r}")
        if poll is not None and not (isinstance(poll, int) and not isinstance(poll, bool) and poll > 0):
            raise ProtocolError(f"{method}: the server's task {task_id} has an invalid pollIntervalMs {poll!r}")
        result = None
        if status == "completed":
            try:
                result = mcp_types.CallToolResult.model_validate(data.get("result"))
            except pydantic.ValidationError:
                raise ProtocolError(f"{method}: the completed task {task_id} carries no valid result") from None
        error = data.get("error")
        if status == "failed" and not (isinstance(error, dict) and isinstance(error.get("code"), int)):
            raise ProtocolError(f"{method}: the failed task {task_id} carries no JSON-RPC error")
        requests = data.get("inputRequests")
        if status == "input_required" and not isinstance(requests, dict):
            raise ProtocolError(f"{method}: the task {task_id} needs input but names no inputRequests")
        message = data.get("statusMessage")
        return cls(
            task_id=task_id,
            status=status,
            created_at=str(data.get("createdAt", "")),
            last_updated_at=str(data.get("lastUpdatedAt", "")),
            ttl_ms=ttl,
            poll_interval_ms=poll,
            status_message=message if isinstance(message, str) else None,
            result=result,
            error=error if status == "failed" else None,
            input_requests=requests if status == "input_required" and isinstance(requests, dict) else {},
        )

    def raise_for_status(self) -> mcp_types.CallToolResult:
        """The result of a completed task; the task's JSON-RPC error (as :class:`MCPError`) if it failed.

        A cancelled task raises :class:`MCPError` with code -32800 (request
        cancelled) naming the task; a task still running is a ``ValueError``.
        """
        if self.status == "completed" and self.result is not None:
            return self.result
        if self.status == "failed" and self.error is not None:
            message = self.error.get("message")
            raise MCPError(int(self.error["code"]), str(message) if message is not None else "", self.error.get("data"))
        if self.status == "cancelled":
            raise MCPError(REQUEST_CANCELLED, f"the task {self.task_id} was cancelled", {"taskId": self.task_id})
        raise ValueError(f"the task {self.task_id} has not ended (status {self.status})")


REQUEST_CANCELLED: Final = -32800

TaskStatusCallback = Callable[[TaskInfo], Awaitable[None]]
"""``async (task) -> None``: called with each new state a poll observes."""

