"""Server-Sent Events framing, without I/O.

Theory of operation
-------------------
An event stream is UTF-8 text made of *events*, each a run of ``field: value``
lines ended by a blank line, plus *comments* (lines starting with ``:``) that a
reader ignores.  This module turns values into exact bytes (:func:`encode_event`,
:func:`encode_comment`) and bytes back into :class:`ServerSentEvent` objects
(:class:`SSEDecoder`), following the WHATWG "event stream interpretation" rules.

Nothing here touches a socket or a clock, so both directions are tested byte
for byte, and the decoder accepts data split at any chunk boundary: transports
feed it whatever the network hands them.

The decoder is bounded.  Only a blank line dispatches an event, so a peer that
sends one endless line, or an event that never ends, would otherwise grow its
buffer until the process runs out of memory -- while every read succeeds and no
read timeout fires.  ``max_line_size`` and ``max_event_size`` cap what it
holds; past either, :meth:`SSEDecoder.feed` raises :class:`SSELimitExceeded`.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_MAX_EVENT_SIZE",
    "DEFAULT_MAX_LINE_SIZE",
    "SSEDecoder",
    "SSELimitExceeded",
    "ServerSentEvent",
    "encode_comment",
    "encode_event",
]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")

DEFAULT_MAX_EVENT_SIZE: Final = 16 * 1024 * 1024
"""16 Mi characters: an MCP message travels as one event, and a tool result
(a file, an image in base64) can be large; far above any sane message, far
below what hurts a process."""

DEFAULT_MAX_LINE_SIZE: Final = DEFAULT_MAX_EVENT_SIZE
"""A JSON-RPC message is one ``data:`` line, so a line must be able to hold the
largest event: the line limit defaults to the event limit."""


class SSELimitExceeded(ValueError):
    """The event stream exceeded one of the decoder's bounds.

    ``limit_name`` is ``"max_line_size"`` or ``"max_event_size"`` and ``limit``
    its value, in characters.  The stream cannot be resynchronised (the rest of
    the line or event is still coming), so the decoder refuses further input:
    the connection must be closed.
    """

    def __init__(self, limit_name: str, limit: int) -> None:
        what = "a line" if limit_name == "max_line_size" else "an event"
        super().__init__(f"{what} of the event stream exceeded {limit_name} ({limit} characters)")
        self.limit_name = limit_name
        self.limit = limit


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event.

    ``event`` is ``"message"`` when the stream named none (the WHATWG default);
    ``id`` is the stream's *last event id* at dispatch time, which persists
    across events until the server changes it.
    """

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


def _check_field(name: str, value: str, forbidden: str) -> None:
    for char in forbidden:
        if char in value:
            raise ValueError(f"SSE {name} must not contain {char!r}: {value!r}")


