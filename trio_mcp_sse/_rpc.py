"""One JSON-RPC peer for both ends of an MCP session: ids, pending requests, cancel scopes, errors.

Theory of operation
-------------------
Server and client speak the same JSON-RPC in both directions, so both sides
run one :class:`Peer`.  What differs between them stays outside: how bytes
leave (the *outgoing hook*), which methods exist (the *route*), what a
notification means, and which exception types a failed request raises (the
side's :class:`Failures`).

Outgoing.  Every message leaves through ``send(data, related_request_id)``.
``related_request_id`` is the id of the incoming request a message belongs
to: the response to request X, and every notification or request sent while
serving X (progress, log messages, sampling...), carry X; anything else
carries ``None``.  A transport that answers each request on its own stream
routes by it.

Requests we send.  :meth:`Peer.request` allocates an id, records a pending
entry, sends, and waits -- all within one bound.  The answer settles the
entry; a timeout raises the side's ``timed_out``; :meth:`Peer.close` fails
every entry at once with ``closed``.  When a request that the peer may hold is
abandoned (timeout or the caller's cancellation), the peer is told with
``notifications/cancelled``: a shielded send, bounded by
:data:`CANCEL_NOTICE_TIMEOUT`, so it goes out even from a cancelled task and
never delays the cancellation for long.  ``initialize`` is never cancelled
(the lifecycle rules forbid it).

Requests we receive.  :meth:`Peer.dispatch` hands a request to the side's
route, which either answers at once (returns a result, or raises
:class:`MCPError`) or returns an ``async () -> result`` to run as a task.  Each
such task runs in its own cancel scope, kept in :attr:`Peer.in_flight` under
the request id, so ``notifications/cancelled`` stops exactly that request
(which then sends no response).  A cancel can overtake its request (each
message may travel on its own HTTP request), so the last
:data:`EARLY_CANCELS_KEPT` unknown ids are remembered and such a request is
never started.

Errors.  :class:`MCPError` becomes its own code, message and data; any other
exception becomes -32603 with a generic text, its traceback logged once;
an exception in ``Failures.peer_gone`` means nobody is left to answer.

Results are JSON objects.  MCP defines every result as an object, so one rule
holds for both directions: a local handler that returns anything else is a
bug (-32603, logged like any handler failure), and a peer's response whose
``result`` is not an object fails the waiting request with the side's
``answered`` error, code -32603.  Nothing is wrapped or replaced silently.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import orjson
import trio

from ._errors import MCPError
from ._jsonrpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
    error_response,
    result_response,
)

__all__ = [
    "CANCEL_NOTICE_TIMEOUT",
    "EARLY_CANCELS_KEPT",
    "SERVER_BUSY",
    "Failures",
    "Handler",
    "NotificationHook",
    "OutgoingHook",
    "Peer",
    "Route",
    "encode_notification",
]

CANCEL_NOTICE_TIMEOUT: Final = 2.0
"""How long telling the peer about an abandoned request may delay the cancellation."""
EARLY_CANCELS_KEPT: Final = 64
"""Cancels for ids not (yet) seen that are remembered, oldest forgotten first."""
SERVER_BUSY: Final = -32000
"""Implementation-defined: too many requests in flight on this peer."""

OutgoingHook: TypeAlias = Callable[[bytes, RequestId | None, bool], Awaitable[None]]
"""``async send(data, related_request_id, final)``: queue one encoded message; raise if it cannot go.

