"""What every transport runs besides its endpoints: sessions, keepalive clock, lifespan, drain.

A :class:`SessionHost` owns the :class:`SessionManager` (whose nursery hosts
every session task), the one :class:`KeepaliveClock` shared by all streams, the
metrics, and the count of open streams that a drain waits for.  A transport is
then a router over its endpoints plus ``host.lifespan`` for the ASGI lifespan.

There is one way to host a session: the manager's nursery, opened by
:meth:`SessionHost.run`.  The lifespan runs it for the server's lifetime.  A
transport mounted where no lifespan reaches it (some sub-app mounts) runs it
for the duration of the first stream instead (:meth:`SessionHost.hosting`);
streams that open meanwhile join it, and that request returns once the last
of them has ended.

The application's own lifespan (:attr:`SessionHost.app_lifespan`, the
server's ``MCPServer(lifespan=...)``) is entered around that: on
``lifespan.startup``, before start-up is reported complete (a failure fails
the start-up, in one line), and exited on ``lifespan.shutdown`` once every
session has ended, before shutdown is reported complete.  Under an ASGI
lifespan it runs in a task of its own, in a nursery the lifespan owns: its
enter and its exit happen in different ASGI receive calls, and a context
manager that opens a nursery or cancel scope cannot be held open across
those frames in one task.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any, Final

import trio

from ._bounded_writes import bound_writes_if_hypercorn_trio
from ._broker import Broker, BrokerLink, ForwardTarget, task_id_prefix
from ._drain import drain_group_of
from ._http import ASGIApp, BodyBudget, Outcome, Receive, Scope, Send
from ._keepalive import KeepaliveClock
from ._logs import ensure_default_handler, install_accept_error_filter
from ._metrics import Metrics
from ._redis_broker import resolve_broker
from ._session import SessionHandler, SessionLimits, SessionManager, SessionRegistry

__all__ = ["NOT_TRIO", "AppLifespan", "LifespanFailed", "SessionHost", "describe_error", "running_under_trio"]

log = logging.getLogger("trio_mcp_sse")

_FLUSH_TIME: Final = 0.25  # after a drain, how long ended streams get to flush their last bytes


NOT_TRIO: Final = Outcome.NOT_TRIO.reason

AppLifespan = Callable[[], AbstractAsyncContextManager[object]]
"""What the host enters for as long as it hosts sessions (see :attr:`SessionHost.app_lifespan`)."""


class LifespanFailed(Exception):
    """An :data:`AppLifespan` failed to start or on exit; the message is the one line to report."""


def lifespan_failure(error: BaseException, stage: str) -> str:
    """The one line a failed start-up (``stage`` "to start") or exit ("on exit") reports."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    if isinstance(error, LifespanFailed):
        return str(error)
    return f"the application's lifespan failed {stage}: {describe_error(error)}"


