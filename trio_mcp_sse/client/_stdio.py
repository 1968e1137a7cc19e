"""The client half of the stdio transport: the server is a subprocess, messages are lines.

Theory of operation
-------------------
:func:`connect_stdio` starts the server command with pipes on its stdin and
stdout (stderr is passed through, discarded, or read line by line for a
callback), in a session and process group of its own, so a terminal's Ctrl-C
reaches only the client, which then shuts the server down in order.  For the
lifetime of its ``async with`` block it owns the process and a nursery:

* the *reader* splits the server's stdout into lines
  (:class:`~trio_mcp_sse._stdio.LineFramer`, at most ``max_message_size``
  bytes of one held) and parses each into :attr:`StdioConnection.incoming`;
  a line that is not a JSON-RPC message is logged and skipped, a line over the
  bound ends the connection (:class:`EventTooLargeError`), and the end of
  stdout while the block runs -- the server exited or closed it -- ends it
  with :class:`ServerExitedError`, which carries the exit status;
* the *writer* sends what is put into :attr:`StdioConnection.outgoing`;
  :meth:`StdioConnection.send` writes directly, one whole line at a time
  (a write that started is finished even if its caller is cancelled, so a
  line is never cut in half), each within ``timeout``;
* the *stderr reader*, when ``stderr`` is a callable, hands it each line.

Leaving the block runs the specification's shutdown sequence, shielded and
bounded at every step: close the server's stdin and wait ``shutdown_timeout``
seconds for it to exit (while its stdout is still read and discarded, so a
server busy writing is not stuck on a full pipe); then SIGTERM to its process
group and ``kill_timeout`` more; then SIGKILL.  No process outlives the block.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import IO, Any, Final, Literal, TypeAlias

import trio

from .._jsonrpc import InvalidMessage, JSONRPCMessage, parse_message
from .._stdio import DEFAULT_MAX_MESSAGE_SIZE, LineFramer, Oversized, one_line
from ._errors import ConnectError, ConnectionClosedError, EventTooLargeError, ServerExitedError
from ._transport import INCOMING_BUFFER, OutgoingMessage, _detail, _encode
from ._util import raise_collapsed

__all__ = ["StderrChoice", "StdioConnection", "connect_stdio"]

log = logging.getLogger("trio_mcp_sse.client")

StderrChoice: TypeAlias = Literal["inherit", "discard"] | Callable[[str], Any] | int | IO[Any]
"""Where the server's stderr goes: ``"inherit"`` (this process's stderr), ``"discard"``,
a callable given each line (without its newline), or a file descriptor / open file."""

_READ_SIZE: Final = 64 * 1024
_STDERR_LINE_MAX: Final = 64 * 1024
"""A stderr line longer than this reaches the callback in pieces of this size."""
_STDERR_DRAIN_TIMEOUT: Final = 1.0
"""After the server exited, how long its last stderr lines may take to arrive."""
_EXIT_STATUS_WAIT: Final = 1.0
"""When the server's stdout ends by itself, how long to wait for its exit status."""
_REAP_TIMEOUT: Final = 5.0
"""After SIGKILL: only a process stuck in the kernel takes this long."""


def _name(command: Sequence[str]) -> str:
    return os.path.basename(command[0]) or command[0]


def _exit_description(returncode: int | None) -> str:
    if returncode is None:
        return "closed its stdout"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


