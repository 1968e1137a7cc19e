"""``MCPServer``: the front -- declare tools, resources and prompts; get a session handler and an ASGI app.

One server object serves any number of sessions.  What is registered on it
lives in its :class:`Catalog` (shared by every session); what belongs to one
client (negotiated version, subscriptions, log level, requests in flight)
lives in that session's :class:`ServerConnection`.  This class only builds
definitions from functions, hands them to the catalog, and starts connections.

Registrations may change while sessions are live: adding, replacing or
removing a tool, resource or prompt announces ``notifications/*/list_changed``
to every session that has been initialized, and
:meth:`MCPServer.notify_resource_updated` tells subscribers that a resource
changed.  These calls are synchronous and never block; announcements go out in
order through each session's bounded outbound channel.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, Unpack, overload

from .._protocol_versions import MODERN_PROTOCOL_VERSIONS
from .._session import Session
from ._catalog import Catalog, Definition
from ._completion import CompletionHandler, completion_handler
from ._connection import NotificationHandler, RequestHandler, ServerConnection
from ._handlers import HANDLERS
from ._input import RequestStateKey
from ._prompts import Prompt, PromptOptions
from ._protocol import LOG_LEVELS, CachePolicy, LoggingLevel
from ._resources import Resource, ResourceOptions, ResourceTemplate, build_resource
from ._tools import Tool, ToolOptions

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from .._host import SessionHost
    from .._streamable import StreamableHTTPTransport
    from .._transport import SseServerTransport
    from .._websocket import WebSocketServerTransport, WebSocketSettings

__all__ = ["MCPServer"]

F = TypeVar("F", bound=Callable[..., Any])


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
    ``cache``
        The caching hints (:class:`CachePolicy`) of the lists, reads and
        ``server/discover`` answered to 2026-07-28 clients (default: ``ttlMs``
        0, ``cacheScope`` ``"private"``); a resource may set its own.
    ``request_state_key``
        Seals the ``requestState`` of multi round-trip requests (2026-07-28):
        a :class:`RequestStateKey`, or its secret (``bytes`` / ``str``).
        Default: a random key per process -- every worker that may serve a
        client's retry must share one key (see ``docs/protocol-eras.md``).
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
        cache: CachePolicy | None = None,
        request_state_key: RequestStateKey | bytes | str | None = None,
    ) -> None:
        if log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        if client_request_timeout <= 0:
            raise ValueError("client_request_timeout must be > 0")
        if max_concurrent_requests < 1:
            raise ValueError("max_concurrent_requests must be >= 1")
        self.catalog = Catalog(page_size=page_size)
        """Tools, resources, prompts and completion; the announcements of their changes."""
        self.name = name
        self.version = version
        self.title = title
        self.instructions = instructions
        self.website_url = website_url
        self.log_level: str = log_level
        self.client_request_timeout = client_request_timeout
        self.max_concurrent_requests = max_concurrent_requests
        self.request_handlers: dict[str, RequestHandler] = dict(HANDLERS)
        """Method -> handler.  Add entries to serve custom methods."""
        self.notification_handlers: dict[str, NotificationHandler] = {}
        """Method -> ``async (connection, params)``: client notifications to act on."""
        self.cache = cache or CachePolicy()
        """Caching hints of cacheable results (2026-07-28)."""
        self.request_state_key = (
            request_state_key if isinstance(request_state_key, RequestStateKey) else RequestStateKey(request_state_key)
        )
        """Seals and opens ``requestState`` (2026-07-28 multi round-trip requests)."""
        self._connections: set[ServerConnection] = set()

    @property
    def connections(self) -> tuple[ServerConnection, ...]:
        """The sessions being served right now."""
        return tuple(self._connections)

    # -- what is registered (read-only views of the catalog) -------------------------------------
    @property
    def tools(self) -> Mapping[str, Tool]:
        return self.catalog.tools

    @property
    def prompts(self) -> Mapping[str, Prompt]:
        return self.catalog.prompts

    @property
    def resources(self) -> Mapping[str, Resource]:
        return self.catalog.resources

    @property
    def resource_templates(self) -> Mapping[str, ResourceTemplate]:
        return self.catalog.resource_templates

    @property
    def completion_handler(self) -> CompletionHandler | None:
        return self.catalog.completion_handler

    @property
    def page_size(self) -> int | None:
        return self.catalog.page_size

    def replace(self, definition: Definition) -> None:
        """Put a changed definition in the place of the registered one of the same name (or URI).

        Definitions are frozen; change one with ``dataclasses.replace``::

            server.replace(dataclasses.replace(server.tools["add"], description="Adds."))

        Listings show the new one at once and live sessions are told the list
        changed.  ``KeyError`` if nothing of that name (or URI) is registered.
        """
        self.catalog.replace(definition)

    # -- tools -----------------------------------------------------------------------------------
    @overload
    def tool(self, fn: F, /) -> F: ...

    @overload
    def tool(self, /, **options: Unpack[ToolOptions]) -> Callable[[F], F]: ...

    def tool(self, fn: Callable[..., Any] | None = None, /, **options: Unpack[ToolOptions]) -> Any:
        """Register a function as a tool (usable bare, ``@server.tool``, or with options).

        The input schema comes from the type hints, the description from the
        docstring unless given, the output schema from the return annotation
        (see :class:`Tool`; options: :class:`ToolOptions`).  Sync functions
        run in a worker thread.
        """

        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            self.add_tool(function, **options)
            return function

        return register(fn) if fn is not None else register

    def add_tool(self, fn: Callable[..., Any], **options: Unpack[ToolOptions]) -> Tool:
        """Register a tool (at import time or while serving; live sessions are told)."""
        tool = Tool.from_function(fn, **options)
        self.catalog.add(tool)
        return tool

    def remove_tool(self, name: str) -> None:
        """Unregister a tool; live sessions are told.  ``KeyError`` if there is none."""
        self.catalog.remove_tool(name)

    # -- resources -------------------------------------------------------------------------------
    def resource(self, uri: str, **options: Unpack[ResourceOptions]) -> Callable[[F], F]:
        """Register the decorated function as the reader of ``uri``.

        A URI with template variables (``notes://{name}``) registers a
        resource template, and the function takes the variables as keyword
        arguments.  See :func:`add_resource` for the details.
        """

        def register(function: F) -> F:
            self.add_resource(uri, function, **options)
            return function

        return register

    def add_resource(
        self, uri: str, fn: Callable[..., Any] | str | bytes, **options: Unpack[ResourceOptions]
    ) -> Resource | ResourceTemplate:
        """Register a resource or resource template; live sessions are told.

        ``fn`` is the read function (async, or sync to run in a thread; it may
        take a :class:`Context`), or fixed ``str`` / ``bytes`` contents.  It
        returns ``str`` (text), ``bytes`` (sent as base64), a list of
        :func:`resource_contents` entries, or a JSON-serialisable value.
        Options: :class:`ResourceOptions`.
        """
        entry = build_resource(uri, fn, **options)
        self.catalog.add(entry)
        return entry

    def remove_resource(self, uri: str) -> None:
        """Unregister a resource or resource template (by its URI or URI template)."""
        self.catalog.remove_resource(uri)

    def notify_resource_updated(self, uri: str) -> None:
        """Tell every session subscribed to ``uri`` that it changed (``notifications/resources/updated``).

        Synchronous and non-blocking; safe to call from a worker thread
        started by Trio (it hops to the Trio thread).
        """
        self.catalog.resource_updated(uri)

    # -- prompts ---------------------------------------------------------------------------------
    @overload
    def prompt(self, fn: F, /) -> F: ...

    @overload
    def prompt(self, /, **options: Unpack[PromptOptions]) -> Callable[[F], F]: ...

    def prompt(self, fn: Callable[..., Any] | None = None, /, **options: Unpack[PromptOptions]) -> Any:
        """Register a function as a prompt; its parameters are the prompt's arguments."""

        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            self.add_prompt(function, **options)
            return function

        return register(fn) if fn is not None else register

    def add_prompt(self, fn: Callable[..., Any], **options: Unpack[PromptOptions]) -> Prompt:
        """Register a prompt (at import time or while serving; live sessions are told)."""
        prompt = Prompt.from_function(fn, **options)
        self.catalog.add(prompt)
        return prompt

    def remove_prompt(self, name: str) -> None:
        self.catalog.remove_prompt(name)

    # -- completion and notifications ------------------------------------------------------------
    def completion(self, fn: F) -> F:
        """Register the argument completer: ``fn(request: CompletionRequest[, ctx: Context])``.

        It returns a list of suggestions or a :class:`Completion`; it may be
        sync (run in a worker thread) or async.
        """
        self.catalog.completion_handler = completion_handler(fn)
        return fn

    def notification(self, method: str) -> Callable[[F], F]:
        """Register ``async fn(connection, params)`` for a client notification such as
        ``notifications/roots/list_changed``."""

        def register(function: F) -> F:
            self.notification_handlers[method] = function
            return function

        return register

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
        if self.catalog.completion_handler is not None:
            capabilities["completions"] = {}
        return capabilities

    def server_info(self) -> dict[str, Any]:
        """This server's ``Implementation`` (name, version, title, website)."""
        server_info: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.title is not None:
            server_info["title"] = self.title
        if self.website_url is not None:
            server_info["websiteUrl"] = self.website_url
        return server_info

    def initialize_result(self, protocol_version: str) -> dict[str, Any]:
        result: dict[str, Any] = {
            "protocolVersion": protocol_version,
            "capabilities": self.capabilities(),
            "serverInfo": self.server_info(),
        }
        if self.instructions is not None:
            result["instructions"] = self.instructions
        return result

    def discover_result(self) -> dict[str, Any]:
        """What ``server/discover`` answers (2026-07-28): revisions, capabilities, instructions.

        Only the revisions served without a handshake are listed: a client
        that wants an older one uses ``initialize``.
        """
        result: dict[str, Any] = {
            "supportedVersions": list(MODERN_PROTOCOL_VERSIONS),
            "capabilities": self.capabilities(),
        }
        if self.instructions is not None:
            result["instructions"] = self.instructions
        return result

    async def run_session(self, session: Session) -> None:
        """The session handler: serve one session until it ends."""
        connection = ServerConnection(self, session)
        self._connections.add(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)

    # -- authorization ---------------------------------------------------------------------------
    def scopes_for(self, message: Any) -> frozenset[str]:
        """The OAuth scopes ``message`` needs: a ``tools/call`` of a tool with ``required_scopes``.

        The transports ask before a message reaches a session, to answer ``403
        insufficient_scope`` over HTTP (``AuthSettings.scopes_for``; the app
        builders install it).  A tool nobody serves needs none, so calling it
        gets the usual "unknown tool" error rather than a challenge that would
        say what a hidden tool requires.
        """
        if getattr(message, "method", None) != "tools/call":
            return frozenset()
        params = getattr(message, "params", None)
        name = params.get("name") if isinstance(params, dict) else None
        tool = self.catalog.tools.get(name) if isinstance(name, str) else None
        return frozenset() if tool is None else tool.required_scopes

    def _with_tool_scopes(self, options: dict[str, Any]) -> dict[str, Any]:
        """``options`` with ``auth.scopes_for`` set to :meth:`scopes_for`, unless the caller set one."""
        from .._auth import AuthSettings

        auth = options.get("auth")
        if isinstance(auth, AuthSettings) and auth.scopes_for is None:
            options = {**options, "auth": dataclasses.replace(auth, scopes_for=self.scopes_for)}
        return options

    # -- serving ---------------------------------------------------------------------------------
    def sse_transport(self, **options: Any) -> SseServerTransport:
        """An :class:`SseServerTransport` serving this server (options as its constructor's)."""
        from .._transport import SseServerTransport

        return SseServerTransport(self.run_session, **self._with_tool_scopes(options))

    def sse_app(self, *, websocket: WebSocketSettings | bool = False, **options: Any) -> QuartTrio:
        """A Quart-Trio app serving this server over HTTP+SSE (and, if asked, WebSocket at ``/ws``).

        Add routes, blueprints and lifecycle hooks to it as to any Quart-Trio
        app; the transport's two endpoints are answered before Quart's routing.
        The transport is at ``app.extensions["trio_mcp_sse"]``.

        ``websocket``: ``True`` (or a :class:`WebSocketSettings`, for its path and
        bounds) adds the non-standard WebSocket endpoint (``docs/websocket.md``),
        sharing the HTTP+SSE transport's sessions, limits and admission settings;
        off by default.  It is at ``app.extensions["trio_mcp_sse.websocket"]``.
        """
        from quart_trio import QuartTrio

        app = QuartTrio(self.name)
        transport = self.sse_transport(**options)
        transport.init_app(app)
        app.extensions["trio_mcp_sse"] = transport
        shared = {"security": transport.security, "auth": transport.auth, "cors": transport.cors}
        endpoint = self._websocket_beside(websocket, transport.host, **shared)
        if endpoint is not None:
            endpoint.init_app(app)
            app.extensions["trio_mcp_sse.websocket"] = endpoint
        return app

    def _websocket_beside(
        self, websocket: WebSocketSettings | bool, host: SessionHost, **shared: Any
    ) -> WebSocketServerTransport | None:
        """The non-standard WebSocket endpoint on ``host`` (``websocket=False``: none; ``docs/websocket.md``)."""
        if websocket is False:
            return None
        from .._websocket import WebSocketServerTransport, WebSocketSettings

        settings = websocket if isinstance(websocket, WebSocketSettings) else None
        return WebSocketServerTransport(self.run_session, settings=settings, host=host, **self._with_tool_scopes(shared))

    def streamable_http_transport(self, **options: Any) -> StreamableHTTPTransport:
        """A :class:`StreamableHTTPTransport` serving this server (options as its constructor's)."""
        from .._streamable import StreamableHTTPTransport

        return StreamableHTTPTransport(self.run_session, **self._with_tool_scopes(options))

    def http_app(
        self,
        *,
        path: str = "/mcp",
        sse_path: str | None = "/sse",
        message_path: str = "/messages/",
        keepalive_interval: float | None = 15.0,
        limits: Any = None,
        registry: Any = None,
        broker: Any = None,
        health_path: str | None = "/healthz",
        ready_path: str | None = "/readyz",
        metrics_path: str | None = None,
        websocket: WebSocketSettings | bool = False,
        **options: Any,
    ) -> QuartTrio:
        """A Quart-Trio app serving this server over Streamable HTTP and, beside it, HTTP+SSE.

        Streamable HTTP (the current transport) answers at ``path``; the
        deprecated HTTP+SSE transport, for older clients, at ``sse_path`` and
        ``message_path`` (``sse_path=None`` serves Streamable HTTP only).  Both
        share one set of sessions: the session cap, the idle timeout, the
        metrics and a drain cover both.  ``options`` are the shared transport
        options (``security``, ``auth``, ``cors``) and the Streamable HTTP ones
        (``response_mode``, ``event_store``, ``retry_interval``); see
        ``docs/transports.md``.  The transports are at
        ``app.extensions["trio_mcp_sse"]`` (Streamable HTTP) and
        ``app.extensions["trio_mcp_sse.sse"]``.

        ``websocket``: the non-standard WebSocket endpoint (``/ws``, sharing
        the same sessions and admission settings; ``docs/websocket.md``) at
        ``app.extensions["trio_mcp_sse.websocket"]`` when ``True`` or a
        :class:`WebSocketSettings`; off by default.
        """
        from quart_trio import QuartTrio

        from .._host import SessionHost
        from .._streamable import StreamableHTTPTransport
        from .._transport import SseServerTransport

        options = self._with_tool_scopes(options)
        shared = {key: options[key] for key in ("security", "auth", "cors") if key in options}
        ops: dict[str, Any] = {"health_path": health_path, "ready_path": ready_path, "metrics_path": metrics_path}
        host = SessionHost(
            self.run_session, keepalive_interval=keepalive_interval, limits=limits, registry=registry, broker=broker
        )
        app = QuartTrio(self.name)
        streamable = StreamableHTTPTransport(
            self.run_session, path=path, keepalive_interval=keepalive_interval, host=host, **ops, **options
        )
        inner: Any = app.asgi_app
        if sse_path is not None:
            sse = SseServerTransport(
                self.run_session, sse_path=sse_path, message_path=message_path, host=host, **ops, **shared
            )
            inner = sse.wrap(inner)
            app.extensions["trio_mcp_sse.sse"] = sse
        endpoint = self._websocket_beside(websocket, host, **shared)
        if endpoint is not None:
            inner = endpoint.wrap(inner)
            app.extensions["trio_mcp_sse.websocket"] = endpoint
        app.asgi_app = streamable.wrap(inner)  # type: ignore[method-assign, assignment]
        app.extensions["trio_mcp_sse"] = streamable
        return app
