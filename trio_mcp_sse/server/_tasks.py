"""The tasks extension (``io.modelcontextprotocol/tasks``, SEP-2663): calls that outlive their request.

Theory of operation
-------------------
A client that declares the extension in a request's capabilities may get a
``CreateTaskResult`` (``resultType: "task"``) instead of a tool's result: a
handle it polls with ``tasks/get`` until the task is ``completed`` (the
result inlined), ``failed`` (the JSON-RPC error inlined) or ``cancelled``;
``tasks/update`` answers the questions a running task asks
(``input_required`` with ``inputRequests``), ``tasks/cancel`` asks it to stop.
The server decides: a tool declared ``task=True`` runs as a task for a
declaring client and as a plain call otherwise; ``task="required"`` refuses
a client without the extension (-32021).  The extension is defined for the
2026-07-28 revision only: in the handshake era every call is a plain call.

The work of a task is a Trio task in the :class:`TaskStore`'s nursery, which
belongs to the running app (entered with its lifespan): the request that
started it ends with the ``CreateTaskResult``, the work goes on under its own
cancel scope, and the app's shutdown cancels whatever still runs.  With
``task_start="explicit"`` the function runs in that nursery from the start
but as the request's own call -- its answers, questions (multi round-trip
``InputRequiredResult``) and errors are the request's -- until it calls
``ctx.start_task()``; only then is the task created and the request answered.

A task belongs to the principal that started it: any other principal (or an
anonymous caller, for a principal's task) is told the task does not exist,
exactly as for an id never issued.  Ids are 192-bit random, so they cannot be
guessed.  A task is kept until its TTL (from creation) ends, running or not;
then its work is cancelled and the task forgotten.  The store bounds the
tasks one principal keeps, the tasks of the whole process, and the size of a
result (a larger one fails the task rather than being kept).
"""

from __future__ import annotations

import contextlib
import datetime
import heapq
import logging
import math
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson
import outcome
import trio

from .._errors import MCPError
from .._jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND
from ._input import INPUT_METHODS, MISSING_REQUIRED_CLIENT_CAPABILITY, MissingClientCapability
from ._protocol import SERVER_BUSY

__all__ = [
    "TASKS_EXTENSION",
    "TASK_HANDLERS",
    "TERMINAL_STATUSES",
    "TaskRecord",
    "TaskSettings",
    "TaskStore",
    "created_result",
    "declares_tasks",
    "missing_tasks_capability",
]

log = logging.getLogger("trio_mcp_sse.server")

TASKS_EXTENSION: Final = "io.modelcontextprotocol/tasks"
TaskStatus = Literal["working", "input_required", "completed", "failed", "cancelled"]
TERMINAL_STATUSES: Final = frozenset({"completed", "failed", "cancelled"})
_NOT_FOUND: Final = "Task not found"


@dataclass(frozen=True, slots=True)
class TaskSettings:
    """How tasks are kept (``MCPServer(tasks=TaskSettings(...))``; see ``docs/tasks.md``).

    ``ttl``: seconds a task is kept from its creation, running or finished
    (``ttlMs`` on the wire); when it ends a running task is cancelled and the
    task forgotten.  ``poll_interval``: the ``pollIntervalMs`` suggested to
    clients.  ``max_tasks_per_principal``: tasks one principal (or all
    anonymous callers together) may hold at once, finished ones included until
    their TTL ends; past it a call that would start one is refused (-32000,
    server busy), never an older task dropped.  ``max_tasks``: the same for
    the whole process.  ``max_result_bytes``: a task whose result encodes
    larger fails with -32603 instead of being kept.
    """

    ttl: float = 3600.0
    poll_interval: float = 0.5
    max_tasks_per_principal: int = 100
    max_tasks: int = 10_000
    max_result_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        if not (self.ttl > 0 and math.isfinite(self.ttl)):
            raise ValueError(f"ttl must be a finite number of seconds > 0, got {self.ttl!r}")
        if not (self.poll_interval > 0 and math.isfinite(self.poll_interval)):
            raise ValueError(f"poll_interval must be a finite number of seconds > 0, got {self.poll_interval!r}")
        if self.max_tasks_per_principal < 1 or self.max_tasks < 1:
            raise ValueError("max_tasks_per_principal and max_tasks must be >= 1")
        if self.max_tasks_per_principal > self.max_tasks:
            raise ValueError("max_tasks_per_principal must be <= max_tasks")
        if self.max_result_bytes < 1:
            raise ValueError("max_result_bytes must be >= 1")


