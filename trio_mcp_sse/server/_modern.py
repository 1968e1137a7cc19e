"""The server layer's modern era (protocol 2026-07-28): envelopes, headers, results, listen streams.

Theory of operation
-------------------
A 2026-07-28 request stands alone: no ``initialize`` came before it, so the
request itself says who is asking, in its ``params._meta`` *envelope*
(protocol version, client capabilities, optionally client info and a log
level), and its HTTP headers repeat what an intermediary needs to route it
without parsing the body (``MCP-Protocol-Version``, ``Mcp-Method``,
``Mcp-Name``, and ``Mcp-Param-*`` for tool arguments whose schema carries
``x-mcp-header``).  :func:`read_envelope` checks them in a fixed order, the
first failure deciding the error: a missing envelope is -32602, a header that
disagrees with the body -32020 (HeaderMismatch), a revision this server does
not speak -32022 (UnsupportedProtocolVersion, naming the ones it does).

The methods are those of the handshake era minus the ones the revision
removed (``initialize``, ``ping``, ``logging/setLevel``,
``resources/subscribe`` / ``unsubscribe``: -32601), plus ``server/discover``
and ``subscriptions/listen``.  Every result says what it is (``resultType``:
``complete`` or ``input_required``) and who answered (``serverInfo`` in its
``_meta``); the lists, reads and discovery carry caching hints
(:class:`~trio_mcp_sse.server.CachePolicy`).

``subscriptions/listen`` replaces the standalone GET stream and
``resources/subscribe``: its response stream stays open and carries, after
``notifications/subscriptions/acknowledged``, exactly the notification types
the client opted in to, each tagged with the subscription id (the listen
request's id).
"""

from __future__ import annotations

import contextlib
import decimal
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson
import trio
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    LOG_LEVEL_META_KEY,
    PROTOCOL_VERSION_META_KEY,
    SERVER_INFO_META_KEY,
)

from .._errors import MCPError
from .._jsonrpc import INVALID_PARAMS, RequestId
from .._protocol_versions import MODERN_PROTOCOL_VERSIONS, decode_header_value
from ._catalog import Catalog
from ._context import Context
from ._handlers import MAX_SUBSCRIPTIONS
from ._protocol import LOG_LEVELS, CachePolicy
from ._tasks import (
    TERMINAL_STATUSES,
    TaskRecord,
    TaskStore,
    declares_tasks,
    missing_tasks_capability,
)

__all__ = [
    "HEADER_MISMATCH",
    "INPUT_METHODS_OF_REQUESTS",
    "REMOVED_METHODS",
    "SUBSCRIPTION_ID_META_KEY",
    "UNSUPPORTED_PROTOCOL_VERSION",
    "Envelope",
    "ListenHost",
    "cache_policy_for",
    "check_param_headers",
    "complete_result",
    "input_required_result",
    "listen",
    "read_envelope",
]

HEADER_MISMATCH: Final = -32020
UNSUPPORTED_PROTOCOL_VERSION: Final = -32022
SUBSCRIPTION_ID_META_KEY: Final = "io.modelcontextprotocol/subscriptionId"
REMOVED_METHODS: Final = frozenset(
    {"initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"}
)
"""Handshake-era methods the 2026-07-28 revision removed: -32601 there."""
INPUT_METHODS_OF_REQUESTS: Final = frozenset({"tools/call", "prompts/get", "resources/read"})
"""The requests that may answer with an ``InputRequiredResult`` (the specification's list)."""
_NAME_PARAM: Final = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
    # SEP-2663: a task's requests name it, so that an intermediary can route them to its owner.
    "tasks/get": "taskId",
    "tasks/update": "taskId",
    "tasks/cancel": "taskId",
}
_CACHEABLE: Final = frozenset(
    {"tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read", "server/discover"}
)
_LISTEN_BUFFER: Final = 64
_LIST_CHANGED: Final = {
    "notifications/tools/list_changed": "toolsListChanged",
    "notifications/prompts/list_changed": "promptsListChanged",
    "notifications/resources/list_changed": "resourcesListChanged",
}


