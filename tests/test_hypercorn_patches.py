"""``serve``'s hypercorn patches: the same answers on the wire as stock hypercorn, and a safe fallback.

Every behaviour test runs ``serve`` in-process on 127.0.0.1:0 (real sockets,
real clock, an absolute ``fail_after``) once with hypercorn's own code and once
per patch, and asserts exact bytes: so the patched server must answer exactly
what the stock one does.
"""

from __future__ import annotations

import dataclasses
import email.utils
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypercorn
import hypercorn.config
import pytest
import trio
from hypercorn.config import Config
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.tcp_server import TCPServer

from trio_mcp_sse import _hypercorn_patches
from trio_mcp_sse._hypercorn_internals import SUPPORTED_HYPERCORN
from trio_mcp_sse._hypercorn_patches import (
    PATCHES,
    TESTED_HYPERCORN_SERIES,
    KeepAliveDeadline,
    hypercorn_patches,
    patch_problem,
)
from trio_mcp_sse._llhttp import LlhttpConnection
from trio_mcp_sse._serve import ServeOptions, _parse, serve

from .e2e_support import open_sse, post_json, read_until, running_server, task_count

NAMES = [patch.name for patch in PATCHES]
VARIANTS = ["stock", *NAMES, "all", "llhttp"]
"""hypercorn's own h11 path, each patch alone, all of them, and serve's default: llhttp (``_llhttp``)."""
LARGE = bytes(range(256)) * 4096  # 1 MiB


# -- the application: one path per kind of response ---------------------------------------------
@dataclass
class AppState:
    release: trio.Event = field(default_factory=trio.Event)
    disconnected: trio.Event = field(default_factory=trio.Event)
    slow_requests: trio.Semaphore = field(default_factory=lambda: trio.Semaphore(0))
    """Released once per ``/slow`` request that reached the application."""


def make_app(state: AppState) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]

        async def start(status: int = 200, *headers: tuple[bytes, bytes]) -> None:
            await send({"type": "http.response.start", "status": status, "headers": list(headers)})

        if path == "/small":
            await start(200, (b"content-length", b"5"), (b"content-type", b"text/plain"))
            await send({"type": "http.response.body", "body": b"hello"})
        elif path == "/accepted":
            await start(202, (b"content-length", b"0"))
            await send({"type": "http.response.body", "body": b""})
        elif path == "/large":
            await start(200, (b"content-length", str(len(LARGE)).encode()))
            await send({"type": "http.response.body", "body": LARGE})
        elif path == "/chunked":
            await start(200)
            await send({"type": "http.response.body", "body": b"ab", "more_body": True})
            await send({"type": "http.response.body", "body": b"cd"})
        elif path == "/stream":
            await start(200, (b"content-type", b"text/event-stream"))
            await send({"type": "http.response.body", "body": b"data: first\n\n", "more_body": True})
            await state.release.wait()
            await send({"type": "http.response.body", "body": b"data: second\n\n"})
        elif path == "/slow":
            state.slow_requests.release()
            await state.release.wait()
            await start(200, (b"content-length", b"4"))
            await send({"type": "http.response.body", "body": b"done"})
        elif path == "/headless":  # ends without a body: the head is all the client gets
            await start(200)
        elif path == "/hold":
            await start(200, (b"content-type", b"text/event-stream"))
            await send({"type": "http.response.body", "body": b": open\n\n", "more_body": True})
            while (await receive())["type"] != "http.disconnect":
                pass
            state.disconnected.set()

    return app


# -- serving, with a chosen set of patches --------------------------------------------------------
@dataclass
class Served:
    port: int
    state: AppState
    applied: list[str]
    done: trio.Event


