"""The broker's hot path to Redis: ``PUBLISH`` to a mailbox, and the subscription to a worker's own.

Every forwarded request costs a ``PUBLISH`` of the request to the owner's
mailbox and one of the answer back, and each worker reads its mailbox.  Through
coredis a command passes its client, connection pool, retry policy, telemetry
hooks and a reader and a writer task on anyio: several hundred microseconds of
CPU per command (a loop of ``PUBLISH`` commands and their replies measured
200-500 us each through the coredis client on a 2-core machine, about 90 us
over a ``trio.SocketStream`` and 65 us on the socket itself, as
:class:`_Connection` does).  These two operations need none of that -- a ``PUBLISH`` is one line
of RESP and its answer one integer -- so they run over the connections of this
module, in plain Trio, and everything else (the scripts, the heartbeat, the
liveness checks) stays on coredis.

The connection settings are coredis's reading of the broker URL
(:meth:`RedisEndpoint.of_pool`: address, TLS context, user and password, client
name), so one URL means one thing for both.  RESP2 only: ``AUTH``, ``CLIENT``,
``PUBLISH``, ``SUBSCRIBE`` and ``PING`` answer alike in every Redis since 6.

Concurrent ``PUBLISH`` calls on one :class:`Publisher` are pipelined with no
task of its own: one caller writes every command queued meanwhile in one write
and reads their replies in order, then hands over to a waiting caller.  A
*posted* ``PUBLISH`` (:meth:`Publisher.post`) is not waited for: the
publisher's task (:meth:`Publisher.run_posts`) writes every one posted in a
scheduling round in one write, and its reply is read with the next caller's
or by that task a moment later.  So the frames whose reply changes nothing
when it is as expected (an answer's last frame, a request whose answer will
say it arrived) cost no wake-up of their own, and a burst of them one system
call.
"""

from __future__ import annotations

import contextlib
import math
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

import trio

__all__ = ["ProtocolError", "Publisher", "RedisEndpoint", "RespError", "Subscription", "pack"]

_CHUNK: Final = 65536
_CRLF: Final = b"\r\n"


class RespError(Exception):
    """An error reply from Redis (``-ERR ...``, ``-NOAUTH ...``)."""


class ProtocolError(ConnectionError):
    """Bytes from Redis that are not RESP2: the connection cannot be trusted any more."""


@dataclass(frozen=True)
class RedisEndpoint:
    """Where a Redis server is and how to log in: what a connection of this module needs."""

    host: str | None = None
    port: int = 6379
    path: str | None = None
    """A Unix socket's path (then ``host`` is None)."""
    ssl_context: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = None
    client_name: str | None = None
    noevict: bool = False

    @classmethod
    def of_pool(cls, pool: Any) -> RedisEndpoint:
        """The endpoint a coredis connection pool connects to, with its credentials and TLS context."""
        location = pool.location
        options = pool.connection_kwargs
        path = getattr(location, "path", None)
        return cls(
            host=None if path is not None else str(location.host),
            port=6379 if path is not None else int(location.port),
            path=None if path is None else str(path),
            ssl_context=options.get("ssl_context"),
            username=options.get("username") or None,
            password=options.get("password") or None,
            client_name=options.get("client_name") or None,
            noevict=bool(options.get("noevict")),
        )

    def login(self) -> list[tuple[bytes | str, ...]]:
        """The commands that set a new connection up, before anything else is sent on it."""
        commands: list[tuple[bytes | str, ...]] = []
        if self.username is not None:
            commands.append((b"AUTH", self.username, self.password or ""))
        elif self.password is not None:
            commands.append((b"AUTH", self.password))
        if self.client_name is not None:
            commands.append((b"CLIENT", b"SETNAME", self.client_name))
        if self.noevict:
            commands.append((b"CLIENT", b"NO-EVICT", b"ON"))
        return commands


def pack(*args: bytes | str) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode("utf-8") if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(_CRLF)
    return b"".join(parts)


class _Incomplete(Exception):
    """Not all of the value has arrived yet."""