@dataclass(frozen=True, slots=True)
class Envelope:
    """Who asks, as one modern request's ``_meta`` says."""

    protocol_version: str
    client_capabilities: Mapping[str, Any]
    client_info: Mapping[str, Any] | None
    log_level: str | None
    """``None``: the request did not ask for log messages, so it gets none."""


def read_envelope(method: str, params: Mapping[str, Any], headers: Mapping[str, str]) -> Envelope:
    """The request's envelope, once it and the routing headers agree; else the first failure."""
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        raise MCPError(
            INVALID_PARAMS,
            f"params._meta must be an object carrying {PROTOCOL_VERSION_META_KEY!r} and {CLIENT_CAPABILITIES_META_KEY!r}",
        )
    missing = [key for key in (PROTOCOL_VERSION_META_KEY, CLIENT_CAPABILITIES_META_KEY) if key not in meta]
    if missing:
        raise MCPError(INVALID_PARAMS, f"params._meta lacks {', '.join(missing)}")
    version = meta[PROTOCOL_VERSION_META_KEY]
    if headers.get("mcp-protocol-version") != version:
        raise MCPError(HEADER_MISMATCH, "the MCP-Protocol-Version header does not match params._meta")
    if headers.get("mcp-method") != method:
        raise MCPError(HEADER_MISMATCH, "the Mcp-Method header does not match the request's method")
    name_key = _NAME_PARAM.get(method)
    if name_key is not None:
        value = params.get(name_key)
        if value is not None and decode_header_value(headers.get("mcp-name")) != value:
            raise MCPError(HEADER_MISMATCH, f"the Mcp-Name header does not match params.{name_key}")
    if not isinstance(version, str):
        raise MCPError(INVALID_PARAMS, f"{PROTOCOL_VERSION_META_KEY} must be a string")
    if version not in MODERN_PROTOCOL_VERSIONS:
        raise MCPError(
            UNSUPPORTED_PROTOCOL_VERSION,
            "Unsupported protocol version",
            {"supported": list(MODERN_PROTOCOL_VERSIONS), "requested": version},
        )
    capabilities = meta[CLIENT_CAPABILITIES_META_KEY]
    if not isinstance(capabilities, dict):
        raise MCPError(INVALID_PARAMS, f"{CLIENT_CAPABILITIES_META_KEY} must be an object")
    info = meta.get(CLIENT_INFO_META_KEY)
    level = meta.get(LOG_LEVEL_META_KEY)
    if level is not None and level not in LOG_LEVELS:
        raise MCPError(INVALID_PARAMS, f"{LOG_LEVEL_META_KEY} must be one of {', '.join(LOG_LEVELS)}")
    return Envelope(version, capabilities, info if isinstance(info, dict) else None, level)


def _header_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def check_param_headers(input_schema: Mapping[str, Any], arguments: Mapping[str, Any], headers: Mapping[str, str]) -> None:
    """``Mcp-Param-<token>`` headers must mirror the arguments whose schema names that token.

    Only top-level properties (the specification puts ``x-mcp-header`` on
    primitive properties of the input schema).  An argument and its header
    are present together and equal, or absent together: -32020 otherwise.
    """
    properties = input_schema.get("properties")
    if not isinstance(properties, dict):
        return
    for name, schema in properties.items():
        token = schema.get("x-mcp-header") if isinstance(schema, dict) else None
        if not isinstance(token, str):
            continue
        header = headers.get(f"mcp-param-{token.lower()}")
        argument = arguments.get(name)
        expected = _header_text(argument)
        if header is None and expected is None:
            continue
        if header is None:
            raise MCPError(HEADER_MISMATCH, f"the Mcp-Param-{token} header is missing for argument {name!r}")
        decoded = decode_header_value(header)
        if decoded is None:
            raise MCPError(HEADER_MISMATCH, f"the Mcp-Param-{token} header is not valid base64 UTF-8")
        if expected is None or not _same_value(decoded, argument):
            raise MCPError(HEADER_MISMATCH, f"the Mcp-Param-{token} header does not match argument {name!r}")


