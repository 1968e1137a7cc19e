"""A proxy's upstream: a remote MCP server served through this one, one client session per session.

Theory of operation
-------------------
:meth:`MCPServer.as_proxy` installs an :class:`UpstreamServer` as the
server's upstream (see ``_mount``): the server's lists then include what the
remote lists, and a request for a name the server does not have itself is
forwarded.  What is forwarded runs in the downstream request's own task, so
its cancellation reaches the remote (the client sends
``notifications/cancelled``), and its progress is reported through the
request's :class:`Context` as it arrives.

Each downstream session gets an upstream session of its own -- a *link* --
opened at the session's first forwarded request by a task the session owns
(:meth:`ServerConnection.start_soon`), and closed when the session ends or,
once it drains, when its last forwarded request has answered.  Per session
because the remote's requests to its client (sampling, elicitation, roots),
its log messages and its list changes belong to one downstream client: they
are relayed to the session whose link heard them (a log message to the
request in flight, if any), and the upstream declares only the capabilities
that client declared.  An upstream that goes away fails the requests waiting
on it with -32603; the next request opens a new link.

A 2026-07-28 downstream request stands alone: its link lives as long as it
does, and the upstream's questions cannot be sent to the client while it
waits.  They are asked of the request's :class:`Context` instead, which
answers from the answers the client's retry brought, or raises
:class:`InputRequired`: then the forwarded call is cancelled (the upstream
is told to stop) and the question becomes the downstream request's
``InputRequiredResult``.  The retry forwards the call again, the upstream asks
again, and this time the answer is known.

Every wait is bounded: opening a link by ``connect_timeout``, closing it by
:data:`CLOSE_TIMEOUT`, a forwarded request by the client session's own
``request_timeout``, and collecting a remote list by :data:`MAX_LIST_PAGES`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import pydantic
import trio
from mcp_types import SERVER_INFO_META_KEY

from .._errors import (
    RESOURCE_NOT_FOUND,
    ClientCapabilityError,
    ClientRequestTimeout,
    MCPError,
    ResourceNotFound,
)
from .._jsonrpc import INTERNAL_ERROR, JSONRPCNotification, RequestId
from .._rpc import encode_notification
from .._session import SessionClosed
from ._context import Context
from ._input import InputRequired
from ._middleware import RequestInfo
from ._mount import Mount, base_connection
from ._protocol import LOG_LEVELS

if TYPE_CHECKING:
    # The client is imported when a proxy first connects, not with the server layer.
    from ..client import ClientSession

__all__ = ["CLOSE_TIMEOUT", "MAX_LIST_PAGES", "RELAY_WAIT", "UpstreamFactory", "UpstreamServer", "install_upstream"]

log = logging.getLogger("trio_mcp_sse.server")

UpstreamFactory: TypeAlias = Callable[..., AbstractAsyncContextManager["ClientSession"]]
"""``factory(**handlers)`` -> an async context manager yielding a started ``ClientSession``.

Called with the keywords ``sampling_handler``, ``elicitation_handler``,
``roots_handler`` (each only when the downstream client declared it) and
``notification_handlers``, which it must pass to the session:
``functools.partial(open_session, url, headers=...)`` is one."""

CLOSE_TIMEOUT: Final = 5.0
"""How long closing an upstream session (e.g. its ``DELETE``) may take."""
RELAY_WAIT: Final = 1.0
"""How long a forwarded result may wait for the notifications the upstream sent before it."""
MAX_LIST_PAGES: Final = 100
"""A remote list longer than this many pages is an error, not a loop without end."""

_LIST_CHANGED: Final = frozenset(
    {
        "notifications/tools/list_changed",
        "notifications/prompts/list_changed",
        "notifications/resources/list_changed",
    }
)
_ENVELOPE_PREFIX: Final = "io.modelcontextprotocol/"
_RETRY_FIELDS: Final = ("inputResponses", "requestState")
_RESULT_HINTS: Final = ("resultType", "ttlMs", "cacheScope")
_QUESTIONS: Final = (
    ("sampling_handler", "sampling/createMessage", "sampling"),
    ("elicitation_handler", "elicitation/create", "elicitation"),
    ("roots_handler", "roots/list", "roots"),
)


class _Link:
    """One downstream session's upstream session, and what is in flight on it."""

    def __init__(self, connection: Any, path: Sequence[Mount]) -> None:
        self.connection = connection
        self.path = tuple(path)
        self.session: ClientSession | None = None
        self.error: BaseException | None = None
        self.ready = trio.Event()
        self.done = False
        self.retired = False
        self.users = 0
        self.requests: dict[RequestId | None, Context | None] = {}
        """Downstream requests using the link, in the order they came, with their contexts."""
        self.scopes: dict[RequestId | None, trio.CancelScope] = {}
        self.questions: dict[RequestId | None, InputRequired] = {}
        """2026-07-28: what the upstream asked while forwarding a request, for that request's answer."""
        self._wake = trio.Event()

    @property
    def current_request(self) -> RequestId | None:
        """The downstream request a relayed message most likely belongs to: the latest in flight."""
        return next(reversed(self.requests), None)

    def poke(self) -> None:
        self._wake.set()

    async def wait_poked(self) -> None:
        await self._wake.wait()
        self._wake = trio.Event()


