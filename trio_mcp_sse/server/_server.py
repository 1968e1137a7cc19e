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

The server's ``lifespan`` (what a tool reaches as ``ctx.lifespan_context``) is
entered once per *running app*: each app or transport built here holds a
:class:`_LifespanRun` of its own, whose session handler gives every session it
serves that run's value, and whose host enters it on the ASGI lifespan's
start-up and exits it after the last session ended.  Two apps of one server
running at once are two runs (two pools, say), each seen by its own sessions;
:meth:`MCPServer.running` is the run of :meth:`MCPServer.run_session`, for
sessions served some other way.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar, Unpack, cast, overload

import trio

from .._protocol_versions import MODERN_PROTOCOL_VERSIONS
from .._session import Session, SessionLimits
from .._stdio import DEFAULT_DRAIN_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE
from ._catalog import Catalog, Definition
from ._completion import CompletionHandler, completion_handler
from ._connection import NotificationHandler, RequestHandler, ServerConnection
from ._handlers import HANDLERS
from ._input import RequestStateKey
from ._middleware import Middleware
from ._mount import Composition
from ._prompts import Prompt, PromptOptions
from ._protocol import LOG_LEVELS, CachePolicy, LoggingLevel
from ._resources import Resource, ResourceOptions, ResourceTemplate, build_resource
from ._skills import SKILLS_EXTENSION, Skill, SkillCatalog, load_skills_directory
from ._tasks import TASK_HANDLERS, TASKS_EXTENSION, TaskSettings, TaskStore
from ._tools import Tool, ToolOptions

if TYPE_CHECKING:
    import trio
    from quart_trio import QuartTrio

    from .._host import SessionHost
    from .._session import SessionHandler
    from .._streamable import StreamableHTTPTransport
    from .._transport import SseServerTransport
    from .._websocket import WebSocketServerTransport, WebSocketSettings
    from ._proxy import UpstreamFactory

__all__ = ["MCPServer"]

F = TypeVar("F", bound=Callable[..., Any])

_NOT_RUNNING: Any = object()


