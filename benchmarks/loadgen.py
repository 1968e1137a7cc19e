"""A lean MCP load generator for HTTP+SSE and Streamable HTTP (Trio, raw sockets, hand-rolled HTTP/1.1).

It speaks each transport exactly like a real client -- HTTP+SSE (``--transport
sse``, the default): ``GET /sse``, wait for the ``endpoint`` event,
``initialize``, ``notifications/initialized``, then ``tools/call`` POSTs whose
responses are matched by id on the event stream; Streamable HTTP
(``--transport streamable``): every message a POST to one endpoint (``--path``,
default ``/mcp``) on a keep-alive connection, ``initialize`` (learning the
``Mcp-Session-Id``), ``notifications/initialized`` (202), ``tools/call``
answered on its own POST by a JSON body or an event stream, and ``DELETE`` at
the end -- but does as little work per message as it can, and the same work for
every server, so that the server is what gets measured:

* no HTTP library: requests are pre-built byte strings, responses are read
  with ``find`` on a ``bytearray`` (status line, ``Content-Length``,
  ``Transfer-Encoding: chunked``, ``Connection: close``);
* the event stream is de-chunked and split on blank lines (CRLF normalised,
  since the SDK's SSE library ends lines with CRLF); only the JSON ``id`` of a
  ``message`` event is looked at on the hot path, with orjson;
* one stream-reader task per session wakes the caller waiting for that id.

Run one scenario per process (``python -m benchmarks.loadgen SCENARIO ...``);
it prints one JSON object on stdout.  The server's CPU time and RSS are read
with psutil at the edges of the measured window, from this process, so the
window is exact.  Every wait is bounded; every failure is counted by kind and
reported, never retried silently.

For servers sharing a session broker (``benchmarks.broker``): ``--call-port``
sends each session's requests after its handshake to another server than the
one that opened it (so that every call is forwarded), ``--server-pid`` may be
given once per server process (each one's CPU is reported too),
``--broker-pid`` reports redis-server's CPU apart, and ``--redis-port`` reads
Redis's command count and ``used_memory`` at the same edges.
"""

from __future__ import annotations

import argparse
import collections
import math
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio

from . import redis_probe

RECV_SIZE = 262_144
PROTOCOL_VERSION = "2024-11-05"
STREAMABLE_PROTOCOL_VERSION = "2025-11-25"
"""Offered in a Streamable HTTP ``initialize``: the latest revision negotiated by a handshake."""


class ProtocolFailure(Exception):
    """The server answered something a client cannot accept (counted as an error)."""


# -- errors ---------------------------------------------------------------------------------------
class Errors:
    """Failures by kind.  A benchmark run is only valid when this stays empty."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, str] = {}

    def add(self, kind: str, detail: str = "") -> None:
        self.counts[kind] += 1
        self.examples.setdefault(kind, detail[:300])

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# -- server process accounting --------------------------------------------------------------------
class ServerProcess:
    """CPU seconds and RSS of the server's whole process trees (hypercorn runs a worker child).

    Several roots when the server under test is several processes started
    separately (two ``serve`` processes sharing a broker); each root's tree
    can also be read on its own (:meth:`cpu_seconds_each`).
    """

    def __init__(self, pids: Sequence[int]) -> None:
        import psutil  # a bench-only dependency: the HTTP client code above is importable without it

        self.trees = []
        for pid in pids:
            root = psutil.Process(pid)
            self.trees.append([root, *root.children(recursive=True)])
        self.procs = [proc for tree in self.trees for proc in tree]

    @staticmethod
    def _cpu(procs: Sequence[Any]) -> float:
        total = 0.0
        for proc in procs:
            times = proc.cpu_times()
            total += times.user + times.system
        return total

    def cpu_seconds(self) -> float:
        return self._cpu(self.procs)

    def cpu_seconds_each(self) -> list[float]:
        """CPU seconds of each root's tree, in the order the pids were given."""
        return [self._cpu(tree) for tree in self.trees]

    def rss_bytes(self) -> int:
        return sum(proc.memory_info().rss for proc in self.procs)


async def redis_field(port: int | None, section: str, name: str) -> int | None:
    """One integer field of Redis's ``INFO section`` (None without ``--redis-port``)."""
    if port is None:
        return None
    fields = await trio.to_thread.run_sync(redis_probe.info, port, section)
    return int(fields[name])