def describe_error(error: BaseException) -> str:
    """``Type: first line of the message`` (a single leaf of an exception group stands for it)."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


class _HeldLifespan:
    """An :data:`AppLifespan` held open by a task of its own, from :meth:`start` to :meth:`stop`.

    An error while it runs (a background task it started crashed) is not caught
    here: it reaches the nursery that holds it, the ASGI lifespan's, and ends
    the application, as a crash should.  An error on its exit is kept for
    :meth:`stop` to report: by then the application is stopping anyway.
    """

    def __init__(self, enter: AppLifespan) -> None:
        self._enter = enter
        self._stop = trio.Event()
        self._exited = trio.Event()
        self._exit_error: BaseException | None = None

    async def hold(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with self._enter():
                task_status.started()
                await self._stop.wait()
        except Exception as error:
            if not self._stop.is_set():
                raise  # failed to start (``start`` raises it) or crashed while running
            self._exit_error = error
        finally:
            self._exited.set()

    def release(self) -> None:
        """Let it exit, without waiting (the nursery that holds it waits)."""
        self._stop.set()

    async def stop(self) -> BaseException | None:
        """Exit it and wait until it has; the error its exit raised, if any."""
        self._stop.set()
        await self._exited.wait()  # bounded by the lifespan's own exit (the ASGI server bounds shutdown)
        return self._exit_error


def running_under_trio() -> bool:
    """Is the caller a Trio task?  (Under an asyncio server every Trio call would fail later, per request.)"""
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


class SessionHost:
    """Sessions, keepalives and shutdown for one transport."""

    def __init__(
        self,
        handler: SessionHandler,
        *,
        keepalive_interval: float | None,
        limits: SessionLimits | None = None,
        registry: SessionRegistry | None = None,
        broker: Broker | str | None = None,
    ) -> None:
        if keepalive_interval is not None and keepalive_interval <= 0:
            raise ValueError("keepalive_interval must be > 0 or None")
        self.broker: Broker | None = resolve_broker(broker) if isinstance(broker, str) else broker
        """Shared with the other workers (``None``: the ``TRIO_MCP_SSE_BROKER`` environment variable's,
        read when the host starts, or none: sessions stay in this process)."""
        self.link: BrokerLink | None = None
        """This worker's membership of :attr:`broker` while the host runs."""
        self._forward_targets: list[ForwardTarget] = []
        self.metrics = Metrics()
        self.sessions = SessionManager(handler, limits=limits, registry=registry, metrics=self.metrics)
        self.keepalive = KeepaliveClock(keepalive_interval) if keepalive_interval is not None else None
        """Shared by every stream while the host runs (one timer task, not one per stream)."""
        self.body_budget: BodyBudget | None = None
        """The worker's budget for request bodies being read, shared by the transports on this host
        (the first transport creates it from its ``SecuritySettings.body_budget``)."""
        self._open_streams = 0
        self._streams_closed = trio.Event()
        self._streams_closed.set()
        self.app_lifespan: AppLifespan | None = None
        """Entered before the first session and exited after the last, once per run of the host
        (the ASGI lifespan, or :meth:`hosting`): the server layer's own lifespan."""

    @property
    def draining(self) -> bool:
        return self.sessions.draining

    @property
    def running(self) -> bool:
        return self.sessions.running

    # -- running ------------------------------------------------------------------------------------
    @asynccontextmanager
    async def run(self) -> AsyncIterator[SessionHost]:
        """Host sessions, run the keepalive clock, and join the broker, for the duration of the block."""
        broker = resolve_broker(self.broker)
        async with self.sessions.run(), trio.open_nursery() as timers:
            if self.keepalive is not None:
                timers.start_soon(self.keepalive.run, name="keepalive clock")
            try:
                if broker is None:
                    yield self
                    return
                link = BrokerLink(broker, local_sessions=self._claimed_sessions, metrics=self.metrics)
                for target in self._forward_targets:
                    link.add_target(target)
                async with link.run():
                    self.link = link
                    self.sessions.claims = link
                    self.metrics.broker = link
                    try:
                        yield self
                    finally:
                        self.link = None
                        self.sessions.claims = None
                        self.metrics.broker = None
            finally:
                timers.cancel_scope.cancel()

    def task_id_prefix(self) -> str:
        """What the ids of tasks created now start with: this worker's broker id while the host runs with a
        broker, so that another worker can forward a task's requests here (``docs/scaling.md``); else ``""``."""
        link = self.link
        return "" if link is None else task_id_prefix(link.worker_id)

    def _claimed_sessions(self) -> list[str]:
        return [session.id for session in self.sessions if not session.stateless]

    def add_forward_target(self, target: ForwardTarget) -> None:
        """A transport on this host that answers requests forwarded by other workers."""
        if target not in self._forward_targets:
            self._forward_targets.append(target)
        if self.link is not None:
            self.link.add_target(target)

    @asynccontextmanager
    async def hosting(self) -> AsyncIterator[None]:
        """Host sessions for a stream request that arrived while nothing runs the host.

        Without a lifespan, the first stream runs the host and keeps it until
        every stream that joined meanwhile has ended.  (Under a lifespan the
        transport never calls this: an idle stream should not pay for a context
        manager frame.)
        """
        async with self.app_lifespan() if self.app_lifespan is not None else nullcontext(), self.run():
            yield
            await self._streams_closed.wait()  # bounded by those streams, each ending with its client

    async def lifespan(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp | None) -> None:
        """Run for the server's lifetime; join the server's drain group; close sessions before the app stops.

        Start-up also refuses a server that is not Trio (an asyncio worker,
        uvicorn) with one line, and under hypercorn's trio worker installs the
        default log handler, the accept-error filter and bounded socket writes.

        :attr:`app_lifespan` is entered on ``lifespan.startup``, before ``app``
        hears of it (so it is entered before the app's own start-up hooks and
        exited after its shutdown hooks); if it fails, start-up fails with one
        line, logged and sent as ``lifespan.startup.failed``.  On
        ``lifespan.shutdown`` the sessions are closed first, then it exits, then
        shutdown is reported complete (or failed, if its exit raised).
        """
        if not running_under_trio():
            await self._refuse_startup(receive, send)
            return
        ensure_default_handler()
        install_accept_error_filter()
        bound_writes_if_hypercorn_trio(self.sessions.limits.write_timeout)
        group = drain_group_of(scope)
        held = _HeldLifespan(self.app_lifespan) if self.app_lifespan is not None else None
        # The lifespan's nursery encloses the sessions' one and is released only once they
        # are gone: whichever way the app stops, the server's lifespan outlives its sessions.
        async with trio.open_nursery() as holder:
            try:
                async with self.run():
                    if group is not None:
                        group.add(self)
                    try:
                        first = await receive()
                        if held is not None and first["type"] == "lifespan.startup":
                            try:
                                await holder.start(held.hold)
                            except Exception as error:
                                held = None
                                line = lifespan_failure(error, "to start")
                                log.error("start-up failed: %s", line, extra={"event": "lifespan_failed"})
                                log.debug("the lifespan's start-up error", exc_info=error)
                                await send({"type": "lifespan.startup.failed", "message": line})
                                return
                        pending: list[Any] = [first]

                        async def receive_then_close_sessions() -> Any:
                            if pending:
                                return pending.pop()
                            message = await receive()
                            if message["type"] == "lifespan.shutdown":
                                await self.close_all_sessions()
                            return message

                        async def send_after_lifespan_exit(message: Any) -> None:
                            nonlocal held
                            if held is not None and message["type"] in (
                                "lifespan.shutdown.complete",
                                "lifespan.shutdown.failed",
                            ):
                                error, held = await held.stop(), None
                                if error is not None and message["type"] == "lifespan.shutdown.complete":
                                    line = lifespan_failure(error, "on exit")
                                    log.error(line, exc_info=error, extra={"event": "lifespan_exit_failed"})
                                    message = {"type": "lifespan.shutdown.failed", "message": line}
                            await send(message)

                        if app is not None:
                            await app(scope, receive_then_close_sessions, send_after_lifespan_exit)
                            return
                        while True:
                            message = await receive_then_close_sessions()
                            if message["type"] == "lifespan.startup":
                                await send_after_lifespan_exit({"type": "lifespan.startup.complete"})
                            elif message["type"] == "lifespan.shutdown":
                                await send_after_lifespan_exit({"type": "lifespan.shutdown.complete"})
                                return
                    finally:
                        if group is not None:
                            group.discard(self)
            finally:
                if held is not None:
                    held.release()  # the app stopped some other way: it exits now that the sessions have

    @staticmethod
    async def _refuse_startup(receive: Receive, send: Send) -> None:
        """Fail the start-up of a server that is not Trio, with one line and a non-zero exit."""
        ensure_default_handler()
        log.error(NOT_TRIO, extra={"event": "not_trio"})
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        try:
            await send({"type": "lifespan.startup.failed", "message": NOT_TRIO})
        except Exception:
            # hypercorn's asyncio worker raises here; its worker process would print a
            # 30-line traceback and the server exit 0.  The line above said everything:
            # end this worker process now, with a status its parent reports.
            sys.stderr.flush()
            os._exit(1)

    # -- streams ------------------------------------------------------------------------------------
    def stream_started(self) -> None:
        """Count an open stream (call :meth:`stream_ended` in a ``finally``): a drain waits for them."""
        self._open_streams += 1
        if self._streams_closed.is_set():
            self._streams_closed = trio.Event()

    def stream_ended(self) -> None:
        self._open_streams -= 1
        if self._open_streams == 0:
            self._streams_closed.set()

    # -- shutting down ------------------------------------------------------------------------------
    async def drain(self, grace_period: float) -> None:
        """Stop opening sessions and let the open ones finish, then wait for every stream to end.

        Returns when every stream has ended, and never much later than
        ``grace_period``: a stream whose client stopped reading cannot be
        finished from here (see ``python -m trio_mcp_sse serve``).
        """
        deadline = trio.current_time() + grace_period
        log.info(
            "draining (up to %.1fs)",
            grace_period,
            extra={"event": "drain_started", "sessions": len(self.sessions)},
        )
        await self.sessions.drain(grace_period)
        with trio.move_on_at(max(deadline, trio.current_time() + _FLUSH_TIME)):
            await self._streams_closed.wait()
        log.info("drained", extra={"event": "drain_finished", "streams_left": self._open_streams})

    async def close_all_sessions(self, reason: str = "server shutting down") -> None:
        """Close every session at once and wait (bounded) for their tasks to unwind, then release them.

        Called on the lifespan's shutdown before the application reports it
        complete: the broker still answers then (see :meth:`BrokerLink.release_closed`).
        """
        await self.sessions.close_all(reason)
        if self.link is not None:
            await self.link.release_closed()
