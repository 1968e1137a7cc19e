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

The memory store is bounded twice per session, by event count and by bytes,
and once for all its sessions together, by bytes: when a session's bound is
hit the *oldest* events of the session go first, when the store's is hit the
oldest events of the whole store (an ordered index over every kept event, so
finding them costs no scan of the sessions).  A resume that asks for events
older than what is kept gets what is left and ``Replay.complete`` is false, so
the transport can say (in its log) that messages were lost instead of
pretending the stream is whole.  A stream the store never kept an event of,
or one it was told to forget (its client read it to the end), is unknown: a
resume from it is refused rather than answered with nothing.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "EventStore",
    "MemoryEventStore",
    "Replay",
    "StoredEvent",
    "format_event_id",
    "parse_event_id",
    "stores_without_waiting",
]

log = logging.getLogger("trio_mcp_sse")

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

        Unknown covers: malformed, never issued for this session, naming a
        stream nothing was stored for or one forgotten by :meth:`forget_stream`,
        or the session already forgotten.  An id of another session is unknown too.
        """
        ...

    async def forget_stream(self, session_id: str, stream: str) -> None:
        """Drop a stream's events: it ended and its client read it to the end."""
        ...

    async def forget_session(self, session_id: str) -> None:
        """Drop everything kept for a session (it ended)."""
        ...


def stores_without_waiting(store: EventStore) -> bool:
    """Whether ``store`` is a :class:`MemoryEventStore` whose ``store`` is its own: it never waits.

    Its callers may then use :meth:`MemoryEventStore.store_nowait` instead.
    """
    return isinstance(store, MemoryEventStore) and type(store).store is MemoryEventStore.store


@dataclass(slots=True)
class _StreamRecord:
    """What the store knows of one stream of a session, as long as it can still be resumed."""

    first: int
    """The seq of its first stored event: an id below it was never this stream's."""
    dropped_before: int = 0
    """Events of the stream below this seq were dropped to keep within a bound (0: none)."""
    kept: int = 0
    """How many of its events are kept now."""


@dataclass(slots=True)
class _SessionEvents:
    next_seq: int = 0
    size: int = 0
    streams: dict[str, _StreamRecord] = field(default_factory=dict)
    """The streams a resume may name: each stream with an event kept, or dropped."""
    emptied: dict[str, None] = field(default_factory=dict)
    """Streams whose every event was dropped, oldest first (their record says so; bounded)."""
    events: deque[tuple[str, int, bytes, int]] | None = None
    """(stream, seq, data, order key), oldest first, across all the session's streams
    (``None``: none, as for most idle sessions)."""