@asynccontextmanager
async def served(variant: str, monkeypatch: pytest.MonkeyPatch, **config_values: Any) -> AsyncIterator[Served]:
    """``serve`` with ``variant``'s patches (``stock``: none) on a free port; stopped on exit."""
    if variant not in ("stock", "all", "llhttp"):
        monkeypatch.setattr(_hypercorn_patches, "PATCHES", tuple(p for p in PATCHES if p.name == variant))
    state = AppState()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 30  # a connection that does not end by itself would show as a hang
    for name, value in config_values.items():
        setattr(config, name, value)
    sockets = config.create_sockets()
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)
    options = ServeOptions(
        drain_timeout=1,
        gc_threshold=None,
        hypercorn_patches=variant != "stock",
        http_parser="llhttp" if variant == "llhttp" else "h11",
    )
    done = trio.Event()
    try:
        async with trio.open_nursery() as nursery:

            async def run(task_status: trio.TaskStatus[list[str]]) -> None:
                await serve(make_app(state), config, options, sockets=sockets, task_status=task_status)
                done.set()

            binds: list[str] = await nursery.start(run)
            port = int(binds[0].rsplit(":", 1)[1])
            yield Served(port, state, sorted(_hypercorn_patches._active), done)
            nursery.cancel_scope.cancel()
    finally:
        for sock in sockets.insecure_sockets:
            sock.close()
    assert not _hypercorn_patches._active  # undone once serve returned


def expected_applied(variant: str) -> list[str]:
    return [] if variant == "stock" else sorted(NAMES if variant in ("all", "llhttp") else [variant])


