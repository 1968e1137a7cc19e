"""The stdio transport, server side: one MCP session over this process's stdin and stdout.

A desktop client (Claude Desktop, an IDE, the official SDKs' stdio clients)
launches the server as a subprocess and speaks newline-delimited JSON-RPC with
it: each message is one line of UTF-8 JSON on the server's stdin (client to
server) or stdout (server to client), never containing a raw newline; stderr
is free for logs; nothing else may ever reach stdout.

Theory of operation
-------------------
*Framing* is sans-io: :class:`LineFramer` turns the bytes read from stdin into
complete lines, holding at most ``max_message_size`` bytes of an unfinished
one.  A longer line is reported once (:class:`Oversized`) and the rest of it
is skipped as it streams in, so a client that never sends a newline costs a
bounded amount of memory, and the next line is read normally.

*The wire* is claimed before anything else runs (:func:`claim_stdio`): file
descriptors 0 and 1 are duplicated for the transport's own use, then fd 0 is
pointed at ``/dev/null`` and fd 1 at stderr.  A ``print()`` in a tool, a
logging handler writing to ``sys.stdout``, a subprocess a tool starts: all of
them land on stderr instead of corrupting the protocol stream, and none of
them can read protocol bytes from stdin.  The descriptors are restored on
exit.  The duplicates are read and written through ``trio.lowlevel.FdStream``
(non-blocking I/O on pipes, sockets and files); a terminal, or a stdout that
is the same open file as stderr, is used through blocking calls in a worker
thread instead, since non-blocking mode would leak into every other user of
that open file (the shell, stderr's logging).

*The session* is one :class:`~trio_mcp_sse._session.Session` of a
:class:`~trio_mcp_sse._session.SessionManager`, served by the handler
(``MCPServer.run_session``) exactly as over HTTP, with limits suited to one
local peer (:data:`STDIO_LIMITS`: one session, no idle timeout).  A task pair
moves messages:

* the *reader*: stdin -> :class:`LineFramer` -> :func:`parse_message` ->
  :meth:`Session.deliver`.  A line that is not JSON is answered with a
  JSON-RPC -32700 error, one that is not a message with -32600, a line over the
  bound with -32600 (``id`` null: it was never read): the session goes on.  At
  end of file the session *drains*: requests already accepted run to
  completion and answer, within ``drain_timeout``; then they are cancelled.
* the *writer*: the session's outbound channel -> one line on stdout each.
  Each write is bounded by ``limits.write_timeout``: a client that stops
  reading its end of the pipe for that long ends the session.

The session ends when stdin reaches end of file (and the drain is over), when
SIGTERM or SIGINT arrives (requests are cancelled at once), when the client
closes its end of stdout, or when the handler fails.  Nothing outlives it: the
reader, the writer and the session task are all owned by one nursery.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import functools
import logging
import os
import signal
import stat
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import orjson
import trio

from ._host import LifespanFailed
from ._jsonrpc import INVALID_REQUEST, InvalidMessage, JSONRPCRequest, error_response, parse_message
from ._load import LoadError, import_attribute
from ._logs import RateLimiter, ensure_default_handler
from ._session import Delivery, Incoming, Session, SessionHandler, SessionLimits, SessionManager

__all__ = [
    "DEFAULT_DRAIN_TIMEOUT",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "STDIO_LIMITS",
    "LineFramer",
    "Oversized",
    "StdioEnd",
    "claim_stdio",
    "exit_status",
    "load_server",
    "main",
    "run_stdio",
    "serve_stdio",
]

log = logging.getLogger("trio_mcp_sse.stdio")

DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024
"""16 MiB: the largest line (one message, without its newline) read from stdin.

