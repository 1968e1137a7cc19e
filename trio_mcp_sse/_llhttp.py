"""HTTP/1.1 connections parsed by llhttp (through ``httptools``), for ``serve``.

Why: under ``serve`` a profile of a tool call put about three quarters of
the server's CPU in hypercorn, h11 and the Trio scheduling they cause, most
of it per request rather than per byte: h11's pure-Python parser and
serialiser, hypercorn's event objects, a task and a memory channel started
for every request, a lock and a shielded scope per write.  This module is a
connection handler with the same contract on both of its sides:

* the application is called with the ASGI scope hypercorn builds for
  HTTP/1.1 (same keys, same values; ``state`` a copy of the lifespan state),
  through the same ``AppWrapper`` call, and its failures are logged and
  answered as hypercorn does;
* the client gets the bytes hypercorn's h11 path sends: the same status line,
  headers in the same order, the framing h11 chooses (``Transfer-Encoding:
  chunked`` for a response without a length, close-delimited for HTTP/1.0),
  the same ``Connection: close`` rules, the same error answers (``400``,
  ``431`` for a head over ``h11_max_incomplete_size``, ``500`` for an
  application that failed before answering).  ``tests/test_hypercorn_patches.py``
  asserts identical bytes for both paths.

The costs it removes: llhttp parses in C; one task per connection serves
its requests in order (none started per request); the body reaches the
application through a buffer, not a channel; a response that fits is one
write (head and body together).  What hypercorn did around a connection is
kept: the keep-alive timeout (which also bounds a trickled head), the
``read_timeout``, ``keep_alive_max_requests``, ``max_requests``, the access
log, ``server_names``, ``100 Continue``, pipelining, and the bounded writes
of :mod:`trio_mcp_sse._bounded_writes` (a peer that does not read is cut
after ``write_timeout``).  WebSocket upgrades are handed to hypercorn's own
WebSocket stream over this connection.

Not served here, so ``serve`` keeps hypercorn's own connection class for
them: TLS listeners (ALPN may choose HTTP/2).  A cleartext HTTP/2 upgrade
(``Upgrade: h2c``) is ignored, as RFC 9110 allows (the request is answered in
HTTP/1.1 and the connection closed after it); an HTTP/2 preface gets ``400``.

Every connection is its own error boundary: a failure in this module is
logged and closes that connection only.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final
from urllib.parse import unquote

import trio

from ._http import DISCONNECT_NOTICE, DisconnectNotice
from ._hypercorn_patches import _DatePerSecond

__all__ = ["LlhttpConnection", "llhttp_available", "llhttp_connections"]

log = logging.getLogger("trio_mcp_sse")

_MAX_RECV: Final = 65536

_DISCARD_BYTES: Final = 65536
"""Bytes of an unread request body read and dropped after its answer to keep the connection; past it, closed."""
_BODY_AHEAD: Final = 256 * 1024
"""The watcher stops reading while this much of a body waits for the application."""

_TOKEN: Final = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_BAD_VALUE: Final = re.compile(rb"[\x00\r\n]")
_NO_BODY_STATUSES: Final = frozenset({204, 304})


def llhttp_available() -> bool:
    """Whether ``httptools`` (llhttp) can be imported here."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True


_date = _DatePerSecond()  # the text of the Date header, formatted once a second


def _comma_values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    values: list[bytes] = []
    for key, value in headers:
        if key.lower() == name:
            values.extend(token.strip().lower() for token in value.split(b","))
    return [value for value in values if value]


def _without(headers: list[tuple[bytes, bytes]], name: bytes) -> list[tuple[bytes, bytes]]:
    return [(key, value) for key, value in headers if key.lower() != name]


