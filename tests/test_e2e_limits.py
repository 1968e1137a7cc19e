"""End to end against real hypercorn: stalled bodies, clients that stop reading, the wrong worker
class, too few file descriptors, serve's usage errors, refusal logs, drain answers.

Every server runs in a subprocess with small limits chosen by environment
variables (``tests/apps/hardening_app.py``); every load loop is bounded in count
and time, and all traffic goes to loopback.
"""

from __future__ import annotations

import resource
import signal
import socket
import sys
import time

import pytest
import trio

from .e2e_support import (
    ROOT,
    hypercorn_argv,
    open_sse,
    post_json,
    read_until,
    running_server,
    server_state,
)

pytestmark = pytest.mark.e2e

APP = "tests.apps.hardening_app:app"


def serve_argv(app: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "trio_mcp_sse", "serve", app, "--bind", "127.0.0.1:0", *extra]


async def read_response(stream: trio.SocketStream) -> tuple[bytes, bool]:
    """Read until the server closes the connection: (everything read, closed)."""
    data = b""
    while True:
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            return data, True
        if not chunk:
            return data, True
        data += chunk


async def stalled_post(port: int, endpoint: str, *, declared: int, sent: bytes) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(
        f"POST {endpoint} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n".encode() + sent
    )
    return stream


BODY_RUNNERS = {
    "hypercorn": hypercorn_argv(APP),
    "serve": [sys.executable, "-m", "trio_mcp_sse", "serve", APP, "--bind", "127.0.0.1:0"],  # llhttp
    "serve-h11": [sys.executable, "-m", "trio_mcp_sse", "serve", APP, "--bind", "127.0.0.1:0", "--http-parser", "h11"],
}
"""The body limits hold on every HTTP/1.1 path: plain hypercorn, and both of serve's."""