async def redis_command_calls(port: int | None) -> dict[str, int] | None:
    """Calls of each command so far, from Redis's ``INFO commandstats`` (None without ``--redis-port``).

    Commands a script runs count as well (the route script's ``GET`` and
    ``PUBLISH``), so a lookup shows as its ``GET``.
    """
    if port is None:
        return None
    fields = await trio.to_thread.run_sync(redis_probe.info, port, "commandstats")
    calls = {}
    for name, value in fields.items():
        stats = dict(part.partition("=")[::2] for part in value.split(","))
        calls[name.removeprefix("cmdstat_")] = int(stats.get("calls", 0))
    return calls


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_nofile_limit() -> int:
    """Raise the soft open-files limit to the hard one; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# -- HTTP/1.1, the minimum ------------------------------------------------------------------------
async def _send_all(sock: trio.socket.SocketType, data: bytes) -> None:
    view = memoryview(data)
    while view:
        sent = await sock.send(view)
        view = view[sent:]


async def _connect(port: int) -> trio.socket.SocketType:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    try:
        sock.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
        await sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(slots=True)
class Head:
    status: int
    content_length: int | None
    chunked: bool
    close: bool
    content_type: bytes = b""
    session_id: bytes = b""


def _parse_head(head: bytes) -> Head:
    if not head.startswith(b"HTTP/1.1 ") and not head.startswith(b"HTTP/1.0 "):
        raise ProtocolFailure(f"not an HTTP response: {head[:40]!r}")
    status = int(head[9:12])
    content_length: int | None = None
    chunked = False
    close = head.startswith(b"HTTP/1.0")
    content_type = session_id = b""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            content_length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = value.strip().lower() == b"close"
        elif name == b"content-type":
            content_type = value.strip().lower()
        elif name == b"mcp-session-id":
            session_id = value.strip()
    return Head(status, content_length, chunked, close, content_type, session_id)


class PostConnection:
    """One HTTP/1.1 connection for requests: kept alive, or one request each (``short``)."""

    __slots__ = ("_buf", "_prefix", "_sock", "port", "reconnects", "requests", "short")

    def __init__(self, port: int, *, short: bool) -> None:
        self.port = port
        self.short = short
        self._sock: trio.socket.SocketType | None = None
        self._buf = bytearray()
        self.requests = 0
        self.reconnects = 0
        self._prefix = b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n%s" % (
            port,
            b"Connection: close\r\n" if short else b"",
        )

    async def post(self, path: bytes, body: bytes, headers: bytes = b"") -> tuple[int, bytes]:
        """POST ``body``; the status and the whole response body."""
        head = await self.send(b"POST", path, body, headers)
        return head.status, await self.read_body(head)

    async def send(self, method: bytes, path: bytes, body: bytes, headers: bytes = b"") -> Head:
        """Send one request (``headers``: extra CRLF-terminated lines); read the response head.

        The caller then reads the body (:meth:`read_body`, or the connection's
        buffer and socket for a stream) and calls :meth:`done`.
        """
        if self._sock is None:
            if self.requests:
                self.reconnects += 1
            self._sock = await _connect(self.port)
            self._buf.clear()
        sock = self._sock
        self.requests += 1
        request = method + b" " + path + self._prefix + headers + b"Content-Length: %d\r\n\r\n" % len(body)
        try:
            if len(body) < 65536:
                await _send_all(sock, request + body)
            else:
                await _send_all(sock, request)
                await _send_all(sock, body)
            return _parse_head(await self._read_until(b"\r\n\r\n"))
        except BaseException:
            self.close()
            raise

    async def read_body(self, head: Head) -> bytes:
        try:
            if head.chunked:
                payload = await self._read_chunked()
            else:
                payload = await self._read_exactly(head.content_length or 0)
        except BaseException:
            self.close()
            raise
        self.done(head)
        return payload

    def done(self, head: Head) -> None:
        """The response has been read to its end: keep the connection or close it."""
        if head.close or self.short:
            self.close()

    async def read_event_stream(self, head: Head, on_event: Callable[[bytes, bytes], None]) -> None:
        """Read a ``text/event-stream`` body to its end, handing each event to ``on_event``."""
        parser = StreamParser()
        try:
            if not head.chunked:
                if head.content_length is None:
                    raise ProtocolFailure("event stream neither chunked nor of a declared length")
                events = parser.split(await self._read_exactly(head.content_length) + b"\n\n")
                for name, data in events:
                    on_event(name, data)
            else:
                assert self._sock is not None
                events = parser.feed(bytes(self._buf))
                self._buf.clear()
                while True:
                    for name, data in events:
                        on_event(name, data)
                    if parser.ended and (rest := parser.rest()) is not None:
                        self._buf += rest
                        break
                    data = await self._sock.recv(RECV_SIZE)
                    if not data:
                        raise ProtocolFailure("connection closed by the server mid-stream")
                    events = parser.feed(data)
        except BaseException:
            self.close()
            raise
        self.done(head)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _fill(self) -> None:
        assert self._sock is not None
        data = await self._sock.recv(RECV_SIZE)
        if not data:
            raise ProtocolFailure("connection closed by the server mid-response")
        self._buf += data

    async def _read_until(self, marker: bytes) -> bytes:
        while (end := self._buf.find(marker)) < 0:
            await self._fill()
        line = bytes(self._buf[:end])
        del self._buf[: end + len(marker)]
        return line

    async def _read_exactly(self, size: int) -> bytes:
        while len(self._buf) < size:
            await self._fill()
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    async def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size = int((await self._read_until(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._read_until(b"\r\n")
                return b"".join(parts)
            parts.append(await self._read_exactly(size))
            await self._read_until(b"\r\n")


def calls_connection(posts: PostConnection, call_port: int | None) -> PostConnection:
    """The connection for a session's requests once it is open: ``posts``, or one to ``call_port``.

    ``--call-port`` sends every request after the handshake to another server
    than the one that opened the session: with two processes sharing a broker,
    every such request is then forwarded to the session's owner.
    """
    if call_port is None or call_port == posts.port:
        return posts
    posts.close()
    return PostConnection(call_port, short=posts.short)


class StreamParser:
    """De-chunk an event-stream response body and split it into ``(event, data)`` pairs.

    Only what this benchmark needs of SSE: ``event`` and ``data`` fields,
    comments skipped, CRLF or LF line ends.
    """

    __slots__ = ("_need", "_raw", "_sse", "ended")

    def __init__(self) -> None:
        self._raw = bytearray()
        self._sse = b""
        self._need = 0  # bytes of the current chunk still expected, 0 = at a size line
        self.ended = False

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        raw = self._raw
        raw += data
        decoded = []
        while True:
            if self._need == 0:
                end = raw.find(b"\r\n")
                if end < 0:
                    break
                size = int(raw[:end].split(b";")[0], 16)
                if size == 0:
                    self.ended = True
                    break
                del raw[: end + 2]
                self._need = size + 2  # the chunk and its CRLF
            if len(raw) < self._need:
                break
            decoded.append(bytes(raw[: self._need - 2]))
            del raw[: self._need]
            self._need = 0
        if not decoded:
            return []
        return self.split(decoded[0] if len(decoded) == 1 else b"".join(decoded))

    def rest(self) -> bytes | None:
        """Once ``ended``: the bytes after the body's last chunk, or None while it is incomplete."""
        end = self._raw.find(b"\r\n\r\n")  # the "0" size line, no trailers, the final CRLF
        return None if end < 0 else bytes(self._raw[end + 4 :])

    def split(self, decoded: bytes) -> list[tuple[bytes, bytes]]:
        """Split de-chunked event-stream bytes into the events they complete."""
        text = self._sse + decoded
        if b"\r" in text:
            text = text.replace(b"\r\n", b"\n")
        events = []
        start = 0
        while (end := text.find(b"\n\n", start)) >= 0:
            block = text[start:end]
            start = end + 2
            event = b"message"
            data_lines = []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    data_lines.append(line[6:] if line[5:6] == b" " else line[5:])
                elif line.startswith(b"event:"):
                    event = line[6:].strip()
            if data_lines:
                events.append((event, data_lines[0] if len(data_lines) == 1 else b"\n".join(data_lines)))
        self._sse = text[start:]
        return events