def encode_event(
    data: str | bytes,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
) -> bytes:
    """Encode one event as exact bytes, ending with the blank line that dispatches it.

    Multi-line ``data`` (any of CRLF, CR or LF) becomes one ``data:`` line per
    line, which a reader joins back with ``\\n``.  ``event`` and ``id`` cannot
    carry line breaks (they would end the field early and let data inject
    fields), so they are rejected rather than silently mangled.
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    parts: list[str] = []
    if event is not None:
        _check_field("event", event, "\r\n")
        parts.append(f"event: {event}\n")
    if id is not None:
        _check_field("id", id, "\r\n\0")
        parts.append(f"id: {id}\n")
    if retry is not None:
        if retry < 0:
            raise ValueError(f"SSE retry must be >= 0, got {retry}")
        parts.append(f"retry: {retry}\n")
    for line in _LINE_BREAK.split(text):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def encode_message_event(json_bytes: bytes) -> bytes:
    """The hot-path frame for one JSON-RPC message: ``event: message`` plus its data.

    Compact JSON never contains a raw line break, so the common case is one
    concatenation; anything else takes the general path of :func:`encode_event`.
    """
    if b"\n" in json_bytes or b"\r" in json_bytes:
        return encode_event(json_bytes, event="message")
    return b"event: message\ndata: " + json_bytes + b"\n\n"


def encode_comment(text: str = "") -> bytes:
    """Encode a comment line (``: text``), which readers ignore.

    Comments are the keepalive of choice: they keep proxies and read timeouts
    satisfied without dispatching an event that a client would have to know.
    """
    lines = _LINE_BREAK.split(text)
    return "".join(f": {line}\n" if line else ":\n" for line in lines).encode("utf-8")


class SSEDecoder:
    """Incremental event-stream parser (WHATWG rules).

    Feed it chunks with :meth:`feed`; it returns the events completed by that
    chunk.  A UTF-8 byte-order mark at the very start is dropped, invalid UTF-8
    is replaced (as browsers do), lines may end in CR, LF or CRLF -- even when
    the CR and LF arrive in different chunks -- and an event still being built
    when the stream ends is discarded, because only a blank line dispatches.

    Only the newly fed text is scanned for line breaks; an unfinished line is
    kept as a list of pieces, so a long line arriving in many small chunks
    costs linear, not quadratic, time.

    Memory is bounded, in characters of decoded text (bytes, for ASCII text
    such as JSON).  A line longer than ``max_line_size``, or an event whose
    ``data:`` lines as received (field name included) plus the line still
    being received exceed ``max_event_size``, makes :meth:`feed` raise
    :class:`SSELimitExceeded` as soon as the excess arrives.  Comment and
    other field lines are not kept, so only the line bound applies to them.
    ``None`` lifts a bound (for trusted peers only).
    """

    def __init__(
        self,
        *,
        max_line_size: int | None = DEFAULT_MAX_LINE_SIZE,
        max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE,
    ) -> None:
        for name, value in (("max_line_size", max_line_size), ("max_event_size", max_event_size)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value!r}")
        self.max_line_size = max_line_size
        self.max_event_size = max_event_size
        self._failed: SSELimitExceeded | None = None
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial: list[str] = []
        self._partial_size = 0
        self._data_size = 0
        self._started = False
        self._pending_cr = False
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self.saw_comment = False
        """True once any comment line arrived; keepalive accounting reads it."""

    @property
    def last_event_id(self) -> str | None:
        return self._last_id

    @property
    def retry(self) -> int | None:
        """The reconnection time the server last asked for, in milliseconds."""
        return self._retry

    @property
    def holds_partial_event(self) -> bool:
        """True while part of an event (or of a line) is buffered, waiting for more bytes."""
        return bool(self._partial or self._data)

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode ``chunk``; return the events it completed, in order.

        Raises :class:`SSELimitExceeded` when a bound is exceeded, and again on
        every later call.  Events completed earlier in the same chunk are lost
        with it: the connection is being abandoned anyway.
        """
        if self._failed is not None:
            raise self._failed
        try:
            return self._feed(chunk)
        except SSELimitExceeded as error:
            self._failed = error
            self._partial.clear()
            self._data.clear()
            raise

    def _feed(self, chunk: bytes) -> list[ServerSentEvent]:
        text = self._utf8.decode(chunk)
        if not text:
            # Nothing decoded yet (an empty chunk, or part of a multi-byte
            # character): keep every piece of state, including a pending CR.
            return []
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._pending_cr:
            # The previous chunk ended in CR, already taken as a line end; an
            # LF opening this chunk is the second half of that CRLF.
            self._pending_cr = False
            if text[:1] == "\n":
                text = text[1:]
        events: list[ServerSentEvent] = []
        start = 0
        for match in _LINE_BREAK.finditer(text):
            line = text[start : match.start()]
            if self._partial:
                self._partial.append(line)
                line = "".join(self._partial)
                self._partial.clear()
                self._partial_size = 0
            if self.max_line_size is not None and len(line) > self.max_line_size:
                raise SSELimitExceeded("max_line_size", self.max_line_size)
            event = self._process_line(line)
            if event is not None:
                events.append(event)
            start = match.end()
            if start == len(text) and match.group() == "\r":
                self._pending_cr = True
        if start < len(text):
            rest = text[start:]
            self._partial.append(rest)
            self._partial_size += len(rest)
            # The unfinished line may become one more data line of the event.
            if self.max_line_size is not None and self._partial_size > self.max_line_size:
                raise SSELimitExceeded("max_line_size", self.max_line_size)
            self._check_event_size(self._partial_size)
        return events

    def _check_event_size(self, line_size: int) -> None:
        if self.max_event_size is not None and self._data_size + line_size > self.max_event_size:
            raise SSELimitExceeded("max_event_size", self.max_event_size)

    def _process_line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.saw_comment = True
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._check_event_size(len(line))
            self._data.append(value)
            self._data_size += len(line)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event, self._data_size = [], "", 0
        if not data:
            return None
        return ServerSentEvent(
            data="\n".join(data),
            event=event or "message",
            id=self._last_id,
            retry=self._retry,
        )