class UpstreamServer:
    """The remote server of one proxy, reached by one client session per downstream session."""

    def __init__(self, factory: UpstreamFactory, *, connect_timeout: float = 30.0) -> None:
        if not connect_timeout > 0:
            raise ValueError("connect_timeout must be > 0")
        self.factory = factory
        self.connect_timeout = connect_timeout
        self._links: dict[Any, _Link] = {}

    def __repr__(self) -> str:
        return f"<UpstreamServer {self.factory!r}>"

    @property
    def offers_completion(self) -> bool:
        return True  # known only once connected: a remote without it answers -32601 itself

    # -- links ---------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _using(self, request: RequestInfo, path: Sequence[Mount]) -> AsyncIterator[tuple[_Link, ClientSession]]:
        """This session's link, opened if need be; counted as in use (a drain waits) for the block."""
        connection = base_connection(request.connection)
        link = self._links.get(connection)
        if link is not None and link.session is not None and link.session.closed:
            link.retired = True  # the upstream went away since the last request: let it go
            link.poke()
        if link is None or link.done or link.retired:
            link = _Link(connection, path)
            try:
                connection.start_soon(self._hold, link, name=f"upstream of session {connection.session_id}")
            except RuntimeError as stopped:  # the session is not running: nothing may outlive it
                raise MCPError(INTERNAL_ERROR, f"The upstream server is unavailable: {stopped}") from None
            self._links[connection] = link
        link.users += 1
        link.requests[request.request_id] = request.context
        try:
            with trio.move_on_after(self.connect_timeout + CLOSE_TIMEOUT):
                await link.ready.wait()
            session = link.session
            if session is None:
                reason = link.error or "it did not answer in time"
                raise MCPError(INTERNAL_ERROR, f"The upstream server is unavailable: {reason}")
            yield link, session
        finally:
            link.users -= 1
            link.requests.pop(request.request_id, None)
            link.poke()

    async def _hold(self, link: _Link) -> None:
        """The link's task: open the upstream session, keep it while needed, close it (bounded).

        One cancel scope bounds the whole life: by ``connect_timeout`` until the
        session is open, by nothing while it serves, by :data:`CLOSE_TIMEOUT`
        while it closes (a scope, not a timeout around entering: the session's
        nursery must nest inside it).
        """
        connection = link.connection
        try:
            with trio.CancelScope(deadline=trio.current_time() + self.connect_timeout) as lifetime:
                async with self.factory(**self._handlers(link)) as session:
                    lifetime.deadline = math.inf
                    link.session = session
                    link.ready.set()
                    await self._apply_level(link, session)
                    async with trio.open_nursery() as nursery:

                        async def poke_when_ending() -> None:
                            await connection.ending.wait()
                            link.poke()

                        nursery.start_soon(poke_when_ending)
                        while not (link.retired or session.closed or (connection.ending.is_set() and link.users == 0)):
                            await link.wait_poked()
                        nursery.cancel_scope.cancel()
                    link.retired = True
                    link.session = None
                    lifetime.deadline = trio.current_time() + CLOSE_TIMEOUT
            if lifetime.cancelled_caught and not link.ready.is_set():
                link.error = TimeoutError(f"no upstream session within {self.connect_timeout:g} s")
        except Exception as error:
            if not link.ready.is_set():
                link.error = error
            log.warning("session %s: upstream session failed: %s", connection.session_id, error)
        finally:
            link.done = True
            link.session = None
            link.ready.set()
            if self._links.get(connection) is link:
                del self._links[connection]

    def _handlers(self, link: _Link) -> dict[str, Any]:
        """The upstream session's handlers: relays to this link's downstream session."""
        connection = link.connection
        handlers: dict[str, Any] = {"notification_handlers": {"*": functools.partial(self._relay, link)}}
        # Questions to the client travel on the downstream session, or, in 2026-07-28, as
        # the downstream request's InputRequiredResult; a stateless handshake-era request has
        # neither, so the upstream hears that its client cannot answer.
        ask = _ask_in_rounds if connection.modern else None if connection.session.stateless else _ask
        if ask is not None:
            for keyword, method, capability in _QUESTIONS:
                if connection.client_supports(capability):
                    handlers[keyword] = functools.partial(ask, link, method, capability)
        return handlers

    async def _apply_level(self, link: _Link, session: ClientSession) -> None:
        """The downstream session's log level, so the upstream sends what it would let through."""
        level = link.connection.log_level
        capabilities = session.server_capabilities
        if level is None or capabilities is None or capabilities.logging is None:
            return
        from ..client import ClientError

        with trio.move_on_after(self.connect_timeout):
            try:
                await session.set_logging_level(level)
            except (MCPError, ClientError) as refused:
                log.debug("session %s: upstream refused logging/setLevel: %s", link.connection.session_id, refused)

    # -- what the composition asks ---------------------------------------------------------------
    async def forward(self, request: RequestInfo, path: Sequence[Mount]) -> dict[str, Any]:
        async with self._using(request, path) as (link, session):
            return await self._call(link, session, request.method, _outgoing(request.params), request)

    async def listing(self, method: str, key: str, request: RequestInfo, path: Sequence[Mount]) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        cursor: str | None = None
        async with self._using(request, path) as (link, session):
            for _ in range(MAX_LIST_PAGES):
                result = await self._call(link, session, method, {"cursor": cursor} if cursor else None, request)
                page = result.get(key)
                if not isinstance(page, list):
                    raise MCPError(INTERNAL_ERROR, f"{method}: the upstream server's {key} is not a list")
                entries.extend(entry for entry in page if isinstance(entry, dict))
                cursor = result.get("nextCursor")
                if not isinstance(cursor, str) or not cursor:
                    return entries
        raise MCPError(INTERNAL_ERROR, f"{method}: the upstream server listed more than {MAX_LIST_PAGES} pages")

    async def set_level(self, request: RequestInfo) -> None:
        link = self._links.get(base_connection(request.connection))
        level = request.params.get("level")
        if link is None or link.session is None or not isinstance(level, str):
            return
        from ..client import ClientError

        with trio.move_on_after(self.connect_timeout):
            try:
                await link.session.set_logging_level(level)
            except (MCPError, ClientError) as refused:
                log.debug("upstream refused logging/setLevel: %s", refused)

    async def roots_changed(self, connection: Any, params: Mapping[str, Any]) -> None:
        """``notifications/roots/list_changed`` from the client: the upstream asks again."""
        link = self._links.get(base_connection(connection))
        if link is not None and link.session is not None:
            from ..client import ClientError

            with trio.move_on_after(self.connect_timeout), contextlib.suppress(ClientError):
                await link.session.send_roots_list_changed()

    async def _call(
        self,
        link: _Link,
        session: ClientSession,
        method: str,
        params: Mapping[str, Any] | None,
        request: RequestInfo,
    ) -> dict[str, Any]:
        from ..client import ClientError, ConnectionClosedError

        context = request.context
        progress = None
        if context is not None and context.progress_token is not None:

            async def progress(done: float, total: float | None, message: str | None) -> None:
                await context.report_progress(done, total, message)

        request_id = request.request_id
        result: dict[str, Any] | None = None
        try:
            with trio.CancelScope() as scope:
                link.scopes[request_id] = scope
                result = await session.send_request(method, params, progress=progress)
        except (MCPError, ClientError) as failure:
            question = link.questions.pop(request_id, None)
            if question is not None:  # the upstream's answer to the question we did not answer
                raise InputRequired(question.requests) from None
            if isinstance(failure, ConnectionClosedError):
                link.retired = True
            raise _failure(failure, method, request.params) from None
        finally:
            link.scopes.pop(request_id, None)
        question = link.questions.pop(request_id, None)
        if question is not None:
            # The upstream asked; the client answers on its retry, when the call runs again.
            raise InputRequired(question.requests)
        if result is None:
            raise MCPError(INTERNAL_ERROR, f"{method}: the upstream request was abandoned")
        # The upstream's log messages reach their relay on a task of their own: the
        # ones sent before this result go out before it, as the upstream sent them.
        with trio.move_on_after(RELAY_WAIT):
            await session._notifications_handled()
        return _incoming(result)

    # -- the upstream's notifications ------------------------------------------------------------
    async def _relay(self, link: _Link, notification: JSONRPCNotification) -> None:
        """A notification from upstream, passed to the downstream session as it would want it."""
        connection = link.connection
        method = notification.method
        params = notification.params or {}
        try:
            if method == "notifications/message":
                level = params.get("level")
                if level in LOG_LEVELS:
                    logger = params.get("logger")
                    await connection.log(
                        level,
                        params.get("data"),
                        logger=logger if isinstance(logger, str) else None,
                        related_request_id=link.current_request,
                    )
            elif method in _LIST_CHANGED:
                if connection.initialized and not connection.modern:
                    connection.post(encode_notification(method))
            elif method == "notifications/resources/updated":
                uri = params.get("uri")
                if isinstance(uri, str):
                    for mount in reversed(link.path):
                        uri = mount.prefixed_uri(uri)
                    if uri in connection.subscriptions:
                        connection.post(encode_notification(method, {"uri": uri}))
        except SessionClosed:
            pass


