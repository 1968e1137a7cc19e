"""Keeps the events of Streamable HTTP streams so that a client can resume a broken stream.

Theory of operation
-------------------
A Streamable HTTP server may give every SSE event it sends an ``id``.  A
client whose connection broke (or that the server disconnected on purpose,
after a ``retry`` hint) sends ``GET`` with ``Last-Event-ID`` and expects the
messages that *that stream* would have carried after that id, and no others:
the spec forbids replaying a message that belonged to another stream.

So an event id names its stream.  Ids are ``"<stream>.<seq>"``: ``stream`` is
the transport's name for one HTTP response stream within a session (letters,
digits, ``_`` and ``-``), ``seq`` counts the events stored for the session.
Ids are unique within the session, never reused, and need no lookup table to
find their stream.

:class:`EventStore` is the seam: the in-process :class:`MemoryEventStore` is
the default, and a store shared by several workers (Redis) plugs in here so a
resume can land on any worker.  Every method is async for that reason.

The memory store is bounded twice per session, by event count and by bytes;
when a bound is hit the *oldest* events of the session go first.  A resume
that asks for events older than what is kept gets what is left and
``Replay.complete`` is false, so the transport can say (in its log) that
messages were lost instead of pretending the stream is whole.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "EventStore",
    "MemoryEventStore",
    "Replay",
    "StoredEvent",
    "format_event_id",
    "parse_event_id",
]

_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def format_event_id(stream: str, seq: int) -> str:
    """The SSE ``id`` of the ``seq``-th event stored for a session, on ``stream``."""
    return f"{stream}.{seq}"


def parse_event_id(event_id: str) -> tuple[str, int] | None:
    """``(stream, seq)`` from an id made by :func:`format_event_id`; None for anything else.

    A client sends ``Last-Event-ID`` verbatim, so it is untrusted input: an id
    that this module could not have made is simply unknown.
    """
    stream, dot, seq = event_id.rpartition(".")
    if not dot or not _STREAM_NAME.fullmatch(stream) or not seq.isascii() or not seq.isdigit():
        return None
    if len(seq) > 18 or (len(seq) > 1 and seq[0] == "0"):
        return None
    return stream, int(seq)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event as it was sent: its id and the JSON-RPC message (compact JSON bytes)."""

    event_id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Replay:
    """What a resume gets: the stream it continues, and the events after the client's id.

    ``complete`` is false when some events after that id were already dropped
    to keep the store within its bounds.
    """

    stream: str
    events: tuple[StoredEvent, ...]
    complete: bool = True


class EventStore(Protocol):
    """Where Streamable HTTP events are kept for resumption."""

    async def store(self, session_id: str, stream: str, data: bytes) -> str:
        """Keep one message sent on ``stream``; return the event id to send with it."""
        ...

    async def replay(self, session_id: str, last_event_id: str) -> Replay | None:
        """The events of ``last_event_id``'s stream stored after it, or None if the id is unknown.

        Unknown covers: malformed, never issued for this session, or the
        session already forgotten.  An id of another session is unknown too.
        """
        ...

    async def forget_stream(self, session_id: str, stream: str) -> None:
        """Drop a stream's events: it ended and its client read it to the end."""
        ...

    async def forget_session(self, session_id: str) -> None:
        """Drop everything kept for a session (it ended)."""
        ...


@dataclass(slots=True)
class _SessionEvents:
    next_seq: int = 0
    size: int = 0
    dropped_before: dict[str, int] = field(default_factory=dict)
    """Per stream, the lowest seq still complete after: events below it were evicted."""
    events: deque[tuple[str, int, bytes]] = field(default_factory=deque)
    """(stream, seq, data), oldest first, across all the session's streams."""


class MemoryEventStore:
    """The default :class:`EventStore`: in this process, bounded per session.

    ``max_events`` and ``max_bytes`` bound what one session keeps (the oldest
    events go first).  The defaults keep a burst of progress notifications and
    a large tool result for a client that reconnects within seconds, without
    letting one session hold more than a few MiB.
    """

    def __init__(self, *, max_events: int = 1024, max_bytes: int = 8 * 1024 * 1024) -> None:
        if max_events < 1 or max_bytes < 1:
            raise ValueError("max_events and max_bytes must be >= 1")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._sessions: dict[str, _SessionEvents] = {}

    def __len__(self) -> int:
        """Sessions with something kept (for tests and metrics)."""
        return len(self._sessions)

    def stored_bytes(self, session_id: str) -> int:
        kept = self._sessions.get(session_id)
        return 0 if kept is None else kept.size

    async def store(self, session_id: str, stream: str, data: bytes) -> str:
        if not _STREAM_NAME.fullmatch(stream):
            raise ValueError(f"stream name must match {_STREAM_NAME.pattern}: {stream!r}")
        kept = self._sessions.get(session_id)
        if kept is None:
            kept = self._sessions[session_id] = _SessionEvents()
        seq = kept.next_seq
        kept.next_seq += 1
        kept.events.append((stream, seq, data))
        kept.size += len(data)
        while len(kept.events) > self.max_events or (kept.size > self.max_bytes and len(kept.events) > 1):
            old_stream, old_seq, old_data = kept.events.popleft()
            kept.size -= len(old_data)
            kept.dropped_before[old_stream] = old_seq + 1
        return format_event_id(stream, seq)

    async def replay(self, session_id: str, last_event_id: str) -> Replay | None:
        parsed = parse_event_id(last_event_id)
        kept = self._sessions.get(session_id)
        if parsed is None or kept is None:
            return None
        stream, seq = parsed
        if seq >= kept.next_seq:
            return None
        events: list[StoredEvent] = []
        for kept_stream, kept_seq, data in kept.events:
            if kept_seq == seq and kept_stream != stream:
                return None  # an id we never issued: its number belongs to another stream
            if kept_stream == stream and kept_seq > seq:
                events.append(StoredEvent(format_event_id(kept_stream, kept_seq), data))
        complete = kept.dropped_before.get(stream, 0) <= seq + 1
        return Replay(stream, tuple(events), complete)

    async def forget_stream(self, session_id: str, stream: str) -> None:
        kept = self._sessions.get(session_id)
        if kept is None:
            return
        remaining = deque(item for item in kept.events if item[0] != stream)
        kept.size = sum(len(item[2]) for item in remaining)
        kept.events = remaining
        kept.dropped_before.pop(stream, None)

    async def forget_session(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
