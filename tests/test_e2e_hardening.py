"""End to end against real servers: leaks, slow clients, graceful shutdown (real clock)."""

from __future__ import annotations

import signal
import socket
import sys
import time

import pytest
import trio

from .e2e_support import (
    ServerProcess,
    abrupt_session,
    hypercorn_argv,
    open_sse,
    post_json,
    read_until,
    running_server,
    server_state,
)

pytestmark = pytest.mark.e2e


def serve_argv(app: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "trio_mcp_sse", "serve", app, "--bind", "127.0.0.1:0", *extra]


async def settle(server: ServerProcess, baseline_tasks: int | None = None) -> dict[str, int]:
    """Wait until no session is left (and the task count is back, when given)."""
    with trio.fail_after(20):
        while True:
            state = await server_state(server)
            if state["sessions"] == 0 and (baseline_tasks is None or state["tasks"] <= baseline_tasks):
                return state
            await trio.sleep(0.05)


async def test_thousand_abrupt_cycles_leak_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    async with running_server(hypercorn_argv("tests.apps.e2e_app:app")) as server:
        cycles_done = 0

        async def run_cycles(count: int) -> None:
            nonlocal cycles_done
            limiter = trio.CapacityLimiter(25)

            async def one(index: int) -> None:
                async with limiter:
                    await abrupt_session(server.port, index)

            async with trio.open_nursery() as nursery:
                for index in range(count):
                    nursery.start_soon(one, cycles_done + index)
            cycles_done += count

        with trio.fail_after(240):
            await run_cycles(300)  # warm-up: imports, caches, allocator arenas
            baseline = await settle(server)
            samples = [(cycles_done, baseline["rss"])]
            for _ in range(5):
                await run_cycles(200)
                state = await settle(server, baseline["tasks"])
                samples.append((cycles_done, state["rss"]))
        assert cycles_done == 1300
        assert state["tasks"] == baseline["tasks"]
        assert "Traceback" not in server.log
        # RSS: least-squares slope over the five checkpoints after warm-up.
        xs = [x for x, _ in samples]
        ys = [y for _, y in samples]
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in samples) / sum((x - mean_x) ** 2 for x in xs)
        with capsys.disabled():
            print(f"\nleak test: tasks {baseline['tasks']} -> {state['tasks']}; RSS by cycle: "
                  + ", ".join(f"{x}: {y / 2**20:.1f} MiB" for x, y in samples) + f"; slope {slope:.0f} B/cycle")
        # A session that leaked even its smallest object graph would cost well over 2 KB.
        assert slope < 2048, samples


async def test_client_that_stops_reading_is_dropped_and_shutdown_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = serve_argv("tests.apps.hardening_app:app", "--drain-timeout", "2", "--graceful-timeout", "1", "--write-timeout", "60")
    monkeypatch.setenv("SEND_TIMEOUT", "2")
    monkeypatch.setenv("OUTBOUND_BUFFER", "16")
    async with running_server(argv) as server:
        # The stuck client: a tiny receive buffer, reads the endpoint event and nothing after.
        stuck = trio.socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await stuck.connect(("127.0.0.1", server.port))
        stuck_stream = trio.SocketStream(stuck)
        await stuck_stream.send_all(b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        buffer = bytearray()
        await read_until(stuck_stream, buffer, b"\n\n")
        stuck_endpoint = bytes(buffer).split(b"data: ", 1)[1].split(b"\n", 1)[0].decode()

        healthy, healthy_buffer, healthy_endpoint = await open_sse(server.port)
        assert (await server_state(server))["sessions"] == 2

        flood = {"jsonrpc": "2.0", "id": 1, "method": "flood", "params": {"count": 5000, "size": 100_000}}
        assert (await post_json(server.port, stuck_endpoint, flood)).startswith(b"HTTP/1.1 202")
        flooded_at = time.monotonic()

        # While the stuck session fills up and is dropped, the healthy one answers promptly.
        worst = 0.0
        for n in range(30):
            sent = time.monotonic()
            with trio.fail_after(5):
                assert (await post_json(server.port, healthy_endpoint, {"jsonrpc": "2.0", "id": f"p{n}", "method": "ping"})).startswith(b"HTTP/1.1 202")
                await read_until(healthy, healthy_buffer, f'"id":"p{n}"'.encode())
            worst = max(worst, time.monotonic() - sent)
            await trio.sleep(0.1)
        assert worst < 1.0, worst

        with trio.fail_after(10):
            while (await server_state(server))["sessions"] != 1:
                await trio.sleep(0.05)
        dropped_after = time.monotonic() - flooded_at
        assert dropped_after < 2 + 3, dropped_after  # send_timeout plus slack
        assert "not reading" in server.log

        # The stuck connection is still blocked in a write (write timeout 60 s);
        # SIGTERM must still end the process within drain timeout + 1 s.
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            code = await server.process.wait()
        took = time.monotonic() - signalled
        assert code == 0
        assert took < 2 + 1, took
        await read_until(healthy, healthy_buffer, b"0\r\n\r\n")  # the healthy stream ended cleanly
        assert "Traceback" not in server.log


async def test_sigterm_with_fifty_open_sessions_ends_every_stream_cleanly() -> None:
    argv = serve_argv("tests.apps.hardening_app:app", "--drain-timeout", "5")
    async with running_server(argv) as server:
        streams = []
        for _ in range(50):
            streams.append(await open_sse(server.port))
        # Every session has a request in flight when the signal arrives.
        async with trio.open_nursery() as nursery:
            for index, (_, _, endpoint) in enumerate(streams):
                message = {"jsonrpc": "2.0", "id": index, "method": "sleep", "params": {"seconds": 1}}
                nursery.start_soon(post_json, server.port, endpoint, message)
        assert (await server_state(server))["sessions"] == 50
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)

        async def read_to_the_end(index: int, stream: trio.SocketStream, buffer: bytearray) -> None:
            with trio.fail_after(10):
                while chunk := await stream.receive_some(65536):
                    buffer += chunk
            assert f'"id":{index},"result":{{"done":"sleep"}}'.encode() in buffer, "in-flight request lost"
            assert buffer.endswith(b"0\r\n\r\n"), bytes(buffer[-60:])  # a complete chunked body

        async with trio.open_nursery() as nursery:
            for index, (stream, buffer, _) in enumerate(streams):
                nursery.start_soon(read_to_the_end, index, stream, buffer)
        with trio.fail_after(10):
            code = await server.process.wait()
        assert code == 0
        assert time.monotonic() - signalled < 5 + 1
        assert "Traceback" not in server.log
