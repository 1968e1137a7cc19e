"""What a handler may know about, and do within, the request it is serving.

:class:`Context` is typed against :class:`ContextHost`, the little it needs
from a session (who the client is, and a way to talk back), not against the
connection class: the connection sits above the definitions that take a
``Context``, and an arrow back down would make the layers a cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Generic, Protocol

import mcp_types
import pydantic
import trio
from typing_extensions import TypeVar

from .._access_token import AccessToken
from .._errors import MCPError
from .._jsonrpc import INVALID_PARAMS, RequestId
from ._elicitation import requested_schema
from ._input import INPUT_METHODS, InputRound
from ._protocol import LoggingLevel
from ._tasks import TaskRecord, TaskStore

__all__ = ["Context", "ContextHost"]

_log = logging.getLogger("trio_mcp_sse.server")
_PY_LEVELS = {
    "debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO, "warning": logging.WARNING,
    "error": logging.ERROR, "critical": logging.CRITICAL, "alert": logging.CRITICAL, "emergency": logging.CRITICAL,
}

LifespanT = TypeVar("LifespanT", default=Any)
"""The type of ``Context.lifespan_context``: ``Context[Pool]`` types it; a bare ``Context`` has ``Any``."""


class ContextHost(Protocol):
    """The session side of a :class:`Context` (:class:`ServerConnection` is one)."""

    @property
    def server(self) -> Any: ...
    @property
    def session_id(self) -> str: ...
    @property
    def principal(self) -> str | None: ...
    @property
    def client_info(self) -> Mapping[str, Any] | None: ...
    @property
    def client_capabilities(self) -> Mapping[str, Any]: ...
    @property
    def protocol_version(self) -> str | None: ...
    @property
    def lifespan_context(self) -> Any: ...
    @property
    def state(self) -> dict[str, Any]: ...

    def client_supports(self, capability: str) -> bool: ...

    async def send_progress(
        self,
        token: str | int,
        progress: float,
        total: float | None = None,
        message: str | None = None,
        *,
        related_request_id: RequestId | None = None,
    ) -> None: ...

    async def log(
        self, level: str, data: Any, *, logger: str | None = None, related_request_id: RequestId | None = None
    ) -> None: ...

    async def send_request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        capability: str | None = None,
        related_request_id: RequestId | None = None,
    ) -> dict[str, Any]: ...

    async def ask_to_reconnect(self, request_id: RequestId) -> None: ...


class Context(Generic[LifespanT]):
    """Handed to a tool, resource, prompt or completion function that declares a parameter of this type.

    It names the request being served and the session it belongs to, and is
    the handle for talking back to the client while the request runs:
    progress, log messages, and requests *to* the client (sampling,
    elicitation, roots).  It is only meaningful while its request runs; the
    request's cancel scope covers everything awaited through it.

    Requests to the client work in both protocol eras, unchanged: to a
    handshake-era client they are sent while the tool waits; to a 2026-07-28
    client they become an ``InputRequiredResult`` and the tool runs again
    from the top once the client retries with the answers (see
    ``docs/protocol-eras.md``).  ``key=`` names a question for that round
    trip; without it a deterministic key is used.

    ``ctx.lifespan_context`` is what the server's lifespan yielded (a
    database pool...), shared by every session of the app; annotate the
    parameter ``Context[Pool]`` to have it typed ``Pool``.
    ``ctx.session_state`` is a dict kept for the session's lifetime.
    """

    __slots__ = (
        "_connection", "_handoff", "_headers", "_inputs", "_task", "_tasks", "access_token", "meta", "method", "request_id",
    )

    def __init__(
        self,
        connection: ContextHost,
        request_id: RequestId,
        method: str,
        headers: Mapping[str, str],
        meta: Mapping[str, Any] | None,
        inputs: InputRound | None = None,
        access_token: AccessToken | None = None,
    ) -> None:
        self._connection = connection
        self.access_token = access_token
        """What the request's bearer token says (subject, scopes, client id, claims), or ``None``
        without authentication; scopes implied by ``AuthSettings.scope_hierarchy`` are included."""
        self._headers = headers
        self._inputs = inputs
        """The answers of a modern-era retry (``None`` in the handshake era): see ``_input``."""
        self.request_id = request_id
        """The JSON-RPC id of the request being served."""
        self.method = method
        """The request's method, e.g. ``tools/call``."""
        self.meta: Mapping[str, Any] = meta or {}
        """The request's ``_meta`` (progress token and the like)."""
        self._task: TaskRecord | None = None
        """The task this call became (the tasks extension), if it did."""
        self._tasks: TaskStore | None = None
        self._handoff: Any = None
        """A call of ``task_start="explicit"`` not yet a task: the way to become one."""

    # -- tasks ---------------------------------------------------------------------------------
    def bind_task(self, record: TaskRecord) -> None:
        """This call is now the work of ``record``: questions go through ``tasks/get``, not the request."""
        self._task, self._inputs, self._handoff = record, None, None

    def bind_handoff(self, store: TaskStore, handoff: Any) -> None:
        self._tasks, self._handoff = store, handoff

    @property
    def task_id(self) -> str | None:
        """The id of the task this call runs as (the tasks extension), else ``None``."""
        return self._task.task_id if self._task is not None else None

    async def start_task(self, status_message: str | None = None) -> bool:
        """Become a task now, if this call may (``task_start="explicit"``): the client gets its id.

        Everything after runs as the task: the request is answered with a
        ``CreateTaskResult`` and the function goes on; questions to the client
        (``elicit``, ``sample``...) are then asked through ``tasks/get`` and
        answered by ``tasks/update``.  Returns ``True`` if the call is a task
        (now, or already), ``False`` if it cannot be one (a client without the
        extension, the handshake era, a tool without ``task=``): it then goes
        on as a plain call.
        """
        await trio.lowlevel.checkpoint()
        if self._task is not None:
            return True
        if self._handoff is None or self._tasks is None:
            return False
        record = self._tasks.detach(self._handoff, self.principal, self.client_capabilities)
        self.bind_task(record)
        if status_message is not None:
            record.set_message(status_message)
        return True

    def set_status_message(self, message: str) -> None:
        """The task's ``statusMessage`` (what a polling client shows); nothing outside a task."""
        if self._task is not None:
            self._task.set_message(message)

    # -- who and where -----------------------------------------------------------------------
    @property
    def connection(self) -> Any:
        """The session's :class:`ServerConnection` (subscriptions, log level, negotiated version)."""
        return self._connection

    @property
    def server(self) -> Any:
        """The :class:`MCPServer` serving this session."""
        return self._connection.server

    @property
    def session_id(self) -> str:
        return self._connection.session_id

    @property
    def principal(self) -> str | None:
        """Who opened the session, as the authentication hook named them (``None``: anonymous)."""
        return self._connection.principal

    @property
    def headers(self) -> Mapping[str, str]:
        """HTTP headers of the request (the POST) that carried this message; names lower-case."""
        return self._headers

    @property
    def client_info(self) -> Mapping[str, Any] | None:
        """``clientInfo`` from the client's ``initialize`` (2026-07-28: from this request's ``_meta``)."""
        return self._connection.client_info

    @property
    def client_capabilities(self) -> Mapping[str, Any]:
        """``capabilities`` from the client's ``initialize`` (2026-07-28: from this request's ``_meta``)."""
        return self._connection.client_capabilities

    @property
    def protocol_version(self) -> str | None:
        """The protocol revision negotiated for this session (2026-07-28: named by this request)."""
        return self._connection.protocol_version

    @property
    def lifespan_context(self) -> LifespanT:
        """What ``MCPServer(lifespan=...)`` yielded for the app serving this request (``None`` without one).

        Entered once per running app, before its first session, and shared by
        all of them: a connection pool, a client, a cache.  Typed by the
        parameter's annotation: ``ctx: Context[Pool]`` makes it a ``Pool``.
        ``RuntimeError`` if the server has a lifespan that nothing entered.
        """
        value: LifespanT = self._connection.lifespan_context
        return value

    @property
    def session_state(self) -> dict[str, Any]:
        """A dict of this session's own, kept across its requests and cleared when it ends.

        For what one client builds up (a cursor, a choice it made, a cache of
        its own); what every session shares belongs in :attr:`lifespan_context`.
        Without a session (a stateless server, 2026-07-28 clients) each request
        starts with an empty one.
        """
        return self._connection.state

    @property
    def progress_token(self) -> str | int | None:
        """The request's ``_meta.progressToken``: progress is only reported when there is one."""
        token = self.meta.get("progressToken")
        return token if isinstance(token, str | int) and not isinstance(token, bool) else None

    def client_supports(self, capability: str) -> bool:
        """Whether the client declared ``capability`` (``"sampling"``, ``"elicitation"``, ``"roots"``...)."""
        return self._connection.client_supports(capability)

    # -- talking back ------------------------------------------------------------------------
    async def report_progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Send ``notifications/progress`` for this request.

        Does nothing when the client did not ask for progress (no
        ``progressToken``).  ``progress`` must increase from one call to the
        next; ``message`` reaches clients on protocol 2025-03-26 and later.
        Notifications are queued before the request's result, so a client sees
        them in order and before the result.
        """
        if self._task is not None:
            # A task has no progress notifications (SEP-2663): its status message says it instead.
            await trio.lowlevel.checkpoint()
            self._task.set_message(message or (f"{progress:g} of {total:g}" if total is not None else f"{progress:g}"))
            return
        token = self.progress_token
        if token is not None:
            await self._connection.send_progress(token, progress, total, message, related_request_id=self.request_id)

    async def close_sse_stream(self) -> None:
        """Ask the client to reconnect: end this request's HTTP response now; the request goes on.

        On Streamable HTTP with resumability (the default) the client reconnects
        with ``Last-Event-ID`` after the server's ``retry`` interval and receives
        everything sent for this request meanwhile, its result included.  A
        long-running tool can use this so that proxies and load balancers never
        see an HTTP response held open for minutes (the specification's
        "polling" pattern).  Messages sent before the call go out first.  On a
        transport with one stream per session (HTTP+SSE) it does nothing.
        """
        if self._task is None:
            await self._connection.ask_to_reconnect(self.request_id)

    async def log(self, level: LoggingLevel, data: Any, *, logger: str | None = None) -> None:
        """Send a ``notifications/message`` log entry, if the session's level lets it through.

        ``data`` is any JSON-serialisable value (often a string).  The client
        sets the threshold with ``logging/setLevel``; until then the server's
        ``log_level`` applies.
        """
        if self._task is not None:
            # Tasks carry no log messages (SEP-2663); the server's own log still has them.
            await trio.lowlevel.checkpoint()
            _log.log(_PY_LEVELS.get(level, logging.INFO), "task %s: %s", self._task.task_id, data)
            return
        await self._connection.log(level, data, logger=logger, related_request_id=self.request_id)

    async def debug(self, data: Any, *, logger: str | None = None) -> None:
        await self.log("debug", data, logger=logger)

    async def info(self, data: Any, *, logger: str | None = None) -> None:
        await self.log("info", data, logger=logger)

    async def notice(self, data: Any, *, logger: str | None = None) -> None:
        await self.log("notice", data, logger=logger)

    async def warning(self, data: Any, *, logger: str | None = None) -> None:
        await self.log("warning", data, logger=logger)

    async def error(self, data: Any, *, logger: str | None = None) -> None:
        await self.log("error", data, logger=logger)

    async def send_request(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Send any request to the client and return its ``result``.

        See :meth:`ServerConnection.send_request` for the failure modes and
        the timeout.
        """
        if self._task is not None:
            return (await self._task.ask({"": (method, params, None)}))[""]
        if self._inputs is not None:
            await trio.lowlevel.checkpoint()
            return self._inputs.answer(method, params)
        return await self._connection.send_request(method, params, related_request_id=self.request_id)

    async def _ask(self, method: str, params: Mapping[str, Any] | None, capability: str, key: str | None) -> dict[str, Any]:
        """One question to the client: a request now, a round trip of the modern era, or a task's question."""
        if self._task is not None:
            return (await self._task.ask({"": (method, params, key)}))[""]
        if self._inputs is not None:
            await trio.lowlevel.checkpoint()
            return self._inputs.answer(method, params, key=key)
        return await self._connection.send_request(
            method, params, capability=capability, related_request_id=self.request_id
        )

    async def request_input(self, requests: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """Ask several questions at once: ``{key: {"method": ..., "params": {...}}}`` -> ``{key: result}``.

        The results are the clients' raw answers (``ElicitResult``,
        ``CreateMessageResult``, ``ListRootsResult`` as dicts).  A
        handshake-era client gets the requests concurrently; a 2026-07-28
        client gets every unanswered one in a single ``InputRequiredResult``; a
        task asks them all at once through ``tasks/get``.
        """
        if self._task is not None:
            return await self._task.ask(
                {key: (request["method"], request.get("params"), key) for key, request in requests.items()}
            )
        if self._inputs is not None:
            await trio.lowlevel.checkpoint()
            return self._inputs.answer_all(requests)
        results: dict[str, dict[str, Any]] = {}

        async def ask(key: str, method: str, params: Mapping[str, Any] | None) -> None:
            capability = INPUT_METHODS.get(method)
            results[key] = await self._connection.send_request(
                method, params, capability=capability, related_request_id=self.request_id
            )

        try:
            async with trio.open_nursery() as nursery:
                for key, request in requests.items():
                    nursery.start_soon(ask, key, request["method"], request.get("params"))
        except BaseExceptionGroup as group:
            # One request failed and the others were cancelled: raise what a single question would.
            if len(group.exceptions) == 1 and not isinstance(group.exceptions[0], BaseExceptionGroup):
                raise group.exceptions[0] from None
            raise
        return {key: results[key] for key in requests}

    def _parse(self, model: type[pydantic.BaseModel], answer: dict[str, Any], method: str) -> Any:
        try:
            return model.model_validate(answer)
        except pydantic.ValidationError:
            if self._inputs is None and self._task is None:
                raise
            raise MCPError(INVALID_PARAMS, f"the client's answer to {method} is not a valid result") from None

    async def sample(
        self,
        messages: str | Sequence[str | Mapping[str, Any] | pydantic.BaseModel],
        *,
        max_tokens: int,
        system_prompt: str | None = None,
        temperature: float | None = None,
        stop_sequences: Sequence[str] | None = None,
        model_preferences: Mapping[str, Any] | pydantic.BaseModel | None = None,
        include_context: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        key: str | None = None,
    ) -> mcp_types.CreateMessageResult:
        """Ask the client's model for a completion (``sampling/createMessage``).

        ``messages`` is a string (one user message) or a list of strings and
        ``{"role": ..., "content": ...}`` messages.  Raises
        :class:`ClientCapabilityError` if the client did not declare
        ``sampling``, :class:`MCPError` if it refuses, and
        :class:`ClientRequestTimeout` if it does not answer within the
        server's ``client_request_timeout`` (wrap the call in
        ``trio.move_on_after`` for a shorter bound: the client is told to stop
        either way).
        """
        params: dict[str, Any] = {"messages": _sampling_messages(messages), "maxTokens": max_tokens}
        if system_prompt is not None:
            params["systemPrompt"] = system_prompt
        if temperature is not None:
            params["temperature"] = temperature
        if stop_sequences is not None:
            params["stopSequences"] = list(stop_sequences)
        if model_preferences is not None:
            params["modelPreferences"] = _dump(model_preferences)
        if include_context is not None:
            params["includeContext"] = include_context
        if metadata is not None:
            params["metadata"] = dict(metadata)
        result = await self._ask("sampling/createMessage", params, "sampling", key)
        parsed: mcp_types.CreateMessageResult = self._parse(mcp_types.CreateMessageResult, result, "sampling/createMessage")
        return parsed

    async def elicit(
        self,
        message: str,
        schema: type[pydantic.BaseModel] | Mapping[str, Any],
        *,
        key: str | None = None,
    ) -> mcp_types.ElicitResult:
        """Ask the user for structured input through the client (``elicitation/create``).

        ``schema`` is a pydantic model class or a JSON schema of a flat object
        with primitive properties, as the spec requires: a nested model, a
        list of models or a dict field is a ``TypeError`` naming the field,
        raised before anything is sent (an ``Enum`` field and an optional
        field are flattened; see ``_elicitation``).  The result's ``action`` is
        ``accept`` (with ``content``), ``decline`` or ``cancel``; validate
        ``content`` with your model (``Model.model_validate(result.content)``).
        """
        requested = requested_schema(schema)
        params = {"message": message, "requestedSchema": requested}
        result = await self._ask("elicitation/create", params, "elicitation", key)
        parsed: mcp_types.ElicitResult = self._parse(mcp_types.ElicitResult, result, "elicitation/create")
        return parsed

    async def list_roots(self, *, key: str | None = None) -> list[mcp_types.Root]:
        """The client's roots (``roots/list``): the directories or files it lets the server see."""
        result = await self._ask("roots/list", None, "roots", key)
        parsed: mcp_types.ListRootsResult = self._parse(mcp_types.ListRootsResult, result, "roots/list")
        return parsed.roots


def _dump(value: Mapping[str, Any] | pydantic.BaseModel) -> dict[str, Any]:
    if isinstance(value, pydantic.BaseModel):
        dumped: dict[str, Any] = value.model_dump(mode="json", by_alias=True, exclude_none=True)
        return dumped
    return dict(value)


def _sampling_messages(
    messages: str | Sequence[str | Mapping[str, Any] | pydantic.BaseModel],
) -> list[dict[str, Any]]:
    if isinstance(messages, str):
        messages = [messages]
    converted: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, str):
            converted.append({"role": "user", "content": {"type": "text", "text": message}})
        else:
            converted.append(_dump(message))
    return converted