The same bound as the other transports put on one message from a peer: far
above any request a client sends, small enough that a runaway line cannot
exhaust memory."""

DEFAULT_DRAIN_TIMEOUT: Final = 10.0
"""Seconds requests in flight at end of stdin get to finish before they are cancelled."""

STDIO_LIMITS: Final = SessionLimits(max_sessions=1, idle_timeout=None)
"""The session limits of a stdio server: one session (the process serves no other) and no
idle timeout (a desktop client may stay silent for hours and still be there)."""

_READ_SIZE: Final = 64 * 1024
_SHUTTING_DOWN_CODE: Final = -32000
_NEWLINE: Final = b"\n"


# -- framing (sans-io) ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Oversized:
    """A line longer than the framer's bound: its first ``size`` bytes were seen and dropped,
    and the rest of it (up to the next newline) is skipped without being kept."""

    size: int


class LineFramer:
    """Bytes in, complete lines out, holding at most ``max_size`` bytes of an unfinished line.

    :meth:`feed` returns each complete line without its newline (a trailing
    ``\\r`` is kept: JSON treats it as whitespace); lines of nothing but
    whitespace are dropped.  A line that grows past ``max_size`` is reported
    once, as :class:`Oversized`, when it does, and its remaining bytes are
    discarded up to the next newline.  :meth:`end` returns what was left
    without a final newline (a peer that closed without one still meant it).
    """

    __slots__ = ("_buffer", "_max_size", "_skipping")

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size!r}")
        self._max_size = max_size
        self._buffer = bytearray()
        self._skipping = False

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished line held right now (never more than ``max_size``)."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray) -> list[bytes | Oversized]:
        found: list[bytes | Oversized] = []
        start = 0
        end = len(data)
        while start < end:
            newline = data.find(_NEWLINE, start)
            stop = end if newline < 0 else newline
            length = stop - start
            if self._skipping:
                pass
            elif len(self._buffer) + length > self._max_size:
                found.append(Oversized(len(self._buffer) + length))
                self._buffer.clear()
                self._skipping = True
            elif newline < 0:
                self._buffer += data[start:stop]
            elif self._buffer:
                self._buffer += data[start:stop]
                self._emit(bytes(self._buffer), found)
                self._buffer.clear()
            else:
                self._emit(bytes(data[start:stop]), found)
            if newline < 0:
                break
            self._skipping = False
            start = newline + 1
        return found

    def end(self) -> list[bytes | Oversized]:
        """The last line, when the stream ended without a newline after it."""
        found: list[bytes | Oversized] = []
        if self._buffer and not self._skipping:
            self._emit(bytes(self._buffer), found)
        self._buffer.clear()
        self._skipping = False
        return found

    @staticmethod
    def _emit(line: bytes, found: list[bytes | Oversized]) -> None:
        if line.strip():
            found.append(line)


def one_line(data: bytes) -> bytes:
    """``data`` as one line: JSON the encoder wrote never holds a raw newline, but bytes a
    handler queued itself might be pretty-printed; those are re-encoded compactly
    (inside a JSON string a newline is always escaped, so this loses nothing)."""
    if _NEWLINE not in data:
        return data
    return orjson.dumps(orjson.loads(data))


# -- the wire ------------------------------------------------------------------------------------------
_claimed = False
"""Whether fds 0 and 1 are claimed right now (a second claim would read ``/dev/null``)."""


@contextlib.contextmanager
def claim_stdio() -> Iterator[tuple[int, int]]:
    """Take fds 0 and 1 for the protocol; yield private duplicates ``(wire_in, wire_out)``.

    While the block runs, fd 0 reads ``/dev/null`` and fd 1 writes to stderr
    (to ``/dev/null`` if there is no stderr), so nothing but the transport can
    read the client's messages or write between them.  On exit both are
    restored and the duplicates closed.  ``OSError`` if stdin or stdout is not open.
    """
    global _claimed
    if _claimed:
        raise RuntimeError("stdin and stdout are already claimed: this process serves stdio once at a time")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    wire_in = _duplicate(0, "stdin is not open: a stdio server needs the client's pipe on fd 0")
    try:
        wire_out = _duplicate(1, "stdout is not open: a stdio server needs the client's pipe on fd 1")
    except BaseException:
        os.close(wire_in)
        raise
    try:
        _point_at_null(0, os.O_RDONLY)
        if not _is_open(2):  # no stderr: keep the number from being reused for a file by chance
            _point_at_null(2, os.O_WRONLY)
        try:
            os.dup2(2, 1)
        except OSError:  # stray output goes nowhere rather than onto the wire
            _point_at_null(1, os.O_WRONLY)
        _claimed = True
        yield wire_in, wire_out
    finally:
        _claimed = False
        with contextlib.suppress(Exception):
            sys.stdout.flush()  # what was printed while serving belongs on stderr, where fd 1 points now
        with contextlib.suppress(OSError):
            os.dup2(wire_out, 1)
        with contextlib.suppress(OSError):
            os.dup2(wire_in, 0)
        os.close(wire_out)
        os.close(wire_in)


def _duplicate(fd: int, missing: str = "not open") -> int:
    """A close-on-exec duplicate of ``fd`` numbered 3 or above, never one of the standard three
    (were one of them closed, a plain ``dup`` could hand its number out, and a later write to
    "stderr" would land on the protocol stream)."""
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    except OSError as error:
        raise OSError(error.errno, missing) from None


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _point_at_null(fd: int, mode: int) -> None:
    null = os.open(os.devnull, mode)
    try:
        if null != fd:
            os.dup2(null, fd)
    finally:
        if null != fd:
            os.close(null)


def _same_open_file(fd: int, other: int) -> bool:
    try:
        mine, theirs = os.fstat(fd), os.fstat(other)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino) and not stat.S_ISREG(mine.st_mode)


def _shares_its_open_file(fd: int, *, writing: bool) -> bool:
    """Whether non-blocking mode on ``fd`` would reach other users of the same open file."""
    return os.isatty(fd) or (writing and _same_open_file(fd, 2))


class _ThreadedReader(trio.abc.ReceiveStream):
    """Blocking reads in a worker thread, for a stdin whose open file others share (a terminal).

    A read still waiting when the transport stops is abandoned (a terminal
    read ends at the next line typed); its descriptor is then left open rather
    than closed under it.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._reading = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._reading = True
        data = await trio.to_thread.run_sync(os.read, self._fd, max_bytes or _READ_SIZE, abandon_on_cancel=True)
        self._reading = False
        return data

    async def aclose(self) -> None:
        if not self._reading:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        await trio.lowlevel.checkpoint()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _ThreadedWriter(trio.abc.SendStream):
    """Blocking writes in a worker thread, for a stdout whose open file others share."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await trio.to_thread.run_sync(_write_all, self._fd, bytes(data), abandon_on_cancel=True)
        except OSError as error:
            raise trio.BrokenResourceError(str(error)) from error

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
        await trio.lowlevel.checkpoint()


def _reader_for(fd: int) -> trio.abc.ReceiveStream:
    """A stream over a duplicate of ``fd`` (the caller keeps ``fd`` itself)."""
    own = _duplicate(fd)
    return _ThreadedReader(own) if _shares_its_open_file(own, writing=False) else trio.lowlevel.FdStream(own)


def _writer_for(fd: int) -> trio.abc.SendStream:
    own = _duplicate(fd)
    return _ThreadedWriter(own) if _shares_its_open_file(own, writing=True) else trio.lowlevel.FdStream(own)


# -- the session -------------------------------------------------------------------------------------
class StdioEnd(enum.Enum):
    """Why a stdio session ended; :func:`exit_status` maps it to the process's exit status."""

    END_OF_INPUT = "stdin closed"
    SIGNAL = "signal"
    CLIENT_GONE = "stdout closed"
    CLIENT_NOT_READING = "client not reading"
    SESSION_ENDED = "session ended"
    """The server layer ended the session (its handler returned or failed)."""