# -- a small HTTP/1.1 client that keeps the exact bytes ---------------------------------------------
class Connection:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, *requests: str) -> None:
        await self.stream.send_all("".join(requests).encode())

    async def _fill(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise EOFError(bytes(self.buffer))
        self.buffer += chunk

    async def _until(self, marker: bytes, start: int = 0) -> int:
        while (index := self.buffer.find(marker, start)) < 0:
            await self._fill()
        return index + len(marker)

    async def _at_least(self, size: int) -> None:
        while len(self.buffer) < size:
            await self._fill()

    async def response(self, method: str = "GET") -> bytes:
        """One whole response, its Date value replaced by ``<date>``."""
        end = await self._until(b"\r\n\r\n")
        head = bytes(self.buffer[:end]).lower()
        length = re.search(rb"\r\ncontent-length: (\d+)", head)
        if method == "HEAD":
            pass
        elif length:
            end += int(length.group(1))
            await self._at_least(end)
        elif b"transfer-encoding: chunked" in head:
            while True:
                line_end = await self._until(b"\r\n", end)
                size = int(self.buffer[end : line_end - 2], 16)
                end = line_end + size + 2
                await self._at_least(end)
                if size == 0:
                    break
        raw = bytes(self.buffer[:end])
        del self.buffer[:end]
        return re.sub(rb"\r\ndate: [^\r]*", b"\r\ndate: <date>", raw)

    async def closed_by_server(self) -> bool:
        """Read to the end: True when the server closed the connection with nothing more to say."""
        try:
            while True:
                await self._fill()
        except EOFError:
            return not self.buffer
        except trio.BrokenResourceError:
            return not self.buffer


def get(path: str, method: str = "GET") -> str:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


TAIL = b"date: <date>\r\nserver: hypercorn-h11\r\n"
SMALL = b"HTTP/1.1 200 \r\ncontent-length: 5\r\ncontent-type: text/plain\r\n" + TAIL + b"\r\nhello"
SMALL_HEAD = SMALL.removesuffix(b"hello")
ACCEPTED = b"HTTP/1.1 202 \r\ncontent-length: 0\r\n" + TAIL + b"\r\n"
CHUNKED = b"HTTP/1.1 200 \r\n" + TAIL + b"Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n"
LARGE_RESPONSE = b"HTTP/1.1 200 \r\ncontent-length: 1048576\r\n" + TAIL + b"\r\n" + LARGE


# -- the same answers as stock hypercorn -----------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
async def test_answers_on_one_keep_alive_connection_are_exact(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with trio.fail_after(20):
        async with served(variant, monkeypatch) as server:
            assert server.applied == expected_applied(variant)
            connection = await Connection.open(server.port)
            for path, method, expected in [
                ("/small", "GET", SMALL),
                ("/accepted", "POST", ACCEPTED),
                ("/large", "GET", LARGE_RESPONSE),
                ("/chunked", "GET", CHUNKED),
                ("/small", "HEAD", SMALL_HEAD),
                ("/small", "GET", SMALL),
            ]:
                await connection.send(get(path, method))
                assert await connection.response(method) == expected, (path, method)
            await connection.send(get("/headless"))
            assert await connection.response("HEAD") == b"HTTP/1.1 200 \r\n" + TAIL + b"Transfer-Encoding: chunked\r\n\r\n"
            assert await connection.closed_by_server()


@pytest.mark.parametrize("variant", VARIANTS)
async def test_pipelined_requests_are_answered_in_order(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with trio.fail_after(20):
        async with served(variant, monkeypatch) as server:
            connection = await Connection.open(server.port)
            await connection.send(get("/small"), get("/small", "HEAD"), get("/chunked"), get("/accepted", "POST"), get("/large"))
            assert await connection.response() == SMALL
            assert await connection.response("HEAD") == SMALL_HEAD
            assert await connection.response() == CHUNKED
            assert await connection.response() == ACCEPTED
            assert await connection.response() == LARGE_RESPONSE


@pytest.mark.parametrize("variant", VARIANTS)
async def test_a_client_expecting_100_continue_gets_it_first(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with trio.fail_after(20):
        async with served(variant, monkeypatch) as server:
            connection = await Connection.open(server.port)
            await connection.send(
                "POST /accepted HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
            )
            assert await connection.response("HEAD") == b"HTTP/1.1 100 \r\n" + TAIL + b"\r\n"
            await connection.send("{}")
            assert await connection.response() == ACCEPTED
            await connection.send(get("/small"))
            assert await connection.response() == SMALL


@pytest.mark.parametrize("variant", VARIANTS)
async def test_a_streamed_response_arrives_before_it_ends(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with trio.fail_after(20):
        async with served(variant, monkeypatch) as server:
            connection = await Connection.open(server.port)
            await connection.send(get("/stream"))
            # The application is still waiting for ``release``: what it sent so far must be here.
            first = await connection._until(b"data: first\n\n")
            assert not server.state.release.is_set()
            assert re.sub(rb"\r\ndate: [^\r]*", b"\r\ndate: <date>", bytes(connection.buffer[:first])) == (
                b"HTTP/1.1 200 \r\ncontent-type: text/event-stream\r\n" + TAIL
                + b"Transfer-Encoding: chunked\r\n\r\nd\r\ndata: first\n\n"
            )  # fmt: skip
            server.state.release.set()
            end = await connection._until(b"0\r\n\r\n")
            assert bytes(connection.buffer[first:end]) == b"\r\ne\r\ndata: second\n\n\r\n0\r\n\r\n"


@pytest.mark.parametrize("variant", VARIANTS)
async def test_the_date_header_is_the_current_http_date(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with trio.fail_after(20):
        async with served(variant, monkeypatch) as server:
            connection = await Connection.open(server.port)
            for _ in range(3):
                await connection.send(get("/small"))
                await connection._until(b"hello")
                [date] = re.findall(rb"\r\ndate: ([^\r]*)\r\n", bytes(connection.buffer))
                connection.buffer.clear()
                assert re.fullmatch(rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT", date)
                assert abs(email.utils.parsedate_to_datetime(date.decode()).timestamp() - time.time()) < 5
                await trio.sleep(0.6)  # the next answer may fall in another second


@pytest.mark.parametrize("variant", VARIANTS)
async def test_idle_connections_close_after_the_keep_alive_timeout_and_busy_ones_do_not(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(20):
        async with served(variant, monkeypatch, keep_alive_timeout=0.3) as server:
            idle = await Connection.open(server.port)
            await idle.send(get("/small"))
            assert await idle.response() == SMALL
            assert await idle.closed_by_server()

            busy = await Connection.open(server.port)
            await busy.send(get("/slow"))
            await trio.sleep(1.0)  # over three keep-alive periods, all of them busy
            server.state.release.set()
            assert b"\r\n\r\ndone" in await busy.response()
            await busy.send(get("/small"))  # still open, and reusable
            assert await busy.response() == SMALL
            assert await busy.closed_by_server()


@pytest.mark.parametrize("variant", VARIANTS)
async def test_a_client_that_leaves_mid_response_is_seen_as_a_disconnect(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(20):
        async with served(variant, monkeypatch) as server:
            connection = await Connection.open(server.port)
            await connection.send(get("/hold"))
            await connection._until(b": open\n\n")
            await connection.stream.aclose()
            await server.state.disconnected.wait()


@pytest.mark.parametrize("variant", VARIANTS)
async def test_on_sigterm_idle_connections_close_and_busy_ones_finish_first(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # graceful_timeout is 30 s: a connection that does not end by itself would outlast the bound.
    with trio.fail_after(15):
        async with served(variant, monkeypatch) as server:
            idle = await Connection.open(server.port)
            await idle.send(get("/small"))
            assert await idle.response() == SMALL
            busy = await Connection.open(server.port)
            await busy.send(get("/slow"))
            gone = await Connection.open(server.port)
            await gone.send(get("/slow"))
            for _ in range(2):
                await server.state.slow_requests.acquire()  # both requests reached the application
            await gone.stream.aclose()
            os.kill(os.getpid(), signal.SIGTERM)
            assert await idle.closed_by_server()
            server.state.release.set()
            assert b"\r\n\r\ndone" in await busy.response()
            assert await busy.closed_by_server()
            await server.done.wait()


# -- what each patch changes ------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
async def test_what_the_patches_change(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes per small answer, the idle timer's kind and the Date formatter, per variant."""
    from trio_mcp_sse._bounded_writes import _installed

    writes: list[bytes] = []
    original_send_all = trio.SocketStream.send_all

    async def counting_send_all(self: trio.SocketStream, data: bytes | bytearray | memoryview) -> None:
        if self.socket.getsockname()[1] == port:  # the server's side of a connection
            writes.append(bytes(data))
        await original_send_all(self, data)

    monkeypatch.setattr(trio.SocketStream, "send_all", counting_send_all)
    applied = expected_applied(variant)
    with trio.fail_after(20):
        async with served(variant, monkeypatch) as server:
            port = server.port
            # Stock: the head, the body (none for an empty one); the end of a Content-Length body is
            # an empty write, which the bounded writes skip.
            for path, method, body, stock_writes in [("/small", "GET", b"hello", 2), ("/accepted", "POST", b"", 1)]:
                writes.clear()
                closing = await Connection.open(server.port)
                await closing.send(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                assert (await closing.response()).endswith(b"\r\n\r\n" + body)
                assert await closing.closed_by_server()  # so every write of the answer is done
                if "coalesced-response-writes" in applied or variant == "llhttp":
                    assert len(writes) == 1
                else:
                    assert len(writes) == stock_writes and b"" not in writes
            connection = await Connection.open(server.port)
            await connection.send(get("/small"))
            assert await connection.response() == SMALL
            client_port = connection.stream.socket.getsockname()[1]
            [server_side] = [c for c in _installed["connections"] if c.peer == f"127.0.0.1:{client_port}"]
            if variant == "llhttp":
                assert isinstance(server_side, LlhttpConnection)  # hypercorn's classes serve TLS only
                return
            uses_deadline = isinstance(server_side.idle_task, KeepAliveDeadline)
            assert uses_deadline == ("keep-alive-deadline" in applied)
            cached = type(hypercorn.config.format_date_time).__name__ == "_DatePerSecond"
            assert cached == ("cached-date-header" in applied)
    assert hypercorn.config.format_date_time.__module__ == "wsgiref.handlers"


# -- a patch that does not fit is skipped ------------------------------------------------------------
def _with_pin(patch: Any, target: str, digest: str) -> Any:
    return dataclasses.replace(patch, pinned={**patch.pinned, target: digest})


async def test_a_patch_whose_target_changed_is_skipped_with_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    keep_alive, *others = PATCHES
    altered = _with_pin(keep_alive, "hypercorn.trio.tcp_server:TCPServer._idle_timeout", "0" * 16)
    monkeypatch.setattr(_hypercorn_patches, "PATCHES", (altered, *others))
    caplog.set_level(logging.WARNING, logger="trio_mcp_sse")
    with trio.fail_after(20):
        async with served("all", monkeypatch) as server:
            assert server.applied == sorted(p.name for p in others)
            connection = await Connection.open(server.port)
            await connection.send(get("/small"))
            assert await connection.response() == SMALL
    [record] = [r for r in caplog.records if r.name.startswith("trio_mcp_sse")]
    assert record.getMessage() == (
        "hypercorn patch keep-alive-deadline skipped: hypercorn.trio.tcp_server:TCPServer._idle_timeout differs "
        "from the source the patch was written against; hypercorn's own code runs instead "
        f"(supported: hypercorn{SUPPORTED_HYPERCORN})"
    )
    assert record.levelno == logging.WARNING


async def test_another_hypercorn_release_gets_no_patches_and_is_served(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_hypercorn_patches, "_installed_version", lambda: "0.19.0")
    caplog.set_level(logging.WARNING, logger="trio_mcp_sse")
    with trio.fail_after(20):
        async with served("all", monkeypatch) as server:
            assert server.applied == []
            connection = await Connection.open(server.port)
            await connection.send(get("/small"))
            assert await connection.response() == SMALL
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("trio_mcp_sse")]
    assert [m.split(":", 1)[0] for m in messages] == [f"hypercorn patch {name} skipped" for name in NAMES]
    assert all("hypercorn 0.19.0 is not a tested release (0.18.x)" in m for m in messages)


def test_a_missing_internal_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(TCPServer, "_initiate_server_close")
    assert patch_problem(PATCHES[0]) == "hypercorn.trio.tcp_server:TCPServer._initiate_server_close is missing"
    monkeypatch.setattr(hypercorn.config, "format_date_time", lambda timestamp: "")
    assert patch_problem(PATCHES[2]) == "hypercorn.config.format_date_time is not wsgiref's"


def test_every_patch_fits_the_installed_hypercorn() -> None:
    assert [patch_problem(patch) for patch in PATCHES] == [None, None, None]
    assert SUPPORTED_HYPERCORN == ">=0.18,<0.19" and TESTED_HYPERCORN_SERIES == ("0.18",)


def test_patches_are_undone_and_disabled_means_none() -> None:
    before = (dict(vars(TCPServer)), dict(vars(H11Protocol)), hypercorn.config.format_date_time)
    with hypercorn_patches() as applied:
        assert applied == NAMES
        assert vars(TCPServer)["__init__"] is not before[0]["__init__"]
        with hypercorn_patches() as nested:
            assert nested == []  # already in force: left to the enclosing call
    assert (dict(vars(TCPServer)), dict(vars(H11Protocol)), hypercorn.config.format_date_time) == before
    with hypercorn_patches(enabled=False) as applied:
        assert applied == []
        assert vars(TCPServer) == before[0]


def test_the_option_and_the_flag() -> None:
    assert ServeOptions().hypercorn_patches is True
    assert _parse(["m:app"]).hypercorn_patches is True
    assert _parse(["m:app", "--no-hypercorn-patches"]).hypercorn_patches is False


async def test_importing_the_package_patches_nothing() -> None:
    code = (
        "import trio_mcp_sse, trio_mcp_sse._serve, trio_mcp_sse._hypercorn_patches\n"
        "import hypercorn.config, hypercorn.trio.tcp_server as t, hypercorn.protocol.h11 as h\n"
        "assert t.TCPServer.__init__.__qualname__ == 'TCPServer.__init__'\n"
        "assert h.H11Protocol._send_h11_event.__module__ == 'hypercorn.protocol.h11'\n"
        "assert hypercorn.config.format_date_time.__module__ == 'wsgiref.handlers'\n"
    )
    with trio.fail_after(30):
        result = await trio.run_process([sys.executable, "-c", code], capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr.decode()


# -- the upstream diffs on the documentation page ---------------------------------------------------
def test_the_documented_upstream_diffs_apply_to_the_installed_hypercorn(tmp_path: Path) -> None:
    patch_tool = shutil.which("patch")
    if patch_tool is None:
        pytest.skip("needs the patch tool")
    page = (Path(__file__).resolve().parent.parent / "docs" / "contrib" / "hypercorn-patches.md").read_text()
    diffs = re.findall(r"```diff\n(.*?)```", page, re.DOTALL)
    assert len(diffs) == 3
    source = Path(hypercorn.__file__).parent
    for diff in diffs:  # each one alone, on a fresh copy
        checkout = tmp_path / f"hypercorn-{diffs.index(diff)}"
        shutil.copytree(source, checkout / "src" / "hypercorn", ignore=shutil.ignore_patterns("__pycache__"))
        result = subprocess.run([patch_tool, "-p1", "--forward"], input=diff, cwd=checkout, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        for changed in re.findall(r"^\+\+\+ b/(\S+)", diff, re.MULTILINE):
            compile((checkout / changed).read_text(), changed, "exec")


# -- the drain under serve, with and without the patches (a real process) ---------------------------
@pytest.mark.e2e
@pytest.mark.parametrize("flags", [(), ("--no-hypercorn-patches",)])
async def test_sigterm_drains_sessions_with_and_without_the_patches(flags: tuple[str, ...]) -> None:
    argv = [sys.executable, "-m", "trio_mcp_sse", "serve", "tests.apps.hardening_app:app", "--bind", "127.0.0.1:0", *flags]
    async with running_server(argv) as server:
        stream, buffer, endpoint = await open_sse(server.port)
        sleep = {"jsonrpc": "2.0", "id": 1, "method": "sleep", "params": {"seconds": 1}}
        assert (await post_json(server.port, endpoint, sleep)).startswith(b"HTTP/1.1 202")
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            await read_until(stream, buffer, b"0\r\n\r\n")
            assert await server.process.wait() == 0
        assert b'"id":1,"result":{"done":"sleep"}' in buffer
        assert "skipped" not in server.log and "Traceback" not in server.log


# -- what an llhttp connection holds while a stream waits -------------------------------------------
async def test_an_llhttp_connection_waiting_for_its_client_is_one_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """A response waiting in ``receive`` for the client to leave costs its connection one task, reading
    in the application's ``receive`` (no reader task beside it), and no parser state: llhttp's is made
    again when bytes arrive."""
    from trio_mcp_sse._llhttp import llhttp_connections

    with trio.fail_after(20):
        async with served("llhttp", monkeypatch) as server:
            before = task_count()
            connections = [await Connection.open(server.port) for _ in range(3)]
            for connection in connections:
                await connection.send(get("/hold"))
                await connection._until(b": open\n\n")
            await trio.testing.wait_all_tasks_blocked()
            assert task_count() - before == 3
            assert [each._parser for each in llhttp_connections() if not each._closing] == [None] * 3
            for connection in connections:
                await connection.stream.aclose()
            await server.state.disconnected.wait()
            while task_count() != before:  # (bounded by the fail_after)
                await trio.sleep(0.01)


async def test_llhttp_write_lock_hands_over_in_order_and_a_cancelled_waiter_leaves_the_queue() -> None:
    from trio_mcp_sse._llhttp import _WriteLock

    lock, order = _WriteLock(), []

    async def writer(name: str, scope: trio.CancelScope | None = None) -> None:
        with scope or trio.CancelScope():
            await lock.acquire()
            order.append(name)
            lock.release()

    await lock.acquire()  # free: taken at once
    async with trio.open_nursery() as nursery:
        cancelled = trio.CancelScope()
        for name, scope in (("a", None), ("b", cancelled), ("c", None)):
            nursery.start_soon(writer, name, scope)
            await trio.testing.wait_all_tasks_blocked()
        cancelled.cancel()
        await trio.testing.wait_all_tasks_blocked()
        lock.release()
    assert order == ["a", "c"]
    await lock.acquire()  # free again
    lock.release()