# -- one MCP session ------------------------------------------------------------------------------
class Waiter:
    __slots__ = ("done", "event", "message")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.message: dict[str, Any] | None = None
        self.done = 0.0


class Session:
    """One MCP session: its SSE stream (read by its own task) and a POST connection."""

    def __init__(
        self, port: int, errors: Errors, *, short_posts: bool, timeout: float, call_port: int | None = None
    ) -> None:
        self.port = port
        self.call_port = call_port
        self.errors = errors
        self.timeout = timeout
        self.posts = PostConnection(port, short=short_posts)
        self.endpoint = b""
        self.pending: dict[int, Waiter] = {}
        self.next_id = 0
        self.alive = False
        self._sock: trio.socket.SocketType | None = None
        self._parser = StreamParser()

    async def open(self, nursery: trio.Nursery) -> None:
        """Open the stream, learn the endpoint, initialize; bounded by ``timeout``."""
        with trio.fail_after(self.timeout):
            self._sock = sock = await _connect(self.port)
            await _send_all(
                sock,
                b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n"
                b"Cache-Control: no-cache\r\n\r\n" % self.port,
            )
            buf = b""
            while (end := buf.find(b"\r\n\r\n")) < 0:
                data = await sock.recv(RECV_SIZE)
                if not data:
                    raise ProtocolFailure("stream closed before the response head")
                buf += data
            head = _parse_head(buf[:end])
            if head.status != 200 or not head.chunked:
                raise ProtocolFailure(f"GET /sse answered {head.status} (chunked={head.chunked})")
            events = self._parser.feed(buf[end + 4 :])
            while not events:
                data = await sock.recv(RECV_SIZE)
                if not data:
                    raise ProtocolFailure("stream closed before the endpoint event")
                events = self._parser.feed(data)
            name, data = events[0]
            if name != b"endpoint" or not data.startswith(b"/"):
                raise ProtocolFailure(f"first event was not a relative endpoint: {name!r} {data[:80]!r}")
            self.endpoint = data
            self.alive = True
            nursery.start_soon(self._read_stream, events[1:])
            result = await self.request(
                "initialize",
                {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "trio-mcp-sse-bench", "version": "1"},
                },
            )
            if "protocolVersion" not in result:
                raise ProtocolFailure(f"initialize result without protocolVersion: {result!r:.200}")
            await self.notify("notifications/initialized")
        self.posts = calls_connection(self.posts, self.call_port)

    async def _read_stream(self, early: list[tuple[bytes, bytes]]) -> None:
        assert self._sock is not None
        sock = self._sock
        parser = self._parser
        pending = self.pending
        try:
            events = early
            while True:
                for name, data in events:
                    if name != b"message":
                        continue
                    message = orjson.loads(data)
                    waiter = pending.pop(message.get("id"), None)
                    if waiter is None:
                        self.errors.add("unmatched message", data[:200].decode(errors="replace"))
                        continue
                    waiter.done = time.perf_counter()
                    waiter.message = message
                    waiter.event.set()
                if parser.ended:
                    break
                data = await sock.recv(RECV_SIZE)
                if not data:
                    break
                events = parser.feed(data)
        except (OSError, trio.ClosedResourceError):
            pass
        finally:
            self.alive = False
            for waiter in pending.values():
                waiter.event.set()  # message stays None: the caller counts the loss
            pending.clear()

    async def notify(self, method: str) -> None:
        body = orjson.dumps({"jsonrpc": "2.0", "method": method})
        status, payload = await self.posts.post(self.endpoint, body)
        if status != 202:
            raise ProtocolFailure(f"POST {method} answered {status}: {payload[:100]!r}")

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send one request; return its ``result`` (bounded by the caller's deadline)."""
        waiter = await self.start_request(method, params)
        return await self.finish_request(waiter)

    async def start_request(self, method: str, params: dict[str, Any]) -> Waiter:
        if not self.alive:
            raise ProtocolFailure("stream is closed")
        self.next_id += 1
        request_id = self.next_id
        waiter = Waiter()
        self.pending[request_id] = waiter
        body = orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        status, payload = await self.posts.post(self.endpoint, body)
        if status != 202:
            self.pending.pop(request_id, None)
            raise ProtocolFailure(f"POST {method} answered {status}: {payload[:100]!r}")
        return waiter

    @staticmethod
    async def finish_request(waiter: Waiter) -> dict[str, Any]:
        await waiter.event.wait()
        message = waiter.message
        if message is None:
            raise ProtocolFailure("stream ended before the response arrived")
        if "error" in message:
            raise ProtocolFailure(f"JSON-RPC error: {message['error']!r:.200}")
        result: dict[str, Any] = message["result"]
        return result

    async def end(self) -> None:
        """End the session the way an HTTP+SSE client does: close its stream."""
        self.close()

    def close(self) -> None:
        self.alive = False
        self.posts.close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class StreamableSession:
    """One Streamable HTTP session: every message is a POST to one endpoint.

    The same interface as :class:`Session`, so every scenario runs unchanged.
    A request's answer arrives on its own POST, either as an ``application/json``
    body or as a ``text/event-stream`` body whose events end with the response;
    both are accepted, whichever the server picks.  A request is finished when
    its response has been read *and* its response body has ended, since the
    keep-alive connection carries the next request only then; its latency ends
    when the response message is read (as for HTTP+SSE, where it ends at the
    response event).  No standalone ``GET`` stream is opened: the client needs
    none to call tools, and an idle session then holds no connection.
    """

    def __init__(
        self, port: int, errors: Errors, *, short_posts: bool, timeout: float, path: bytes, call_port: int | None = None
    ) -> None:
        self.errors = errors
        self.timeout = timeout
        self.path = path
        self.call_port = call_port
        self.posts = PostConnection(port, short=short_posts)
        self.next_id = 0
        self.alive = False
        self.json_responses = 0
        self.stream_responses = 0
        self.stream_tail_s = 0.0
        """Time from reading a response event to the end of its stream, summed."""
        self._headers = b"Accept: application/json, text/event-stream\r\n"

    async def open(self, nursery: trio.Nursery) -> None:
        """Initialize (learning the session id), then notify; bounded by ``timeout``."""
        del nursery  # no reader task: every answer comes back on its own POST
        with trio.fail_after(self.timeout):
            self.alive = True
            waiter = await self.start_request(
                "initialize",
                {
                    "protocolVersion": STREAMABLE_PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "trio-mcp-sse-bench", "version": "1"},
                },
            )
            result = await self.finish_request(waiter)
            version = result.get("protocolVersion")
            if not isinstance(version, str):
                raise ProtocolFailure(f"initialize result without protocolVersion: {result!r:.200}")
            self._headers += b"MCP-Protocol-Version: " + version.encode() + b"\r\n"
            await self.notify("notifications/initialized")
        self.posts = calls_connection(self.posts, self.call_port)

    async def notify(self, method: str) -> None:
        body = orjson.dumps({"jsonrpc": "2.0", "method": method})
        status, payload = await self.posts.post(self.path, body, self._headers)
        if status != 202:
            raise ProtocolFailure(f"POST {method} answered {status}: {payload[:100]!r}")

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self.finish_request(await self.start_request(method, params))

    async def start_request(self, method: str, params: dict[str, Any]) -> Waiter:
        """POST one request and read its answer: the returned waiter is already set."""
        if not self.alive:
            raise ProtocolFailure("session has ended")
        self.next_id += 1
        request_id = self.next_id
        waiter = Waiter()
        body = orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        posts = self.posts
        try:
            head = await posts.send(b"POST", self.path, body, self._headers)
            if head.status != 200:
                payload = await posts.read_body(head)
                raise ProtocolFailure(f"POST {method} answered {head.status}: {payload[:100]!r}")
            if method == "initialize" and head.session_id:  # none from a stateless server
                self._headers += b"Mcp-Session-Id: " + head.session_id + b"\r\n"
            if head.content_type.startswith(b"application/json"):
                waiter.message = orjson.loads(await posts.read_body(head))
                waiter.done = time.perf_counter()
                self.json_responses += 1
            elif head.content_type.startswith(b"text/event-stream"):

                def on_event(name: bytes, data: bytes) -> None:
                    if name != b"message" or not data:
                        return  # e.g. a priming event: an id and empty data
                    message = orjson.loads(data)
                    if message.get("id") == request_id and "method" not in message:
                        waiter.message = message
                        waiter.done = time.perf_counter()

                await posts.read_event_stream(head, on_event)
                self.stream_responses += 1
                if waiter.message is not None:
                    self.stream_tail_s += time.perf_counter() - waiter.done
            else:
                await posts.read_body(head)
                raise ProtocolFailure(f"POST {method} answered with Content-Type {head.content_type!r}")
        except ValueError as error:  # a body or an event that is not JSON
            self.alive = False
            posts.close()
            raise ProtocolFailure(f"POST {method}: undecodable answer: {error}") from None
        except BaseException:
            self.alive = False
            raise
        if waiter.message is None or waiter.message.get("id") != request_id:
            raise ProtocolFailure(f"POST {method}: the response did not carry request id {request_id}")
        waiter.event.set()
        return waiter

    finish_request = staticmethod(Session.finish_request)

    async def end(self) -> None:
        """``DELETE`` the session (405 is a server's allowed refusal), then close the connection."""
        try:
            if self.alive and b"Mcp-Session-Id" in self._headers:
                with trio.fail_after(self.timeout):
                    head = await self.posts.send(b"DELETE", self.path, b"", self._headers)
                    payload = await self.posts.read_body(head)
                if head.status not in (200, 202, 204, 405):
                    raise ProtocolFailure(f"DELETE answered {head.status}: {payload[:100]!r}")
        finally:
            self.close()

    def close(self) -> None:
        self.alive = False
        self.posts.close()