def exit_status(end: StdioEnd, session: Session) -> int:
    """0 when the client ended the session (end of stdin, a signal, stdout closed) or the
    handler returned by itself; 1 when it failed or the client stopped reading."""
    if end in (StdioEnd.END_OF_INPUT, StdioEnd.SIGNAL, StdioEnd.CLIENT_GONE):
        return 0
    if end is StdioEnd.SESSION_ENDED and session.close_reason is None:
        return 0
    return 1


class _Transport:
    """One stdio session's reader and writer (see the module docstring)."""

    def __init__(
        self,
        manager: SessionManager,
        session: Session,
        stdin: trio.abc.ReceiveStream,
        stdout: trio.abc.SendStream,
        *,
        max_message_size: int,
        drain_timeout: float,
    ) -> None:
        self.manager = manager
        self.session = session
        self.stdin = stdin
        self.stdout = stdout
        self.framer = LineFramer(max_message_size)
        self.max_message_size = max_message_size
        self.drain_timeout = drain_timeout
        self.write_timeout = manager.limits.write_timeout
        self.ends: list[StdioEnd] = []
        self._warnings = RateLimiter(10, 10.0)

    def _end(self, end: StdioEnd, scope: trio.CancelScope | None = None) -> None:
        self.ends.append(end)
        if scope is not None:
            scope.cancel()

    async def run(self, handle_signals: bool) -> StdioEnd:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, name="stdio reader")
            nursery.start_soon(self._write, nursery.cancel_scope, name="stdio writer")
            if handle_signals and threading.current_thread() is threading.main_thread():
                nursery.start_soon(self._watch_signals, name="stdio signals")
        # The first to decide wins: end of input that drained wins over the writer's end.
        return self.ends[0] if self.ends else StdioEnd.SESSION_ENDED

    # -- stdin -> session ---------------------------------------------------------------------------
    async def _read(self) -> None:
        framer = self.framer
        while True:
            try:
                chunk = await self.stdin.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
                log.info("stdin failed (%s): treating it as end of input", error, extra={"event": "stdio_stdin_error"})
                chunk = b""
            if not chunk:
                break
            for line in framer.feed(chunk):
                if not await self._deliver(line):
                    return  # the session is gone: the writer ends the transport
            del chunk
        for line in framer.end():
            if not await self._deliver(line):
                return
        log.info(
            "stdin closed: finishing requests in flight (up to %.1fs), then exiting",
            self.drain_timeout,
            extra={"event": "stdio_end_of_input"},
        )
        self.ends.append(StdioEnd.END_OF_INPUT)
        await self.manager.drain(self.drain_timeout)

    async def _deliver(self, line: bytes | Oversized) -> bool:
        """Hand one line to the session; False once the session takes no more."""
        session = self.session
        if isinstance(line, Oversized):
            self._warn(
                "oversized",
                "a line of more than %d bytes arrived on stdin (the limit is max_message_size): "
                "answered with -32600, its remaining bytes are skipped",
                self.max_message_size,
            )
            message = f"Invalid request: message over {self.max_message_size} bytes (the server's max_message_size)"
            session.send_nowait(error_response(None, INVALID_REQUEST, message))
            return not session.closed
        try:
            parsed = parse_message(line)
        except InvalidMessage as invalid:
            self._warn("invalid", "an invalid line arrived on stdin (answered with %d): %s", invalid.code, invalid.message)
            return await session.deliver(invalid) is not Delivery.GONE
        delivery = await session.deliver(Incoming(parsed))
        if delivery is Delivery.ACCEPTED:
            return True
        if delivery is Delivery.GONE:
            return False
        if isinstance(parsed, JSONRPCRequest):  # draining or busy: fail it now rather than leave it unanswered
            why = "Server is shutting down" if delivery is Delivery.DRAINING else "Server busy: too many messages queued"
            session.send_nowait(error_response(parsed.id, _SHUTTING_DOWN_CODE, why), related_request_id=parsed.id)
        elif delivery is Delivery.BUSY:
            what = getattr(parsed, "method", "response")
            self._warn("busy", "the session's inbound queue stayed full: a %s message was dropped", what)
        return True

    def _warn(self, key: str, message: str, *args: Any) -> None:
        suppressed = self._warnings.allow(key)
        if suppressed is None:
            return
        if suppressed:
            message += f" ({suppressed} similar suppressed)"
        log.warning(message, *args, extra={"event": f"stdio_{key}"})

    # -- session -> stdout --------------------------------------------------------------------------
    async def _write(self, scope: trio.CancelScope) -> None:
        session = self.session
        async for item in session.outgoing:
            if not item.data:  # keepalive wake-ups and unanswered-request notices: nothing to write
                continue
            try:
                data = one_line(item.data) + _NEWLINE
            except orjson.JSONDecodeError:
                log.error("the server layer queued bytes that are not JSON; dropped", extra={"event": "stdio_not_json"})
                continue
            finally:
                del item
            with trio.move_on_after(self.write_timeout) as bound:
                try:
                    await self.stdout.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    log.info("stdout closed by the client: ending the session", extra={"event": "stdio_stdout_closed"})
                    session.close("client gone")
                    self._end(StdioEnd.CLIENT_GONE, scope)
                    return
            if bound.cancelled_caught:
                log.warning(
                    "the client has not read stdout for %.1fs: ending the session",
                    self.write_timeout,
                    extra={"event": "stdio_client_not_reading"},
                )
                session.drop_slow_consumer("a write to stdout did not finish in time")
                self._end(StdioEnd.CLIENT_NOT_READING, scope)
                return
        # The outbound channel ended: the session is over (drained, closed or its handler returned).
        self._end(StdioEnd.SESSION_ENDED, scope)

    # -- signals ------------------------------------------------------------------------------------
    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                log.info("%s received: cancelling requests in flight and exiting", name, extra={"event": "stdio_signal"})
                self.ends.append(StdioEnd.SIGNAL)
                self.session.close(f"{name} received")
                return


