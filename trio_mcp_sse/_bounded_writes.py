"""Bounded socket writes for hypercorn's trio worker, under ``serve`` and plain ``hypercorn`` alike.

hypercorn writes to a socket inside a shielded scope with no timeout, so a
peer with a full receive window holds its connection, the task writing to it
and whatever that write carries, for as long as the peer keeps the socket
open.  Dropping the session (the outbound byte budget) frees the queue, not
the connection.  :func:`install_bounded_writes` replaces hypercorn's private
``TCPServer`` with a subclass whose writes give up after ``write_timeout``
seconds and close the connection.

``serve`` installs it before hypercorn starts.  Under plain ``hypercorn
--worker-class trio`` the transport's lifespan installs it at start-up:
``worker_serve`` looks the class up only after the lifespan has started, so
every connection of the process is bounded.  ``_hypercorn_internals`` checks
that the installed hypercorn still has what the subclass relies on; if not,
nothing is replaced (and ``serve`` refuses to start).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import weakref
from typing import Any

import trio

__all__ = ["install_bounded_writes", "installed_write_timeout"]

log = logging.getLogger("trio_mcp_sse")

_installed: dict[str, Any] = {}


def installed_write_timeout() -> float | None:
    """The write bound in force in this process, if any."""
    timeout: float | None = _installed.get("write_timeout")
    return timeout


def install_bounded_writes(write_timeout: float) -> weakref.WeakSet[Any]:
    """Make hypercorn's trio connections bound their writes and be abortable (idempotent).

    Returns the live connections, for aborting at the end of a shutdown.  A
    second call keeps the first bound (``serve``'s option wins over a
    transport's default).
    """
    if "connections" in _installed:
        connections: weakref.WeakSet[Any] = _installed["connections"]
        return connections
    from hypercorn.events import Closed, RawData
    from hypercorn.trio import run as hypercorn_run
    from hypercorn.trio.tcp_server import TCPServer

    connections = weakref.WeakSet()

    class BoundedWriteTCPServer(TCPServer):
        """hypercorn's connection with a write deadline and an abort switch."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.writing = False
            try:
                host, port = self.stream.socket.getpeername()[:2]
                self.peer = f"{host}:{port}"
            except (OSError, ValueError, AttributeError):
                self.peer = "unknown"
            connections.add(self)

        async def protocol_send(self, event: Any) -> None:
            if not isinstance(event, RawData):
                await super().protocol_send(event)
                return
            if not event.data:
                return  # (the end of a Content-Length body is one: nothing to write, nothing to wait for)
            async with self.send_lock:
                try:
                    # Shielded as in hypercorn (a cancelled request must not tear a
                    # half-written frame), but no longer unbounded: one scope does both.
                    with trio.CancelScope(shield=True, deadline=trio.current_time() + write_timeout) as timer:
                        self.writing = True
                        try:
                            await self.stream.send_all(event.data)
                        finally:
                            self.writing = False
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.protocol.handle(Closed())
                    return
                if timer.cancelled_caught:
                    log.warning(
                        "peer %s did not read for %.1fs; closing its connection",
                        self.peer,
                        write_timeout,
                        extra={"event": "write_timeout"},
                    )
                    await self.abort()
                    await self.protocol.handle(Closed())

        async def abort(self) -> None:
            with trio.CancelScope(shield=True), contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await self.stream.aclose()

    setattr(hypercorn_run, "TCPServer", BoundedWriteTCPServer)  # noqa: B010 -- worker_serve looks it up here
    _installed.update(connections=connections, write_timeout=write_timeout)
    return connections


def bound_writes_if_hypercorn_trio(write_timeout: float) -> None:
    """From a lifespan: bound writes when this process is hypercorn's trio worker (and it is safe to)."""
    if "connections" in _installed or "hypercorn.trio.run" not in sys.modules:
        return
    from ._hypercorn_internals import missing_internals

    missing = missing_internals()
    if missing:
        log.warning(
            "this hypercorn lacks %s: writes to clients that stop reading stay unbounded",
            ", ".join(missing),
            extra={"event": "writes_unbounded"},
        )
        return
    install_bounded_writes(write_timeout)