def check_echo(result: dict[str, Any], text: str) -> None:
    content = result.get("content")
    if result.get("isError") or not content or content[0].get("text") != text:
        raise ProtocolFailure(f"echo returned something else: {str(result)[:200]}")


async def guarded(errors: Errors, kind: str, fn: Callable[[], Any]) -> bool:
    """Run one client step; count (never raise) what goes wrong."""
    try:
        await fn()
    except trio.TooSlowError:
        errors.add(f"{kind}: timeout")
        return False
    except ProtocolFailure as failure:
        errors.add(f"{kind}: protocol", str(failure))
        return False
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as failure:
        errors.add(f"{kind}: {type(failure).__name__}", str(failure))
        return False
    return True


AnySession = Session | StreamableSession


def new_session(args: argparse.Namespace, errors: Errors, *, short_posts: bool) -> AnySession:
    """A client session of the transport under test (``--transport``)."""
    if args.transport == "streamable":
        return StreamableSession(
            args.port, errors, short_posts=short_posts, timeout=args.timeout, path=args.path.encode(),
            call_port=args.call_port,
        )  # fmt: skip
    return Session(args.port, errors, short_posts=short_posts, timeout=args.timeout, call_port=args.call_port)


async def open_sessions(
    nursery: trio.Nursery,
    args: argparse.Namespace,
    count: int,
    errors: Errors,
    *,
    short_posts: bool,
    parallel: int,
) -> list[AnySession]:
    """Open ``count`` initialized sessions, at most ``parallel`` handshakes at a time."""
    opened: list[AnySession] = []
    limit = trio.Semaphore(parallel)

    async def one() -> None:
        async with limit:
            session = new_session(args, errors, short_posts=short_posts)
            if await guarded(errors, "session setup", lambda: session.open(nursery)):
                opened.append(session)
            else:
                session.close()

    async with trio.open_nursery() as setup:
        for _ in range(count):
            setup.start_soon(one)
    return opened