async def _serve(
    handler: SessionHandler,
    stdin: trio.abc.ReceiveStream,
    stdout: trio.abc.SendStream,
    *,
    max_message_size: int,
    drain_timeout: float,
    limits: SessionLimits | None,
    handle_signals: bool,
) -> tuple[StdioEnd, Session]:
    manager = SessionManager(handler, limits=limits or STDIO_LIMITS)
    async with manager.run():
        session = await manager.open_session(peer="stdio")
        transport = _Transport(
            manager, session, stdin, stdout, max_message_size=max_message_size, drain_timeout=drain_timeout
        )
        end = await transport.run(handle_signals)
        if not session.finished.is_set():
            await manager.close_session(session, end.value)
    log.debug("stdio session ended: %s", end.value, extra={"event": "stdio_session_ended", "reason": end.value})
    return end, session


def _check_options(max_message_size: int, drain_timeout: float) -> None:
    if max_message_size < 1:
        raise ValueError(f"max_message_size must be >= 1, got {max_message_size!r}")
    if not drain_timeout > 0:
        raise ValueError(f"drain_timeout must be > 0, got {drain_timeout!r}")


async def serve_stdio(
    handler: SessionHandler,
    *,
    stdin: trio.abc.ReceiveStream | None = None,
    stdout: trio.abc.SendStream | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    limits: SessionLimits | None = None,
    handle_signals: bool = True,
) -> StdioEnd:
    """Serve one MCP session over stdin/stdout until the client ends it; return how it ended.

    ``handler`` serves the session (``MCPServer.run_session``).  Without
    ``stdin``/``stdout`` the process's own are claimed (:func:`claim_stdio`)
    for the duration; with them (both, e.g. memory streams in a test) nothing
    of the process is touched.  ``handle_signals``: SIGTERM and SIGINT end the
    session (main thread only).  See the module docstring and ``docs/stdio.md``.
    """
    _check_options(max_message_size, drain_timeout)
    options: dict[str, Any] = {
        "max_message_size": max_message_size,
        "drain_timeout": drain_timeout,
        "limits": limits,
        "handle_signals": handle_signals,
    }
    if (stdin is None) != (stdout is None):
        raise ValueError("give both stdin and stdout, or neither (the process's own are used)")
    if stdin is not None and stdout is not None:
        end, _ = await _serve(handler, stdin, stdout, **options)
        return end
    with claim_stdio() as (wire_in, wire_out):
        end, _ = await _serve_fds(handler, wire_in, wire_out, **options)
        return end