class MemoryEventStore:
    """The default :class:`EventStore`: in this process, bounded per session and in total.

    ``max_events`` and ``max_bytes`` bound what one session keeps (the oldest
    events go first).  The defaults keep a burst of progress notifications and
    a large tool result for a client that reconnects within seconds, without
    letting one session hold more than a few MiB.

    ``max_bytes_total`` bounds the bytes kept for every session of the store
    together (one store per transport: per process, unless you make several),
    as ``SessionLimits.outbound_bytes_total`` does for outbound queues: past it
    the oldest events of the whole store go first, whichever session they
    belong to, and an event larger than the whole budget is not kept at all.
    Either way the streams that lost events replay as incomplete.  ``None``
    disables it; otherwise it must be at least ``max_bytes``.
    """

    def __init__(
        self,
        *,
        max_events: int = 1024,
        max_bytes: int = 8 * 1024 * 1024,
        max_bytes_total: int | None = 256 * 1024 * 1024,
    ) -> None:
        if max_events < 1 or max_bytes < 1:
            raise ValueError("max_events and max_bytes must be >= 1")
        if max_bytes_total is not None and max_bytes_total < max_bytes:
            raise ValueError(f"max_bytes_total must be >= max_bytes ({max_bytes}) or None")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_bytes_total = max_bytes_total
        self.evicted_bytes_total: Counter[str] = Counter()
        """Bytes of events dropped, by the bound that dropped them: ``"session"`` or ``"total"``."""
        self._sessions: dict[str, _SessionEvents] = {}
        self._total = 0
        self._order: OrderedDict[int, _SessionEvents] = OrderedDict()
        """Every kept event of the store, oldest first: order key -> its session's events."""
        self._next_key = 0
        self._over_budget = False
        """The budget dropped events and that was logged; re-armed once half the budget is free."""

    def __len__(self) -> int:
        """Sessions with something kept (for tests and metrics)."""
        return len(self._sessions)

    def stored_bytes(self, session_id: str) -> int:
        """Bytes of the events kept for one session."""
        kept = self._sessions.get(session_id)
        return 0 if kept is None else kept.size

    def stored_bytes_total(self) -> int:
        """Bytes of the events kept for every session together (at most ``max_bytes_total``)."""
        return self._total

    async def store(self, session_id: str, stream: str, data: bytes) -> str:
        return self.store_nowait(session_id, stream, data)

    def store_nowait(self, session_id: str, stream: str, data: bytes) -> str:
        """:meth:`store` for a caller that cannot wait (it never does here)."""
        if not _STREAM_NAME.fullmatch(stream):
            raise ValueError(f"stream name must match {_STREAM_NAME.pattern}: {stream!r}")
        kept = self._sessions.get(session_id)
        if kept is None:
            kept = self._sessions[session_id] = _SessionEvents()
        seq = kept.next_seq
        kept.next_seq += 1
        record = kept.streams.get(stream)
        if record is None:
            record = kept.streams[stream] = _StreamRecord(seq)
        size = len(data)
        budget = self.max_bytes_total
        if budget is not None and size > budget:
            # Larger than the whole budget: keeping it would empty the store and still not fit.
            self.evicted_bytes_total["total"] += size
            record.dropped_before = seq + 1
            if not record.kept:
                self._emptied(kept, stream)
            self._warn(f"an event of {size} bytes is larger than the whole budget: not kept")
            return format_event_id(stream, seq)
        if record.kept == 0:
            kept.emptied.pop(stream, None)
        record.kept += 1
        key = self._next_key
        self._next_key += 1
        events = kept.events
        if events is None:
            events = kept.events = deque()
        events.append((stream, seq, data, key))
        self._order[key] = kept
        kept.size += size
        self._total += size
        while len(events) > self.max_events or (kept.size > self.max_bytes and len(events) > 1):
            self._drop_oldest(kept, "session")
        if budget is not None:
            if self._total > budget:
                dropped = self._total
                while self._total > budget:  # the new event is the newest of all: it stays
                    self._drop_oldest(next(iter(self._order.values())), "total")
                self._warn(f"dropped the oldest {dropped - self._total} bytes")
            elif self._over_budget and self._total <= budget // 2:
                self._over_budget = False
        return format_event_id(stream, seq)

    def _drop_oldest(self, kept: _SessionEvents, bound: str) -> None:
        """Evict a session's oldest event; its stream's record remembers that it is gone."""
        assert kept.events is not None
        stream, seq, data, key = kept.events.popleft()
        del self._order[key]
        size = len(data)
        kept.size -= size
        self._total -= size
        self.evicted_bytes_total[bound] += size
        record = kept.streams[stream]
        record.dropped_before = seq + 1
        record.kept -= 1
        if not record.kept:
            self._emptied(kept, stream)

    def _emptied(self, kept: _SessionEvents, stream: str) -> None:
        """Nothing of ``stream`` is kept; past ``max_events`` such streams the oldest is forgotten."""
        kept.emptied[stream] = None
        if len(kept.emptied) > self.max_events:
            oldest = next(iter(kept.emptied))
            del kept.emptied[oldest]
            del kept.streams[oldest]

    def _warn(self, what: str) -> None:
        if self._over_budget:
            return
        self._over_budget = True
        log.warning(
            "event store over its budget of %d bytes (max_bytes_total): %s; %d bytes kept for %d sessions. "
            "Resumes of the streams that lost events will be incomplete (logged again once half the budget is free)",
            self.max_bytes_total,
            what,
            self._total,
            len(self._sessions),
            extra={
                "event": "event_store_budget",
                "stored_bytes": self._total,
                "limit": self.max_bytes_total,
            },
        )

    async def replay(self, session_id: str, last_event_id: str) -> Replay | None:
        parsed = parse_event_id(last_event_id)
        kept = self._sessions.get(session_id)
        if parsed is None or kept is None:
            return None
        stream, seq = parsed
        record = kept.streams.get(stream)
        if record is None or seq < record.first or seq >= kept.next_seq:
            return None  # a stream never stored, or forgotten; or a number it never had
        events: list[StoredEvent] = []
        for kept_stream, kept_seq, data, _ in kept.events or ():
            if kept_seq == seq and kept_stream != stream:
                return None  # an id we never issued: its number belongs to another stream
            if kept_stream == stream and kept_seq > seq:
                events.append(StoredEvent(format_event_id(kept_stream, kept_seq), data))
        complete = record.dropped_before <= seq + 1
        return Replay(stream, tuple(events), complete)

    async def forget_stream(self, session_id: str, stream: str) -> None:
        kept = self._sessions.get(session_id)
        if kept is None or kept.streams.pop(stream, None) is None:
            return
        kept.emptied.pop(stream, None)
        if not kept.streams:
            kept.streams = {}  # (an emptied dict keeps its table: an idle session's need not)
        remaining: deque[tuple[str, int, bytes, int]] | None = None
        for item in kept.events or ():
            if item[0] == stream:
                del self._order[item[3]]
                kept.size -= len(item[2])
                self._total -= len(item[2])
            else:
                if remaining is None:
                    remaining = deque()
                remaining.append(item)
        kept.events = remaining  # (none left: no deque, which costs 760 bytes empty)
        self._rearm()

    async def forget_session(self, session_id: str) -> None:
        kept = self._sessions.pop(session_id, None)
        if kept is None:
            return
        for item in kept.events or ():
            del self._order[item[3]]
        self._total -= kept.size
        self._rearm()

    def _rearm(self) -> None:
        if (
            self._over_budget
            and self.max_bytes_total is not None
            and self._total <= self.max_bytes_total // 2
        ):
            self._over_budget = False
