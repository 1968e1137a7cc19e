"""The application's share of a tool call, measured without an HTTP server.

``python -m benchmarks.micro [--calls N] [--sessions S] [--profile] [APP ...]``

Drives an ASGI app in-process, under Trio, the way hypercorn would (lifespan,
one long ``GET /sse`` per session, one ``POST`` per message, each request in
its own task) but with no sockets and no HTTP parsing.  The CPU time per call
is what the *application* costs: the number to watch when changing the hot
path, because it is not blurred by the server, the client or the machine's
other load the way the end-to-end benchmark is.  The SDK's Starlette app runs
here too (anyio on Trio).

APP is one of: ours, ours-no-quart, bare, quart-routes, sdk (default: ours).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from typing import Any

import orjson
import trio

APPS = {
    "ours": "benchmarks.app_ours:app",
    "ours-no-quart": "benchmarks.app_variants:make_transport()",
    "bare": "benchmarks.app_variants:bare",
    "quart-routes": "benchmarks.app_variants:make_quart_routes()",
    "sdk": "benchmarks.app_sdk:app",
}


def load(name: str) -> Any:
    module_name, _, attribute = APPS[name].partition(":")
    module = __import__(module_name, fromlist=["_"])
    return eval(attribute, vars(module))  # same convention as hypercorn's app paths


def _scope(method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
        "extensions": {},
    }


class Stream:
    """One SSE session driven in-process: events parsed from ``send``, waiters by id."""

    def __init__(self) -> None:
        self.endpoint = trio.Event()
        self.path = ""
        self.query = b""
        self.pending: dict[int, trio.Event] = {}
        self.results: dict[int, Any] = {}
        self._buffer = b""
        self.disconnect = trio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] != "http.response.body":
            return
        self._buffer += message.get("body", b"")
        if b"\r" in self._buffer:
            self._buffer = self._buffer.replace(b"\r\n", b"\n")
        while (end := self._buffer.find(b"\n\n")) >= 0:
            block, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            event, data = b"message", b""
            for line in block.split(b"\n"):
                if line.startswith(b"event:"):
                    event = line[6:].strip()
                elif line.startswith(b"data:"):
                    data = line[5:].lstrip(b" ")
            if event == b"endpoint":
                path, _, query = data.decode().partition("?")
                self.path, self.query = path, query.encode()
                self.endpoint.set()
            elif data:
                message_obj = orjson.loads(data)
                waiter = self.pending.pop(message_obj.get("id"), None)
                if waiter is not None:
                    self.results[message_obj["id"]] = message_obj
                    waiter.set()

    async def receive(self) -> dict[str, Any]:
        await self.disconnect.wait()
        return {"type": "http.disconnect"}


_HEADERS = [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json")]


async def post(app: Any, stream: Stream, body: bytes) -> int:
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await trio.sleep_forever()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
    await app(_scope("POST", stream.path, stream.query, headers), receive, send)
    return status


async def call(
    nursery: trio.Nursery, app: Any, stream: Stream, request_id: int, method: str, params: dict[str, Any]
) -> Any:
    waiter = trio.Event()
    stream.pending[request_id] = waiter
    body = orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
    nursery.start_soon(post, app, stream, body)  # like a server: every request in its own task
    with trio.fail_after(10):
        await waiter.wait()
    return stream.results.pop(request_id)


async def run(app: Any, calls: int, sessions: int) -> dict[str, float]:
    lifespan_in, lifespan_out = trio.open_memory_channel[dict[str, Any]](4)
    started = trio.Event()

    async def lifespan_send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(app, {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, lifespan_out.receive, lifespan_send)
        await lifespan_in.send({"type": "lifespan.startup"})
        with trio.fail_after(10):
            await started.wait()
        streams = []
        for _ in range(sessions):
            stream = Stream()
            nursery.start_soon(app, _scope("GET", "/sse", b"", [(b"host", b"127.0.0.1:8000")]), stream.receive, stream.send)
            with trio.fail_after(10):
                await stream.endpoint.wait()
            init = {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "micro", "version": "1"}}
            await call(nursery, app, stream, 0, "initialize", init)
            await post(app, stream, b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
            streams.append(stream)

        per_session = calls // sessions

        async def worker(stream: Stream) -> None:
            for request_id in range(1, per_session + 1):
                result = await call(
                    nursery, app, stream, request_id, "tools/call", {"name": "echo", "arguments": {"text": "hello"}}
                )
                if result["result"]["content"][0]["text"] != "hello":
                    raise AssertionError(result)

        # warm-up, then the measured run
        async with trio.open_nursery() as workers:
            for stream in streams:
                workers.start_soon(worker, stream)
        gc.collect()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        async with trio.open_nursery() as workers:
            for stream in streams:
                workers.start_soon(worker, stream)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        for stream in streams:
            stream.disconnect.set()
        await lifespan_in.send({"type": "lifespan.shutdown"})
        nursery.cancel_scope.cancel()
    done = per_session * sessions
    return {"calls": done, "cpu_us_per_call": (cpu1 - cpu0) / done * 1e6, "wall_s": wall1 - wall0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.micro", description=__doc__.split("\n")[0])
    parser.add_argument("apps", nargs="*", default=["ours"], choices=sorted(APPS))
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="report the best of N runs")
    parser.add_argument("--profile", action="store_true", help="pyinstrument the last run of each app")
    args = parser.parse_args(argv)
    os.environ.setdefault("BENCH_MAX_BODY", str(8 * 1024 * 1024))
    for name in args.apps:
        app = load(name)
        best = None
        for attempt in range(args.repeat):
            if args.profile and attempt == args.repeat - 1:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.0002, async_mode="disabled")
                profiler.start()
                result = trio.run(run, app, args.calls, args.sessions)
                profiler.stop()
                sys.stderr.write(profiler.output_text(unicode=False, color=False, show_all=False))
            else:
                result = trio.run(run, app, args.calls, args.sessions)
            if best is None or result["cpu_us_per_call"] < best["cpu_us_per_call"]:
                best = result
        assert best is not None
        sys.stdout.write(f"{name:14} {best['cpu_us_per_call']:7.1f} us CPU per call ({best['calls']} calls, {args.sessions} sessions)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