``final`` marks the last message for ``related_request_id``: its response, or
empty ``data`` when the request ended without one (the peer cancelled it), so
a transport with a stream per request knows that stream is complete."""
Handler: TypeAlias = Callable[[], Awaitable[Mapping[str, Any]]]
"""The work of one incoming request, run as its own task; returns the result object."""
Route: TypeAlias = Callable[[JSONRPCRequest, Any], "Mapping[str, Any] | Handler"]
"""``route(request, extra)``: a result to answer at once, or a :data:`Handler` to run as a task.
Raising :class:`MCPError` answers at once with that error."""
NotificationHook: TypeAlias = Callable[[JSONRPCNotification, Any], Awaitable[None]]
"""Every notification but ``notifications/cancelled`` (the peer handles that one)."""

_NOT_AN_OBJECT: Final = "the result is not a JSON object"


def encode_notification(method: str, params: Mapping[str, Any] | None = None) -> bytes:
    if params is None:
        return orjson.dumps({"jsonrpc": "2.0", "method": method})
    return orjson.dumps({"jsonrpc": "2.0", "method": method, "params": params})


@dataclass(frozen=True, slots=True)
class Failures:
    """The exceptions one side raises for a failed request, so each keeps its public types."""

    answered: Callable[[int, str, Any], MCPError]
    """The peer answered with an error (code, message, data)."""
    timed_out: Callable[[str, float], BaseException]
    """No answer to ``method`` within the bound (seconds)."""
    closed: Callable[[str], BaseException]
    """The peer was closed (reason) before an answer came, or before the request was sent."""
    peer_gone: tuple[type[BaseException], ...] = ()
    """Raised by handlers when the connection is gone: nothing is answered, nothing logged."""


class _Pending:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: dict[str, Any] = {}
        self.error: BaseException | None = None


class Peer:
    """One JSON-RPC peer: what both ends of a session share (see the module docstring).

    ``side`` (``"server"`` / ``"client"``) and ``label`` only shape log lines
    and cancel reasons.  ``max_in_flight`` bounds the incoming requests served
    at once (beyond it: -32000 at once, never a queue without bound).
    ``let_send_finish``: a request's send, once begun, is shielded until the
    request's deadline -- for transports whose send is not atomic (an HTTP
    POST abandoned halfway could still reach the peer *after* the cancel
    notice for it); a send into an in-memory queue is atomic and needs none.
    """

    def __init__(
        self,
        send: OutgoingHook,
        *,
        route: Route,
        on_notification: NotificationHook,
        failures: Failures,
        side: str,
        logger: logging.Logger,
        label: str = "",
        max_in_flight: int | None = None,
        let_send_finish: bool = False,
    ) -> None:
        self._send = send
        self._route = route
        self._on_notification = on_notification
        self._failures = failures
        self._side = side
        self._log = logger
        self._label = label or side
        self.max_in_flight = max_in_flight
        self._let_send_finish = let_send_finish
        self._last_id = 0
        self._pending: dict[RequestId, _Pending] = {}
        self.in_flight: dict[RequestId, trio.CancelScope] = {}
        """Incoming requests being served, by id: the cancel scope of each."""
        self._early_cancels: dict[RequestId, None] = {}
        self._nursery: trio.Nursery | None = None
        self.close_reason: str | None = None

    def __repr__(self) -> str:
        return f"<Peer {self._label}>"

    # -- lifetime --------------------------------------------------------------------------------
    def start(self, nursery: trio.Nursery) -> None:
        """Run incoming requests as tasks of ``nursery`` (which owns and bounds them)."""
        self._nursery = nursery

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    def close(self, reason: str) -> None:
        """No more requests from us: every waiting one fails now with ``Failures.closed``.

        Idempotent.  Incoming requests already running may still answer.
        """
        if self.close_reason is None:
            self.close_reason = reason
        for pending in self._pending.values():
            if not pending.done.is_set():
                pending.error = self._failures.closed(self.close_reason)
                pending.done.set()

    def detach(self) -> None:
        """The side is done with this peer (its nursery has exited): let go of the side.

        The hooks are the side's bound methods, and the side holds the peer:
        a reference cycle that would keep a whole finished session alive
        until the cyclic garbage collector's next full pass.  Afterwards the
        peer is closed and sends nothing.
        """
        self.close(self.close_reason or "detached")
        self._nursery = None
        self._send = _send_nothing
        self._route = _route_nothing
        self._on_notification = _ignore_notification

    @property
    def pending(self) -> Mapping[RequestId, object]:
        """Our requests still waiting for an answer, by id."""
        return self._pending

    # -- requests we send ------------------------------------------------------------------------
    def new_request_id(self) -> int:
        self._last_id += 1
        return self._last_id

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float,  # noqa: ASYNC109 - one bound for sending and waiting, as documented
        request_id: RequestId | None = None,
        related_request_id: RequestId | None = None,
    ) -> dict[str, Any]:
        """Send a request and return the peer's ``result``, within ``timeout`` seconds.

        ``request_id``: one from :meth:`new_request_id`, when the caller needs
        it before sending (e.g. as a progress token).  Raises the side's
        ``answered`` / ``timed_out`` / ``closed`` errors, or whatever the
        outgoing hook raised when the request could not be sent (then the
        peer never saw it and is not told to cancel it).
        """
        if self.close_reason is not None:
            raise self._failures.closed(self.close_reason)
        if request_id is None:
            request_id = self.new_request_id()
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        data = orjson.dumps(message)
        pending = _Pending()
        self._pending[request_id] = pending
        # True from the moment the peer may hold the request until it answered:
        # abandoning it in between must be announced.
        held = False
        waiting = trio.move_on_after(timeout)
        try:
            with waiting:
                held = True
                if self._let_send_finish:
                    with trio.CancelScope(shield=True, deadline=waiting.deadline):
                        await self._send(data, related_request_id, False)
                else:
                    await self._send(data, related_request_id, False)
                await pending.done.wait()
                held = False
        except Exception:
            held = False  # the send failed: the peer never got the request
            await trio.lowlevel.checkpoint_if_cancelled()  # a cancelled caller gets Cancelled
            raise
        finally:
            del self._pending[request_id]
            if held and not pending.done.is_set() and method != "initialize":
                reason = "request timed out" if waiting.cancelled_caught else f"cancelled by the {self._side}"
                await self._send_cancel_notice(request_id, reason, related_request_id)
        if pending.done.is_set():
            if pending.error is not None:
                raise pending.error
            return pending.result
        raise self._failures.timed_out(method, timeout)

    async def _send_cancel_notice(
        self, request_id: RequestId, reason: str, related_request_id: RequestId | None
    ) -> None:
        if self.close_reason is not None:
            return
        data = encode_notification("notifications/cancelled", {"requestId": request_id, "reason": reason})
        # Runs while the caller is being cancelled: shielded, but briefly.
        with trio.CancelScope(shield=True), trio.move_on_after(CANCEL_NOTICE_TIMEOUT):
            try:
                await self._send(data, related_request_id, False)
            except Exception as error:
                self._log.debug(
                    "%s: could not send notifications/cancelled for request %r: %s", self._label, request_id, error
                )

    async def notify(
        self, method: str, params: Mapping[str, Any] | None = None, *, related_request_id: RequestId | None = None
    ) -> None:
        """Send a notification (raises what the outgoing hook raises)."""
        await self._send(encode_notification(method, params), related_request_id, False)

    def _settle(self, request_id: RequestId | None, result: Any, error: MCPError | None) -> None:
        pending = self._pending.get(request_id) if request_id is not None else None
        if pending is None or pending.done.is_set():
            if error is not None:
                self._log.warning("%s: an error for no pending request (id %r): %s", self._label, request_id, error)
            else:
                self._log.debug("%s: ignoring an answer to no pending request (id %r)", self._label, request_id)
            return
        if error is not None:
            pending.error = error
        elif isinstance(result, dict):
            pending.result = result
        else:
            pending.error = self._failures.answered(INTERNAL_ERROR, _NOT_AN_OBJECT, None)
        pending.done.set()

    # -- what the peer sends us ------------------------------------------------------------------
    async def dispatch(self, message: JSONRPCMessage, extra: Any = None) -> None:
        """Route one incoming message; ``extra`` is passed on to the route and notification hook."""
        if isinstance(message, JSONRPCRequest):
            await self._on_request(message, extra)
        elif isinstance(message, JSONRPCNotification):
            if message.method == "notifications/cancelled":
                self._on_cancel(message.params)
            else:
                await self._on_notification(message, extra)
        elif isinstance(message, JSONRPCResponse):
            self._settle(message.id, message.result, None)
        elif isinstance(message, JSONRPCError):
            error = message.error
            self._settle(message.id, None, self._failures.answered(error.code, error.message, error.data))

    def _on_cancel(self, params: Mapping[str, Any] | None) -> None:
        request_id = (params or {}).get("requestId")
        if not isinstance(request_id, str | int) or isinstance(request_id, bool):
            return
        scope = self.in_flight.get(request_id)
        if scope is not None:
            scope.cancel()
            return
        self._early_cancels[request_id] = None
        if len(self._early_cancels) > EARLY_CANCELS_KEPT:
            del self._early_cancels[next(iter(self._early_cancels))]

    async def _on_request(self, request: JSONRPCRequest, extra: Any) -> None:
        request_id = request.id
        if self._early_cancels and self._early_cancels.pop(request_id, False) is None:
            self._log.debug("%s: request %r was cancelled before it arrived", self._label, request_id)
            await self._answer(b"", request_id)  # it ends unanswered, like any cancelled request
            return
        try:
            routed = self._route(request, extra)
        except MCPError as error:
            await self._answer(error_response(request_id, error.code, error.message, error.data), request_id)
            return
        if not callable(routed):
            await self._answer(result_response(request_id, _as_object(routed)), request_id)
            return
        refusal: bytes | None = None
        if request_id in self.in_flight:
            refusal = error_response(request_id, INVALID_REQUEST, f"Request id {request_id!r} is already in use")
        elif self.max_in_flight is not None and len(self.in_flight) >= self.max_in_flight:
            refusal = error_response(
                request_id,
                SERVER_BUSY,
                f"Server busy: {len(self.in_flight)} requests already in flight on this session",
            )
        if refusal is not None:
            await self._answer(refusal, request_id)
            return
        if self._nursery is None:
            raise RuntimeError("Peer.start(nursery) must be called before requests arrive")
        scope = trio.CancelScope()
        self.in_flight[request_id] = scope
        self._nursery.start_soon(self._serve, request, routed, scope)

    async def _serve(self, request: JSONRPCRequest, handler: Handler, scope: trio.CancelScope) -> None:
        """One request's task: its answer, or none if the peer cancelled it or is gone."""
        request_id = request.id
        try:
            with scope:
                try:
                    data = result_response(request_id, _as_object(await handler()))
                except MCPError as error:
                    data = error_response(request_id, error.code, error.message, error.data)
                except self._failures.peer_gone:
                    return
                except Exception:
                    self._log.exception("%s: %s handler failed", self._label, request.method)
                    data = error_response(request_id, INTERNAL_ERROR, f"Internal error while handling {request.method}")
                await self._answer(data, request_id)
            if scope.cancelled_caught:
                await self._answer(b"", request_id)  # cancelled by the peer: its stream ends unanswered
        finally:
            if self.in_flight.get(request_id) is scope:
                del self.in_flight[request_id]

    async def _answer(self, data: bytes, request_id: RequestId) -> None:
        try:
            await self._send(data, request_id, True)
        except self._failures.peer_gone:
            pass  # nobody is left to answer
        except Exception as error:
            self._log.warning("%s: could not send the answer to request %r: %s", self._label, request_id, error)


async def _send_nothing(data: bytes, related_request_id: RequestId | None, final: bool) -> None:
    raise RuntimeError("this peer is detached: it sends nothing")


def _route_nothing(request: JSONRPCRequest, extra: Any) -> Mapping[str, Any] | Handler:
    raise MCPError(INTERNAL_ERROR, "this peer is detached")


async def _ignore_notification(notification: JSONRPCNotification, extra: Any) -> None:
    return None


def _as_object(result: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(result, dict):
        return result
    if isinstance(result, Mapping):
        return dict(result)
    raise TypeError(f"a result must be a JSON object (a dict), not {type(result).__name__}")