async def _serve_fds(handler: SessionHandler, wire_in: int, wire_out: int, **options: Any) -> tuple[StdioEnd, Session]:
    async with _fd_streams(wire_in, wire_out) as (stdin, stdout):
        return await _serve(handler, stdin, stdout, **options)


@contextlib.asynccontextmanager
async def _fd_streams(wire_in: int, wire_out: int) -> AsyncIterator[tuple[trio.abc.ReceiveStream, trio.abc.SendStream]]:
    stdin = _reader_for(wire_in)
    try:
        stdout = _writer_for(wire_out)
    except BaseException:
        await stdin.aclose()
        raise
    try:
        yield stdin, stdout
    finally:
        with trio.CancelScope(shield=True):
            await stdout.aclose()
            await stdin.aclose()


def run_stdio(handler: SessionHandler, **options: Any) -> StdioEnd:
    """:func:`serve_stdio` under ``trio.run``, with the library's logs on stderr."""
    ensure_default_handler()
    end: StdioEnd = trio.run(functools.partial(serve_stdio, handler, **options))
    return end


# -- the command -------------------------------------------------------------------------------------
class _LifespanFailed(Exception):
    """The server's lifespan raised on entering: nothing was served."""


async def _within_lifespan(server: Any, serve: Callable[[], Awaitable[tuple[StdioEnd, Session]]]) -> tuple[StdioEnd, Session]:
    """``serve()`` inside the server's lifespan (an ``MCPServer``'s ``running()``), as an app would run it."""
    running = getattr(server, "running", None)
    if running is None:  # a server of one's own on the session core: no lifespan
        return await serve()
    entered = False
    try:
        async with running():
            entered = True
            return await serve()
    except Exception as error:
        if entered:
            raise
        # The server layer's own failure already names the server and the cause.
        said = str(error) if isinstance(error, LifespanFailed) else f"{type(error).__name__}: {error}"
        raise _LifespanFailed(said) from error