class StdioConnection:
    """A running MCP server process, as a pair of channels (yielded by :func:`connect_stdio`).

    Like the other client connections: :attr:`incoming` yields the server's
    messages, :attr:`outgoing` takes messages to send, :meth:`send` sends one
    right away; ``receive, send = connection`` unpacks the pair.  Hand it to
    :class:`ClientSession`.
    """

    def __init__(
        self,
        command: Sequence[str],
        process: trio.Process,
        *,
        timeout: float,
        max_message_size: int,
    ) -> None:
        self.command = tuple(command)
        """The command line that started the server."""
        self.process = process
        """The server's :class:`trio.Process` (its ``pid``, ``returncode``)."""
        self._timeout = timeout
        self._max_message_size = max_message_size
        self._closed = False
        self._stopping = False
        self._incoming_send, self.incoming = trio.open_memory_channel[JSONRPCMessage](INCOMING_BUFFER)
        self.outgoing, self._outgoing_receive = trio.open_memory_channel[OutgoingMessage](0)
        self._send_lock = trio.StrictFIFOLock()
        self._cancel_scope: trio.CancelScope | None = None
        self._reader_scope = trio.CancelScope()
        self._reader_done = trio.Event()
        self._stderr_done = trio.Event()
        self._stderr_done.set()

    def __repr__(self) -> str:
        return f"<StdioConnection {_name(self.command)} pid {self.pid} {'closed' if self._closed else 'open'}>"

    def __iter__(self) -> Iterator[Any]:
        """``receive_channel, send_channel = connection``."""
        return iter((self.incoming, self.outgoing))

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The server's exit status once it exited (negative: the signal that killed it)."""
        return self.process.returncode

    @property
    def closed(self) -> bool:
        """True once the connection ended (the server exited, a write failed) or the block was left."""
        return self._closed

    async def send(self, message: OutgoingMessage) -> None:
        """Write one message as one line to the server's stdin, within ``timeout``.

        Raises :class:`ConnectionClosedError` once the connection is closed or
        the server no longer reads its stdin.  A write that cannot finish
        within ``timeout`` (the server stopped reading) ends the whole
        connection: half a line cannot be taken back.  Once started, a write
        is finished even if the caller is cancelled, for the same reason.
        """
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise ConnectionClosedError("the connection is closed")
        data = one_line(_encode(message)) + b"\n"
        stdin = self.process.stdin
        assert stdin is not None
        async with self._send_lock:
            with trio.CancelScope(shield=True):
                if self._closed:
                    raise ConnectionClosedError("the connection is closed")
                with trio.move_on_after(self._timeout):
                    try:
                        await stdin.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        self._closed = True
                        raise ConnectionClosedError(
                            f"the server {_name(self.command)} (pid {self.pid}) no longer reads its stdin"
                        ) from None
                    return
        self._fail()
        raise ConnectionClosedError(
            f"could not write to the server {_name(self.command)} within {self._timeout:g} s "
            "(it is not reading its stdin); connection closed"
        )

    def _fail(self) -> None:
        self._closed = True
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    async def _run_writer(self) -> None:
        async with self._outgoing_receive:
            async for message in self._outgoing_receive:
                await self.send(message)

    async def _run_reader(self) -> None:
        try:
            with self._reader_scope:
                await self._read()
        finally:
            self._reader_done.set()

    async def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        framer = LineFramer(self._max_message_size)
        try:
            while True:
                try:
                    chunk = await stdout.receive_some(_READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    chunk = b""
                if not chunk:
                    break
                for line in framer.feed(chunk):
                    await self._deliver(line)
                del chunk
            for line in framer.end():
                await self._deliver(line)
        finally:
            self._closed = True
        if self._stopping:
            return
        # The server ended the conversation: its exit status says why (if it exits soon).
        # ``incoming`` stays open until the block is left, so the body is cancelled by the
        # error below rather than failing first with a less telling "connection closed".
        with trio.move_on_after(_EXIT_STATUS_WAIT):
            await self.process.wait()
        returncode = self.process.returncode
        raise ServerExitedError(
            f"the server {_name(self.command)} (pid {self.pid}) {_exit_description(returncode)}",
            returncode=returncode,
        )

    async def _deliver(self, line: bytes | Oversized) -> None:
        if isinstance(line, Oversized):
            raise EventTooLargeError(
                f"the server {_name(self.command)} wrote a line longer than max_message_size "
                f"({self._max_message_size} bytes); connection closed",
                limit=self._max_message_size,
            )
        try:
            message = parse_message(line)
        except InvalidMessage as invalid:
            log.warning(
                "%s: ignoring a line from the server that is not a JSON-RPC message: %s (%s)",
                _name(self.command),
                invalid.message,
                _detail(line.decode("utf-8", "replace")),
            )
            return
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._incoming_send.send(message)

    async def _run_stderr(self, stream: trio.abc.ReceiveStream, callback: Callable[[str], Any]) -> None:
        """Hand each stderr line to ``callback``; one that raises is logged, and reading goes on
        (a server whose stderr pipe fills up would stop)."""
        buffer = bytearray()
        failed = False

        def emit(raw: bytes | bytearray) -> None:
            nonlocal failed
            text = bytes(raw).decode("utf-8", "replace").rstrip("\r")
            try:
                callback(text)
            except Exception:
                if not failed:
                    log.exception("%s: the stderr callback failed; later lines are still read", _name(self.command))
                failed = True

        try:
            while True:
                try:
                    chunk = await stream.receive_some(_READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                if not chunk:
                    break
                buffer += chunk
                while True:
                    newline = buffer.find(b"\n")
                    if newline < 0:
                        break
                    emit(buffer[:newline])
                    del buffer[: newline + 1]
                while len(buffer) >= _STDERR_LINE_MAX:
                    emit(buffer[:_STDERR_LINE_MAX])
                    del buffer[:_STDERR_LINE_MAX]
            if buffer:
                emit(buffer)
        finally:
            self._stderr_done.set()

    # -- shutdown ----------------------------------------------------------------------------------
    async def _stop(self, shutdown_timeout: float, kill_timeout: float) -> None:
        """The shutdown sequence (see the module docstring); call it shielded."""
        self._stopping = True
        self._closed = True
        self._reader_scope.cancel()
        await self._reader_done.wait()
        process = self.process
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_discard, process.stdout)
            with contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                if process.stdin is not None:
                    await process.stdin.aclose()
            if not await _exited_within(process, shutdown_timeout):
                log.info(
                    "%s (pid %d) did not exit within %.1fs of its stdin closing: sending SIGTERM",
                    _name(self.command),
                    process.pid,
                    shutdown_timeout,
                )
                _signal_group(process, signal.SIGTERM)
                if not await _exited_within(process, kill_timeout):
                    log.warning(
                        "%s (pid %d) ignored SIGTERM for %.1fs: sending SIGKILL",
                        _name(self.command),
                        process.pid,
                        kill_timeout,
                    )
                    _signal_group(process, signal.SIGKILL)
                    if not await _exited_within(process, _REAP_TIMEOUT):
                        log.error("%s (pid %d) survived SIGKILL; abandoning it", _name(self.command), process.pid)
            with trio.move_on_after(_STDERR_DRAIN_TIMEOUT):
                await self._stderr_done.wait()
            nursery.cancel_scope.cancel()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                    await stream.aclose()


async def _discard(stream: trio.abc.ReceiveStream | None) -> None:
    if stream is None:
        return
    with contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        while await stream.receive_some(_READ_SIZE):
            pass


async def _exited_within(process: trio.Process, seconds: float) -> bool:
    with trio.move_on_after(seconds):
        await process.wait()
    return process.returncode is not None


def _signal_group(process: trio.Process, signum: signal.Signals) -> None:
    """Signal the server's process group (its children too), while its pid is still ours.

    An exited but unreaped leader keeps the pid (and so the group id) from
    being reused; once it is reaped (``returncode`` set) nothing is sent.
    """
    if process.returncode is not None:
        return
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)


