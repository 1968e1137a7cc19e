"""``MCPServer``: declare tools, resources and prompts; get a session handler and an ASGI app.

One server object serves any number of sessions.  What is registered on it
(tools, resources, prompts) is shared; what belongs to one client (negotiated
version, subscriptions, log level, requests in flight) lives in that session's
:class:`ServerConnection`.

Registrations may change while sessions are live: adding or removing a tool,
resource or prompt announces ``notifications/*/list_changed`` to every
session that has been initialized, and :meth:`MCPServer.notify_resource_updated`
tells subscribers that a resource changed.  These calls are synchronous and
never block; announcements go out in order through each session's bounded
outbound channel.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

import orjson
import pydantic
import trio

from .._session import Session
from ._completion import Completion, CompletionRequest
from ._connection import RequestHandler, ServerConnection
from ._context import Context
from ._functions import is_context
from ._handlers import HANDLERS
from ._prompts import Prompt
from ._protocol import LOG_LEVELS, LoggingLevel
from ._resources import Resource, ResourceTemplate, build_resource
from ._tools import Tool

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from .._transport import SseServerTransport

__all__ = ["MCPServer"]

F = TypeVar("F", bound=Callable[..., Any])

CompletionHandler = Callable[[CompletionRequest, Context], Awaitable["Completion | Sequence[str] | None"]]
NotificationHandler = Callable[[ServerConnection, Mapping[str, Any]], Awaitable[None]]

_TOOLS_CHANGED = orjson.dumps({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
_RESOURCES_CHANGED = orjson.dumps({"jsonrpc": "2.0", "method": "notifications/resources/list_changed"})
_PROMPTS_CHANGED = orjson.dumps({"jsonrpc": "2.0", "method": "notifications/prompts/list_changed"})


class MCPServer:
    """A Trio-native MCP server.

    Register tools with :meth:`tool`, resources with :meth:`resource`,
    prompts with :meth:`prompt` and an argument completer with
    :meth:`completion`; serve it with :meth:`sse_app` (a Quart-Trio app),
    :meth:`sse_transport` (a bare ASGI app), or hand :meth:`run_session` to
    any transport.

    Options:

    ``log_level``
        Threshold for ``notifications/message`` until a client picks its own
        with ``logging/setLevel`` (default ``"info"``).
    ``page_size``
        Page length of ``tools/list``, ``resources/list``,
        ``resources/templates/list`` and ``prompts/list`` (``None``: one page).
    ``client_request_timeout``
        Default bound, in seconds, on waiting for the client to answer a
        server->client request (sampling, elicitation, roots).
    ``max_concurrent_requests``
        Requests one session may have in flight; beyond it a request is
        refused at once (-32000) rather than queued without bound.
    """

    def __init__(
        self,
        name: str,
        version: str = "0.1.0",
        *,
        title: str | None = None,
        instructions: str | None = None,
        website_url: str | None = None,
        log_level: LoggingLevel = "info",
        page_size: int | None = None,
        client_request_timeout: float = 120.0,
        max_concurrent_requests: int = 256,
    ) -> None:
        if log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        if page_size is not None and page_size < 1:
            raise ValueError("page_size must be >= 1 or None")
        if client_request_timeout <= 0:
            raise ValueError("client_request_timeout must be > 0")
        if max_concurrent_requests < 1:
            raise ValueError("max_concurrent_requests must be >= 1")
        self.name = name
        self.version = version
        self.title = title
        self.instructions = instructions
        self.website_url = website_url
        self.log_level: str = log_level
        self.page_size = page_size
        self.client_request_timeout = client_request_timeout
        self.max_concurrent_requests = max_concurrent_requests
        self.tools: dict[str, Tool] = {}
        self.resources: dict[str, Resource] = {}
        self.resource_templates: dict[str, ResourceTemplate] = {}
        self.prompts: dict[str, Prompt] = {}
        self.completion_handler: CompletionHandler | None = None
        self.request_handlers: dict[str, RequestHandler] = dict(HANDLERS)
        """Method -> handler.  Add entries to serve custom methods."""
        self.notification_handlers: dict[str, NotificationHandler] = {}
        """Method -> ``async (connection, params)``: client notifications to act on."""
        self._connections: set[ServerConnection] = set()

    @property
    def connections(self) -> tuple[ServerConnection, ...]:
        """The sessions being served right now."""
        return tuple(self._connections)

    # -- tools -----------------------------------------------------------------------------------
    @overload
    def tool(self, fn: F, /) -> F: ...

    @overload
    def tool(
        self,
        /,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: Mapping[str, Any] | pydantic.BaseModel | None = None,
        structured_output: bool | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: Mapping[str, Any] | pydantic.BaseModel | None = None,
        structured_output: bool | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Any:
        """Register a function as a tool (usable bare, ``@server.tool``, or with options).

        The input schema comes from the type hints, the description from the
        docstring unless given, the output schema from the return annotation
        (see :class:`Tool`).  Sync functions run in a worker thread.
        """

        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            self.add_tool(
                function,
                name=name,
                title=title,
                description=description,
                annotations=annotations,
                structured_output=structured_output,
                meta=meta,
            )
            return function

        return register(fn) if fn is not None else register

    def add_tool(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: Mapping[str, Any] | pydantic.BaseModel | None = None,
        structured_output: bool | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Tool:
        """Register a tool (at import time or while serving; live sessions are told)."""
        tool = Tool.from_function(
            fn,
            name=name,
            title=title,
            description=description,
            annotations=annotations,
            structured_output=structured_output,
            meta=meta,
        )
        if tool.name in self.tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self.tools[tool.name] = tool
        self._announce(_TOOLS_CHANGED)
        return tool

    def remove_tool(self, name: str) -> None:
        """Unregister a tool; live sessions are told.  ``KeyError`` if there is none."""
        del self.tools[name]
        self._announce(_TOOLS_CHANGED)

    # -- resources -------------------------------------------------------------------------------
    def resource(
        self,
        uri: str,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        mime_type: str | None = None,
        size: int | None = None,
        annotations: Mapping[str, Any] | pydantic.BaseModel | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function as the reader of ``uri``.

        A URI with template variables (``notes://{name}``) registers a
        resource template, and the function takes the variables as keyword
        arguments.  See :func:`add_resource` for the details.
        """

        def register(function: F) -> F:
            self.add_resource(
                uri,
                function,
                name=name,
                title=title,
                description=description,
                mime_type=mime_type,
                size=size,
                annotations=annotations,
                meta=meta,
            )
            return function

        return register

    def add_resource(
        self,
        uri: str,
        fn: Callable[..., Any] | str | bytes,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        mime_type: str | None = None,
        size: int | None = None,
        annotations: Mapping[str, Any] | pydantic.BaseModel | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Resource | ResourceTemplate:
        """Register a resource or resource template; live sessions are told.

        ``fn`` is the read function (async, or sync to run in a thread; it may
        take a :class:`Context`), or fixed ``str`` / ``bytes`` contents.  It
        returns ``str`` (text), ``bytes`` (sent as base64), a list of
        :func:`resource_contents` entries, or a JSON-serialisable value.
        ``annotations`` as in the spec (``audience``, ``priority``,
        ``lastModified``).
        """
        if isinstance(fn, str | bytes):
            if size is None:
                size = len(fn if isinstance(fn, bytes) else fn.encode("utf-8"))
            fn = _constant(fn)
            name = name or uri
        entry = build_resource(
            uri,
            fn,
            name=name,
            title=title,
            description=description,
            mime_type=mime_type,
            size=size,
            annotations=annotations,
            meta=meta,
        )
        if isinstance(entry, ResourceTemplate):
            if uri in self.resource_templates:
                raise ValueError(f"a resource template {uri!r} is already registered")
            self.resource_templates[uri] = entry
        else:
            if uri in self.resources:
                raise ValueError(f"a resource {uri!r} is already registered")
            self.resources[uri] = entry
        self._announce(_RESOURCES_CHANGED)
        return entry

    def remove_resource(self, uri: str) -> None:
        """Unregister a resource or resource template (by its URI or URI template)."""
        if uri in self.resources:
            del self.resources[uri]
        elif uri in self.resource_templates:
            del self.resource_templates[uri]
        else:
            raise KeyError(uri)
        self._announce(_RESOURCES_CHANGED)

    def notify_resource_updated(self, uri: str) -> None:
        """Tell every session subscribed to ``uri`` that it changed (``notifications/resources/updated``).

        Synchronous and non-blocking; safe to call from a worker thread
        started by Trio (it hops to the Trio thread).
        """
        data = orjson.dumps(
            {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}}
        )
        self._announce(data, subscribed_to=uri)

    # -- prompts ---------------------------------------------------------------------------------
    @overload
    def prompt(self, fn: F, /) -> F: ...

    @overload
    def prompt(
        self,
        /,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Callable[[F], F]: ...

    def prompt(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Any:
        """Register a function as a prompt; its parameters are the prompt's arguments."""

        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            self.add_prompt(function, name=name, title=title, description=description, meta=meta)
            return function

        return register(fn) if fn is not None else register

    def add_prompt(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Prompt:
        """Register a prompt (at import time or while serving; live sessions are told)."""
        prompt = Prompt.from_function(fn, name=name, title=title, description=description, meta=meta)
        if prompt.name in self.prompts:
            raise ValueError(f"a prompt named {prompt.name!r} is already registered")
        self.prompts[prompt.name] = prompt
        self._announce(_PROMPTS_CHANGED)
        return prompt

    def remove_prompt(self, name: str) -> None:
        del self.prompts[name]
        self._announce(_PROMPTS_CHANGED)

    # -- completion and notifications ------------------------------------------------------------
    def completion(self, fn: F) -> F:
        """Register the argument completer: ``fn(request: CompletionRequest[, ctx: Context])``.

        It returns a list of suggestions or a :class:`Completion`; it may be
        sync (run in a worker thread) or async.
        """
        parameters = list(inspect.signature(fn).parameters.values())
        context_names = [
            p.name for p in parameters if is_context(_resolved_hints(fn).get(p.name))
        ]
        others = [p for p in parameters if p.name not in context_names]
        if len(others) != 1:
            raise TypeError("a completion handler takes one CompletionRequest (and optionally a Context)")
        context_name = context_names[0] if context_names else None
        is_async = inspect.iscoroutinefunction(fn)

        async def handler(request: CompletionRequest, context: Context) -> Completion | Sequence[str] | None:
            kwargs: dict[str, Any] = {}
            if context_name is not None:
                kwargs[context_name] = context
            if is_async:
                return await fn(request, **kwargs)  # type: ignore[no-any-return]
            return await trio.to_thread.run_sync(functools.partial(fn, request, **kwargs))

        self.completion_handler = handler
        return fn

    def notification(self, method: str) -> Callable[[F], F]:
        """Register ``async fn(connection, params)`` for a client notification such as
        ``notifications/roots/list_changed``."""

        def register(function: F) -> F:
            self.notification_handlers[method] = function
            return function

        return register

    def _announce(self, data: bytes, *, subscribed_to: str | None = None) -> None:
        if not self._connections:
            return
        if not trio.lowlevel.in_trio_run():
            # Called from a worker thread: sessions' channels belong to the Trio thread.
            trio.from_thread.run_sync(functools.partial(self._announce, data, subscribed_to=subscribed_to))
            return
        for connection in tuple(self._connections):
            if not connection.initialized:
                continue
            if subscribed_to is not None and subscribed_to not in connection.subscriptions:
                continue
            connection.post(data)

    # -- protocol --------------------------------------------------------------------------------
    def capabilities(self) -> dict[str, Any]:
        """What ``initialize`` announces.

        Tools, resources (with subscriptions), prompts and logging are always
        served, so always announced -- with ``listChanged``, since they may
        change at run time; completions only when a completer is registered.
        """
        capabilities: dict[str, Any] = {
            "tools": {"listChanged": True},
            "resources": {"subscribe": True, "listChanged": True},
            "prompts": {"listChanged": True},
            "logging": {},
        }
        if self.completion_handler is not None:
            capabilities["completions"] = {}
        return capabilities

    def initialize_result(self, protocol_version: str) -> dict[str, Any]:
        server_info: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.title is not None:
            server_info["title"] = self.title
        if self.website_url is not None:
            server_info["websiteUrl"] = self.website_url
        result: dict[str, Any] = {
            "protocolVersion": protocol_version,
            "capabilities": self.capabilities(),
            "serverInfo": server_info,
        }
        if self.instructions is not None:
            result["instructions"] = self.instructions
        return result

    async def run_session(self, session: Session) -> None:
        """The session handler: serve one session until it ends."""
        await ServerConnection(self, session).run()

    # -- serving ---------------------------------------------------------------------------------
    def sse_transport(self, **options: Any) -> SseServerTransport:
        """An :class:`SseServerTransport` serving this server (options as its constructor's)."""
        from .._transport import SseServerTransport

        return SseServerTransport(self.run_session, **options)

    def sse_app(self, **options: Any) -> QuartTrio:
        """A Quart-Trio app serving this server over HTTP+SSE.

        Add routes, blueprints and lifecycle hooks to it as to any Quart-Trio
        app; the transport's two endpoints are answered before Quart's routing.
        The transport is at ``app.extensions["trio_mcp_sse"]``.
        """
        from quart_trio import QuartTrio

        app = QuartTrio(self.name)
        transport = self.sse_transport(**options)
        transport.init_app(app)
        app.extensions["trio_mcp_sse"] = transport
        return app


def _constant(value: str | bytes) -> Callable[[], Awaitable[str | bytes]]:
    async def read() -> str | bytes:
        return value

    return read


def _resolved_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(fn)
    except (NameError, TypeError):
        return dict(getattr(fn, "__annotations__", {}))
