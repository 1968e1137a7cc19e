"""Real servers in subprocesses for end-to-end tests: real sockets, real clock."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
_RUNNING_ON = re.compile(rb"Running on https?://[^:]+:(\d+)")
WORKER_STARTED = re.compile(r"\] worker (\d+) started")
"""What ``serve --workers N`` logs for each worker it starts (group: the pid)."""
WORKER_RUNNING = re.compile(r"\[(\d+)\] \[INFO\] Running on ")
"""What each worker logs once it serves (group: the pid)."""


@dataclass
class ServerProcess:
    process: trio.Process
    port: int = 0
    output: bytearray = field(default_factory=bytearray)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return self.output.decode("utf-8", "replace")


def task_count() -> int:
    """Every task of this trio run, counted from the root task through every nursery."""
    count, nurseries = 0, list(trio.lowlevel.current_root_task().child_nurseries)
    while nurseries:
        for task in nurseries.pop().child_tasks:
            count += 1
            nurseries.extend(task.child_nurseries)
    return count


@asynccontextmanager
async def running_server(
    argv: Sequence[str],
    *,
    port_pattern: re.Pattern[bytes] = _RUNNING_ON,
    preexec_fn: Callable[[], None] | None = None,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[ServerProcess]:
    """Start ``argv`` (which must bind 127.0.0.1:0 and log its port), stop it on exit.

    ``preexec_fn`` runs in the child before it starts (e.g. to lower its ``ulimit -n``);
    ``env`` adds to (or overrides) this process's environment.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    process = await trio.lowlevel.open_process(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(ROOT), env=env, preexec_fn=preexec_fn
    )
    server = ServerProcess(process)
    ready = trio.Event()
    try:
        async with trio.open_nursery() as nursery:

            async def collect() -> None:
                assert process.stdout is not None
                async for chunk in process.stdout:
                    server.output += chunk
                    if not ready.is_set():
                        match = port_pattern.search(server.output)
                        if match:
                            server.port = int(match.group(1))
                            ready.set()
                ready.set()

            nursery.start_soon(collect)
            with trio.fail_after(30):
                await ready.wait()
            if not server.port:
                raise RuntimeError(f"server did not start:\n{server.log}")
            try:
                yield server
            finally:
                process.send_signal(signal.SIGTERM)
                with trio.move_on_after(10):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    finally:
        if process.returncode is None:
            process.kill()


def hypercorn_argv(app: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hypercorn", "--worker-class", "trio", "--bind", "127.0.0.1:0", *extra, app]


async def server_state(server: ServerProcess) -> dict[str, int]:
    """Live sessions, Trio tasks and RSS of the server process (see tests/apps/debug.py)."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.url}/debug/state")
        response.raise_for_status()
        return {key: int(value) for key, value in response.json().items()}


async def read_until(stream: trio.SocketStream, buffer: bytearray, marker: bytes) -> None:
    while marker not in buffer:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError(f"connection closed before {marker!r}")
        buffer += chunk


async def open_sse(port: int, *, headers: str = "") -> tuple[trio.SocketStream, bytearray, str]:
    """A raw HTTP/1.1 SSE stream: returns the socket, what was read, and the endpoint URI."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(f"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{headers}\r\n".encode())
    buffer = bytearray()
    await read_until(stream, buffer, b"session_id=")
    await read_until(stream, buffer, b"\n\n")
    endpoint = bytes(buffer).split(b"data: ", 1)[1].split(b"\n", 1)[0].decode()
    return stream, buffer, endpoint


async def post_json(port: int, endpoint: str, message: dict[str, object]) -> bytes:
    """One POST on its own connection (``Connection: close``); returns the raw response."""
    body = json.dumps(message).encode()
    poster = await trio.open_tcp_stream("127.0.0.1", port)
    async with poster:
        await poster.send_all(
            f"POST {endpoint} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
        )
        reply = b""
        while chunk := await poster.receive_some(65536):
            reply += chunk
    return reply


INIT = {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}


def reset(stream: trio.SocketStream) -> None:
    """Make the coming close a TCP reset: the abrupt way to leave."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def abrupt_session(port: int, index: int) -> None:
    """Open a stream, initialize, call echo through it, then reset the connection."""
    stream, buffer, endpoint = await open_sse(port)
    try:
        for message in (
            {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": f"n{index}"}}},
        ):
            reply = await post_json(port, endpoint, message)
            assert reply.startswith(b"HTTP/1.1 202"), reply[:100]
        await read_until(stream, buffer, f'"text":"n{index}"'.encode())
    finally:
        reset(stream)
        await stream.aclose()


async def until_logged(server: ServerProcess, pattern: str, count: int = 1) -> list[str]:
    """Wait until ``pattern`` has matched ``count`` times in the log; returns the first group of each."""
    with trio.fail_after(30):
        while len(found := re.findall(pattern, server.log)) < count:
            await trio.sleep(0.05)
    return found


async def serving_workers(server: ServerProcess, count: int = 2) -> list[int]:
    """The pids of the first ``count`` workers of ``serve --workers``, once each has said it serves."""
    started = [int(pid) for pid in await until_logged(server, WORKER_STARTED.pattern, count)]
    await until_logged(server, WORKER_RUNNING.pattern, count)
    return started


def is_gone(pid: int) -> bool:
    """No such process, or only its zombie (a reparented child nobody reaps in a container)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True