class MCPServer:
    """A Trio-native MCP server.

    Register tools with :meth:`tool`, resources with :meth:`resource`,
    prompts with :meth:`prompt` and an argument completer with
    :meth:`completion`; serve it with :meth:`http_app` or :meth:`sse_app` (Quart-Trio apps),
    over stdin/stdout with :meth:`run_stdio` (a subprocess of a desktop client),
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
    ``lifespan``
        ``lifespan(server)``, an async context manager (an
        ``@asynccontextmanager`` generator taking the server): entered when the
        app starts, before any session is served, and exited when it stops,
        after every session ended; what it yields is ``ctx.lifespan_context``
        in every tool, resource, prompt and completion function.  A failure to
        enter fails the app's start-up with one line.  See "Lifespan and
        per-session state" in ``docs/server.md``.
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
        lifespan: Callable[[MCPServer], AbstractAsyncContextManager[Any]] | None = None,
        tasks: TaskSettings | None = None,
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
        self.extensions: dict[str, dict[str, Any]] = {}
        """Extension id -> its settings, announced under ``capabilities.extensions``."""
        self.cache = cache or CachePolicy()
        """Caching hints of cacheable results (2026-07-28)."""
        self.request_state_key = (
            request_state_key if isinstance(request_state_key, RequestStateKey) else RequestStateKey(request_state_key)
        )
        """Seals and opens ``requestState`` (2026-07-28 multi round-trip requests)."""
        self.lifespan = lifespan
        """Entered once per running app; its value is ``ctx.lifespan_context`` (``None``: no lifespan)."""
        self.task_settings = tasks or TaskSettings()
        """How tasks are kept (the tasks extension, ``docs/tasks.md``)."""
        self._connections: set[ServerConnection] = set()
        self._skills: SkillCatalog | None = None
        self.composition = Composition(self)
        """The middleware, the mounted servers and a proxy's upstream: how a request finds its handler."""
        self._run = _LifespanRun(self)
        if tasks is not None:
            self.enable_tasks()

    def enable_tasks(self) -> None:
        """Serve the tasks extension (``io.modelcontextprotocol/tasks``): announce it, answer ``tasks/*``.

        Done by registering a tool with ``task=``, or by ``MCPServer(tasks=...)``.
        """
        self.extensions.setdefault(TASKS_EXTENSION, {})
        for method, handler in TASK_HANDLERS.items():
            self.request_handlers.setdefault(method, handler)

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
        if tool.task is not None:
            self.enable_tasks()
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
        arguments.  See :func:`add_resource` for the details.  Unlike
        ``@server.tool``, there is no bare form: nothing can be derived for
        the URI, and a bare ``@server.resource`` would otherwise hand the
        function over as the URI and leave it unregistered without a word.
        """
        if not isinstance(uri, str):
            what = getattr(uri, "__name__", None)
            raise TypeError(
                '@server.resource needs the URI: @server.resource("notes://{name}")'
                + (f" above {what!r}" if callable(uri) and isinstance(what, str) else "")
            )

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

    # -- skills (the io.modelcontextprotocol/skills extension, docs/skills.md) ----------------------
    def add_skills_directory(
        self, directory: str | os.PathLike[str], *, prefix: str | None = None, cache: CachePolicy | None = None
    ) -> list[Skill]:
        """Serve every skill under ``directory`` (each directory with a ``SKILL.md``) and return them.

        The files are read and checked now (see :func:`load_skills_directory`;
        :class:`SkillError` names the file that cannot be served), then served
        from memory as ``skill://<prefix>/<skill-path>/<file-path>`` resources.
        Blocking: call it at start-up.
        """
        skills = load_skills_directory(directory, prefix=prefix, cache=cache)
        self.add_skills(skills)
        return skills

    def add_skill(self, path: str, files: Mapping[str, str | bytes], *, cache: CachePolicy | None = None) -> Skill:
        """Serve a skill given as files in memory (:meth:`Skill.from_files`) and return it."""
        skill = Skill.from_files(path, files, cache=cache)
        self.add_skills([skill])
        return skill

    def add_skills(self, skills: Iterable[Skill]) -> None:
        """Serve skills already built, all or none (a conflicting URI is a :class:`SkillError`).

        The first skill announces the extension (``capabilities.extensions``,
        with ``directoryRead: true``) and installs ``skills/list``,
        ``skills/get`` and ``resources/directory/read``; live sessions are told
        the resource list changed.
        """
        if self._skills is None:
            self._skills = SkillCatalog(self.catalog, lambda: self.cache)
            self.request_handlers.update(self._skills.handlers())
            self.extensions[SKILLS_EXTENSION] = {"directoryRead": True}
        self._skills.add(list(skills))

    def remove_skill(self, uri: str) -> None:
        """Stop serving the skill whose ``SKILL.md`` is at ``uri``; ``KeyError`` if there is none."""
        if self._skills is None:
            raise KeyError(uri)
        self._skills.remove(uri)

    @property
    def skills(self) -> Mapping[str, Skill]:
        """The skills served, by the URI of their ``SKILL.md`` (read-only)."""
        return self._skills.skills if self._skills is not None else {}

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

    # -- middleware and composition --------------------------------------------------------------
    def middleware(self, fn: Middleware) -> Middleware:
        """Register ``async fn(request: RequestInfo, call_next) -> result`` around every request and
        notification this server handles (usable as a decorator).

        The first registered is the outermost.  It may answer itself (return a
        result, raise :class:`MCPError` or, for ``tools/call``, :class:`ToolError`),
        pass the request on changed (``call_next(request.replace(params=...))``),
        or look at what the rest answered.  ``initialize`` and ``ping`` are
        answered before it, as are protocol refusals; see ``docs/middleware.md``.
        """
        if not callable(fn):
            raise TypeError(f"a middleware is an async callable (request, call_next), not {fn!r}")
        self.composition.middleware.append(fn)
        return fn

    def mount(self, server: MCPServer, prefix: str) -> None:
        """Serve ``server``'s tools, prompts, resources and templates here too, under ``prefix``.

        Tools and prompts appear as ``<prefix>_<name>``; resource URIs and URI
        templates get the prefix as their first path segment
        (``notes://{name}`` -> ``notes://<prefix>/{name}``).  Live: what the
        mounted server adds, replaces or removes later follows here, and this
        server's sessions are told.  Its requests run the mounted server's
        functions and middleware with this server's :class:`Context`.
        ``ValueError`` if a name is taken, the prefix is used, or the mount would
        make a cycle; and if ``server`` has a lifespan: its functions run with
        this server's :class:`Context`, whose ``lifespan_context`` is this
        server's, so its own lifespan would never be entered and its tools would
        find another value than theirs.  See ``docs/composition.md``.
        """
        if not isinstance(server, MCPServer):
            raise TypeError(f"mount() takes an MCPServer, not {type(server).__name__}")
        if server.lifespan is not None:
            raise ValueError(
                f"MCPServer {server.name!r} has a lifespan, which mount() does not enter (its tools run with the "
                f"context of {self.name!r}): move what it sets up into the lifespan of {self.name!r}"
            )
        self.composition.mount(server, prefix)
        if TASKS_EXTENSION in server.extensions:
            self.enable_tasks()  # its task tools run as tasks of this server's app

    @property
    def mounted(self) -> Mapping[str, MCPServer]:
        """The servers mounted here, by prefix, in the order they were mounted."""
        return {prefix: cast(MCPServer, mount.server) for prefix, mount in self.composition.mounts.items()}

    @classmethod
    def as_proxy(
        cls,
        target: str | UpstreamFactory,
        *,
        name: str = "proxy",
        client_options: Mapping[str, Any] | None = None,
        connect_timeout: float = 30.0,
        **options: Any,
    ) -> MCPServer:
        """A server that serves the MCP server at ``target`` through itself.

        ``target`` is a URL (Streamable HTTP, HTTP+SSE or WebSocket, as
        :func:`~trio_mcp_sse.client.open_session` decides; ``client_options``
        are its keyword arguments), or an ``UpstreamFactory``: called with
        the session's handler keywords (``sampling_handler``,
        ``elicitation_handler``, ``roots_handler``, ``notification_handlers``)
        and returning an async context manager that yields a started
        :class:`~trio_mcp_sse.client.ClientSession`.  Each session of the proxy
        gets an upstream session of its own, opened at its first request
        (within ``connect_timeout`` seconds) and closed when it ends: lists and
        calls are forwarded, and the upstream's progress, log messages, list
        changes and requests to the client reach the session that caused
        them.  ``options`` are :class:`MCPServer`'s.  Tools and the like
        registered on the proxy itself are served beside the upstream's.  See
        ``docs/composition.md``.
        """
        from ._proxy import install_upstream

        server = cls(name, **options)
        install_upstream(server, target, client_options=client_options, connect_timeout=connect_timeout)
        return server

    # -- protocol --------------------------------------------------------------------------------
    def capabilities(self) -> dict[str, Any]:
        """What ``initialize`` announces.

        Tools, resources (with subscriptions), prompts and logging are always
        served, so always announced -- with ``listChanged``, since they may
        change at run time; completions only when a completer is registered;
        ``extensions`` (SEP-2133) only when one is enabled (:attr:`extensions`).
        """
        capabilities: dict[str, Any] = {
            "tools": {"listChanged": True},
            "resources": {"subscribe": True, "listChanged": True},
            "prompts": {"listChanged": True},
            "logging": {},
        }
        if self.composition.offers_completion:
            capabilities["completions"] = {}
        if self.extensions:
            capabilities["extensions"] = {key: dict(value) for key, value in self.extensions.items()}
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
        """The session handler: serve one session until it ends.

        Its sessions see the lifespan entered by :meth:`running`; the apps and
        transports built by this server run a lifespan of their own instead.
        """
        await self._serve_session(session, self._run)

    async def _serve_session(self, session: Session, run: _LifespanRun) -> None:
        connection = ServerConnection(self, session, lifespan_context=run.value, tasks=run.tasks)
        self._connections.add(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)
            connection.state.clear()  # what the session kept goes with it, whoever still holds the dict

    def running(self) -> AbstractAsyncContextManager[Any]:
        """Enter the server's lifespan for the block, for sessions given to :meth:`run_session`.

        The apps and transports built by this server enter their own on the
        ASGI lifespan; this is for a session handler run some other way (a
        ``SessionManager`` of your own; ``trio_mcp_sse.testing.serve_sessions``
        does it for you).  Yields the lifespan's value.  Blocks inside one
        another (two ``connected_client`` at once) share one entering: the
        first enters it, and its exit waits until the others have left.
        """
        return self._run.shared()

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

        run = _LifespanRun(self)
        transport = SseServerTransport(run.run_session, **self._with_tool_scopes(options))
        if transport.host.app_lifespan is None:  # (a host given in ``options`` keeps its own)
            run.attach(transport.host)
        return transport

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
        endpoint = self._websocket_beside(websocket, transport.host, transport.host.sessions.handler, **shared)
        if endpoint is not None:
            endpoint.init_app(app)
            app.extensions["trio_mcp_sse.websocket"] = endpoint
        return app

    def _websocket_beside(
        self, websocket: WebSocketSettings | bool, host: SessionHost, handler: SessionHandler, **shared: Any
    ) -> WebSocketServerTransport | None:
        """The non-standard WebSocket endpoint on ``host`` (``websocket=False``: none; ``docs/websocket.md``)."""
        if websocket is False:
            return None
        from .._websocket import WebSocketServerTransport, WebSocketSettings

        settings = websocket if isinstance(websocket, WebSocketSettings) else None
        return WebSocketServerTransport(handler, settings=settings, host=host, **self._with_tool_scopes(shared))

    def streamable_http_transport(self, **options: Any) -> StreamableHTTPTransport:
        """A :class:`StreamableHTTPTransport` serving this server (options as its constructor's)."""
        from .._streamable import StreamableHTTPTransport

        run = _LifespanRun(self)
        transport = StreamableHTTPTransport(run.run_session, **self._with_tool_scopes(options))
        if transport.host.app_lifespan is None:  # (a host given in ``options`` keeps its own)
            run.attach(transport.host)
        return transport

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
        run = _LifespanRun(self)
        host = SessionHost(
            run.run_session, keepalive_interval=keepalive_interval, limits=limits, registry=registry, broker=broker
        )
        run.attach(host)
        app = QuartTrio(self.name)
        streamable = StreamableHTTPTransport(
            run.run_session, path=path, keepalive_interval=keepalive_interval, host=host, **ops, **options
        )
        inner: Any = app.asgi_app
        if sse_path is not None:
            sse = SseServerTransport(
                run.run_session, sse_path=sse_path, message_path=message_path, host=host, **ops, **shared
            )
            inner = sse.wrap(inner)
            app.extensions["trio_mcp_sse.sse"] = sse
        endpoint = self._websocket_beside(websocket, host, run.run_session, **shared)
        if endpoint is not None:
            inner = endpoint.wrap(inner)
            app.extensions["trio_mcp_sse.websocket"] = endpoint
        app.asgi_app = streamable.wrap(inner)  # type: ignore[method-assign, assignment]
        app.extensions["trio_mcp_sse"] = streamable
        return app

    async def serve_stdio(
        self,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        limits: SessionLimits | None = None,
        handle_signals: bool = True,
        stdin: trio.abc.ReceiveStream | None = None,
        stdout: trio.abc.SendStream | None = None,
    ) -> None:
        """Serve one session over this process's stdin and stdout (the stdio transport), until the client ends it.

        For a server a client launches as a subprocess (Claude Desktop, an
        IDE).  Messages are newline-delimited JSON-RPC; while serving, fds 0
        and 1 belong to the transport, so a ``print()`` anywhere lands on
        stderr.  Returns at end of stdin (after requests in flight finish,
        within ``drain_timeout`` seconds), on SIGTERM or SIGINT
        (``handle_signals``; requests are cancelled), or when the client closes
        stdout.  ``max_message_size`` bounds one line from the client (bytes;
        a longer one is answered with -32600 and skipped); ``limits`` is a
        :class:`~trio_mcp_sse.SessionLimits` (default: no idle timeout);
        ``stdin``/``stdout``: Trio streams to use instead (tests).  See
        ``docs/stdio.md``.
        """
        from .._stdio import serve_stdio

        async with self.running():  # the lifespan, entered before the first message is read
            await serve_stdio(
                self.run_session,
                stdin=stdin,
                stdout=stdout,
                max_message_size=max_message_size,
                drain_timeout=drain_timeout,
                limits=limits,
                handle_signals=handle_signals,
            )

    def run_stdio(
        self,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        limits: SessionLimits | None = None,
    ) -> None:
        """:meth:`serve_stdio` under ``trio.run``, with the library's logs on stderr.

        The entry point of a server script: ``if __name__ == "__main__": server.run_stdio()``.
        """
        from .._stdio import run_stdio

        run_stdio(
            self.run_session, max_message_size=max_message_size, drain_timeout=drain_timeout, limits=limits
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Refuse, in one line, to be served as an ASGI application: the app is :meth:`http_app`.

        Handed to an ASGI server by mistake (``hypercorn module:server``), the server
        object would otherwise fail hypercorn's start-up with a long traceback that never
        names the fix.  Here the lifespan start-up fails with one logged line that does;
        in a worker process of hypercorn's, which would print that traceback anyway, the
        worker ends there with status 1.  A request without a lifespan gets the line as a 500.
        """
        import logging

        from .._logs import ensure_default_handler

        message = _not_an_application(self)
        if scope["type"] == "lifespan":
            ensure_default_handler()
            logging.getLogger("trio_mcp_sse.server").error(message, extra={"event": "not_an_application"})
            if (await receive())["type"] != "lifespan.startup":
                return
            try:
                await send({"type": "lifespan.startup.failed", "message": message})
            except Exception:
                import multiprocessing
                import os
                import sys

                if multiprocessing.parent_process() is None:
                    raise  # in the caller's own process: its code decides
                sys.stderr.flush()
                os._exit(1)
        elif scope["type"] == "http":
            body = message.encode()
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 500, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1011, "reason": message[:120]})
        else:
            raise TypeError(message)


class _LifespanRun:
    """One entering of a server's lifespan, and the session handler whose sessions see its value.

    Each app (or transport) built by :class:`MCPServer` has one, entered by its
    host for as long as the app runs; :meth:`MCPServer.running` enters the
    server's own, that of :meth:`MCPServer.run_session`.  Entering one that is
    already entered is refused: one run, one value.
    """

    __slots__ = ("_idle", "_server", "_sharing", "_task_id_prefix", "_value", "tasks")

    def __init__(self, server: MCPServer) -> None:
        self._server = server
        self.tasks: TaskStore | None = None
        """The tasks of this run, while it is entered (their work stops when it ends)."""
        self._task_id_prefix: Callable[[], str] | None = None
        """The host's :meth:`~trio_mcp_sse._host.SessionHost.task_id_prefix` (:meth:`attach`)."""
        self._value: Any = _NOT_RUNNING
        self._sharing: int | None = None
        """While :meth:`shared` holds it: how many other blocks joined."""
        self._idle: trio.Event | None = None

    def attach(self, host: SessionHost) -> None:
        """Be entered by ``host`` as its app's lifespan; its tasks' ids name the host's worker (a broker's)."""
        host.app_lifespan = self.enter
        self._task_id_prefix = host.task_id_prefix

    def value(self) -> Any:
        """What the lifespan yielded (``None`` without one); ``RuntimeError`` while it is not entered."""
        if self._value is _NOT_RUNNING:
            if self._server.lifespan is None:
                return None
            raise RuntimeError(
                f"the lifespan of MCPServer {self._server.name!r} is not running: serve its app under an "
                "ASGI server that runs the lifespan (hypercorn does), or enter 'async with server.running():' "
                "around sessions given to server.run_session"
            )
        return self._value

    @asynccontextmanager
    async def enter(self) -> AsyncIterator[Any]:

        if self._value is not _NOT_RUNNING:
            raise RuntimeError(f"the lifespan of MCPServer {self._server.name!r} is already running for this app")
        async with TaskStore(self._server.task_settings, id_prefix=self._task_id_prefix).running() as tasks:
            self.tasks = tasks
            try:
                async with self._enter_lifespan() as value:
                    yield value
            finally:
                self.tasks = None

    @asynccontextmanager
    async def _enter_lifespan(self) -> AsyncIterator[Any]:
        from .._host import LifespanFailed, describe_error

        lifespan = self._server.lifespan
        if lifespan is None:
            self._value = None
            try:
                yield None
            finally:
                self._value = _NOT_RUNNING
            return
        entering = True
        raised: BaseException | None = None
        try:
            async with lifespan(self._server) as value:
                entering = False
                self._value = value
                try:
                    yield value
                except BaseException as error:
                    raised = error
                    raise
                finally:
                    self._value = _NOT_RUNNING
        except Exception as error:
            if error is raised:
                raise  # the block's own error, passed through the lifespan: not a failure of it
            # One line naming the server, for the start-up (or the shutdown) to fail with.
            stage = "to start" if entering else "on exit"
            raise LifespanFailed(
                f"the lifespan of MCPServer {self._server.name!r} failed {stage}: {describe_error(error)}"
            ) from error

    @asynccontextmanager
    async def shared(self) -> AsyncIterator[Any]:
        """:meth:`enter`, or join it if a :meth:`shared` block already holds it (see ``MCPServer.running``)."""
        if self._sharing is not None:
            self._sharing += 1
            try:
                yield self._value
            finally:
                self._sharing -= 1
                if self._sharing == 0 and self._idle is not None:
                    self._idle.set()
            return
        async with self.enter() as value:
            self._sharing = 0
            try:
                yield value
                if self._sharing:  # blocks that joined are still inside: the lifespan is theirs too
                    self._idle = trio.Event()
                    await self._idle.wait()  # bounded by those blocks
            finally:
                self._sharing = self._idle = None

    def run_session(self, session: Session) -> Awaitable[None]:
        """The session handler of this server's apps: the coroutine serving ``session`` (no frame of its own
        stays with every session)."""
        return self._server._serve_session(session, self)


def _not_an_application(server: MCPServer) -> str:
    """The one line saying what to serve instead, naming ``module:attribute`` when it can be found."""
    import sys

    where = "module:server"
    for name, module in list(sys.modules.items()):
        if name != "__main__" and not name.startswith("trio_mcp_sse"):
            attribute = next((key for key, value in list(vars(module).items()) if value is server), None)
            if attribute is not None:
                where = f"{name}:{attribute}"
                break
    return (
        f"{where} is an MCPServer, not an ASGI application: serve its app, '{where}.http_app()' "
        f"(Streamable HTTP at /mcp, HTTP+SSE at /sse), or run python -m trio_mcp_sse serve {where}"
    )