def _parse(buffer: bytearray, at: int) -> tuple[Any, int]:
    """One RESP2 value starting at ``at``, and where the next starts; :class:`_Incomplete` if it has not all come."""
    end = buffer.find(_CRLF, at)
    if end < 0:
        raise _Incomplete
    kind = buffer[at]
    line = bytes(buffer[at + 1 : end])
    at = end + 2
    try:
        if kind == 0x24:  # $: a bulk string
            size = int(line)
            if size < 0:
                return None, at
            if len(buffer) < at + size + 2:
                raise _Incomplete
            return bytes(buffer[at : at + size]), at + size + 2
        if kind == 0x2A:  # *: an array
            count = int(line)
            if count < 0:
                return None, at
            items = []
            for _ in range(count):
                item, at = _parse(buffer, at)
                items.append(item)
            return items, at
        if kind == 0x3A:  # :: an integer
            return int(line), at
        if kind == 0x2B:  # +: a simple string
            return line, at
        if kind == 0x2D:  # -: an error
            return RespError(line.decode("utf-8", "replace")), at
    except ValueError:
        raise ProtocolError("a RESP length or integer that is not a number") from None
    raise ProtocolError(f"unknown RESP type byte {kind:#x}")


class _Connection:
    """One connection to Redis and what has been read of it.

    Over TCP or a Unix socket it works on the socket itself, non-blocking,
    with Trio's ``wait_readable`` and ``wait_writable``: a command goes out in
    one ``send()`` with no checkpoint (as one nearly always does), and a reply
    is read once the socket is readable, with no first ``recv()`` that finds
    nothing.  That is about a quarter of the CPU of a ``PUBLISH`` and its reply
    through ``trio.SocketStream`` (its checks, its error translation, a
    ``recv()`` tried before every wait).  Over TLS it uses ``trio.SSLStream``.
    """

    __slots__ = ("_buffer", "_sock", "_stream", "last_received")

    def __init__(self, sock: socket.socket | None, stream: trio.abc.Stream | None) -> None:
        self._sock = sock
        self._stream = stream
        self._buffer = bytearray()
        self.last_received = trio.current_time()

    @classmethod
    async def open(cls, endpoint: RedisEndpoint) -> _Connection:
        """Connect and log in (the caller bounds the time it takes)."""
        stream: trio.abc.Stream
        if endpoint.path is not None:
            stream = await trio.open_unix_socket(endpoint.path)
        else:
            assert endpoint.host is not None
            stream = await trio.open_tcp_stream(endpoint.host, endpoint.port)
            if endpoint.ssl_context is not None:
                stream = trio.SSLStream(stream, endpoint.ssl_context, server_hostname=endpoint.host)
        if isinstance(stream, trio.SocketStream):  # (TCP_NODELAY, set by trio, stays with the socket)
            sock = socket.socket(fileno=stream.socket.detach())
            sock.setblocking(False)
            connection = cls(sock, None)
        else:
            connection = cls(None, stream)
        try:
            if isinstance(stream, trio.SSLStream):
                await stream.do_handshake()
            login = endpoint.login()
            if login:
                await connection.send(b"".join(pack(*command) for command in login))
                for _ in login:
                    reply = await connection.read()
                    if isinstance(reply, RespError):
                        raise reply
        except BaseException:
            with trio.CancelScope(shield=True):
                await connection.aclose()
            raise
        return connection

    async def send(self, data: bytes) -> None:
        """Write all of ``data``.  Waits only when the socket has no room (callers shield and bound that)."""
        sock = self._sock
        if sock is None:
            assert self._stream is not None
            await self._stream.send_all(data)
            return
        view = memoryview(data)
        while True:
            try:
                sent = sock.send(view)
            except BlockingIOError:
                sent = 0
            if sent == len(view):
                return
            view = view[sent:]
            await trio.lowlevel.wait_writable(sock)

    async def read(self, *, ready: bool = False) -> Any:
        """The next value Redis sends (at once when it has arrived already).

        ``ready``: it has most likely arrived (a reply owed for a while): try
        the socket before waiting for it to be readable.
        """
        buffer = self._buffer
        while True:
            if buffer:
                try:
                    value, used = _parse(buffer, 0)
                except _Incomplete:
                    pass
                else:
                    del buffer[:used]
                    return value
            data = await self._receive(ready)
            if not data:
                raise ConnectionError("Redis closed the connection")
            self.last_received = trio.current_time()
            buffer += data

    async def _receive(self, ready: bool = False) -> bytes | bytearray:
        sock = self._sock
        if sock is None:
            assert self._stream is not None
            return await self._stream.receive_some(_CHUNK)
        if ready:
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                return sock.recv(_CHUNK)
            except BlockingIOError:
                pass
        while True:
            await trio.lowlevel.wait_readable(sock)  # (a checkpoint: cancelled here, nothing is lost)
            try:
                return sock.recv(_CHUNK)
            except BlockingIOError:
                continue

    async def aclose(self) -> None:
        """Close it; a task waiting to read or write gets ``trio.ClosedResourceError``."""
        sock = self._sock
        if sock is None:
            assert self._stream is not None
            await trio.aclose_forcefully(self._stream)
            return
        if sock.fileno() != -1:
            trio.lowlevel.notify_closing(sock)
            sock.close()
        await trio.lowlevel.checkpoint()


