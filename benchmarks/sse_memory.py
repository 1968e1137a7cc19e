"""What an idle HTTP+SSE session keeps on the Python heap under ``serve``, measured with ``tracemalloc``.

``python -m benchmarks.sse_memory [--sessions N] [--top K] [--group ours|lineno|traceback|filename] [--frames F]``

The server is :func:`trio_mcp_sse._serve.serve` (the llhttp connections, the
hypercorn patches and the collector policy of ``python -m trio_mcp_sse
serve``) with ``benchmarks.app_ours:app``, run in this process on a loopback
port; the client is :mod:`benchmarks.loadgen`'s, in a subprocess (so that
none of its objects are on the heap measured), driven step by step over its
stdin and stdout the way the idle scenario drives a server: 20 warm-up
sessions opened, used and closed, then ``N`` sessions opened (``GET /sse``,
``initialize``, ``notifications/initialized``, each POST on a connection of
its own) and left idle.  The heap is snapshotted before and after the ``N``
sessions (after a full collection both times) and the difference is printed
per session, largest allocation sites first.  Afterwards every session answers
one call and closes its stream, and the heap must be back where it was (the
line ``left after close``).

The figure is the Python heap only: RSS adds the allocator's overhead and the
kernel's socket buffers are not in it.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from functools import partial
from typing import Any

import trio

from .session_memory import _by_our_frame, add_heap_options, start_tracing, write_stats

_WARM = 20


# -- the client (a subprocess) -------------------------------------------------------------------
async def _client(port: int, sessions: int) -> None:
    from . import loadgen

    args = argparse.Namespace(port=port, transport="sse", timeout=30.0, call_port=None, path="/mcp")
    errors = loadgen.Errors()
    stdin = trio.lowlevel.FdStream(0)

    async def step(word: str) -> None:
        sys.stdout.write(word + "\n")
        sys.stdout.flush()
        with trio.fail_after(600):
            await stdin.receive_some(16)

    async def call(session: Any, text: str) -> None:
        with trio.fail_after(30):
            result = await session.request("tools/call", {"name": "echo", "arguments": {"text": text}})
        loadgen.check_echo(result, text)

    async with trio.open_nursery() as nursery:
        warm = await loadgen.open_sessions(nursery, args, _WARM, errors, short_posts=True, parallel=_WARM)
        for session in warm:
            await call(session, "w")
            session.close()
        await step("warm")
        opened = await loadgen.open_sessions(nursery, args, sessions, errors, short_posts=True, parallel=100)
        await step("idle")
        for index, session in enumerate(opened):
            await call(session, f"still here {index}")
            session.close()
        if errors.total or len(opened) != sessions:
            raise SystemExit(f"client errors: {dict(errors.counts)} {errors.examples}; opened {len(opened)} of {sessions}")
        await step("done")
        nursery.cancel_scope.cancel()


# -- the server (this process) -------------------------------------------------------------------
def _snapshot() -> tracemalloc.Snapshot:
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>"))
    )


async def measure(sessions: int, *, top: int, group: str) -> dict[str, Any]:
    from hypercorn.config import Config

    from trio_mcp_sse._serve import ServeOptions, _load_app, serve

    app = _load_app("benchmarks.app_ours:app")
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.worker_class = "trio"
    config.loglevel = "WARNING"
    config.backlog = 2048
    snapshots: dict[str, tracemalloc.Snapshot] = {}
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, config, ServeOptions()))
        port = int(binds[0].rsplit(":", 1)[1])
        command = [sys.executable, "-m", "benchmarks.sse_memory", "--client", str(port), "--sessions", str(sessions)]
        client = await trio.lowlevel.open_process(command, stdin=-1, stdout=-1)
        try:
            assert client.stdout is not None and client.stdin is not None
            lines = b""
            for word in ("warm", "idle", "done"):
                with trio.fail_after(900):
                    while b"\n" not in lines:
                        data = await client.stdout.receive_some(64)
                        if not data:
                            raise RuntimeError(f"the client ended before {word!r}")
                        lines += data
                got, _, lines = lines.partition(b"\n")
                if got.decode() != word:
                    raise RuntimeError(f"the client said {got!r}, not {word!r}")
                await trio.sleep(1.0)  # let streams and timers settle
                snapshots[word] = _snapshot()
                await client.stdin.send_all(b"go\n")
            with trio.fail_after(30):
                await client.wait()
            if client.returncode:
                raise RuntimeError(f"the client failed ({client.returncode})")
        finally:
            if client.returncode is None:
                client.kill()
            with trio.move_on_after(5), trio.CancelScope(shield=True):
                await client.wait()
        nursery.cancel_scope.cancel()
    before, idle, after = snapshots["warm"], snapshots["idle"], snapshots["done"]
    stats: list[Any] = idle.compare_to(before, "traceback" if group == "ours" else group)
    total = sum(stat.size_diff for stat in stats)
    if group == "ours":
        stats = _by_our_frame(stats)
    left = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return {"sessions": sessions, "total": total, "left": left, "stats": stats[:top]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sse_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=2000)
    add_heap_options(parser, top=30)
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client is not None:
        trio.run(_client, args.client, args.sessions)
        return 0
    start_tracing(args)
    result = trio.run(partial(measure, args.sessions, top=args.top, group=args.group))
    count = result["sessions"]
    sys.stdout.write(
        f"HTTP+SSE under serve: {result['total'] / count:,.0f} bytes per idle session on the heap; "
        f"left after close: {result['left'] / count:,.0f} bytes per session\n"
    )
    write_stats(result["stats"], count, args.group)
    return 0


if __name__ == "__main__":
    sys.exit(main())