async def end_sessions(sessions: list[AnySession], errors: Errors, *, parallel: int) -> None:
    """End every session (Streamable HTTP: ``DELETE``), at most ``parallel`` at a time."""
    limit = trio.Semaphore(parallel)

    async def one(session: AnySession) -> None:
        async with limit:
            await guarded(errors, "session end", session.end)

    async with trio.open_nursery() as ending:
        for session in sessions:
            ending.start_soon(one, session)


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


# -- scenarios -------------------------------------------------------------------------------------
@dataclass
class Window:
    start: float = math.inf
    end: float = math.inf
    latencies: list[float] = field(default_factory=list)


async def scenario_throughput(args: argparse.Namespace, server: ServerProcess, errors: Errors) -> dict[str, Any]:
    """``sessions`` closed-loop callers, each with its own keep-alive POST connection."""
    window = Window()
    calls_total = 0
    broker = ServerProcess([args.broker_pid]) if args.broker_pid else None
    async with trio.open_nursery() as nursery:
        sessions = await open_sessions(nursery, args, args.sessions, errors, short_posts=False, parallel=50)
        stop = False

        async def caller(session: AnySession, index: int) -> None:
            nonlocal calls_total
            text = f"hello from session {index:05d}"
            params = {"name": "echo", "arguments": {"text": text}}
            latencies = window.latencies
            while not stop:

                async def call() -> None:
                    with trio.fail_after(args.timeout):
                        started = time.perf_counter()
                        waiter = await session.start_request("tools/call", params)
                        result = await session.finish_request(waiter)
                    check_echo(result, text)
                    if window.start <= started and waiter.done <= window.end:
                        latencies.append(waiter.done - started)

                if not await guarded(errors, "tools/call", call):
                    return
                calls_total += 1

        async with trio.open_nursery() as callers:
            for index, session in enumerate(sessions):
                callers.start_soon(caller, session, index)
            await trio.sleep(args.warmup)
            commands0 = await redis_field(args.redis_port, "stats", "total_commands_processed")
            by_name0 = await redis_command_calls(args.redis_port)
            broker0 = broker.cpu_seconds() if broker else 0.0
            each0, client0 = server.cpu_seconds_each(), client_cpu_seconds()
            window.start = time.perf_counter()
            await trio.sleep(args.duration)
            window.end = time.perf_counter()
            each1, client1 = server.cpu_seconds_each(), client_cpu_seconds()
            broker1 = broker.cpu_seconds() if broker else 0.0
            by_name1 = await redis_command_calls(args.redis_port)
            commands1 = await redis_field(args.redis_port, "stats", "total_commands_processed")
            stop = True
        reconnects = sum(session.posts.reconnects for session in sessions)
        await end_sessions(sessions, errors, parallel=50)
        nursery.cancel_scope.cancel()
    elapsed = window.end - window.start
    latencies = sorted(window.latencies)
    completed = len(latencies)
    cpu0, cpu1 = sum(each0), sum(each1)
    extra: dict[str, Any] = {}
    if len(each0) > 1:
        extra["server_cpu_per_call_us_each"] = [
            (after - before) / completed * 1e6 if completed else math.nan for before, after in zip(each0, each1, strict=True)
        ]
    if broker:
        extra["broker_cpu_s"] = broker1 - broker0
        extra["broker_cpu_per_call_us"] = (broker1 - broker0) / completed * 1e6 if completed else math.nan
    if commands0 is not None and commands1 is not None:
        # The probe's own INFO is one of them; the workers' heartbeats are the others not caused by calls.
        extra["redis_commands"] = commands1 - commands0
        extra["redis_commands_per_call"] = (commands1 - commands0) / completed if completed else math.nan
    if by_name0 is not None and by_name1 is not None:
        # Per command: what forwarding costs (PUBLISH; GET, the route script's lookup) apart from the
        # rest, which comes with time, not with calls (heartbeats, refreshes, keep-alive PINGs, INFO).
        delta = {name: count - by_name0.get(name, 0) for name, count in by_name1.items() if count != by_name0.get(name, 0)}
        extra["redis_command_calls"] = delta
        extra["redis_publish_per_call"] = delta.get("publish", 0) / completed if completed else math.nan
        extra["redis_lookups_per_call"] = delta.get("get", 0) / completed if completed else math.nan
        others = sum(delta.values()) - delta.get("publish", 0) - 2 * delta.get("get", 0)  # a lookup: EVALSHA + GET
        extra["redis_other_commands_per_s"] = others / elapsed if elapsed else math.nan
    return {
        "sessions": len(sessions),
        "calls": completed,
        "calls_total": calls_total,
        "seconds": elapsed,
        "calls_per_s": completed / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "server_cpu_s": cpu1 - cpu0,
        "server_cpu_per_call_us": (cpu1 - cpu0) / completed * 1e6 if completed else math.nan,
        "client_cpu_per_call_us": (client1 - client0) / completed * 1e6 if completed else math.nan,
        "server_cpu_utilisation": (cpu1 - cpu0) / elapsed,
        "client_cpu_utilisation": (client1 - client0) / elapsed,
        "post_reconnects": reconnects,
        **extra,
        **response_kinds(sessions),
    }