def load_server(path: str) -> Any:
    """Import ``module:attribute`` (attribute default: ``server``); it must serve sessions.

    Anything with a ``run_session(session)`` coroutine method qualifies: an
    ``MCPServer``, or a server of your own on the session core.
    """
    target = import_attribute(path, "server")
    if not callable(getattr(target, "run_session", None)):
        raise LoadError(
            f"{path!r} is a {type(target).__name__}, not an MCPServer: --stdio serves an MCPServer "
            "(an ASGI app can only be served over HTTP)"
        )
    return target


def main(path: str, *, drain_timeout: float = DEFAULT_DRAIN_TIMEOUT, log_level: str = "info") -> int:
    """``python -m trio_mcp_sse serve --stdio module:server``; returns the exit status.

    The wire is claimed before the module is imported, so even what the
    module prints while it loads reaches stderr, not the client.  2: the
    server could not be loaded; 0: the client ended the session; 1: it ended
    otherwise (the handler failed, the client stopped reading).
    """
    _check_options(DEFAULT_MAX_MESSAGE_SIZE, drain_timeout)
    ensure_default_handler()
    logging.getLogger("trio_mcp_sse").setLevel(log_level.upper())
    sys.path.insert(0, os.getcwd())
    with contextlib.ExitStack() as stack:
        try:
            wire_in, wire_out = stack.enter_context(claim_stdio())
        except OSError as error:
            sys.stderr.write(f"error: {error.strerror or error}\n")
            return 1
        try:
            server = load_server(path)
        except LoadError as error:
            sys.stderr.write(f"error: {error}\n")
            return 2
        serve = functools.partial(
            _serve_fds,
            server.run_session,
            wire_in,
            wire_out,
            max_message_size=DEFAULT_MAX_MESSAGE_SIZE,
            drain_timeout=drain_timeout,
            limits=None,
            handle_signals=True,
        )
        try:
            end, session = trio.run(_within_lifespan, server, serve)
        except _LifespanFailed as failed:
            sys.stderr.write(f"error: start-up failed: {failed}\n")
            return 1
        return exit_status(end, session)
    raise AssertionError("unreachable")  # pragma: no cover -- the block returns