def declares_tasks(capabilities: Mapping[str, Any]) -> bool:
    """Whether a request's client capabilities declare the tasks extension."""
    extensions = capabilities.get("extensions")
    return isinstance(extensions, dict) and isinstance(extensions.get(TASKS_EXTENSION), dict)


def missing_tasks_capability(what: str) -> MCPError:
    """-32021 naming the extension, as SEP-2663 shows it (``data.requiredCapabilities``)."""
    return MCPError(
        MISSING_REQUIRED_CLIENT_CAPABILITY,
        f"{what} needs the client capability extensions[{TASKS_EXTENSION!r}], which this request did not declare",
        {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}},
    )


def _timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TaskRecord:
    """One task: its state as ``tasks/get`` shows it, and the way to its work.

    The work runs elsewhere (a Trio task of the store); the record is what
    both sides share.  Status changes go through :meth:`_set`, which keeps
    ``lastUpdatedAt`` and wakes whoever watches the task.
    """

    __slots__ = (
        "_answers",
        "_asked",
        "_changed",
        "_keys_used",
        "cancel_requested",
        "client_capabilities",
        "created_at",
        "deadline",
        "error",
        "input_requests",
        "last_updated_at",
        "principal",
        "result",
        "scope",
        "status",
        "status_message",
        "task_id",
        "ttl_ms",
    )

    def __init__(
        self, task_id: str, principal: str | None, client_capabilities: Mapping[str, Any], ttl: float, now: float
    ) -> None:
        self.task_id = task_id
        self.principal = principal
        self.client_capabilities = dict(client_capabilities)
        self.status: TaskStatus = "working"
        self.status_message: str | None = None
        self.created_at = self.last_updated_at = _timestamp()
        self.ttl_ms = int(ttl * 1000)
        self.deadline = now + ttl
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.input_requests: dict[str, dict[str, Any]] = {}
        """The questions asked and not yet answered, by key."""
        self._answers: dict[str, tuple[trio.Event, list[dict[str, Any]]]] = {}
        self._keys_used: set[str] = set()
        self._asked = 0
        self.cancel_requested = False
        self.scope: trio.CancelScope | None = None
        self._changed = trio.Event()

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def _set(self, status: TaskStatus, message: str | None = None) -> None:
        if self.terminal:
            return
        self.status = status
        if message is not None:
            self.status_message = message
        self._touch()

    def _touch(self) -> None:
        self.last_updated_at = _timestamp()
        self._changed.set()
        self._changed = trio.Event()

    @property
    def changed(self) -> trio.Event:
        """Set at the task's next change (a status, a question, a message): take it, then read the state."""
        return self._changed

    def set_message(self, message: str) -> None:
        """``statusMessage``: what the task is doing, for the client to show."""
        if not self.terminal:
            self.status_message = message
            self._touch()

    # -- what the client sees ---------------------------------------------------------------------
    def info(self, poll_interval_ms: int) -> dict[str, Any]:
        """The ``Task`` fields (a ``CreateTaskResult`` is these and ``resultType: "task"``)."""
        task: dict[str, Any] = {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": self.created_at,
            "lastUpdatedAt": self.last_updated_at,
            "ttlMs": self.ttl_ms,
            "pollIntervalMs": poll_interval_ms,
        }
        if self.status_message is not None:
            task["statusMessage"] = self.status_message
        return task

    def detailed(self, poll_interval_ms: int) -> dict[str, Any]:
        """A ``DetailedTask``: the fields, and what this status inlines."""
        task = self.info(poll_interval_ms)
        if self.status == "input_required":
            task["inputRequests"] = {key: dict(request) for key, request in self.input_requests.items()}
        elif self.status == "completed" and self.result is not None:
            task["result"] = self.result
        elif self.status == "failed" and self.error is not None:
            task["error"] = self.error
        return task

    # -- questions to the client ------------------------------------------------------------------
    def _key(self, method: str, key: str | None) -> str:
        self._asked += 1
        chosen = key if key is not None else f"{INPUT_METHODS.get(method, 'input')}-{self._asked}"
        if chosen in self._keys_used:
            raise ValueError(f"input request key {chosen!r} was already used by this task: keys must be unique")
        self._keys_used.add(chosen)
        return chosen

    async def ask(self, requests: Mapping[str, tuple[str, Mapping[str, Any] | None, str | None]]) -> dict[str, dict[str, Any]]:
        """Ask the client questions through ``tasks/get`` and wait for ``tasks/update`` to answer them all.

        ``requests``: a name of the caller's -> (method, params, key or
        ``None`` for a generated one).  The task is ``input_required`` while
        any question of the task is unanswered; the wait is bounded by the
        task's TTL (its end cancels the work).
        """
        waiting: dict[str, tuple[str, trio.Event, list[dict[str, Any]]]] = {}
        for name, (method, params, key) in requests.items():
            capability = INPUT_METHODS.get(method)
            if capability is None:
                raise ValueError(f"{method} cannot be asked through a task: only {', '.join(INPUT_METHODS)} can")
            if self.client_capabilities.get(capability) is None:
                raise MissingClientCapability(method, capability)
            request_key = self._key(method, key)
            event, box = trio.Event(), list[dict[str, Any]]()
            waiting[name] = (request_key, event, box)
            self._answers[request_key] = (event, box)
            self.input_requests[request_key] = {"method": method, "params": dict(params) if params is not None else {}}
        self._set("input_required")
        try:
            for _, event, _ in waiting.values():
                await event.wait()
        finally:
            for request_key, _, _ in waiting.values():
                self._answers.pop(request_key, None)
                self.input_requests.pop(request_key, None)
            if not self.input_requests and self.status == "input_required":
                self._set("working")
        return {name: box[0] for name, (_, _, box) in waiting.items()}

    def answer(self, responses: Mapping[str, Any]) -> None:
        """``tasks/update``: deliver the answers to questions outstanding; others are ignored (SEP-2663)."""
        for key, response in responses.items():
            if key in self._answers and not isinstance(response, dict):
                # An answer the task waits for cannot be used: say so, deliver none (ignoring it would hang the task).
                raise MCPError(INVALID_PARAMS, f"tasks/update: inputResponses[{key!r}] must be an object", {"key": key})
        answered = False
        for key, response in responses.items():
            waiting = self._answers.get(key)
            if waiting is None:
                continue
            event, box = waiting
            if event.is_set():
                continue
            box.append(response)
            event.set()
            self.input_requests.pop(key, None)
            answered = True
        if answered:
            if not self.input_requests and self.status == "input_required":
                self._set("working")
            else:
                self._touch()

    # -- the end ----------------------------------------------------------------------------------
    def complete(self, result: dict[str, Any]) -> None:
        if not self.terminal:
            self.result = result
            self.input_requests.clear()
            self._set("completed")

    def fail(self, code: int, message: str, data: Any = None) -> None:
        if not self.terminal:
            error: dict[str, Any] = {"code": code, "message": message}
            if data is not None:
                error["data"] = data
            self.error = error
            self.input_requests.clear()
            self._set("failed", message)

    def cancelled(self) -> None:
        if not self.terminal:
            self.input_requests.clear()
            self._set("cancelled", "The task was cancelled.")