async def scenario_idle(args: argparse.Namespace, server: ServerProcess, errors: Errors) -> dict[str, Any]:
    """Hold ``sessions`` initialized, idle SSE streams; then every one answers one call."""
    # Warm-up: the first sessions pay one-time costs (lazy imports, caches, pools)
    # that would otherwise be spread over N and inflate the per-session figure.
    async with trio.open_nursery() as nursery:
        warm = await open_sessions(nursery, args, 20, errors, short_posts=True, parallel=20)
        for session in warm:

            async def call(session: AnySession = session) -> None:
                with trio.fail_after(args.timeout):
                    result = await session.request("tools/call", {"name": "echo", "arguments": {"text": "w"}})
                check_echo(result, "w")

            await guarded(errors, "warm-up call", call)
        await end_sessions(warm, errors, parallel=20)
        nursery.cancel_scope.cancel()
    await trio.sleep(args.idle_settle)
    redis0 = await redis_field(args.redis_port, "memory", "used_memory")
    rss0 = server.rss_bytes()
    cpu0, client0 = server.cpu_seconds(), client_cpu_seconds()
    async with trio.open_nursery() as nursery:
        started = time.perf_counter()
        sessions = await open_sessions(nursery, args, args.sessions, errors, short_posts=True, parallel=args.parallel)
        setup_s = time.perf_counter() - started
        setup_cpu = server.cpu_seconds() - cpu0
        setup_client_cpu = client_cpu_seconds() - client0
        await trio.sleep(args.settle)
        rss1 = server.rss_bytes()
        redis1 = await redis_field(args.redis_port, "memory", "used_memory")
        redis_keys = await trio.to_thread.run_sync(redis_probe.query, args.redis_port, "DBSIZE") if args.redis_port else None
        answered = 0
        limit = trio.Semaphore(args.parallel)

        async def call_once(session: AnySession, index: int) -> None:
            nonlocal answered
            text = f"still here {index}"

            async def call() -> None:
                with trio.fail_after(args.timeout):
                    result = await session.request("tools/call", {"name": "echo", "arguments": {"text": text}})
                check_echo(result, text)

            async with limit:
                ok = await guarded(errors, "tools/call after idle", call)
            if ok:
                answered += 1

        started = time.perf_counter()
        async with trio.open_nursery() as callers:
            for index, session in enumerate(sessions):
                callers.start_soon(call_once, session, index)
        call_all_s = time.perf_counter() - started
        still_open = sum(session.alive for session in sessions)
        rss2 = server.rss_bytes()
        await end_sessions(sessions, errors, parallel=args.parallel)
        nursery.cancel_scope.cancel()
    opened = len(sessions)
    extra: dict[str, Any] = {}
    if redis0 is not None and redis1 is not None:
        extra["redis_used_memory_before"] = redis0
        extra["redis_used_memory_idle"] = redis1
        extra["redis_keys_idle"] = redis_keys
        extra["redis_bytes_per_session"] = (redis1 - redis0) / opened if opened else math.nan
    return {
        "sessions_requested": args.sessions,
        "sessions": opened,
        "answered": answered,
        "still_open": still_open,
        "setup_s": setup_s,
        "setup_per_s": opened / setup_s if setup_s else math.nan,
        "setup_server_cpu_per_session_us": setup_cpu / opened * 1e6 if opened else math.nan,
        "setup_server_cpu_utilisation": setup_cpu / setup_s if setup_s else math.nan,
        "setup_client_cpu_utilisation": setup_client_cpu / setup_s if setup_s else math.nan,
        "call_all_s": call_all_s,
        "rss_base_mb": rss0 / 2**20,
        "rss_idle_mb": rss1 / 2**20,
        "rss_after_calls_mb": rss2 / 2**20,
        "rss_per_session_kb": (rss1 - rss0) / opened / 1024 if opened else math.nan,
        **extra,
        **response_kinds(sessions),
    }