async def _ask(link: _Link, method: str, capability: str, params: pydantic.BaseModel | None = None) -> dict[str, Any]:
    """The upstream's question (sampling, elicitation, roots), asked of the downstream client."""
    body = None if params is None else params.model_dump(mode="json", by_alias=True, exclude_none=True)
    try:
        return await link.connection.send_request(  # type: ignore[no-any-return]
            method, body, capability=capability, related_request_id=link.current_request
        )
    except (ClientCapabilityError, ClientRequestTimeout, SessionClosed) as failure:
        raise MCPError(INTERNAL_ERROR, f"The client could not answer {method}: {failure}") from None


def _failure(failure: Exception, method: str, params: Mapping[str, Any]) -> MCPError:
    """What the downstream client is answered when the upstream request failed."""
    from ..client import ConnectionClosedError

    if isinstance(failure, MCPError):
        uri = params.get("uri")
        if failure.code == RESOURCE_NOT_FOUND and method == "resources/read" and isinstance(uri, str):
            return ResourceNotFound(uri)
        return MCPError(failure.code, failure.message, failure.data)
    if isinstance(failure, ConnectionClosedError):
        return MCPError(INTERNAL_ERROR, f"The upstream session ended: {failure}")
    return MCPError(INTERNAL_ERROR, f"The upstream server failed: {failure}")