def _head_bytes(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A response head as h11 writes it: an empty reason phrase, the headers in the order given."""
    lines = [b"HTTP/1.1 %d \r\n" % status]
    lines.extend(b"%s: %s\r\n" % pair for pair in headers)
    lines.append(b"\r\n")
    return b"".join(lines)


class ResponseHead:
    """What h11 would write for a response head, and how the body that follows is framed.

    The rules are h11's (``Connection._clean_up_response_headers_for_sending``),
    so both paths answer with the same bytes: a response with neither length
    nor ``Transfer-Encoding`` is chunked for an HTTP/1.1 peer and
    close-delimited for an HTTP/1.0 one; ``Connection: close`` replaces the
    connection header when either side does not keep the connection alive.
    """

    __slots__ = ("chunked", "data", "keep_alive", "length")

    def __init__(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        *,
        head_request: bool,
        http11: bool,
        keep_alive: bool,
    ) -> None:
        for name, value in headers:
            if _TOKEN.fullmatch(name) is None:
                raise ValueError(f"invalid response header name {name!r}")
            if _BAD_VALUE.search(value) is not None:
                raise ValueError(f"invalid response header value {value!r}")
        need_close = False
        self.chunked = False
        self.length: int | None = None
        if 100 <= status < 200 or status in _NO_BODY_STATUSES:
            self.length = 0
        elif transfer_encodings := _comma_values(headers, b"transfer-encoding"):
            if transfer_encodings != [b"chunked"]:
                raise ValueError("only Transfer-Encoding: chunked is supported")
            self.chunked = True
        else:
            lengths = {value.strip() for key, value in headers if key.lower() == b"content-length"}
            if len(lengths) > 1 or (lengths and not next(iter(lengths)).isdigit()):
                raise ValueError(f"invalid Content-Length {sorted(lengths)!r}")
            if lengths:
                self.length = int(next(iter(lengths)))
            else:
                self.chunked = True
        if self.chunked:
            headers = _without(headers, b"content-length")
            headers = _without(headers, b"transfer-encoding")
            if http11:
                headers.append((b"Transfer-Encoding", b"chunked"))
            else:
                self.chunked = False  # close-delimited
                need_close = not head_request
        keep_alive = keep_alive and b"close" not in _comma_values(headers, b"connection")
        if not keep_alive or need_close:
            connection = set(_comma_values(headers, b"connection"))
            connection.discard(b"keep-alive")
            connection.add(b"close")
            headers = _without(headers, b"connection")
            headers.extend((b"Connection", value) for value in sorted(connection))
            keep_alive = False
        if head_request or 100 <= status < 200 or status in _NO_BODY_STATUSES:
            self.chunked = False
            self.length = 0
        self.keep_alive = keep_alive
        self.data = _head_bytes(status, headers)


class _Request:
    """One parsed request: its head, its body as it arrives, and whether it has all arrived."""

    __slots__ = (
        "body",
        "body_size",
        "complete",
        "expect_continue",
        "headers",
        "http_version",
        "keep_alive",
        "method",
        "target",
        "upgrade",
    )

    def __init__(self, target: bytes, headers: list[tuple[bytes, bytes]], method: str, http_version: str) -> None:
        self.target = target
        self.headers = headers
        self.method = method
        self.http_version = http_version
        self.body: list[bytes] = []  # (a list: a deque allocates a 64-slot block up front)
        self.body_size = 0
        self.complete = False
        self.keep_alive = True
        self.expect_continue = False
        self.upgrade: bytes | None = None
        """The bytes after the head, for a WebSocket upgrade request (None: not one)."""


class _Wakeup:
    """Tasks parked until the next :meth:`unpark_all`: a ``ParkingLot`` without its ``OrderedDict``.

    Why: every connection has one for as long as it lives, and at most the
    rare second ``receive`` call parks on it; a parking lot costs 240 bytes
    empty, this 40.  The same semantics: ``park`` is a checkpoint
    (cancellable while parked).
    """

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: list[trio.lowlevel.Task] | None = None

    async def park(self) -> None:
        task = trio.lowlevel.current_task()
        tasks = self._tasks
        if tasks is None:
            tasks = self._tasks = []
        tasks.append(task)

        def abort(_: Any) -> trio.lowlevel.Abort:
            waiting = self._tasks
            if waiting is not None:
                waiting.remove(task)
                if not waiting:
                    self._tasks = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def unpark_all(self) -> None:
        tasks = self._tasks
        if tasks is not None:
            self._tasks = None
            for task in tasks:
                trio.lowlevel.reschedule(task)


class _WriteLock:
    """A fair lock for a connection's writes: ``trio.Lock``'s hand-over, its waiters in a list made on first contention.

    Why: every connection needs one and nearly never contends for it; a
    ``trio.Lock`` costs 330 bytes with its parking lot, this 48.  Acquiring
    a free lock is not a checkpoint (the write that follows is); a waiter is
    handed the lock by :meth:`release` in arrival order and can be cancelled
    while it waits.
    """

    __slots__ = ("_held", "_waiting")

    def __init__(self) -> None:
        self._held = False
        self._waiting: list[trio.lowlevel.Task] | None = None

    async def acquire(self) -> None:
        if not self._held:
            self._held = True
            return
        task = trio.lowlevel.current_task()
        if self._waiting is None:
            self._waiting = []
        self._waiting.append(task)

        def abort(_: Any) -> trio.lowlevel.Abort:
            waiting = self._waiting
            if waiting is not None:
                waiting.remove(task)
                if not waiting:
                    self._waiting = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)  # the lock is ours once rescheduled

    def release(self) -> None:
        waiting = self._waiting
        if waiting:
            task = waiting.pop(0)
            if not waiting:
                self._waiting = None
            trio.lowlevel.reschedule(task)  # still held: handed over
        else:
            self._held = False


class _ProtocolError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


_connections: weakref.WeakSet[LlhttpConnection] = weakref.WeakSet()


def llhttp_connections() -> list[LlhttpConnection]:
    """The connections this process is serving on this path (for a shutdown)."""
    return list(_connections)


class LlhttpConnection:
    """One HTTP/1.1 connection, served by one task: its requests in order, each read as it is needed.

    Bytes are read by the task that needs them: this one for the next
    request's head, the application's ``receive`` for a body or while it
    waits for the client to leave.  Nothing reads ahead of what a request
    needs, so a body the application does not read stays in the socket (the
    peer's window holds it back).  A waiting event stream is then one task
    parked in the socket read, not a reader task and a runner task with a
    nursery between them.  A WebSocket is the one case with two tasks:
    hypercorn's stream runs the application in a task of its own while this
    one reads.
    """

    __slots__ = (
        "__weakref__",
        "_closing",
        "_current",
        "_cycle_done",
        "_errors",
        "_head_bytes",
        "_head_fed",
        "_headers",
        "_idle_since",
        "_in_head",
        "_new_parser",
        "_notice",
        "_parser",
        "_protocol_error",
        "_queue",
        "_read_busy",
        "_read_scope",
        "_reading",
        "_requests_served",
        "_stop_when_idle",
        "_upgrade_error",
        "_url",
        "_wake_app",
        "_wake_reader",
        "_watcher",
        "_write_lock",
        "_ws",
        "_ws_head",
        "_ws_live",
        "app",
        "client",
        "config",
        "context",
        "peer",
        "server",
        "state",
        "stream",
        "write_timeout",
        "writing",
    )

    def __init__(
        self,
        app: Any,
        config: Any,
        context: Any,
        state: Any,
        stream: trio.SocketStream,
        *,
        write_timeout: float | None,
        registry: weakref.WeakSet[Any] | None = None,
    ) -> None:
        import httptools

        self.app = app
        self.config = config
        self.context = context
        self.state = state
        self.stream = stream
        self.write_timeout = write_timeout
        self.writing = False
        self.peer = "unknown"
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        with contextlib.suppress(OSError, ValueError, AttributeError, IndexError):
            from hypercorn.utils import parse_socket_addr

            sock = stream.socket
            self.client = parse_socket_addr(sock.family, sock.getpeername())
            self.server = parse_socket_addr(sock.family, sock.getsockname())
            if self.client is not None:
                self.peer = f"{self.client[0]}:{self.client[1]}"
        self._parser: Any = httptools.HttpRequestParser(self)  # None while an open-ended response streams
        self._new_parser: Callable[[Any], Any] = httptools.HttpRequestParser
        self._errors: tuple[type[BaseException], ...] = (httptools.HttpParserError,)
        self._upgrade_error: type[BaseException] = httptools.HttpParserUpgrade
        self._queue: list[_Request] = []  # the request being served first; rarely more than one
        self._wake_app = _Wakeup()  # receive() calls waiting for the one reading (or for the end)
        self._read_busy = False  # a task is reading the socket (one at a time)
        self._wake_reader = _Wakeup()  # the watcher, paused until a request moves on
        self._watcher: trio.CancelScope | None = None  # the watcher task's scope while it runs
        self._write_lock = _WriteLock()
        self._reading = True  # False once the peer's side ended (EOF, reset, closed)
        self._closing = False  # True once this side decided to close
        self._idle_since = trio.current_time()
        self._requests_served = 0
        self._cycle_done = False
        self._notice: DisconnectNotice | None = None  # the request being served's
        self._ws: Any = None
        self._ws_head: ResponseHead | None = None
        self._ws_live = False  # the WebSocket stream took the connection over
        self._stop_when_idle = False
        self._read_scope: trio.CancelScope | None = None
        # parser state for the head being read
        self._url = bytearray()
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._in_head = False
        self._head_fed = 0  # bytes fed while a head was incomplete (llhttp holds a partial header itself)
        self._current: _Request | None = None
        self._protocol_error: int | None = None
        if registry is not None:
            registry.add(self)
        _connections.add(self)

    # -- the parser's callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._in_head = True
        self._url.clear()
        self._headers = []
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:  # httptools' single header callback
        self._headers.append((bytes(name).lower(), bytes(value).strip(b" \t")))
        self._count_head(len(name) + len(value) + 4)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.config.h11_max_incomplete_size:
            raise _ProtocolError(431)

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        http_version = parser.get_http_version()
        headers = self._headers
        hosts = [value for name, value in headers if name == b"host"]
        if len(hosts) > 1 or (http_version == "1.1" and not hosts):
            raise _ProtocolError(400)  # h11's rules: one Host, required in HTTP/1.1
        if http_version not in ("1.0", "1.1"):
            raise _ProtocolError(400)
        request = _Request(bytes(self._url), headers, parser.get_method().decode("ascii").upper(), http_version)
        connection = _comma_values(headers, b"connection")
        request.keep_alive = http_version == "1.1" and b"close" not in connection  # h11's rule
        if http_version == "1.1" and b"100-continue" in _comma_values(headers, b"expect"):
            request.expect_continue = True
        if parser.should_upgrade():
            upgrade = b""
            for name, value in headers:
                if name == b"upgrade":
                    upgrade = value.strip().lower()
            if upgrade == b"websocket" and b"upgrade" in connection and request.method == "GET":
                request.upgrade = b""
            else:
                request.keep_alive = False  # another protocol (h2c): answered in HTTP/1.1, then closed
        self._current = request
        self._queue.append(request)

    def on_body(self, body: bytes) -> None:
        request = self._current
        if request is not None:
            request.body.append(bytes(body))
            request.body_size += len(body)

    def on_message_complete(self) -> None:
        request = self._current
        if request is not None:
            request.complete = True
            self._current = None

    # -- the connection -----------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self._serve_in_order()
        except Exception:
            log.exception("HTTP/1.1 connection from %s failed", self.peer, extra={"event": "connection_failed"})
        finally:
            if self._watcher is not None:
                self._watcher.cancel()
            await self._close()

    async def _read_or_wait(self, *, idle: bool = False) -> None:
        """Read once (:meth:`_read_more`), or wait for the task that is reading to finish its read."""
        if self._read_busy:
            await self._wake_app.park()
            return
        self._read_busy = True
        try:
            await self._read_more(idle=idle, scoped=self._watcher is not None)
        finally:
            self._read_busy = False
            self._wake_app.unpark_all()
            self._wake_reader.unpark_all()

    def watch(self) -> None:
        """A response waits for something other than ``receive``: from now on a task reads for it.

        The disconnect notice's hook (:class:`DisconnectNotice`).  Reading
        normally happens in the task that needs the bytes, so a connection is
        one task; a response that waits on a channel of its own (a Streamable
        HTTP answer) reads nothing, and its client's leaving would go unseen
        until the answer is written.  The watcher reads ahead of the
        application (paused while a pipelined request waits or a body piles up,
        bounded as every read is), so the notice fires when the client leaves;
        it then stays for the connection's life, as the reader of a connection
        that carries such requests.  It runs beside the connection's task, in
        the nursery that runs the connection, which cancels it at its end.
        """
        if self._watcher is not None or self._closing or not self._reading:
            return
        nursery = trio.lowlevel.current_task().parent_nursery
        if nursery is None:
            return
        self._watcher = trio.CancelScope()
        nursery.start_soon(self._watch, self._watcher, name=f"llhttp reader {self.peer}")

    async def _watch(self, scope: trio.CancelScope) -> None:
        try:
            with scope:
                while self._reading and not self._closing:
                    queue = self._queue
                    if self._read_busy or len(queue) > 1 or (queue and (queue[0].body_size > _BODY_AHEAD or queue[0].upgrade is not None)):
                        await self._wake_reader.park()
                        continue
                    await self._read_or_wait(idle=not queue)
        except Exception:
            log.exception("HTTP/1.1 connection from %s: its reader failed", self.peer, extra={"event": "connection_failed"})
            self._reading = False
            self._wake_app.unpark_all()
            self._client_gone()
        finally:
            if self._watcher is scope:
                self._watcher = None

    async def _read_more(self, *, idle: bool = False, scoped: bool = False) -> None:
        """Read once and parse what came; at the end of the stream, a timeout or a malformed request, reading ends.

        Reading happens in the task that needs the bytes: this one between
        requests (``idle``: bounded by the keep-alive timeout, which also bounds
        a trickled head; cut short by a shutdown), the application's when its
        ``receive`` needs a body or waits for the client to leave (bounded by
        ``read_timeout`` when there is one).  A waiting event stream is then
        this connection's one task parked in the socket read, with no cancel
        scope of its own unless a timeout needs one; closing the socket (a
        shutdown's abort) ends the read.  ``scoped``: in a cancel scope anyway
        (the watcher's reads: the end of a request moves their deadline).
        """
        if idle:
            deadline = self._idle_since + self.config.keep_alive_timeout
        else:
            read_timeout = self.config.read_timeout
            deadline = trio.current_time() + read_timeout if read_timeout else math.inf
        data = b""
        try:
            if deadline == math.inf and not scoped:
                data = await self.stream.receive_some(_MAX_RECV)
            else:
                with trio.CancelScope(deadline=deadline) as scope:
                    self._read_scope = scope
                    try:
                        data = await self.stream.receive_some(_MAX_RECV)
                    finally:
                        self._read_scope = None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        if not data or not self._feed(data):
            self._reading = False
            self._client_gone()
        self._wake_app.unpark_all()

    def _at_message_boundary(self) -> bool:
        """Whether llhttp holds nothing of a message: a new parser would go on exactly where it is."""
        return not self._in_head and self._current is None and len(self._queue) == 1 and self._queue[0].upgrade is None

    def _feed(self, data: bytes) -> bool:
        """Parse ``data``; False when the connection cannot go on (an error was answered or must be)."""
        in_head = self._in_head
        if self._parser is None:
            self._parser = self._new_parser(self)
        try:
            self._parser.feed_data(data)
            if self._in_head:
                self._head_fed = self._head_fed + len(data) if in_head else len(data)
                if self._head_fed > self.config.h11_max_incomplete_size:
                    raise _ProtocolError(431)
        except self._upgrade_error as upgrade:
            request = self._queue[-1] if self._queue else None
            if request is not None and request.upgrade is not None:
                offset = upgrade.args[0] if upgrade.args else len(data)
                request.upgrade = data[offset:]
                request.complete = True
                self._current = None
            return True
        except _ProtocolError as error:
            self._protocol_error = error.status
            return False
        except self._errors as error:
            cause = error.__cause__ or error.__context__  # a callback's own exception
            self._protocol_error = cause.status if isinstance(cause, _ProtocolError) else 400
            return False
        return True

    async def _serve_in_order(self) -> None:
        try:
            while True:
                while not self._queue:
                    if self._protocol_error is not None:
                        await self._answer_protocol_error(self._protocol_error)
                        return
                    if not self._reading or self._closing or self._stop_when_idle:
                        return
                    await self._read_or_wait(idle=True)
                request = self._queue[0]
                if request.upgrade is not None:
                    while not request.complete and self._reading and not self._closing:
                        await self._read_or_wait()
                    await self._serve_websocket(request)
                    return
                if self._protocol_error is not None and not request.complete:
                    await self._answer_protocol_error(self._protocol_error)  # its body was malformed
                    return
                keep_going = await self._serve_one(request)
                self._queue.pop(0)
                self._idle_since = trio.current_time()
                if not self._queue and self._read_scope is not None:  # the watcher's read: now an idle one
                    self._read_scope.deadline = self._idle_since + self.config.keep_alive_timeout
                self._wake_reader.unpark_all()
                if not keep_going:
                    return
        finally:
            self._closing = True

    async def _serve_one(self, request: _Request) -> bool:
        """Run the application for ``request``; True when the connection can serve the next one."""
        config = self.config
        self._cycle_done = False
        self._requests_served += 1
        head: ResponseHead | None = None
        response: dict[str, Any] | None = None
        ended = False
        start = time.time()
        target = request.target
        path, _, query = target.partition(b"?")
        notice = self._notice = DisconnectNotice(self.watch)
        if not self._reading or self._closing:
            notice.fire()
        try:
            path_text = unquote(path.decode("ascii"))
        except UnicodeDecodeError:
            await self._write_error(400)
            return False
        scope: dict[str, Any] = {
            "type": "http",
            "http_version": request.http_version,
            "asgi": {"spec_version": "2.1", "version": "3.0"},
            "method": request.method,
            "scheme": "http",
            "path": path_text,
            "raw_path": path,
            "query_string": query,
            "root_path": config.root_path,
            "headers": request.headers,
            "client": self.client,
            "server": self.server,
            "state": self.state.copy(),
            "extensions": {DISCONNECT_NOTICE: notice},
        }
        if config.server_names:
            host = next((value.decode("latin-1") for name, value in request.headers if name == b"host"), "")
            if host not in config.server_names:
                await self._write_error(404)
                await config.log.access(scope, {"status": 404, "headers": []}, time.time() - start)
                return False
        if request.expect_continue and not request.complete:
            await self._write(self._informational(100))
        sent_body = False
        written = 0
        delivered_end = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered_end
            while True:
                if request.body:  # what has arrived, at once: byte budgets and deadlines count it as it comes
                    body = b"".join(request.body) if len(request.body) > 1 else request.body[0]
                    request.body.clear()
                    request.body_size = 0
                    self._wake_reader.unpark_all()
                    more = not request.complete
                    if not more:
                        delivered_end = True
                    return {"type": "http.request", "body": body, "more_body": more}
                if request.complete and not delivered_end:
                    delivered_end = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                if self._cycle_done or not self._reading or self._closing:
                    return {"type": "http.disconnect"}
                if len(self._queue) > 1:
                    # A pipelined request waits: nothing more is read until this response is done.
                    await self._wake_app.park()
                    continue
                await self._read_or_wait()  # (or wait for the task that reads)

        async def send(message: dict[str, Any]) -> None:
            nonlocal head, response, ended, sent_body, written
            if self._cycle_done or ended:
                return
            kind = message["type"]
            if kind == "http.response.start" and head is None:
                response = message
                headers = [(bytes(name).strip(), bytes(value).strip()) for name, value in message.get("headers", [])]
                for name, _ in headers:
                    if name[:1] == b":":
                        raise ValueError("Pseudo headers are not valid")
                headers.extend(self._server_headers())
                if self._requests_served >= config.keep_alive_max_requests:
                    headers.append((b"connection", b"close"))
                head = ResponseHead(
                    int(message["status"]),
                    headers,
                    head_request=request.method == "HEAD",
                    http11=request.http_version == "1.1",
                    keep_alive=request.keep_alive,
                )
                if head.length is None and request.complete and request.keep_alive and self._at_message_boundary():
                    # A response of open-ended length (an event stream) may last for hours while
                    # nothing is read: llhttp's state (~0.9 KB) is made again when bytes arrive.
                    self._parser = None
            elif kind == "http.response.body" and head is not None:
                body = bytes(message.get("body", b""))
                more = bool(message.get("more_body", False))
                chunks: list[bytes] = []
                if not sent_body:
                    chunks.append(head.data)
                    sent_body = True
                if body and (head.chunked or head.length != 0):
                    if head.length is not None:
                        written += len(body)
                        if written > head.length:
                            raise ValueError("Too much data for declared Content-Length")
                    if head.chunked:
                        chunks.append(b"%x\r\n" % len(body))
                        chunks.append(body)
                        chunks.append(b"\r\n")
                    else:
                        chunks.append(body)
                if not more:
                    ended = True
                    if head.chunked:
                        chunks.append(b"0\r\n\r\n")
                if chunks:
                    await self._write(b"".join(chunks) if len(chunks) > 1 else chunks[0])
                if ended:
                    await config.log.access(scope, response, time.time() - start)
            else:
                raise RuntimeError(f"Unexpected message type, {kind} given the state {'RESPONSE' if head else 'REQUEST'}")

        try:
            await self.app(scope, receive, send, trio.to_thread.run_sync, trio.from_thread.run)
        except trio.Cancelled:
            raise
        except BaseException as error:
            if isinstance(error, BaseExceptionGroup):
                _, others = error.split(trio.Cancelled)
                if others is None:
                    raise
            elif not isinstance(error, Exception):
                raise
            await config.log.exception("Error in ASGI Framework")
        finally:
            self._cycle_done = True
            self._notice = None
            self._wake_app.unpark_all()
        await self.context.mark_request()
        if head is None:
            if self._protocol_error is not None:
                await self._answer_protocol_error(self._protocol_error)
            elif not self._closing and self._reading:
                await self._write_error(500)
            await config.log.access(scope, {"status": 500, "headers": []}, time.time() - start)
            return False
        if not sent_body:  # the application ended after its head: a truncated response, then close
            await self._write(head.data)
        if not ended:
            await config.log.access(scope, None, time.time() - start)
            return False
        reusable = head.keep_alive and (head.length is None or head.length == 0 or written == head.length)
        if reusable and not request.complete and request.expect_continue:
            await self._discard_rest_of_body(request)
        return (
            reusable
            and request.complete
            and not self._closing
            and self._reading
            and not self._stop_when_idle
            and not self.context.terminated.is_set()
        )

    async def _discard_rest_of_body(self, request: _Request) -> None:
        """Read and drop what is left of a body the application answered without reading.

        A client that sent ``Expect: 100-continue`` and got ``100`` sends the
        body even when the answer came first; reading it keeps the connection
        usable.  Bounded: at most ``_DISCARD_BYTES`` more, within the keep-alive
        timeout; past either the connection is closed instead.  Any other
        request answered before its body ended closes the connection at once,
        as hypercorn does (the client may never send the rest).
        """
        discarded = 0
        with trio.move_on_after(self.config.keep_alive_timeout):
            while not request.complete and self._reading and not self._closing and discarded <= _DISCARD_BYTES:
                discarded += request.body_size
                request.body.clear()
                request.body_size = 0
                await self._read_more()

    # -- writing --------------------------------------------------------------------------------------
    def _server_headers(self) -> list[tuple[bytes, bytes]]:
        config = self.config
        headers: list[tuple[bytes, bytes]] = []
        if config.include_date_header:
            headers.append((b"date", _date(time.time()).encode("ascii")))
        if config.include_server_header:
            headers.append((b"server", b"hypercorn-h11"))
        headers.extend((b"alt-svc", value.encode()) for value in config.alt_svc_headers)
        return headers

    def _informational(self, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> bytes:
        return _head_bytes(status, [*(headers or []), *self._server_headers()])

    async def _write_error(self, status: int) -> None:
        """The answer hypercorn gives a request it refuses (``500``, ``404`` for a server name), then closes."""
        headers = [(b"content-length", b"0"), (b"connection", b"close"), *self._server_headers()]
        head = ResponseHead(status, headers, head_request=False, http11=True, keep_alive=False)
        await self._write(head.data)

    async def _answer_protocol_error(self, status: int) -> None:
        """The answer to bytes that are not a valid request: hypercorn's, whose headers h11 leaves as given."""
        headers = [(b"content-length", b"0"), (b"connection", b"close"), *self._server_headers()]
        await self._write(_head_bytes(status, headers))
        self._closing = True
        await self._close()

    async def _write(self, data: bytes) -> None:
        """Write ``data`` whole, bounded by ``write_timeout``; a failed write ends the connection."""
        if self._closing and not self._reading:
            return
        await self._write_lock.acquire()
        try:
            deadline = trio.current_time() + self.write_timeout if self.write_timeout is not None else math.inf
            # Shielded as hypercorn does (a cancelled request must not tear a response), and bounded.
            with trio.CancelScope(shield=True, deadline=deadline) as timer:
                self.writing = True
                try:
                    await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._lost()
                finally:
                    self.writing = False
            if timer.cancelled_caught:
                log.warning(
                    "peer %s did not read for %.1fs; closing its connection",
                    self.peer,
                    self.write_timeout,
                    extra={"event": "write_timeout"},
                )
                self._lost()
                await self.abort()
        finally:
            self._write_lock.release()

    def _lost(self) -> None:
        self._reading = False
        self._closing = True
        self._wake_app.unpark_all()
        self._wake_reader.unpark_all()
        # A read in a cancel scope ends here; one without (a stream waiting for its client)
        # ends as the socket fails or is closed.
        if self._read_scope is not None:
            self._read_scope.cancel()
        self._client_gone()

    def _client_gone(self) -> None:
        """The application's ``receive`` now says ``http.disconnect``: tell a response waiting without it."""
        if self._notice is not None:
            self._notice.fire()

    async def abort(self) -> None:
        """Close the socket now (the end of a shutdown, or a peer that stopped reading)."""
        self._lost()
        with trio.CancelScope(shield=True), contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self.stream.aclose()

    def stop_when_idle(self) -> None:
        """At shutdown: close now if no request is in progress, else after the current response."""
        self._stop_when_idle = True
        if not self._queue and self._ws is None and self._read_scope is not None:
            self._read_scope.cancel()

    async def _close(self) -> None:
        self._closing = True
        with trio.CancelScope(shield=True):
            with contextlib.suppress(trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError, OSError):
                await self.stream.send_eof()
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await self.stream.aclose()

    # -- WebSocket: hypercorn's own stream, over this connection ---------------------------------------
    async def _serve_websocket(self, request: _Request) -> None:
        from hypercorn.protocol.events import Data, Request
        from hypercorn.protocol.ws_stream import WSStream
        from hypercorn.trio.task_group import TaskGroup

        async with TaskGroup() as task_group:
            self._ws = WSStream(
                self.app, self.config, self.context, task_group, False, self.client, self.server, self._ws_send, 1
            )
            await self._ws.handle(
                Request(
                    stream_id=1,
                    headers=request.headers,
                    http_version=request.http_version,
                    method=request.method,
                    raw_path=request.target,
                    state=self.state,
                )
            )
            await self.context.mark_request()
            if request.upgrade:
                await self._ws.handle(Data(stream_id=1, data=request.upgrade))
            self._ws_live = True
            await self._read_websocket()
        self._closing = True
        await self._close()

    async def _read_websocket(self) -> None:
        """Feed the WebSocket stream what the peer sends (bounded by ``read_timeout``), then tell it the end."""
        read_timeout = self.config.read_timeout
        with trio.CancelScope() as scope:
            self._read_scope = scope
            try:
                while not self._closing:
                    scope.deadline = trio.current_time() + read_timeout if read_timeout else math.inf
                    try:
                        data = await self.stream.receive_some(_MAX_RECV)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        break
                    if not data:
                        break
                    await self._ws_data(data)
            finally:
                self._read_scope = None
        self._reading = False
        await self._ws_closed()

    async def _ws_data(self, data: bytes) -> None:
        from hypercorn.protocol.events import Data

        await self._ws.handle(Data(stream_id=1, data=data))

    async def _ws_closed(self) -> None:
        from hypercorn.protocol.events import StreamClosed

        await self._ws.handle(StreamClosed(stream_id=1))

    async def _ws_send(self, event: Any) -> None:
        from hypercorn.protocol.events import Body, Data, EndBody, Response, StreamClosed

        if isinstance(event, Response):
            headers = [*event.headers]
            if event.status_code < 200:
                await self._write(self._informational(event.status_code, headers))
            else:
                headers.extend(self._server_headers())
                # hypercorn answers a refused handshake without ``Connection: close``, then closes
                self._ws_head = ResponseHead(event.status_code, headers, head_request=False, http11=True, keep_alive=True)
                await self._write(self._ws_head.data)
        elif isinstance(event, Body):
            head = self._ws_head
            if event.data and head is not None:
                await self._write(b"%x\r\n%s\r\n" % (len(event.data), event.data) if head.chunked else bytes(event.data))
        elif isinstance(event, EndBody):
            if self._ws_head is not None and self._ws_head.chunked:
                await self._write(b"0\r\n\r\n")
        elif isinstance(event, Data):
            await self._write(bytes(event.data))
        elif isinstance(event, StreamClosed):
            self._closing = True
            if self._read_scope is not None:
                self._read_scope.cancel()


def _plain(stream: Any) -> bool:
    return isinstance(stream, trio.SocketStream)


@contextlib.contextmanager
def llhttp_connections_installed(enabled: bool) -> Iterator[Callable[[], None]]:
    """Serve hypercorn's cleartext HTTP/1.1 connections with :class:`LlhttpConnection` while in the block.

    hypercorn's ``worker_serve`` makes each connection by calling
    ``hypercorn.trio.run.TCPServer`` (the bounded-write class ``serve``
    installs); this swaps in a factory that keeps that class for TLS
    streams.  Yields the function a shutdown calls to close idle connections
    (a no-op when disabled).
    """
    if not enabled:
        yield lambda: None
        return
    from hypercorn.trio import run as hypercorn_run

    from ._bounded_writes import _installed, installed_write_timeout

    stock = getattr(hypercorn_run, "TCPServer")  # noqa: B009 -- not exported; the bounded-write class
    registry: weakref.WeakSet[Any] | None = _installed.get("connections")
    write_timeout = installed_write_timeout()

    def connection(app: Any, config: Any, context: Any, state: Any, stream: Any) -> Awaitable[None]:
        # Not a coroutine function: the connection's coroutine is returned, not awaited, so
        # a connection's task keeps one frame less for as long as it lives.
        if not _plain(stream):
            return stock(app, config, context, state, stream)  # type: ignore[no-any-return]
        return LlhttpConnection(app, config, context, state, stream, write_timeout=write_timeout, registry=registry).run()

    def stop_idle() -> None:
        for each in llhttp_connections():
            each.stop_when_idle()

    setattr(hypercorn_run, "TCPServer", connection)  # noqa: B010 -- worker_serve looks it up here
    try:
        yield stop_idle
    finally:
        setattr(hypercorn_run, "TCPServer", stock)  # noqa: B010
