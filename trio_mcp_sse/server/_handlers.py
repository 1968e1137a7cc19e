"""The request handlers behind every MCP method the server answers.

Each is ``(connection, params, context) -> result dict``; a bad request raises
:class:`MCPError` with the code the spec names.  Results are built as plain
dicts and encoded once by the connection.  They read the catalog and the
session's own state through :class:`ConnectionState`, the little they need of
a connection, so this layer sits below the connection and knows nothing of it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Protocol, TypeAlias, TypeVar

import pydantic

from .._errors import (
    INSUFFICIENT_SCOPE,
    ClientCapabilityError,
    ClientRequestError,
    ClientRequestTimeout,
    MCPError,
    ResourceNotFound,
    ToolError,
)
from .._jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND
from .._protocol_versions import MODERN_PROTOCOL_VERSIONS
from .._session import SessionClosed
from ._catalog import Catalog
from ._completion import CompletionRequest, to_complete_result
from ._context import Context
from ._functions import describe_validation_error
from ._input import InputRequired
from ._prompts import to_prompt_messages
from ._protocol import LOG_LEVELS, SERVER_BUSY
from ._resources import Resource, ResourceTemplate, to_read_result
from ._tasks import TaskRecord, TaskStore, created_result, declares_tasks, missing_tasks_capability
from ._tools import Tool

__all__ = ["HANDLERS", "MAX_SUBSCRIPTIONS", "BuiltinHandler", "ConnectionState", "invoke_tool"]


class ConnectionState(Protocol):
    """What the built-in handlers read and change of one session (:class:`ServerConnection` is one)."""

    @property
    def catalog(self) -> Catalog: ...
    @property
    def session_id(self) -> str: ...

    @property
    def tasks(self) -> TaskStore | None: ...

    @property
    def subscriptions(self) -> set[str]: ...

    log_level: str | None


BuiltinHandler: TypeAlias = Callable[[ConnectionState, Mapping[str, Any], Context], Awaitable[dict[str, Any]]]

log = logging.getLogger("trio_mcp_sse.server")

T = TypeVar("T")


def _string(params: Mapping[str, Any], key: str, method: str) -> str:
    value = params.get(key)
    if not isinstance(value, str):
        raise MCPError(INVALID_PARAMS, f"{method}: params.{key} must be a string")
    return value


def _page(items: Sequence[T], params: Mapping[str, Any], page_size: int | None, method: str) -> tuple[Sequence[T], str | None]:
    """One page of a list result and the cursor of the next, if any.

    The cursor is opaque to clients; here it is the offset of the next page.
    Without a page size the whole list is one page, and any cursor is one we
    never issued, hence invalid (-32602, as the spec asks).
    """
    cursor = params.get("cursor")
    start = 0
    if cursor is not None:
        if not (isinstance(cursor, str) and cursor.isascii() and cursor.isdigit() and page_size is not None):
            raise MCPError(INVALID_PARAMS, f"{method}: invalid cursor")
        start = int(cursor)
    if page_size is None:
        return items, None
    end = start + page_size
    return items[start:end], (str(end) if end < len(items) else None)


def _listing(key: str, definitions: Sequence[dict[str, Any]], params: Mapping[str, Any], page_size: int | None, method: str) -> dict[str, Any]:
    page, next_cursor = _page(definitions, params, page_size, method)
    result: dict[str, Any] = {key: list(page)}
    if next_cursor is not None:
        result["nextCursor"] = next_cursor
    return result


# -- tools -----------------------------------------------------------------------------------------
def _check_scopes(required: frozenset[str], context: Context, what: str) -> None:
    """Refuse a call the request's access token does not cover (also when it has none).

    The HTTP transports refuse such a request with ``403`` before it reaches the
    session; this is the same rule for every other way in (WebSocket, a custom
    transport, a test harness), so a scope requirement never depends on the transport.
    """
    token = context.access_token
    missing = required if token is None else required - token.scopes
    if missing:
        raise MCPError(
            INSUFFICIENT_SCOPE,
            f"Insufficient scope for {what}: requires {' '.join(sorted(required))}",
            {"error": "insufficient_scope", "requiredScopes": sorted(required)},
        )



async def list_tools(connection: ConnectionState, params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    catalog = connection.catalog
    definitions = [tool.definition for tool in catalog.tools.values()]
    return _listing("tools", definitions, params, catalog.page_size, "tools/list")


async def call_tool(connection: ConnectionState, params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    name = params.get("name")
    if not isinstance(name, str):
        raise MCPError(INVALID_PARAMS, "tools/call: params.name must be a string")
    tool = connection.catalog.tools.get(name)
    if tool is None:
        raise MCPError(INVALID_PARAMS, f"Unknown tool: {name}")
    if tool.required_scopes:
        _check_scopes(tool.required_scopes, context, f"tool {name}")
    arguments = params.get("arguments")
    if arguments is None:
        arguments = {}
    elif not isinstance(arguments, dict):
        raise MCPError(INVALID_PARAMS, "tools/call: params.arguments must be an object")
    try:
        kwargs = tool.signature.validate(arguments)
    except pydantic.ValidationError as invalid:
        raise MCPError(
            INVALID_PARAMS, f"Invalid arguments for tool {name}: {describe_validation_error(invalid)}"
        ) from None
    if tool.task is not None:
        # The tasks extension is a 2026-07-28 one; a handshake-era call is a plain call.
        declared = context.protocol_version in MODERN_PROTOCOL_VERSIONS and declares_tasks(context.client_capabilities)
        if not declared and tool.task == "required":
            raise missing_tasks_capability(f"tool {name!r} (it runs only as a task)")
        store = connection.tasks
        if declared and store is not None:
            return await _call_as_task(connection, store, tool, kwargs, context)
    return await invoke_tool(connection, tool, kwargs, context)


async def _call_as_task(
    connection: ConnectionState, store: TaskStore, tool: Tool, kwargs: dict[str, Any], context: Context
) -> dict[str, Any]:
    """A call of a task tool by a client that declared the extension: a ``CreateTaskResult`` (see ``_tasks``)."""
    principal, capabilities = context.principal, context.client_capabilities
    if tool.task_start == "call":
        def work(record: TaskRecord) -> Callable[[], Awaitable[dict[str, Any]]]:
            context.bind_task(record)
            return functools.partial(invoke_tool, connection, tool, kwargs, context)

        return created_result(store, store.start(principal, capabilities, work))

    def call(handoff: Any) -> Callable[[], Awaitable[dict[str, Any]]]:
        context.bind_handoff(store, handoff)
        return functools.partial(invoke_tool, connection, tool, kwargs, context)

    got = await store.run_explicit(call)
    if isinstance(got, TaskRecord):
        return created_result(store, got)
    return got


async def invoke_tool(connection: ConnectionState, tool: Tool, kwargs: dict[str, Any], context: Context) -> dict[str, Any]:
    """Run the tool: its ``CallToolResult``; a failure of the tool is a result with ``isError`` too."""
    name = tool.name
    try:
        value = await tool.signature.call(kwargs, context)
    except ClientRequestError as refused:
        return _tool_failure(f"The client refused the request: {refused.message}")
    except (ToolError, ClientCapabilityError, ClientRequestTimeout) as failure:
        return _tool_failure(str(failure))
    except (MCPError, SessionClosed):
        raise
    except Exception:
        # A tool's failure is the model's business (it may retry or change course),
        # so it is a result, not a protocol error; the details stay in the log.
        log.exception("session %s: tool %s raised", connection.session_id, name)
        return _tool_failure(f"Tool {name!r} failed with an internal error")
    except BaseExceptionGroup as group:
        # Questions to a 2026-07-28 client (InputRequired) and failures from one
        # nursery: the failure wins, as it would have alone.
        if group.split(InputRequired)[0] is None or group.split(Exception)[0] is None:
            raise
        log.exception("session %s: tool %s raised", connection.session_id, name)
        return _tool_failure(f"Tool {name!r} failed with an internal error")
    return tool.to_result(value)


def _tool_failure(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": True}


# -- resources -------------------------------------------------------------------------------------
async def list_resources(connection: ConnectionState, params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    catalog = connection.catalog
    definitions = [resource.definition for resource in catalog.resources.values()]
    return _listing("resources", definitions, params, catalog.page_size, "resources/list")


async def list_resource_templates(
    connection: ConnectionState, params: Mapping[str, Any], context: Context
) -> dict[str, Any]:
    catalog = connection.catalog
    definitions = [template.definition for template in catalog.resource_templates.values()]
    return _listing("resourceTemplates", definitions, params, catalog.page_size, "resources/templates/list")


def _find_resource(
    connection: ConnectionState, uri: str
) -> tuple[Resource | ResourceTemplate, dict[str, Any]]:
    catalog = connection.catalog
    resource = catalog.resources.get(uri)
    if resource is not None:
        return resource, {}
    for template in catalog.resource_templates.values():
        variables = template.uri_template.match(uri)
        if variables is None:
            continue
        try:
            return template, template.signature.validate(variables)
        except pydantic.ValidationError as invalid:
            raise MCPError(
                INVALID_PARAMS,
                f"resources/read: {uri} does not fit {template.uri_template.template}: "
                f"{describe_validation_error(invalid)}",
            ) from None
    raise ResourceNotFound(uri)


async def read_resource(connection: ConnectionState, params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    uri = _string(params, "uri", "resources/read")
    resource, kwargs = _find_resource(connection, uri)
    value = await resource.signature.call(kwargs, context)
    return to_read_result(uri, resource.mime_type, value)


MAX_SUBSCRIPTIONS: Final = 1024
"""Per session: subscriptions cost memory, and so do the updates queued for a slow reader."""


async def subscribe(connection: ConnectionState, params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    uri = _string(params, "uri", "resources/subscribe")
    if uri not in connection.subscriptions and len(connection.subscriptions) >= MAX_SUBSCRIPTIONS:
        raise MCPError(SERVER_BUSY, f"resources/subscribe: at most {MAX_SUBSCRIPTIONS} subscriptions per session")
    connection.subscriptions.add(uri)
    return {}


async def unsubscribe(connection: ConnectionState, params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    connection.subscriptions.discard(_string(params, "uri", "resources/unsubscribe"))
    return {}


# -- prompts ---------------------------------------------------------------------------------------
async def list_prompts(connection: ConnectionState, params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    catalog = connection.catalog
    definitions = [prompt.definition for prompt in catalog.prompts.values()]
    return _listing("prompts", definitions, params, catalog.page_size, "prompts/list")


async def get_prompt(connection: ConnectionState, params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    name = _string(params, "name", "prompts/get")
    prompt = connection.catalog.prompts.get(name)
    if prompt is None:
        raise MCPError(INVALID_PARAMS, f"Unknown prompt: {name}")
    arguments = params.get("arguments")
    if arguments is None:
        arguments = {}
    elif not isinstance(arguments, dict):
        raise MCPError(INVALID_PARAMS, "prompts/get: params.arguments must be an object")
    try:
        kwargs = prompt.signature.validate(arguments)
    except pydantic.ValidationError as invalid:
        raise MCPError(
            INVALID_PARAMS, f"Invalid arguments for prompt {name}: {describe_validation_error(invalid)}"
        ) from None
    value = await prompt.signature.call(kwargs, context)
    result: dict[str, Any] = {"messages": to_prompt_messages(value)}
    if prompt.description:
        result["description"] = prompt.description
    return result


# -- completion ------------------------------------------------------------------------------------
_REF_TYPES: Final = {"ref/prompt": ("prompt", "name"), "ref/resource": ("resource", "uri")}


async def complete(connection: ConnectionState, params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    handler = connection.catalog.completion_handler
    if handler is None:
        raise MCPError(METHOD_NOT_FOUND, "Method not found: completion/complete (no completion handler)")
    ref = params.get("ref")
    argument = params.get("argument")
    if not isinstance(ref, dict) or ref.get("type") not in _REF_TYPES:
        raise MCPError(INVALID_PARAMS, "completion/complete: params.ref must be a ref/prompt or ref/resource")
    ref_type, key = _REF_TYPES[ref["type"]]
    ref_value = ref.get(key)
    if not isinstance(ref_value, str):
        raise MCPError(INVALID_PARAMS, f"completion/complete: params.ref.{key} must be a string")
    if not (
        isinstance(argument, dict)
        and isinstance(argument.get("name"), str)
        and isinstance(argument.get("value"), str)
    ):
        raise MCPError(INVALID_PARAMS, "completion/complete: params.argument needs string name and value")
    extra = params.get("context")
    chosen = extra.get("arguments") if isinstance(extra, dict) else None
    request = CompletionRequest(
        ref_type=ref_type,  # type: ignore[arg-type]
        ref=ref_value,
        argument=argument["name"],
        value=argument["value"],
        context=chosen if isinstance(chosen, dict) else {},
    )
    return to_complete_result(await handler(request, context))


# -- logging ---------------------------------------------------------------------------------------
async def set_level(connection: ConnectionState, params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    level = params.get("level")
    if not isinstance(level, str) or level not in LOG_LEVELS:
        raise MCPError(INVALID_PARAMS, f"logging/setLevel: level must be one of {', '.join(LOG_LEVELS)}")
    connection.log_level = level
    return {}


HANDLERS: Final[dict[str, BuiltinHandler]] = {
    "tools/list": list_tools,
    "tools/call": call_tool,
    "resources/list": list_resources,
    "resources/templates/list": list_resource_templates,
    "resources/read": read_resource,
    "resources/subscribe": subscribe,
    "resources/unsubscribe": unsubscribe,
    "prompts/list": list_prompts,
    "prompts/get": get_prompt,
    "completion/complete": complete,
    "logging/setLevel": set_level,
}
"""Every method the server answers besides ``initialize`` and ``ping`` (handled inline)."""