async def scenario_payload(args: argparse.Namespace, server: ServerProcess, errors: Errors) -> dict[str, Any]:
    """Round trips of one large ``echo`` argument, one at a time on one session."""
    text = "x" * args.size
    times: list[float] = []
    cpu = 0.0
    async with trio.open_nursery() as nursery:
        sessions = await open_sessions(nursery, args, 1, errors, short_posts=False, parallel=1)
        for session in sessions:
            for attempt in range(args.warmup_rounds + args.rounds):
                measured = attempt >= args.warmup_rounds

                async def call(session: AnySession = session, measured: bool = measured) -> None:
                    nonlocal cpu
                    cpu0 = server.cpu_seconds()
                    with trio.fail_after(args.timeout):
                        started = time.perf_counter()
                        result = await session.request("tools/call", {"name": "echo", "arguments": {"text": text}})
                        elapsed = time.perf_counter() - started
                    check_echo(result, text)
                    if measured:
                        times.append(elapsed)
                        cpu += server.cpu_seconds() - cpu0

                await guarded(errors, "large tools/call", call)
        await end_sessions(sessions, errors, parallel=1)
        nursery.cancel_scope.cancel()
    times.sort()
    return {
        "size_bytes": args.size,
        "rounds": len(times),
        "median_ms": percentile(times, 0.5) * 1e3,
        "max_ms": (times[-1] if times else math.nan) * 1e3,
        "server_cpu_per_call_ms": cpu / len(times) * 1e3 if times else math.nan,
    }