def _environment(env: Mapping[str, str] | None, inherit_env: bool) -> dict[str, str] | None:
    if env is None and inherit_env:
        return None
    return {**(os.environ if inherit_env else {}), **(env or {})}


def _stderr_target(stderr: StderrChoice) -> Any:
    if stderr == "inherit":
        return None
    if stderr == "discard":
        return subprocess.DEVNULL
    if isinstance(stderr, int) or hasattr(stderr, "fileno"):
        return stderr
    if callable(stderr):
        return subprocess.PIPE
    raise ValueError(f"stderr must be 'inherit', 'discard', a callable, or a file; got {stderr!r}")


@asynccontextmanager
async def connect_stdio(
    command: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    inherit_env: bool = True,
    cwd: str | os.PathLike[str] | None = None,
    stderr: StderrChoice = "inherit",
    timeout: float = 10.0,  # noqa: ASYNC109 -- the bound on each write, like the other connections'
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    shutdown_timeout: float = 2.0,
    kill_timeout: float = 2.0,
) -> AsyncIterator[StdioConnection]:
    """Start an MCP server as a subprocess and connect to it over its stdin and stdout.

    ``command`` is the program and its arguments (a sequence, never one
    string: nothing is given to a shell).  ``env`` adds to (or overrides) this
    process's environment, or replaces it with ``inherit_env=False``; ``cwd``
    is the server's working directory; ``stderr`` says where its stderr goes
    (:data:`StderrChoice`).  ``timeout`` bounds each write to the server and
    the wait for its exit status when it ends by itself; ``max_message_size``
    bounds one line from it (bytes).  Leaving the block closes the server's
    stdin, waits ``shutdown_timeout`` seconds, sends SIGTERM, waits
    ``kill_timeout``, then sends SIGKILL.  Raises :class:`ConnectError` when the
    command cannot be started.  See ``docs/stdio.md``.
    """
    if isinstance(command, str | bytes):
        raise ValueError(
            "command must be a sequence of arguments, e.g. ['python', '-m', 'mymodule'], not one string"
        )
    argv = [os.fspath(part) for part in command]
    if not argv:
        raise ValueError("command is empty")
    for name, value in (("timeout", timeout), ("shutdown_timeout", shutdown_timeout), ("kill_timeout", kill_timeout)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
    if not max_message_size >= 1:
        raise ValueError(f"max_message_size must be >= 1, got {max_message_size!r}")
    if sys.platform == "win32":  # pragma: no cover
        raise NotImplementedError("connect_stdio needs a POSIX system")
    target = _stderr_target(stderr)
    try:
        process = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=target,
            env=_environment(env, inherit_env),
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as error:
        raise ConnectError(f"cannot start the server {argv[0]!r}: {error.strerror or error}") from error
    # From here on every path goes through the shutdown below: no await before the try.
    connection = StdioConnection(argv, process, timeout=timeout, max_message_size=max_message_size)
    try:
        async with trio.open_nursery() as nursery:
            connection._cancel_scope = nursery.cancel_scope
            nursery.start_soon(connection._run_reader, name="stdio reader")
            nursery.start_soon(connection._run_writer, name="stdio writer")
            if callable(stderr) and process.stderr is not None:
                connection._stderr_done = trio.Event()
                nursery.start_soon(connection._run_stderr, process.stderr, stderr, name="stdio stderr")
            try:
                yield connection
            finally:
                with trio.CancelScope(shield=True):
                    await connection._stop(shutdown_timeout, kill_timeout)
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise_collapsed(group)
    finally:
        connection._closed = True
        connection._incoming_send.close()
        if process.returncode is None:  # the nursery never got to the shutdown
            with trio.CancelScope(shield=True):
                _signal_group(process, signal.SIGKILL)
                await _exited_within(process, _REAP_TIMEOUT)