_JSON_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _same_value(header: str, argument: Any) -> bool:
    """Whether a header's text stands for exactly the argument the server will act on.

    Strings and booleans compare as text.  Numbers compare by exact decimal
    value: the header must be a JSON number, and an integer argument is the
    integer itself (``9007199254740992`` is not ``9007199254740993``, though
    both are the same double), a fractional one the shortest decimal that
    reads back as it (what JSON encoders write).  So ``1e2`` and ``100.0``
    mirror ``100``; ``1.0000000000000001`` does not mirror ``1``, since the
    body's value is what runs.
    """
    if isinstance(argument, bool) or not isinstance(argument, int | float):
        return header == _header_text(argument)
    if _JSON_NUMBER.fullmatch(header) is None:
        return False
    if isinstance(argument, float) and not math.isfinite(argument):
        return False
    try:
        claimed = decimal.Decimal(header)
    except decimal.InvalidOperation:
        return False
    actual = decimal.Decimal(argument) if isinstance(argument, int) else decimal.Decimal(repr(argument))
    return claimed == actual


# -- results -----------------------------------------------------------------------------------------------
def cache_policy_for(catalog: Catalog, method: str, params: Mapping[str, Any], default: CachePolicy) -> CachePolicy | None:
    """The caching hints a result of ``method`` carries (``None``: not a cacheable result)."""
    if method not in _CACHEABLE:
        return None
    if method == "resources/read":
        uri = params.get("uri")
        resource = catalog.resources.get(uri) if isinstance(uri, str) else None
        if resource is not None:
            return resource.cache or default
        for template in catalog.resource_templates.values():
            if isinstance(uri, str) and template.uri_template.match(uri) is not None:
                return template.cache or default
    return default


def complete_result(result: Mapping[str, Any], server_info: Mapping[str, Any], cache: CachePolicy | None) -> dict[str, Any]:
    """A handler's result as the modern era sends it: typed, signed by the server, with its hints."""
    answer = dict(result)
    answer.setdefault("resultType", "complete")
    meta = dict(answer.get("_meta") or {})
    meta[SERVER_INFO_META_KEY] = dict(server_info)
    answer["_meta"] = meta
    if cache is not None:
        answer.update(cache.hints())
    return answer


def input_required_result(
    requests: Mapping[str, Any], request_state: str, server_info: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "resultType": "input_required",
        "inputRequests": dict(requests),
        "requestState": request_state,
        "_meta": {SERVER_INFO_META_KEY: dict(server_info)},
    }


# -- subscriptions/listen ----------------------------------------------------------------------------------
class ListenHost(Protocol):
    """What a listen stream needs of its connection."""

    @property
    def catalog(self) -> Catalog: ...
    @property
    def ending(self) -> trio.Event: ...
    @property
    def tasks(self) -> TaskStore | None: ...
    @property
    def principal(self) -> str | None: ...

    async def send_notification(
        self, method: str, params: Mapping[str, Any] | None = None, *, related_request_id: RequestId | None = None
    ) -> None: ...