def response_kinds(sessions: list[AnySession]) -> dict[str, float]:
    """Streamable HTTP: how many answers came as a JSON body and how many as an event stream."""
    streamable = [session for session in sessions if isinstance(session, StreamableSession)]
    if not streamable:
        return {}
    streams = sum(session.stream_responses for session in streamable)
    tail = sum(session.stream_tail_s for session in streamable)
    return {
        "json_responses": sum(session.json_responses for session in streamable),
        "stream_responses": streams,
        # The connection is busy until the stream ends, after the response was read.
        "stream_tail_mean_ms": tail / streams * 1e3 if streams else math.nan,
    }


SCENARIOS = {"throughput": scenario_throughput, "idle": scenario_idle, "payload": scenario_payload}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__.split("\n")[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--transport", choices=("sse", "streamable"), default="sse")
    parser.add_argument("--path", default="/mcp", help="streamable: the MCP endpoint")
    parser.add_argument(
        "--server-pid", type=int, action="append", required=True,
        help="root pid of the server's process tree (repeatable: a server of several process trees)",
    )  # fmt: skip
    parser.add_argument(
        "--call-port", type=int, help="send each session's requests after its handshake to this port (default --port)"
    )
    parser.add_argument("--broker-pid", type=int, help="throughput: a broker process (redis-server) whose CPU is reported apart")
    parser.add_argument(
        "--redis-port", type=int, help="read Redis's command count (throughput) and used_memory (idle) at the window's edges"
    )
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=2.0, help="throughput: seconds before the window")
    parser.add_argument("--duration", type=float, default=8.0, help="throughput: measured seconds")
    parser.add_argument("--parallel", type=int, default=100, help="idle: handshakes / calls in flight")
    parser.add_argument("--settle", type=float, default=1.0, help="idle: seconds before reading RSS")
    parser.add_argument(
        "--idle-settle", type=float, default=1.0, help="idle: seconds after the warm-up sessions end, before the first reading"
    )
    parser.add_argument("--size", type=int, default=4 * 1024 * 1024, help="payload: argument length")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup-rounds", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=30.0, help="bound on every single client step")
    args = parser.parse_args(argv)
    nofile = raise_nofile_limit()
    server = ServerProcess(args.server_pid)
    errors = Errors()
    result = trio.run(SCENARIOS[args.scenario], args, server, errors)
    result["errors"] = errors.total
    result["error_kinds"] = {kind: [count, errors.examples.get(kind, "")] for kind, count in errors.counts.items()}
    result["client_nofile"] = nofile
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