# -- finding 1: stalled bodies ------------------------------------------------------------------------
@pytest.mark.parametrize("runner", BODY_RUNNERS)
async def test_stalled_bodies_get_408_and_their_connections_close(runner: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BODY_TIMEOUT", "1")
    async with running_server(BODY_RUNNERS[runner]) as server:
        _sse, _, endpoint = await open_sse(server.port)
        with trio.fail_after(15):
            streams = [await stalled_post(server.port, endpoint, declared=100_000, sent=b"{") for _ in range(100)]
            started = time.monotonic()
            answers: list[tuple[bytes, bool]] = []

            async def collect(stream: trio.SocketStream) -> None:
                async with stream:
                    answers.append(await read_response(stream))

            async with trio.open_nursery() as nursery:
                for stream in streams:
                    nursery.start_soon(collect, stream)
            elapsed = time.monotonic() - started
        assert len(answers) == 100
        assert all(data.startswith(b"HTTP/1.1 408") and closed for data, closed in answers), answers[0]
        assert all(b"connection: close" in data.lower() for data, _ in answers)
        assert elapsed < 1 + 2, elapsed  # the deadline plus slack
        print(f"\n100 stalled POSTs: all 408 and closed {elapsed:.2f}s after the last was sent (deadline 1s)")
        # Still serving, and the refusal was logged once with its reason.
        assert (await post_json(server.port, endpoint, {"jsonrpc": "2.0", "id": 1, "method": "ping"})).startswith(b"HTTP/1.1 202")
        assert "408 body_timeout" in server.log


@pytest.mark.parametrize("runner", BODY_RUNNERS)
async def test_bodies_over_the_worker_budget_get_503_with_retry_after(runner: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BODY_TIMEOUT", "2")
    monkeypatch.setenv("MAX_BODY", "40000")
    monkeypatch.setenv("BODY_BUDGET", "64000")
    async with running_server(BODY_RUNNERS[runner]) as server:
        _sse, _, endpoint = await open_sse(server.port)
        with trio.fail_after(15):
            # Two bodies half-way in hold 60,000 bytes of the 64,000 budget...
            holders = [await stalled_post(server.port, endpoint, declared=40_000, sent=b" " * 30_000) for _ in range(2)]
            await trio.sleep(0.3)
            # ...so a third that has sent 10,000 bytes is refused at once.
            third = await stalled_post(server.port, endpoint, declared=40_000, sent=b" " * 10_000)
            sent = time.monotonic()
            async with third:
                data, _ = await read_response(third)
            assert time.monotonic() - sent < 1.5
            assert data.startswith(b"HTTP/1.1 503"), data[:200]
            assert b"retry-after: 1" in data.lower()
            for holder in holders:
                async with holder:
                    assert (await read_response(holder))[0].startswith(b"HTTP/1.1 408")
            assert (await post_json(server.port, endpoint, {"jsonrpc": "2.0", "id": 1, "method": "ping"})).startswith(b"HTTP/1.1 202")


# -- finding 2: a client that stops reading -----------------------------------------------------------
@pytest.mark.parametrize("runner", ["hypercorn", "serve"])
async def test_a_client_that_stops_reading_costs_bounded_memory_and_is_released(
    runner: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OUTBOUND_BYTES", str(4 * 2**20))
    monkeypatch.setenv("WRITE_TIMEOUT", "2")
    argv = hypercorn_argv(APP) if runner == "hypercorn" else serve_argv(APP, "--write-timeout", "2")
    async with running_server(argv) as server:
        stuck = trio.socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await stuck.connect(("127.0.0.1", server.port))
        stuck_stream = trio.SocketStream(stuck)
        await stuck_stream.send_all(b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        buffer = bytearray()
        await read_until(stuck_stream, buffer, b"\n\n")
        stuck_endpoint = bytes(buffer).split(b"data: ", 1)[1].split(b"\n", 1)[0].decode()
        healthy, healthy_buffer, healthy_endpoint = await open_sse(server.port)
        before = (await server_state(server))["rss"]

        # 100 requests, each answered with 1 MB of notifications: 100 MB if nothing bounded it.
        for n in range(100):
            flood = {"jsonrpc": "2.0", "id": n, "method": "flood", "params": {"count": 1, "size": 1_000_000}}
            reply = await post_json(server.port, stuck_endpoint, flood)
            if not reply.startswith(b"HTTP/1.1 202"):
                assert reply.startswith(b"HTTP/1.1 404"), reply[:100]  # the session is already gone
                break
        flooded_at = time.monotonic()

        peak = before
        worst = 0.0
        with trio.fail_after(15):
            for n in range(20):
                sent = time.monotonic()
                ping = {"jsonrpc": "2.0", "id": f"p{n}", "method": "ping"}
                assert (await post_json(server.port, healthy_endpoint, ping)).startswith(b"HTTP/1.1 202")
                await read_until(healthy, healthy_buffer, f'"id":"p{n}"'.encode())
                worst = max(worst, time.monotonic() - sent)
                peak = max(peak, (await server_state(server))["rss"])
                await trio.sleep(0.05)
            # The session is gone, and within the write timeout so is its connection
            # (watched in the log: reading the socket here would unblock the write).
            while (await server_state(server))["sessions"] != 1:
                await trio.sleep(0.05)
            while "did not read for 2.0s; closing its connection" not in server.log:
                await trio.sleep(0.05)
            released_after = time.monotonic() - flooded_at
            _, closed = await read_response(stuck_stream)
        growth = peak - before
        with capsys.disabled():
            print(f"\n{runner}: RSS {before / 2**20:.0f} -> peak {peak / 2**20:.0f} MiB (+{growth / 2**20:.1f} MiB); "
                  f"worst healthy ping {worst * 1000:.0f} ms; stuck connection closed {released_after:.1f}s after the flood")
        assert closed
        assert growth < 32 * 2**20, growth  # budget 4 MiB + one write + allocator slack; 100 MB unbounded
        assert worst < 0.5, worst
        assert "is not reading" in server.log and "127.0.0.1:" in server.log
        assert released_after < 2 + 3, released_after  # the write timeout plus slack
        metrics = await http_get(server.port, "/metrics")
        assert 'mcp_sessions_closed_total{reason="slow consumer"} 1' in metrics


async def http_get(port: int, path: str) -> str:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data, _ = await read_response(stream)
    return data.decode("utf-8", "replace")


# -- finding 3: the wrong worker class ----------------------------------------------------------------
@pytest.mark.parametrize("server", ["hypercorn-asyncio", "uvicorn"])
async def test_an_asyncio_server_is_refused_at_start_up_with_one_line(server: str) -> None:
    if server == "uvicorn":
        pytest.importorskip("uvicorn")
        argv = [sys.executable, "-m", "uvicorn", "--port", "0", "examples.echo_server:app"]
    else:  # hypercorn's default worker class is asyncio
        argv = [sys.executable, "-m", "hypercorn", "--bind", "127.0.0.1:0", "examples.echo_server:app"]
    with trio.fail_after(30):
        result = await trio.run_process(argv, cwd=str(ROOT), capture_stdout=True, capture_stderr=True, check=False)
    output = (result.stdout + result.stderr).decode()
    ours = [line for line in output.splitlines() if "trio_mcp_sse" in line]
    assert ours and all(line.endswith("trio_mcp_sse needs hypercorn's trio worker: run it with --worker-class trio") for line in ours)
    assert "Traceback" not in output and "AttributeError" not in output
    if server == "uvicorn":
        assert result.returncode != 0  # (hypercorn 0.18's parent process reports 0 for a failed worker)


def test_without_a_lifespan_every_request_says_trio_is_needed() -> None:
    import asyncio

    from examples.echo_server import app

    async def call(path: str) -> tuple[int, bytes]:
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "query_string": b"",
                 "headers": [(b"host", b"127.0.0.1:8000")], "server": ("127.0.0.1", 8000)}
        await app(scope, receive, send)
        return int(sent[0]["status"]), bytes(sent[1]["body"])  # type: ignore[call-overload]

    for path, status in (("/sse", 500), ("/healthz", 500), ("/readyz", 503), ("/messages/", 500)):
        got, body = asyncio.run(call(path))
        assert (got, b"--worker-class trio" in body) == (status, True), (path, got, body)


# -- finding 4: file descriptors ----------------------------------------------------------------------
def _open_files_256() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


@pytest.mark.parametrize("runner", ["serve", "hypercorn"])
async def test_an_fd_limited_server_answers_every_connection(runner: str, capsys: pytest.CaptureFixture[str]) -> None:
    """At ``ulimit -n 256`` the cap is (256 - 64) // 2 = 96 sessions: 130 streams get 96 x 200 and 34 x 503."""
    argv = serve_argv(APP) if runner == "serve" else hypercorn_argv(APP)
    async with running_server(argv, preexec_fn=_open_files_256) as server:
        statuses: list[bytes] = []
        streams: list[trio.SocketStream] = []
        with trio.fail_after(20):

            async def open_one() -> None:
                stream = await trio.open_tcp_stream("127.0.0.1", server.port)
                streams.append(stream)
                await stream.send_all(b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                buffer = bytearray()
                await read_until(stream, buffer, b"\r\n\r\n")
                statuses.append(bytes(buffer[:12]))
                if b"retry-after" not in buffer.lower() and buffer.startswith(b"HTTP/1.1 503"):
                    raise AssertionError(buffer)

            async with trio.open_nursery() as nursery:
                for _ in range(130):
                    nursery.start_soon(open_one)
            assert statuses.count(b"HTTP/1.1 200") == 96, statuses
            assert statuses.count(b"HTTP/1.1 503") == 34, statuses

            # Now exhaust the descriptors outright with idle connections: accept fails
            # with EMFILE; the log gets one line, and every connection is answered once
            # descriptors free up.
            idle = [await trio.open_tcp_stream("127.0.0.1", server.port) for _ in range(200)]
            await trio.sleep(1.0)
            for stream in streams:
                await stream.aclose()
            for stream in idle:
                await stream.aclose()
            assert (await http_get(server.port, "/healthz")).startswith("HTTP/1.1 200")
        with capsys.disabled():
            print(f"\nfd-limited ({runner}): {statuses.count(b'HTTP/1.1 200')} streams, {statuses.count(b'HTTP/1.1 503')} refused with 503; "
                  f"accept error lines: {server.log.count('accept() failed')}")
        assert "Traceback" not in server.log
        assert server.log.count("accept() failed") <= 2
        assert "session cap 96" in server.log
        if runner == "serve":
            assert "open files limit: 256" in server.log


# -- findings 5 and 6: serve's command line --------------------------------------------------------------
async def run_serve(*args: str) -> tuple[int, str, str]:
    argv = [sys.executable, "-m", "trio_mcp_sse", "serve", *args]
    with trio.fail_after(30):
        result = await trio.run_process(argv, cwd=str(ROOT), capture_stdout=True, capture_stderr=True, check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def test_serve_usage_errors_are_one_line() -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        cases = [
            (("examples.echo_server:app", "--bind", f"127.0.0.1:{port}"), 1, "cannot bind"),
            (("no_such_module:app",), 2, "cannot import module 'no_such_module'"),
            (("examples.echo_server:nope",), 2, "has no attribute 'nope'"),
            (("examples.echo_server:app", "--workers", "2"), 2, "--workers 2"),
        ]
        for args, code, text in cases:
            returncode, _, stderr = await run_serve(*args)
            assert returncode == code, (args, stderr)
            assert text in stderr, (args, stderr)
            assert len(stderr.strip().splitlines()) == 1, stderr
            assert "Traceback" not in stderr
    finally:
        busy.close()
    _, help_text, _ = await run_serve("--help")
    assert "404" in help_text  # --help says why only one worker


async def test_serve_accepts_an_mcp_server_object() -> None:
    async with running_server(serve_argv("examples.echo_server:server")) as server:
        _sse, _, endpoint = await open_sse(server.port)
        assert endpoint.startswith("/messages/?session_id=")


# -- finding 7: logs and the drain answer -----------------------------------------------------------------
async def test_refusals_are_logged_with_reason_and_peer_in_one_format() -> None:
    async with running_server(hypercorn_argv(APP)) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            body = b'{"jsonrpc":"2.0","id":1,"method":"secret-body"}'
            await stream.send_all(
                b"POST /messages/?session_id=0123456789abcdef0123456789abcdef HTTP/1.1\r\nHost: proxy.example\r\n"
                b"Authorization: Bearer hunter2\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
            )
            data, _ = await read_response(stream)
        assert data.startswith(b"HTTP/1.1 421")
        with trio.fail_after(5):
            while "421" not in server.log:
                await trio.sleep(0.05)
        [line] = [line for line in server.log.splitlines() if "refused" in line]
        assert "POST /messages/: 421 misdirected_host (session 01234567…, peer 127.0.0.1:" in line
        assert "[INFO]" in line and line.startswith("[20")  # hypercorn's time format and a level
        assert "hunter2" not in server.log and "secret-body" not in server.log


async def test_a_post_to_an_idle_session_during_the_drain_gets_503(monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_server(serve_argv(APP, "--drain-timeout", "5")) as server:
        _idle, _, idle_endpoint = await open_sse(server.port)
        _busy, _, busy_endpoint = await open_sse(server.port)
        sleep = {"jsonrpc": "2.0", "id": 1, "method": "sleep", "params": {"seconds": 3}}
        assert (await post_json(server.port, busy_endpoint, sleep)).startswith(b"HTTP/1.1 202")
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            while "draining" not in server.log:
                await trio.sleep(0.02)
        reply = await post_json(server.port, idle_endpoint, {"jsonrpc": "2.0", "id": 2, "method": "ping"})
        assert reply.startswith(b"HTTP/1.1 503"), reply[:200]
        assert b"retry-after: 5" in reply.lower()
