"""A round-robin TCP proxy for tests: each new connection goes to the next backend.

It is the worst case a deployment of several workers or hosts can meet: a
balancer with no session affinity, so the stream of a session and the POSTs
for it land on different processes.  Tests put it in front of two servers and
check that sessions still work, which they can only do through the broker.

Bytes are copied both ways until both sides are done; a side that sends EOF
is half-closed on the other (``send_eof``), so request/response exchanges that
rely on half-close pass through intact.  A reset or error on either side
closes both.  Every task (the listener and two copiers per connection) runs in
the one nursery the context manager owns.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress

import trio

__all__ = ["round_robin_proxy"]

CONNECT_TIMEOUT = 10.0
_CHUNK = 65536


async def _copy(source: trio.SocketStream, sink: trio.SocketStream) -> None:
    """Copy until ``source`` sends EOF, then half-close ``sink``."""
    while chunk := await source.receive_some(_CHUNK):
        await sink.send_all(chunk)
    await sink.send_eof()


async def _relay(backends: itertools.cycle[tuple[str, int]], client: trio.SocketStream) -> None:
    host, port = next(backends)  # chosen before any checkpoint: accept order is pick order
    async with client:
        upstream: trio.SocketStream | None = None
        with trio.move_on_after(CONNECT_TIMEOUT):
            with suppress(OSError):
                upstream = await trio.open_tcp_stream(host, port)
        if upstream is None:
            return  # the client sees its connection closed, as from a balancer with a dead backend
        async with upstream:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_copy, client, upstream)
                    nursery.start_soon(_copy, upstream, client)
            except* (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # a reset on one side: closing both (on exit) is the whole answer


@asynccontextmanager
async def round_robin_proxy(backends: Sequence[int | tuple[str, int]], *, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Listen on ``host`` (a free port, yielded) and relay each new connection to the next backend.

    A backend is a port on 127.0.0.1 or a ``(host, port)`` pair.  There is no
    stickiness: connection *n* goes to backend ``n % len(backends)``.
    """
    if not backends:
        raise ValueError("round_robin_proxy needs at least one backend")
    targets = itertools.cycle([("127.0.0.1", b) if isinstance(b, int) else b for b in backends])
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(
                trio.serve_tcp, functools.partial(_relay, targets), 0, host=host, handler_nursery=nursery
            )
        )
        try:
            yield listeners[0].socket.getsockname()[1]
        finally:
            nursery.cancel_scope.cancel()