class _Call:
    """One command of a :class:`Publisher`: its bytes, then its reply or failure."""

    __slots__ = ("abandoned", "done", "error", "notify", "packed", "reply", "waiting")

    def __init__(self, packed: bytes) -> None:
        self.packed = packed
        self.done = False
        self.abandoned = False
        """Its caller was cancelled: its reply, when it comes, is read and dropped."""
        self.reply: Any = None
        self.error: BaseException | None = None
        self.waiting: trio.Event | None = None
        """Set when the call is done, or when the connection is free for its caller's turn at the I/O."""
        self.notify: Callable[[Any], None] | None = None
        """A posted call's: called with its reply, or its failure, by whoever reads it (nobody waits for it)."""

    def resolve(self, reply: Any) -> None:
        self.reply = reply
        self._done(reply)

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._done(error)

    def _done(self, outcome: Any) -> None:
        self.done = True
        if self.waiting is not None:
            self.waiting.set()
        if self.notify is not None:
            self.notify(outcome)

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        if isinstance(self.reply, RespError):
            raise RespError(*self.reply.args)
        return self.reply


_FAILURES: Final = (OSError, RespError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError)
"""What losing a connection raises (``ConnectionError`` and :class:`ProtocolError` are kinds of ``OSError``)."""


class Publisher:
    """``PUBLISH`` over one connection, opened on first use and again after it failed.

    No task of its own: one caller at a time does the I/O for every caller.
    It writes every command queued since the last write in one write, then
    reads replies, in order, until its own has come; then the next caller
    whose reply is still owed (or whose command is not written yet) takes
    over.  A caller cancelled meanwhile leaves the connection as it is: its
    reply is read and dropped by whoever reads next, so that one request's
    cancellation (its client gone, its own deadline) never fails another's.
    A write is shielded from cancellation, since a half-written command would
    corrupt the stream, and bounded by ``write_timeout`` instead.

    A failure of the connection (refused, lost, no room to write within
    ``write_timeout``, bytes that are not RESP) closes it and fails at once
    every call it owed and every call waiting to be written: the broker is
    unavailable to them all alike.  A connection found closed when a batch
    was written to it (Redis restarted, or dropped it while idle) gets the
    batch again on a new connection, once, provided it owed nothing else and
    nothing of the batch was answered.  Callers bound the time a call takes
    (the broker's ``operation_timeout``); :meth:`ping_if_idle` keeps an idle
    connection known to be alive.

    :meth:`post` queues a ``PUBLISH`` and returns; :meth:`run_posts`, which
    whoever owns the publisher runs beside it, writes it, and its reply is
    read by the next caller that reads (in the same ``recv`` as its own, most
    often) or by that task.  Its outcome is told to its ``undelivered``
    callback only when it is not the expected one (nobody read the channel,
    or the connection failed).  A posted command found unanswered on a
    connection that failed is not written again: it may have reached Redis.
    """

    def __init__(self, endpoint: RedisEndpoint, *, write_timeout: float) -> None:
        self._endpoint = endpoint
        self._write_timeout = write_timeout
        self._connection: _Connection | None = None
        self._unwritten: list[_Call] = []
        self._owed: deque[_Call] = deque()
        """Written on the current connection, replies not read yet, in order."""
        self._busy = False
        self._closed = False
        self._last_used = trio.current_time()
        self._posted: deque[_Call] = deque()
        """Posted calls whose reply may still be owed (the done ones are dropped as found)."""
        self._poster: trio.Event | None = None
        """Set when a call is posted while :meth:`run_posts` waits."""

    async def publish(self, channel: bytes, message: bytes) -> int:
        """How many subscribers got ``message``.  Raises ``ConnectionError`` (Redis unreachable, the connection
        lost) or :class:`RespError` (Redis refused the login or the command)."""
        reply = await self._command(pack(b"PUBLISH", channel, message))
        if type(reply) is not int:
            raise ProtocolError("PUBLISH answered with something else than an integer")
        return reply

    async def post(
        self, channel: bytes, message: bytes, undelivered: Callable[[BaseException | None], None]
    ) -> None:
        """``PUBLISH`` without waiting: queued for :meth:`run_posts`, which writes it in this scheduling round.

        ``undelivered`` is called at most once, later, from whichever task
        reads the reply or loses the connection: with ``None`` when nobody was
        subscribed, with the error when the command could not be written or
        the connection failed before its reply came.  Nothing is called when
        it was delivered.  It must not block or raise.
        """
        if self._closed:
            raise trio.ClosedResourceError("the broker connection is closed")
        call = _Call(pack(b"PUBLISH", channel, message))

        def notify(reply: Any) -> None:
            if type(reply) is int:
                if reply == 0:
                    undelivered(None)
            elif isinstance(reply, BaseException):
                undelivered(reply)
            else:
                undelivered(ProtocolError("PUBLISH answered with something else than an integer"))

        call.notify = notify
        self._unwritten.append(call)
        self._posted.append(call)
        if self._poster is not None:
            self._poster.set()

    async def run_posts(self, *, after: float, read_bound: float) -> None:
        """Write posted commands, and read the replies nobody else read within ``after`` seconds; until cancelled.

        Every command posted while other tasks run goes out in one write
        when this task next runs (the round after), so a burst of forwards
        costs one system call, not one each.  Replies are most often read by
        a caller waiting for its own; what is left is read ``after`` seconds
        after its write, in one read.  Opening a connection and each read are
        bounded by ``read_bound`` seconds: a connection that cannot be opened
        in time fails what waits to be written; replies still missing are
        tried again later (a caller that waits for its own decides whether
        Redis is lost).
        """
        posted = self._posted
        read_at = math.inf
        while True:
            while posted and posted[0].done:
                posted.popleft()
            if self._unwritten and not self._busy:
                with trio.move_on_after(read_bound) as writing, contextlib.suppress(*_FAILURES):
                    await self._io(self._unwritten[-1], written=True)  # (failures are told to the callbacks)
                if writing.cancelled_caught:
                    await self._lose(trio.TooSlowError(f"no connection within {read_bound:g}s"), None)
                if posted and read_at == math.inf:
                    read_at = trio.current_time() + after
                continue
            if not posted:
                read_at = math.inf
            elif read_at == math.inf:
                read_at = trio.current_time() + after
            self._poster = trio.Event()
            with trio.move_on_at(read_at):
                await self._poster.wait()
            woken = self._poster.is_set()
            self._poster = None
            if woken:
                continue  # new posts: written first
            read_at = math.inf
            while posted and posted[0].done:
                posted.popleft()
            if posted and not self._busy:
                with trio.move_on_after(read_bound), contextlib.suppress(*_FAILURES):
                    await self._io(posted[-1], ready=True)

    async def ping_if_idle(self, idle: float) -> None:
        """``PING`` over the connection if it has been idle ``idle`` seconds (a dead one is dropped)."""
        if self._connection is None or trio.current_time() - self._last_used < idle:
            return
        reply = await self._command(pack(b"PING"))
        if reply != b"PONG":
            raise ProtocolError("PING answered with something else than PONG")

    async def _command(self, packed: bytes) -> Any:
        call = _Call(packed)
        self._unwritten.append(call)
        try:
            while not call.done:
                if self._busy:
                    call.waiting = trio.Event()
                    await call.waiting.wait()
                    call.waiting = None
                else:
                    await self._io(call)
        except BaseException:
            if not call.done:
                call.abandoned = True
                if call in self._unwritten:
                    self._unwritten.remove(call)  # never written: nobody needs its reply
                if not self._busy:
                    self._hand_over()  # it may have been woken for its turn: the next caller's then
            raise
        return call.result()

    async def _io(self, own: _Call, *, written: bool = False, ready: bool = False) -> None:
        """Write what is queued, read replies until ``own`` has its own; then hand over.

        ``written``: return once ``own`` is written (a posted call).  ``ready``:
        the replies owed have most likely arrived (read before waiting).
        """
        self._busy = True
        retried = False
        try:
            while not own.done:
                if written and own not in self._unwritten:
                    return
                connection = self._connection
                reused = connection is not None
                retryable: list[_Call] | None = None
                try:
                    if self._closed:
                        raise trio.ClosedResourceError("the broker connection is closed")
                    if connection is None:
                        connection = self._connection = await _Connection.open(self._endpoint)
                    if self._unwritten:
                        batch, self._unwritten = self._unwritten, []
                        retryable = batch if reused and not retried and not self._owed else None
                        self._owed.extend(batch)
                        self._last_used = trio.current_time()
                        with trio.CancelScope(shield=True, relative_deadline=self._write_timeout) as writing:
                            await connection.send(b"".join(call.packed for call in batch))
                        if writing.cancelled_caught:
                            raise trio.TooSlowError(f"no room to write within {self._write_timeout:g}s")
                        if written:
                            continue
                    reply = await connection.read(ready=ready)
                except _FAILURES as error:
                    stale = isinstance(error, (ConnectionError, trio.BrokenResourceError)) and not isinstance(
                        error, ProtocolError
                    )
                    retry = retryable if stale else None
                    await self._lose(error, retry)
                    if retry is not None:
                        retried = True
                        continue  # the connection was closed before the batch: Redis never read it
                    if isinstance(error, (ConnectionError, RespError)):
                        raise
                    raise ConnectionError(f"{type(error).__name__}: {error}") from error
                self._owed.popleft().resolve(reply)
        finally:
            self._busy = False
            self._hand_over()

    async def _lose(self, error: BaseException, retry: list[_Call] | None) -> None:
        """Close the connection; fail what it owed and what waits to be written (unless ``retry``: those again)."""
        connection, self._connection = self._connection, None
        owed, self._owed = self._owed, deque()
        if retry is not None:
            self._unwritten[:0] = [call for call in retry if not call.abandoned]
        else:
            failure = ConnectionError(f"{type(error).__name__}: {error}")
            waiting, self._unwritten = self._unwritten, []
            for call in (*owed, *waiting):
                if not call.done:
                    call.fail(failure)
        if connection is not None:
            with trio.CancelScope(shield=True):
                await connection.aclose()

    def _hand_over(self) -> None:
        """Wake the first caller still waiting for a reply, or to have its command written: its turn at the I/O.

        With none, :meth:`run_posts` writes what was posted meanwhile.
        """
        for call in (*self._owed, *self._unwritten):
            if not call.done and not call.abandoned and call.waiting is not None:
                call.waiting.set()
                return
        if self._unwritten and self._poster is not None:
            self._poster.set()

    async def aclose(self) -> None:
        self._closed = True
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.aclose()


