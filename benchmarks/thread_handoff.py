"""What handing a function to a thread and back costs, by way of doing it.

``python -m benchmarks.thread_handoff [--rounds 3] [--tasks 20] [--calls 20000]``

Calls a trivial function ``--calls`` times from ``--tasks`` concurrent Trio
tasks, through each candidate, and prints the best CPU time per call of the
whole process (both threads) over ``--rounds`` interleaved rounds:

* ``to_thread``: ``trio.to_thread.run_sync`` (what a ``def`` tool uses);
* ``abandon``: the same with ``abandon_on_cancel=True``;
* ``limiter``: the same with a ``CapacityLimiter`` of its own;
* ``pool4``: four persistent threads fed by a ``queue.SimpleQueue``, the
  result handed back with ``TrioToken.run_sync_soon`` (no ``trio.from_thread``
  support: a yardstick, not a usable runner);
* ``inline``: called on the event loop's thread.
"""

from __future__ import annotations

import argparse
import functools
import queue
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

Runner = Callable[[Callable[[], Any]], Awaitable[Any]]


def _work(value: int) -> int:
    return value


class Pool:
    """Persistent worker threads; each result reschedules its waiting task from the worker."""

    def __init__(self, size: int) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._serve, daemon=True) for _ in range(size)]
        for thread in self._threads:
            thread.start()

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, token, task, box = item
            try:
                box.append((True, fn()))
            except BaseException as error:  # handed to the caller
                box.append((False, error))
            token.run_sync_soon(trio.lowlevel.reschedule, task)

    async def run(self, fn: Callable[[], Any]) -> Any:
        box: list[tuple[bool, Any]] = []
        self._queue.put((fn, trio.lowlevel.current_trio_token(), trio.lowlevel.current_task(), box))
        await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)


async def _measure(runner: Runner, calls: int, tasks: int) -> float:
    per_task = calls // tasks
    fn = functools.partial(_work, 1)

    async def caller() -> None:
        for _ in range(per_task):
            await runner(fn)

    for _pass in ("warm-up", "measured"):
        start = time.process_time()
        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(caller)
    return (time.process_time() - start) / (per_task * tasks) * 1e6


async def _main(rounds: int, tasks: int, calls: int) -> None:
    limiter = trio.CapacityLimiter(40)
    pool = Pool(4)

    async def inline(fn: Callable[[], Any]) -> Any:
        return fn()

    runners: dict[str, Runner] = {
        "to_thread": trio.to_thread.run_sync,
        "abandon": functools.partial(trio.to_thread.run_sync, abandon_on_cancel=True),
        "limiter": functools.partial(trio.to_thread.run_sync, limiter=limiter),
        "pool4": pool.run,
        "inline": inline,
    }
    best: dict[str, float] = {}
    try:
        for _ in range(rounds):
            for name, runner in runners.items():
                cpu = await _measure(runner, calls, tasks)
                best[name] = min(cpu, best.get(name, cpu))
    finally:
        pool.close()
    for name, cpu in best.items():
        sys.stdout.write(f"{name:10} {cpu:6.1f} us CPU per call = {cpu / best['to_thread']:.2f}x to_thread\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.thread_handoff", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args(argv)
    trio.run(_main, args.rounds, args.tasks, args.calls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
