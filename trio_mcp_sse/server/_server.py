"""``MCPServer``: declare tools, get a session handler and an ASGI app."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

import pydantic

from .._errors import MCPError, ToolError
from .._jsonrpc import INVALID_PARAMS
from .._session import Session
from ._connection import RequestHandler, ServerConnection
from ._context import Context
from ._tools import Tool, to_call_result

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from .._transport import SseServerTransport

__all__ = ["MCPServer"]

F = TypeVar("F", bound=Callable[..., Any])


class MCPServer:
    """A Trio-native MCP server.

    Register tools with :meth:`tool`; serve it with :meth:`sse_app` (a Quart-Trio
    app) or hand :meth:`run_session` to any transport.  One server object serves
    any number of sessions: per-session state lives in a ``ServerConnection``.
    """

    def __init__(
        self,
        name: str,
        version: str = "0.1.0",
        *,
        title: str | None = None,
        instructions: str | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.title = title
        self.instructions = instructions
        self.tools: dict[str, Tool] = {}
        self.request_handlers: dict[str, RequestHandler] = {
            "tools/list": _list_tools,
            "tools/call": _call_tool,
        }

    # -- registration ----------------------------------------------------------------------------
    @overload
    def tool(self, fn: F, /) -> F: ...

    @overload
    def tool(
        self,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: Mapping[str, Any] | None = None,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: Mapping[str, Any] | None = None,
    ) -> F | Callable[[F], F]:
        """Register a function as a tool (usable bare, ``@server.tool``, or with options).

        The input schema comes from the type hints; the description from the
        docstring unless given.  Sync functions run in a worker thread.
        """

        def register(function: F) -> F:
            tool = Tool.from_function(
                function,
                name=name,
                title=title,
                description=description,
                annotations=dict(annotations) if annotations else None,
            )
            if tool.name in self.tools:
                raise ValueError(f"a tool named {tool.name!r} is already registered")
            self.tools[tool.name] = tool
            return function

        return register(fn) if fn is not None else register

    # -- protocol ----------------------------------------------------------------------------------
    def capabilities(self) -> dict[str, Any]:
        capabilities: dict[str, Any] = {}
        if self.tools:
            capabilities["tools"] = {"listChanged": False}
        return capabilities

    def initialize_result(self, protocol_version: str) -> dict[str, Any]:
        server_info: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.title is not None:
            server_info["title"] = self.title
        result: dict[str, Any] = {
            "protocolVersion": protocol_version,
            "capabilities": self.capabilities(),
            "serverInfo": server_info,
        }
        if self.instructions is not None:
            result["instructions"] = self.instructions
        return result

    async def run_session(self, session: Session) -> None:
        """The session handler: serve one session until its inbound channel ends."""
        await ServerConnection(self, session).run()

    # -- serving -----------------------------------------------------------------------------------
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


async def _list_tools(connection: ServerConnection, params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    return {"tools": [tool.definition for tool in connection.server.tools.values()]}


async def _call_tool(connection: ServerConnection, params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    name = params.get("name")
    if not isinstance(name, str):
        raise MCPError(INVALID_PARAMS, "tools/call: params.name must be a string")
    tool = connection.server.tools.get(name)
    if tool is None:
        raise MCPError(INVALID_PARAMS, f"Unknown tool: {name}")
    arguments = params.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise MCPError(INVALID_PARAMS, "tools/call: params.arguments must be an object")
    try:
        kwargs = tool.validate(arguments)
    except pydantic.ValidationError as invalid:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'arguments'}: {error['msg']}"
            for error in invalid.errors(include_url=False, include_input=False)
        )
        raise MCPError(INVALID_PARAMS, f"Invalid arguments for tool {name}: {problems}") from None
    try:
        value = await tool.call(kwargs, context)
    except ToolError as failure:
        return {"content": [{"type": "text", "text": str(failure)}], "isError": True}
    except Exception as failure:
        import logging

        logging.getLogger("trio_mcp_sse.server").exception(
            "session %s: tool %s raised", connection.session.id, name
        )
        return {"content": [{"type": "text", "text": f"{type(failure).__name__}: {failure}"}], "isError": True}
    return to_call_result(value)