class Subscription:
    """One connection ``SUBSCRIBE``\\ d to one channel: the payloads of its messages, in order."""

    def __init__(self, connection: _Connection, channel: bytes) -> None:
        self._connection = connection
        self.channel = channel

    @classmethod
    async def open(cls, endpoint: RedisEndpoint, channel: bytes) -> Subscription:
        """Connect, log in and subscribe (the caller bounds the time it takes)."""
        connection = await _Connection.open(endpoint)
        try:
            await connection.send(pack(b"SUBSCRIBE", channel))
            reply = await connection.read()
            if isinstance(reply, RespError):
                raise reply
            if not (isinstance(reply, list) and reply and reply[0] == b"subscribe"):
                raise ProtocolError("SUBSCRIBE was not confirmed")
        except BaseException:
            await connection.aclose()
            raise
        return cls(connection, channel)

    @property
    def last_received(self) -> float:
        """When (Trio's clock) Redis last sent anything on this connection."""
        return self._connection.last_received

    async def next_message(self) -> bytes:
        """The payload of the next message published to the channel (raises once the connection fails)."""
        connection = self._connection
        while True:
            reply = await connection.read()
            if type(reply) is list and len(reply) == 3 and reply[0] == b"message" and isinstance(reply[2], bytes):
                payload: bytes = reply[2]
                return payload
            if isinstance(reply, RespError):
                raise reply
            # anything else: the answer to a PING, a (re)subscription's confirmation

    async def messages(self) -> AsyncIterator[bytes]:
        """The payload of every message published to the channel, until the connection fails."""
        while True:
            yield await self.next_message()

    async def ping(self) -> None:
        """Ask Redis for a sign of life (its answer moves :attr:`last_received`)."""
        await self._connection.send(pack(b"PING"))

    async def aclose(self) -> None:
        await self._connection.aclose()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