Work = Callable[[], Awaitable[dict[str, Any]]]
"""A task's work: the tool call, returning its ``CallToolResult`` (or raising :class:`MCPError`)."""


class _Handoff:
    """Between a call of ``task_start="explicit"`` and the request waiting for it.

    Until :meth:`detach`, the request waits for one :class:`outcome.Outcome`:
    the call's result or error (a plain call) or the new task (it detached).
    """

    __slots__ = ("_send", "detached", "receive", "record", "scope")

    def __init__(self) -> None:
        self._send, self.receive = trio.open_memory_channel[outcome.Outcome[TaskRecord | dict[str, Any]]](1)
        self.detached = False
        self.record: TaskRecord | None = None
        self.scope: trio.CancelScope | None = None

    def deliver(self, result: outcome.Outcome[Any]) -> None:
        # The request may have gone away: then nobody is there to tell.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, trio.WouldBlock):
            self._send.send_nowait(result)


class TaskStore:
    """The tasks of one running app: their records, their work, their expiry.

    :meth:`running` opens the nursery the work runs in (the app's lifespan
    enters it); a task started while it is not running is refused with
    -32603, naming why.
    """

    def __init__(self, settings: TaskSettings | None = None, *, id_prefix: Callable[[], str] | None = None) -> None:
        self.settings = settings or TaskSettings()
        self.id_prefix = id_prefix
        """What a new task's id starts with, asked at each creation: with a broker, the worker's own id
        and a ``.``, so any worker can forward the task's requests here (``docs/scaling.md``)."""
        self._tasks: dict[str, TaskRecord] = {}
        self._per_principal: defaultdict[str | None, int] = defaultdict(int)
        self._expiry: list[tuple[float, str]] = []
        self._expiry_changed = trio.Event()
        self._nursery: trio.Nursery | None = None

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def poll_interval_ms(self) -> int:
        return max(1, int(self.settings.poll_interval * 1000))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[TaskStore]:
        """Run tasks' work and expiry for the duration of the block; cancel what remains at its end.

        The block's own exception leaves as it came, not wrapped in the
        nursery's group: the block is an app's lifespan, whose failures must
        read as one line.
        """
        raised: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._expire)
                try:
                    yield self
                except BaseException as error:
                    raised = error
                    raise
                finally:
                    self._nursery = None
                    nursery.cancel_scope.cancel()
                    for record in self._tasks.values():
                        record.cancelled()
        except BaseExceptionGroup as group:
            if raised is None or len(group.exceptions) != 1 or group.exceptions[0] is not raised:
                raise
        if raised is not None:
            raise raised

    # -- lookup -----------------------------------------------------------------------------------
    def find(self, task_id: object, principal: str | None, method: str) -> TaskRecord:
        """The task ``task_id`` of ``principal``; -32602 for any other (unknown, expired, someone else's)."""
        if not isinstance(task_id, str):
            raise MCPError(INVALID_PARAMS, f"{method}: params.taskId must be a string")
        record = self._tasks.get(task_id)
        if record is None or record.principal != principal:
            raise MCPError(INVALID_PARAMS, f"{_NOT_FOUND}: {task_id}", {"taskId": task_id})
        return record

    # -- creation ---------------------------------------------------------------------------------
    def _running_nursery(self) -> trio.Nursery:
        """Where tasks' work runs; -32603 saying why when the store is not running."""
        if self._nursery is None:
            raise MCPError(
                INTERNAL_ERROR,
                "tasks need the app's lifespan: serve the app under an ASGI server that runs it (hypercorn "
                "does), or enter 'async with server.running():' around sessions given to server.run_session",
            )
        return self._nursery

    def _create(self, principal: str | None, client_capabilities: Mapping[str, Any]) -> TaskRecord:
        self._running_nursery()
        settings = self.settings
        if len(self._tasks) >= settings.max_tasks:
            raise MCPError(SERVER_BUSY, f"Server busy: this server holds its limit of {settings.max_tasks} tasks")
        if self._per_principal[principal] >= settings.max_tasks_per_principal:
            raise MCPError(
                SERVER_BUSY,
                f"Too many tasks: this caller holds its limit of {settings.max_tasks_per_principal} tasks "
                f"(each is kept for {settings.ttl:g} s from its creation)",
            )
        now = trio.current_time()
        task_id = secrets.token_urlsafe(24)
        if self.id_prefix is not None:
            task_id = self.id_prefix() + task_id
        record = TaskRecord(task_id, principal, client_capabilities, settings.ttl, now)
        self._tasks[record.task_id] = record
        self._per_principal[principal] += 1
        first = not self._expiry or record.deadline < self._expiry[0][0]
        heapq.heappush(self._expiry, (record.deadline, record.task_id))
        if first:
            self._expiry_changed.set()
        return record

    def start(self, principal: str | None, client_capabilities: Mapping[str, Any], work: Callable[[TaskRecord], Work]) -> TaskRecord:
        """A new task doing ``work(record)()``; returned once ``tasks/get`` finds it."""
        record = self._create(principal, client_capabilities)
        self._running_nursery().start_soon(self._run, record, work(record), name=f"task {record.task_id}")
        return record

    async def run_explicit(
        self, call: Callable[[_Handoff], Work]
    ) -> TaskRecord | dict[str, Any]:
        """Run ``call`` in the store's nursery; return its result, or its task once it called ``start_task``.

        Errors of the call before it detached are the request's and raised
        here (an ``InputRequired`` among them: the multi round-trip answer).
        Cancelling the request before that cancels the call.
        """
        nursery = self._running_nursery()
        handoff = _Handoff()
        nursery.start_soon(self._run_handed, handoff, call(handoff), name="task call")
        try:
            got = await handoff.receive.receive()
        except BaseException:
            if not handoff.detached and handoff.scope is not None:
                handoff.scope.cancel()
            raise
        finally:
            handoff.receive.close()
        return got.unwrap()

    def detach(self, handoff: _Handoff, principal: str | None, client_capabilities: Mapping[str, Any]) -> TaskRecord:
        """``ctx.start_task()``: the call becomes a task; the waiting request answers with it."""
        record = self._create(principal, client_capabilities)
        record.scope = handoff.scope
        handoff.record, handoff.detached = record, True
        handoff.deliver(outcome.Value(record))
        return record

    # -- the work ---------------------------------------------------------------------------------
    async def _run(self, record: TaskRecord, work: Work) -> None:
        with trio.CancelScope() as scope:
            record.scope = scope
            if record.cancel_requested:
                scope.cancel()
            captured = await outcome.acapture(work)
            if isinstance(captured, outcome.Error) and _is_cancellation(captured.error):
                captured.unwrap()
        if scope.cancelled_caught:
            record.cancelled()
            return
        self._finish(record, captured)

    async def _run_handed(self, handoff: _Handoff, work: Work) -> None:
        with trio.CancelScope() as scope:
            handoff.scope = scope
            captured = await outcome.acapture(work)
            if isinstance(captured, outcome.Error) and _is_cancellation(captured.error):
                captured.unwrap()
        record = handoff.record
        if not handoff.detached:
            if not scope.cancelled_caught:
                handoff.deliver(captured)
            return
        assert record is not None
        if scope.cancelled_caught:
            record.cancelled()
        else:
            self._finish(record, captured)

    def _finish(self, record: TaskRecord, captured: outcome.Outcome[dict[str, Any]]) -> None:
        if isinstance(captured, outcome.Value):
            result = captured.value
            size = len(orjson.dumps(result))
            if size > self.settings.max_result_bytes:
                record.fail(
                    INTERNAL_ERROR,
                    f"The task's result is too large to keep ({size} bytes; the limit is "
                    f"{self.settings.max_result_bytes})",
                )
            else:
                record.complete(result)
            return
        assert isinstance(captured, outcome.Error)
        error = captured.error
        if isinstance(error, MCPError):
            record.fail(error.code, error.message, error.data)
            return
        log.error("task %s failed", record.task_id, exc_info=error)
        record.fail(INTERNAL_ERROR, "The task failed with an internal error")

    # -- cancellation and expiry -----------------------------------------------------------------
    def cancel(self, record: TaskRecord) -> None:
        """``tasks/cancel``: stop the work if it still runs (cooperative: it may still complete)."""
        if record.terminal:
            return
        record.cancel_requested = True
        if record.scope is not None:
            record.scope.cancel()

    def _forget(self, record: TaskRecord) -> None:
        if self._tasks.pop(record.task_id, None) is not None:
            self._per_principal[record.principal] -= 1
            if not self._per_principal[record.principal]:
                del self._per_principal[record.principal]
        if record.scope is not None:
            record.scope.cancel()
        record.cancelled()

    async def _expire(self) -> None:
        """Forget each task when its TTL ends (cancelling its work first)."""
        while True:
            while self._expiry:
                deadline, task_id = self._expiry[0]
                if deadline > trio.current_time():
                    break
                heapq.heappop(self._expiry)
                record = self._tasks.get(task_id)
                if record is not None:
                    self._forget(record)
            self._expiry_changed = trio.Event()
            with trio.move_on_at(self._expiry[0][0] if self._expiry else math.inf):
                await self._expiry_changed.wait()


