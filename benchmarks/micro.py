"""The application's share of a tool call, measured without an HTTP server.

``python -m benchmarks.micro [--calls N] [--sessions S] [--profile] [APP ...]``

Drives an ASGI app in-process with :mod:`trio_mcp_sse.testing`, the way
hypercorn would (lifespan, one long ``GET /sse`` per session, one ``POST`` per
message) but with no sockets and no HTTP parsing.  The CPU time per call
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
from contextlib import AsyncExitStack
from typing import Any

import trio

from trio_mcp_sse.testing import SSETestSession, run_asgi_app

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


async def run(app: Any, calls: int, sessions: int) -> dict[str, float]:
    # The SDK's Starlette route sends a second response start once a stream ends.
    async with run_asgi_app(app, strict=False) as client, AsyncExitStack() as stack:
        streams = []
        for _ in range(sessions):
            session = await stack.enter_async_context(client.open_sse_session())
            await session.initialize(version="2024-11-05", client_info={"name": "micro", "version": "1"})
            streams.append(session)

        per_session = calls // sessions

        async def worker(session: SSETestSession) -> None:
            for _ in range(per_session):
                answer = await session.request("tools/call", {"name": "echo", "arguments": {"text": "hello"}})
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
