"""The application's share of a tool call, measured without an HTTP server.

``python -m benchmarks.micro [--calls N] [--sessions S] [--profile] [APP ...]``

Drives an ASGI app in-process with :mod:`trio_mcp_sse.testing`, the way
hypercorn would (lifespan, one long ``GET /sse`` per session, one ``POST`` per
message; for the Streamable HTTP apps, one ``POST /mcp`` per call, answered on
its own response) but with no sockets and no HTTP parsing.  The CPU time per call
is what the *application* costs: the number to watch when changing the hot
path, because it is not blurred by the server, the client or the machine's
other load the way the end-to-end benchmark is.  The SDK's Starlette app runs
here too (anyio on Trio).

APP is one of: ours, ours-def (a ``def`` tool on a worker thread),
ours-def-inline (the same, ``inline=True``), ours-no-quart, bare, quart-routes, sdk (HTTP+SSE), or
ours-streamable, ours-streamable-sse, sdk-streamable, sdk-streamable-sse
(Streamable HTTP, JSON or event-stream answers) (default: ours).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import sys
import time
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

import orjson
import trio

from trio_mcp_sse.testing import ASGIResponse, ASGITestClient, SSETestSession, run_asgi_app

APPS = {
    "ours": "benchmarks.app_ours:app",
    "ours-def": "benchmarks.app_ours:sync_app()",
    "ours-def-inline": "benchmarks.app_ours:sync_app(inline=True)",
    "ours-no-quart": "benchmarks.app_variants:make_transport()",
    "bare": "benchmarks.app_variants:bare",
    "quart-routes": "benchmarks.app_variants:make_quart_routes()",
    "sdk": "benchmarks.app_sdk:app",
    "ours-streamable": "benchmarks.app_ours:streamable_app(response_mode='json')",
    "ours-streamable-sse": "benchmarks.app_ours:streamable_app(response_mode='sse')",
    "sdk-streamable": "benchmarks.app_sdk:streamable_json_app()",
    "sdk-streamable-sse": "benchmarks.app_sdk:streamable_sse_app()",
}
STREAMABLE_PATH = "/mcp"
PROTOCOL_VERSION = "2025-11-25"
_CALL = {"name": "echo", "arguments": {"text": "hello"}}


def load(name: str) -> Any:
    module_name, _, attribute = APPS[name].partition(":")
    module = __import__(module_name, fromlist=["_"])
    return eval(attribute, vars(module))  # same convention as hypercorn's app paths


class StreamableSession:
    """One Streamable HTTP session driven in memory: every request is a ``POST /mcp``."""

    def __init__(self, client: ASGITestClient) -> None:
        self._client = client
        self._headers: list[tuple[str, str]] = [
            ("host", "127.0.0.1:8000"),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ]
        self._ids = itertools.count()

    async def post(self, message: dict[str, Any]) -> ASGIResponse:
        return await self._client.request("POST", STREAMABLE_PATH, headers=self._headers, body=orjson.dumps(message))

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        response = await self.post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params})
        if response.status != 200:
            raise AssertionError(f"POST {STREAMABLE_PATH} answered {response.status}: {response.body[:200]!r}")
        if response.headers["content-type"].startswith("text/event-stream"):
            # The answer is the stream's last message (priming events carry no data).
            data = [line[5:].strip() for line in response.body.splitlines() if line.startswith(b"data:")]
            answer: dict[str, Any] = orjson.loads(data[-1])
        else:
            answer = orjson.loads(response.body)
        if method == "initialize":
            self._headers += [
                ("mcp-session-id", response.headers["mcp-session-id"]),
                ("mcp-protocol-version", PROTOCOL_VERSION),
            ]
        return answer

    async def initialize(self) -> None:
        info = {"name": "micro", "version": "1"}
        await self.request("initialize", {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": info})
        accepted = await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        if accepted.status != 202:
            raise AssertionError(f"notifications/initialized answered {accepted.status}")


async def run(app: Any, calls: int, sessions: int, *, streamable: bool = False) -> dict[str, float]:
    # The SDK's Starlette route sends a second response start once a stream ends.
    async with run_asgi_app(app, strict=False) as client, AsyncExitStack() as stack:
        streams: list[SSETestSession | StreamableSession] = []
        for _ in range(sessions):
            if streamable:
                session: SSETestSession | StreamableSession = StreamableSession(client)
                await session.initialize()
            else:
                session = await stack.enter_async_context(client.open_sse_session())
                await session.initialize(version="2024-11-05", client_info={"name": "micro", "version": "1"})
            streams.append(session)

        per_session = calls // sessions

        async def worker(session: SSETestSession | StreamableSession) -> None:
            for _ in range(per_session):
                answer = await session.request("tools/call", _CALL)
                if answer["result"]["content"][0]["text"] != "hello":
                    raise AssertionError(answer)

        # warm-up, then the measured run
        async with trio.open_nursery() as workers:
            for session in streams:
                workers.start_soon(worker, session)
        gc.collect()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        async with trio.open_nursery() as workers:
            for session in streams:
                workers.start_soon(worker, session)
        cpu1, wall1 = time.process_time(), time.perf_counter()
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
        best = None
        for attempt in range(args.repeat):
            # A fresh app per run: the SDK's Streamable HTTP session manager runs only once.
            app = load(name)
            streamable = "streamable" in name
            if args.profile and attempt == args.repeat - 1:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.0002, async_mode="disabled")
                profiler.start()
                result = trio.run(partial(run, app, args.calls, args.sessions, streamable=streamable))
                profiler.stop()
                sys.stderr.write(profiler.output_text(unicode=False, color=False, show_all=False))
            else:
                result = trio.run(partial(run, app, args.calls, args.sessions, streamable=streamable))
            if best is None or result["cpu_us_per_call"] < best["cpu_us_per_call"]:
                best = result
        assert best is not None
        sys.stdout.write(f"{name:19} {best['cpu_us_per_call']:7.1f} us CPU per call ({best['calls']} calls, {args.sessions} sessions)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