def _is_cancellation(error: BaseException) -> bool:
    if isinstance(error, trio.Cancelled):
        return True
    if isinstance(error, BaseExceptionGroup):
        return error.split(trio.Cancelled)[0] is not None
    return False


# -- the methods ------------------------------------------------------------------------------------
def _store_for(connection: Any, context: Any, method: str) -> TaskStore:
    """The running app's store, once the request may use tasks at all."""
    if not getattr(connection, "modern", False):
        # The extension is defined for 2026-07-28 only: a handshake-era client has no such method.
        raise MCPError(METHOD_NOT_FOUND, f"Method not found: {method}")
    if not declares_tasks(context.client_capabilities):
        raise missing_tasks_capability(method)
    store: TaskStore | None = getattr(connection, "tasks", None)
    if store is None:
        raise MCPError(INTERNAL_ERROR, f"{method}: no task store is running for this app")
    return store


async def get_task(connection: Any, params: Mapping[str, Any], context: Any) -> dict[str, Any]:
    store = _store_for(connection, context, "tasks/get")
    record = store.find(params.get("taskId"), connection.principal, "tasks/get")
    await trio.lowlevel.checkpoint()
    return record.detailed(store.poll_interval_ms)


async def update_task(connection: Any, params: Mapping[str, Any], context: Any) -> dict[str, Any]:
    store = _store_for(connection, context, "tasks/update")
    record = store.find(params.get("taskId"), connection.principal, "tasks/update")
    responses = params.get("inputResponses")
    if not isinstance(responses, dict):
        raise MCPError(INVALID_PARAMS, "tasks/update: params.inputResponses must be an object")
    record.answer(responses)
    await trio.lowlevel.checkpoint()
    return {}


async def cancel_task(connection: Any, params: Mapping[str, Any], context: Any) -> dict[str, Any]:
    store = _store_for(connection, context, "tasks/cancel")
    record = store.find(params.get("taskId"), connection.principal, "tasks/cancel")
    store.cancel(record)
    await trio.lowlevel.checkpoint()
    return {}


TASK_HANDLERS: Final = {"tasks/get": get_task, "tasks/update": update_task, "tasks/cancel": cancel_task}
"""What a server with tasks answers besides the core methods (``tasks/result`` and ``tasks/list``
were removed by SEP-2663: -32601)."""


def created_result(store: TaskStore, record: TaskRecord) -> dict[str, Any]:
    """The ``CreateTaskResult`` a request answers when it became a task."""
    return {"resultType": "task", **record.info(store.poll_interval_ms)}
