"""The stream pump: a session's outbound channel -> SSE frames -> ASGI ``send``, with keepalives.

Any transport that answers with an event stream reuses it: HTTP+SSE for its
``GET`` stream, Streamable HTTP for a ``GET`` stream or a POST's SSE response.
It knows nothing about routing or admission; it starts the response, writes
an optional first event, and moves messages until the session's channel ends
or the client leaves.

One task does both jobs.  While nothing is queued it waits for the ASGI
server's next event (``http.disconnect`` is the one that matters) inside a
cancel scope, and the session cancels that scope whenever it queues something
(``Session.on_outgoing``): a waiting stream costs one parked task instead of
two.  Under ``serve`` that wait is the socket read itself, and cancelling it
also takes the socket out of the poller and puts it back, which a busy stream
would pay for every message.  So there, once woken from it, a stream waits
for its session alone for a second, woken with no cancel, and then waits for
its client again: a busy stream pays one cancel a second, and a client that
leaves is seen within about a second.
Queued messages are coalesced into one write.  Keepalives come from a
:class:`~trio_mcp_sse._keepalive.KeepaliveClock` shared by every stream: the
clock queues an empty item, which becomes an SSE comment.
"""

from __future__ import annotations

import math
from typing import Final

import trio

from ._http import RawHeaders, Receive, Send
from ._keepalive import KeepaliveClock
from ._session import Session
from ._sse import encode_message_event

__all__ = ["KEEPALIVE_FRAME", "STREAM_HEADERS", "pump_events"]

STREAM_HEADERS: Final[RawHeaders] = (
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),  # nginx would otherwise buffer the stream
)
KEEPALIVE_FRAME: Final = b": ping\n\n"
_QUICK_WAIT: Final = 1.0
"""Seconds, after a wake-up from the wait for the client, during which a stream waits for its session alone."""
_MAX_COALESCED: Final = 64
_MAX_COALESCED_BYTES: Final = 256 * 1024
"""Stop coalescing past this: a write handed to the server stays small, so a peer that stops
reading strands little in it (a single larger message is still written whole)."""


async def pump_events(
    session: Session,
    receive: Receive,
    send: Send,
    *,
    clock: KeepaliveClock | None,
    extra_headers: RawHeaders = (),
    first_event: bytes = b"",
    reads_on_demand: bool = False,
) -> bool:
    """Answer ``200`` with an event stream and pump ``session.outgoing`` onto it.

    ``first_event`` (already framed) is written right after the response start
    (HTTP+SSE's ``endpoint`` event).  Every outbound item becomes one
    ``event: message`` whatever its ``related_request_id``: one stream carries
    everything.  When the channel ends the body is finished cleanly.

    ``reads_on_demand``: the server reads the connection only when asked, so
    the wait for the client is the socket read itself (``serve``'s HTTP/1.1
    layer, which says so with a :class:`~trio_mcp_sse._http.DisconnectNotice`);
    a busy stream then waits for its session alone for a second at a time (see
    above).  Elsewhere a stream always waits for both.

    Returns whether the client went away (the caller then closes the session).
    """
    headers = STREAM_HEADERS if not extra_headers else (*STREAM_HEADERS, *extra_headers)
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if first_event:
        await send({"type": "http.response.body", "body": first_event, "more_body": True})
    watched = clock.watch(session.wake_writer) if clock is not None else None
    outgoing = session.outgoing
    waiting: trio.CancelScope | None = None
    parked: trio.lowlevel.Task | None = None
    quick_until = -math.inf

    def wake() -> None:
        nonlocal parked
        task = parked
        if task is not None:
            parked = None
            trio.lowlevel.reschedule(task)
        elif waiting is not None:
            waiting.cancel()

    def unpark(_: object) -> trio.lowlevel.Abort:
        nonlocal parked
        parked = None
        return trio.lowlevel.Abort.SUCCEEDED

    # The loop is here rather than in a helper coroutine: a parked stream keeps one frame less.
    session.on_outgoing = wake
    peer_gone = True
    try:
        while True:
            frames: list[bytes] = []
            keepalive = ended = False
            size = 0
            while len(frames) < _MAX_COALESCED and size < _MAX_COALESCED_BYTES:
                try:
                    item = outgoing.receive_nowait()
                except trio.WouldBlock:
                    break
                except trio.EndOfChannel:
                    ended = True
                    break
                if item.data:
                    frames.append(encode_message_event(item.data))
                    size += len(item.data)
                elif not (item.final or item.reconnect):  # (per-request stream signals: not for this stream)
                    keepalive = True
                del item  # an idle stream must not keep its last (maybe large) message alive
            if frames or keepalive:
                body = b"".join(frames) if frames else KEEPALIVE_FRAME
                del frames
                try:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                except OSError:  # some servers raise when writing to a closed connection
                    break
                del body
                if watched is not None:
                    watched.last_write = trio.current_time()
                continue  # more may have been queued meanwhile
            if ended:
                peer_gone = False
                break
            # Nothing queued: wait for the client (to leave) or for the session (to
            # queue something).  No checkpoint since the channel was found empty,
            # so no wake-up can have been missed.
            if quick_until > -math.inf:
                with trio.move_on_at(quick_until) as quick:
                    parked = trio.lowlevel.current_task()
                    await trio.lowlevel.wait_task_rescheduled(unpark)
                parked = None
                if quick.cancelled_caught:
                    quick_until = -math.inf  # a quiet stream: watch its client from now on
                continue
            with trio.CancelScope() as waiting:
                while (await receive())["type"] != "http.disconnect":
                    pass
                break
            waiting = None
            if reads_on_demand:
                quick_until = trio.current_time() + _QUICK_WAIT  # woken: a busy stream, for now
    finally:
        session.on_outgoing = None
        if clock is not None and watched is not None:
            clock.unwatch(watched)
    if not peer_gone:
        # The session ended (handler returned, drained, idle, dropped): end the body cleanly.
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    return peer_gone