async def listen(connection: ListenHost, params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    """Serve one ``subscriptions/listen`` stream until the client leaves or the server drains.

    The acknowledgment names what the server agreed to send (the requested
    types it has; at most :data:`MAX_SUBSCRIPTIONS` resource URIs), then
    every matching change follows on the same response stream.  A client
    that leaves cancels it (its session closes); a draining server ends it
    with a ``SubscriptionsListenResult``, so the client knows to reconnect
    elsewhere.
    """
    wanted = params.get("notifications")
    if not isinstance(wanted, dict):
        raise MCPError(INVALID_PARAMS, "subscriptions/listen: params.notifications must be an object")
    honored: dict[str, Any] = {key: True for key in _LIST_CHANGED.values() if wanted.get(key) is True}
    uris = wanted.get("resourceSubscriptions")
    watched: frozenset[str] = frozenset()
    if uris is not None:
        if not (isinstance(uris, list) and all(isinstance(uri, str) for uri in uris)):
            raise MCPError(INVALID_PARAMS, "subscriptions/listen: resourceSubscriptions must be a list of URIs")
        if len(uris) > MAX_SUBSCRIPTIONS:
            raise MCPError(INVALID_PARAMS, f"subscriptions/listen: at most {MAX_SUBSCRIPTIONS} resource subscriptions")
        watched = frozenset(uris)
        honored["resourceSubscriptions"] = list(dict.fromkeys(uris))
    tasks = _watched_tasks(connection, wanted.get("taskIds"), context)
    if tasks is not None:
        honored["taskIds"] = [record.task_id for record in tasks]
    subscription = context.request_id
    tag = {SUBSCRIPTION_ID_META_KEY: subscription}
    send, receive = trio.open_memory_channel[dict[str, Any]](_LISTEN_BUFFER)

    def heard(data: bytes, uri: str | None) -> None:
        message = orjson.loads(data)
        method = message.get("method")
        if uri is not None:
            if uri not in watched:
                return
        elif _LIST_CHANGED.get(method) not in honored:
            return
        # A client this far behind re-reads anyway: these notices carry no data.
        with contextlib.suppress(trio.WouldBlock):
            send.send_nowait(message)

    await connection.send_notification(
        "notifications/subscriptions/acknowledged",
        {"notifications": honored, "_meta": tag},
        related_request_id=subscription,
    )
    unsubscribe = connection.catalog.subscribe(heard)
    try:
        async with trio.open_nursery() as nursery:

            async def end_when_draining() -> None:
                await connection.ending.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(end_when_draining)
            store = connection.tasks
            for record in tasks or ():
                assert store is not None
                nursery.start_soon(_follow_task, record, store.poll_interval_ms, send.clone())
            async for message in receive:
                notification_params = dict(message.get("params") or {})
                notification_params["_meta"] = {**notification_params.get("_meta", {}), **tag}
                await connection.send_notification(
                    message["method"], notification_params, related_request_id=subscription
                )
    finally:
        unsubscribe()
    # The server is draining: end the subscription with its result, as the specification asks.
    return {"_meta": dict(tag)}


def _watched_tasks(connection: ListenHost, task_ids: Any, context: Context) -> list[TaskRecord] | None:
    """The tasks a listen stream agreed to report (``notifications.taskIds``, SEP-2663): the caller's own."""
    if task_ids is None:
        return None
    if not (isinstance(task_ids, list) and all(isinstance(task_id, str) for task_id in task_ids)):
        raise MCPError(INVALID_PARAMS, "subscriptions/listen: taskIds must be a list of task ids")
    if len(task_ids) > MAX_SUBSCRIPTIONS:
        raise MCPError(INVALID_PARAMS, f"subscriptions/listen: at most {MAX_SUBSCRIPTIONS} task ids")
    if not declares_tasks(context.client_capabilities):
        raise missing_tasks_capability("subscriptions/listen with taskIds")
    store = connection.tasks
    agreed: list[TaskRecord] = []
    for task_id in dict.fromkeys(task_ids):
        # Unknown, expired and other principals' ids are left out alike: agreeing names only real ones.
        with contextlib.suppress(MCPError):
            if store is not None:
                agreed.append(store.find(task_id, connection.principal, "subscriptions/listen"))
    return agreed


async def _follow_task(record: TaskRecord, poll_interval_ms: int, send: trio.MemorySendChannel[dict[str, Any]]) -> None:
    """``notifications/tasks`` with the task's whole state now and after each change, until it ends."""
    async with send:
        while True:
            changed = record.changed  # taken first: a change while the state is sent is not missed
            state = record.detailed(poll_interval_ms)
            await send.send({"method": "notifications/tasks", "params": state})
            if state["status"] in TERMINAL_STATUSES:  # what was sent, not what the task is by now
                return
            await changed.wait()
