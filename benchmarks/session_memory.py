"""What an idle Streamable HTTP session keeps on the Python heap, measured in-process with ``tracemalloc``.

``python -m benchmarks.session_memory [--sessions N] [--top K] [--group lineno|traceback|filename] [APP ...]``

Drives an ASGI app in memory with :mod:`trio_mcp_sse.testing` (no sockets, no
HTTP server), the way the idle scenario of :mod:`benchmarks.loadgen` drives a
real server: 20 warm-up sessions opened, used and deleted, then ``N``
sessions opened with ``initialize`` and ``notifications/initialized``, each on
a request of its own, and no standalone ``GET`` stream.  The heap is
snapshotted before and after the ``N`` sessions (after a full collection both
times) and the difference is printed per session, largest allocation sites
first.  Afterwards every session answers one call and is deleted, and the heap
must be back where it was (the line ``left after DELETE``).

APP is one of ``ours-streamable`` (JSON answers), ``ours-streamable-sse``
(event-stream answers) (default: both).  The figure is the Python heap only:
RSS adds the allocator's overhead and, under a real server, nothing else
(an idle Streamable HTTP session holds no connection).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import linecache
import sys
import tracemalloc
from functools import partial
from typing import Any

import orjson
import trio

from trio_mcp_sse.testing import ASGITestClient, run_asgi_app

from .micro import PROTOCOL_VERSION, STREAMABLE_PATH, load

STREAMABLE_APPS = ("ours-streamable", "ours-streamable-sse")
_CALL = {"name": "echo", "arguments": {"text": "hello"}}


class IdleSession:
    """One client session: initialize, initialized, then (after the snapshot) a call and DELETE."""

    def __init__(self, client: ASGITestClient) -> None:
        self._client = client
        self._headers: list[tuple[str, str]] = [
            ("host", "127.0.0.1:8000"),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ]
        self._ids = itertools.count(1)

    async def _post(self, message: dict[str, Any], expect: int) -> bytes:
        response = await self._client.request("POST", STREAMABLE_PATH, headers=self._headers, body=orjson.dumps(message))
        if response.status != expect:
            raise AssertionError(f"POST {message.get('method')} answered {response.status}: {response.body[:200]!r}")
        if message.get("method") == "initialize":
            self._headers += [
                ("mcp-session-id", response.headers["mcp-session-id"]),
                ("mcp-protocol-version", PROTOCOL_VERSION),
            ]
        return response.body

    async def open(self) -> None:
        info = {"name": "session-memory", "version": "1"}
        params = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": info}
        await self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": "initialize", "params": params}, 200)
        await self._post({"jsonrpc": "2.0", "method": "notifications/initialized"}, 202)

    async def call_and_end(self) -> None:
        body = await self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": "tools/call", "params": _CALL}, 200)
        if b"hello" not in body:
            raise AssertionError(f"tools/call answered {body[:200]!r}")
        response = await self._client.request("DELETE", STREAMABLE_PATH, headers=self._headers)
        if response.status != 200:
            raise AssertionError(f"DELETE answered {response.status}")


def _snapshot() -> tracemalloc.Snapshot:
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>"))
    )


async def measure(app: Any, sessions: int, *, top: int, group: str) -> dict[str, Any]:
    async with run_asgi_app(app) as client:
        warm = [IdleSession(client) for _ in range(20)]
        for session in warm:
            await session.open()
            await session.call_and_end()
        del warm, session
        before = _snapshot()
        opened = [IdleSession(client) for _ in range(sessions)]
        for session in opened:
            await session.open()
        # The client's own objects are not the server's: measure them apart and subtract.
        client_bytes = sum(sys.getsizeof(s.__dict__) + sys.getsizeof(s) for s in opened)
        await trio.sleep(0.1)
        idle = _snapshot()
        for session in opened:
            await session.call_and_end()
        del opened, session
        await trio.sleep(0.1)
        after = _snapshot()
    stats: list[Any] = idle.compare_to(before, "traceback" if group == "ours" else group)
    total = sum(stat.size_diff for stat in stats)
    if group == "ours":
        stats = _by_our_frame(stats)
    left = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return {"sessions": sessions, "total": total, "client_bytes": client_bytes, "left": left, "stats": stats[:top]}


def _ours(frame: tracemalloc.Frame) -> bool:
    return "trio_mcp_sse/" in frame.filename and "trio_mcp_sse/testing/" not in frame.filename


def _by_our_frame(stats: list[tracemalloc.StatisticDiff]) -> list[tuple[int, int, str]]:
    """Each allocation charged to the innermost line of this package that led to it."""
    sums: dict[str, list[int]] = {}
    for stat in stats:
        # (A traceback lists the oldest frame first.)
        frame = next((f for f in reversed(stat.traceback) if _ours(f)), stat.traceback[-1])
        key = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}  {linecache.getline(frame.filename, frame.lineno).strip()[:70]}"
        entry = sums.setdefault(key, [0, 0])
        entry[0] += stat.size_diff
        entry[1] += stat.count_diff
    return sorted(((size, count, key) for key, (size, count) in sums.items()), reverse=True)


def _where(stat: tracemalloc.StatisticDiff, group: str) -> str:
    frames = stat.traceback
    if group != "traceback":
        frame = frames[0]
        return f"{frame.filename.split('site-packages/')[-1].replace(sys.prefix, '')}:{frame.lineno}"
    return " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in reversed(frames))


def add_heap_options(parser: argparse.ArgumentParser, *, top: int = 25) -> None:
    """The options of a heap probe: how many places to list, how to group them, how deep to trace."""
    parser.add_argument("--top", type=int, default=top)
    parser.add_argument(
        "--group",
        choices=("ours", "lineno", "traceback", "filename"),
        default="ours",
        help="ours: by the innermost line of trio_mcp_sse that allocated (needs --frames deep enough)",
    )
    parser.add_argument("--frames", type=int, default=16, help="traceback depth kept (--group ours, traceback)")


def start_tracing(args: argparse.Namespace) -> None:
    tracemalloc.start(args.frames if args.group in ("ours", "traceback") else 1)


def write_stats(stats: list[Any], count: int, group: str) -> None:
    """One line per place that holds at least 8 bytes per session: bytes and blocks per session."""
    for stat in stats:
        size, blocks, where = stat if isinstance(stat, tuple) else (stat.size_diff, stat.count_diff, _where(stat, group))
        if abs(size) >= count * 8:
            sys.stdout.write(f"  {size / count:8,.0f} B {blocks / count:6.2f} blocks  {where}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.session_memory", description=__doc__.split("\n")[0])
    parser.add_argument("apps", nargs="*", help=f"from {', '.join(STREAMABLE_APPS)}")
    parser.add_argument("--sessions", type=int, default=2000)
    add_heap_options(parser)
    args = parser.parse_args(argv)
    unknown = [name for name in args.apps if name not in STREAMABLE_APPS]
    if unknown:
        parser.error(f"unknown app(s): {', '.join(unknown)}")
    start_tracing(args)
    for name in args.apps or STREAMABLE_APPS:
        result = trio.run(partial(measure, load(name), args.sessions, top=args.top, group=args.group))
        count = result["sessions"]
        server = result["total"] - result["client_bytes"]
        sys.stdout.write(
            f"{name}: {server / count:,.0f} bytes per idle session on the heap "
            f"({result['total'] / count:,.0f} measured, of which the test client's {result['client_bytes'] / count:,.0f}); "
            f"left after DELETE: {result['left'] / count:,.0f} bytes per session\n"
        )
        write_stats(result["stats"], count, args.group)
    return 0


if __name__ == "__main__":
    sys.exit(main())