async def _ask_in_rounds(
    link: _Link, method: str, capability: str, params: pydantic.BaseModel | None = None
) -> dict[str, Any]:
    """The upstream's question, for a 2026-07-28 downstream request: answered by its retry.

    The request's :class:`Context` knows the answers its retry brought.  A question
    it cannot answer yet ends the forwarded call: the call's task is cancelled (so
    the upstream is told to stop) and raises the question as :class:`InputRequired`,
    which the downstream client gets as an ``InputRequiredResult``; its retry forwards
    the call again, and this time the answer is known.
    """
    request_id = link.current_request
    context = link.requests.get(request_id)
    if context is None:
        raise MCPError(INTERNAL_ERROR, f"{method}: no request of the client to ask it for")
    body = None if params is None else params.model_dump(mode="json", by_alias=True, exclude_none=True)
    try:
        return await context.send_request(method, body)
    except InputRequired as asked:
        link.questions[request_id] = asked
        scope = link.scopes.get(request_id)
        if scope is not None:
            scope.cancel()
        raise MCPError(INTERNAL_ERROR, f"{method}: the client answers on its retry") from None


def _outgoing(params: Mapping[str, Any]) -> dict[str, Any]:
    """Params as the upstream should get them: without this hop's progress token, envelope and retries."""
    forwarded = {key: value for key, value in params.items() if key not in _RETRY_FIELDS}
    meta = forwarded.pop("_meta", None)
    if isinstance(meta, dict):
        kept = {
            key: value
            for key, value in meta.items()
            if key != "progressToken" and not key.startswith(_ENVELOPE_PREFIX)
        }
        if kept:
            forwarded["_meta"] = kept
    return forwarded


def _incoming(result: Mapping[str, Any]) -> dict[str, Any]:
    """An upstream result as this server's own: without the upstream era's signature and hints."""
    answer = {key: value for key, value in result.items() if key not in _RESULT_HINTS}
    meta = answer.get("_meta")
    if isinstance(meta, dict) and SERVER_INFO_META_KEY in meta:
        meta = {key: value for key, value in meta.items() if key != SERVER_INFO_META_KEY}
        if meta:
            answer["_meta"] = meta
        else:
            del answer["_meta"]
    return answer


def install_upstream(
    server: Any,
    target: str | UpstreamFactory,
    *,
    client_options: Mapping[str, Any] | None = None,
    connect_timeout: float = 30.0,
) -> UpstreamServer:
    """Make ``server`` a proxy of ``target`` (a URL, or an :data:`UpstreamFactory`)."""
    if isinstance(target, str):
        from ..client import open_session

        options = {"protocol": "handshake", **(client_options or {})}
        factory: UpstreamFactory = functools.partial(open_session, target, **options)
    elif callable(target):
        if client_options:
            raise TypeError("client_options are for a URL; a factory opens the session itself")
        factory = target
    else:
        raise TypeError(f"as_proxy() takes a URL or an upstream factory, not {type(target).__name__}")
    upstream = UpstreamServer(factory, connect_timeout=connect_timeout)
    server.composition.upstream = upstream
    server.notification_handlers.setdefault("notifications/roots/list_changed", upstream.roots_changed)
    return upstream
