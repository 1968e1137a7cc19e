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
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

__all__ = ["SSEDecoder", "ServerSentEvent", "encode_comment", "encode_event"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


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
    """

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial: list[str] = []
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
            event = self._process_line(line)
            if event is not None:
                events.append(event)
            start = match.end()
            if start == len(text) and match.group() == "\r":
                self._pending_cr = True
        if start < len(text):
            self._partial.append(text[start:])
        return events

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
            self._data.append(value)
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
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerSentEvent(
            data="\n".join(data),
            event=event or "message",
            id=self._last_id,
            retry=self._retry,
        )
