"""Several worker processes on shared listening sockets, supervised by the process that bound them.

Theory of operation.  The parent binds the sockets once and starts N workers
with multiprocessing's ``spawn`` context (each worker imports the application
itself, as hypercorn's own multi-worker mode does; the sockets travel with the
process arguments).  The kernel hands each new connection to whichever worker
accepts first.  The parent serves nothing: it only

* **forwards** SIGTERM and SIGINT to every worker, each of which drains as a
  single-process ``serve`` does, and waits for them, bounded by
  ``stop_timeout`` (then SIGKILL);
* **replaces** a worker that dies while the service runs (an OOM kill, a
  ``kill -9``, a crash), after ``RestartPolicy.delay``, so the service keeps
  its capacity; a :class:`RestartBudget` stops the whole service when workers
  die faster than that is useful (a crash loop is a failure to report, not a
  state to keep up);
* **stops** at once, with the worker's one-line message, when a worker reports
  a *fatal* start-up error (the application cannot be imported): every other
  worker would fail the same way.

Workers put themselves in their own process group, so a Ctrl-C in a terminal
reaches only the parent, which forwards it once; otherwise each worker would
get the signal twice and skip its drain.  A worker whose parent dies (SIGKILL,
so nothing was forwarded) notices and drains by itself
(:func:`stop_when_supervisor_exits`), rather than serving on unsupervised.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from typing import Any

import trio

__all__ = [
    "PoolExit",
    "RestartBudget",
    "RestartPolicy",
    "WorkerPool",
    "describe_exit",
    "detach_from_terminal_signals",
    "report_fatal",
    "stop_when_supervisor_exits",
]

log = logging.getLogger("trio_mcp_sse.serve")

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How dead workers are replaced: after ``delay`` seconds, at most ``max_restarts`` per ``window``."""

    delay: float = 0.5
    max_restarts: int = 5
    window: float = 60.0


@dataclass(frozen=True, slots=True)
class PoolExit:
    """How the pool ended: the command's exit status and, for a failure, one line saying why."""

    status: int
    error: str | None = None


class RestartBudget:
    """Counts unexpected worker exits in a sliding window (sans-io: the caller gives the time)."""

    __slots__ = ("_exits", "_policy")

    def __init__(self, policy: RestartPolicy) -> None:
        self._policy = policy
        self._exits: deque[float] = deque()

    def spend(self, now: float) -> bool:
        """Record an exit at ``now``; ``False`` once more than ``max_restarts`` fall in the window."""
        self._exits.append(now)
        while self._exits and now - self._exits[0] > self._policy.window:
            self._exits.popleft()
        return len(self._exits) <= self._policy.max_restarts


def describe_exit(exitcode: int | None) -> str:
    """``exit status 3`` or ``killed by SIGKILL``: how a log line says a worker ended."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"


# -- in the worker ---------------------------------------------------------------------------------
def detach_from_terminal_signals() -> None:
    """Leave the parent's process group: terminal signals reach the parent, which forwards them."""
    with contextlib.suppress(OSError):  # already a group or session leader
        os.setpgrp()


def report_fatal(channel: Connection, message: str) -> None:
    """Tell the parent this worker cannot start for a reason a restart would not fix."""
    with contextlib.suppress(OSError):  # the parent is gone; the exit status still says it
        channel.send(message)


async def stop_when_supervisor_exits() -> None:
    """Signal this worker (SIGTERM, so it drains) when the supervising parent process exits.

    ``multiprocessing`` gives a spawned child a descriptor that turns readable
    when its parent dies.  Outside a supervised worker this waits forever.
    """
    parent = multiprocessing.parent_process()
    sentinel = parent.sentinel if parent is not None else None
    if sentinel is None:
        await trio.sleep_forever()
        return
    await trio.lowlevel.wait_readable(sentinel)
    log.warning("supervising process %s exited: draining this worker", parent.pid if parent else "?", extra={"event": "supervisor_lost"})
    os.kill(os.getpid(), signal.SIGTERM)


# -- in the parent ---------------------------------------------------------------------------------
class _Worker:
    """One worker process and the read end of the channel it reports a fatal error on."""

    def __init__(self, process: SpawnProcess, fatal: Connection) -> None:
        assert process.pid is not None, "started"
        self.process = process
        self.fatal = fatal
        self.pid: int = process.pid

    def fatal_message(self) -> str | None:
        """What the worker reported before it exited, if anything (it has exited: this cannot block)."""
        try:
            if self.fatal.poll():
                message = self.fatal.recv()
                return str(message)
        except (EOFError, OSError):
            pass
        return None

    def signal(self, signum: int) -> None:
        if self.process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):  # exited, not yet reaped
                os.kill(self.pid, signum)

    def close(self) -> None:
        self.fatal.close()
        self.process.close()


class WorkerPool:
    """N worker processes of ``target``, kept at N until a signal, then drained together.

    ``target(fatal, *args)`` runs in each worker; ``fatal`` is a
    :class:`~multiprocessing.connection.Connection` on which it sends one line
    (:func:`report_fatal`) before exiting when it cannot start at all.
    ``args`` must pickle (listening sockets do, under ``spawn``).
    """

    def __init__(
        self,
        target: Callable[..., None],
        args: Sequence[Any],
        *,
        workers: int,
        stop_timeout: float,
        policy: RestartPolicy = RestartPolicy(),
    ) -> None:
        self._target = target
        self._args = tuple(args)
        self._count = workers
        self._stop_timeout = stop_timeout
        self._policy = policy
        self._budget = RestartBudget(policy)
        self._context = multiprocessing.get_context("spawn")
        self._live: dict[int, _Worker] = {}
        self._stopping = trio.Event()
        self._failure: PoolExit | None = None
        self._unclean_stop = False

    def run(self) -> PoolExit:
        """Supervise until every worker has stopped.

        Status 0 after a signal and a clean drain; 1 if a worker had to be
        killed or failed while stopping, or workers died too often; 2 if a
        worker reported a fatal start-up error.
        """
        return trio.run(self._supervise)

    async def _supervise(self) -> PoolExit:
        with trio.open_signal_receiver(*FORWARDED_SIGNALS) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._forward_signals, signals)
                nursery.start_soon(self._kill_stragglers)
                async with trio.open_nursery() as slots:
                    for _ in range(self._count):
                        slots.start_soon(self._keep_one_worker)
                nursery.cancel_scope.cancel()
        if self._failure is not None:
            return self._failure
        return PoolExit(1 if self._unclean_stop else 0)

    def _spawn(self) -> _Worker:
        reader, writer = self._context.Pipe(duplex=False)
        process = self._context.Process(target=self._target, args=(writer, *self._args), daemon=False)
        try:
            process.start()
        except BaseException:
            reader.close()
            raise
        finally:
            writer.close()  # the worker holds the only write end: EOF once it exits
        worker = _Worker(process, reader)
        self._live[worker.pid] = worker
        log.info("worker %d started", worker.pid, extra={"event": "worker_started", "worker_pid": worker.pid})
        return worker

    async def _keep_one_worker(self) -> None:
        """One slot of the pool: a worker, and its replacement whenever it dies unexpectedly."""
        while not self._stopping.is_set():
            try:
                worker = self._spawn()
            except Exception as error:  # out of processes or memory, arguments that do not pickle
                self._fail(1, f"cannot start a worker: {type(error).__name__}: {error}")
                return
            await trio.lowlevel.wait_readable(worker.process.sentinel)
            worker.process.join()  # already exited: this only reaps it
            exitcode = worker.process.exitcode
            fatal = worker.fatal_message()
            del self._live[worker.pid]
            worker.close()
            if self._stopping.is_set():
                self._note_stopped(worker.pid, exitcode)
                return
            if fatal is not None:
                self._fail(2, f"worker {worker.pid} cannot start: {fatal}")
                return
            if not self._budget.spend(time.monotonic()):
                self._fail(
                    1,
                    f"workers exited {self._policy.max_restarts + 1} times within {self._policy.window:.0f}s "
                    f"(last: worker {worker.pid}, {describe_exit(exitcode)}): stopping the service",
                )
                return
            log.error(
                "worker %d exited unexpectedly (%s); starting a replacement in %.1fs",
                worker.pid,
                describe_exit(exitcode),
                self._policy.delay,
                extra={"event": "worker_died", "worker_pid": worker.pid, "exitcode": exitcode},
            )
            with trio.move_on_after(self._policy.delay):
                await self._stopping.wait()

    def _note_stopped(self, pid: int, exitcode: int | None) -> None:
        # A worker still importing when the signal came dies of it: nothing was served, nothing lost.
        clean = exitcode == 0 or (exitcode is not None and -exitcode in FORWARDED_SIGNALS)
        if not clean:
            self._unclean_stop = True
        log.info(
            "worker %d stopped (%s)", pid, describe_exit(exitcode), extra={"event": "worker_stopped", "worker_pid": pid}
        )

    def _begin_stop(self, signum: int) -> None:
        self._stopping.set()
        for worker in list(self._live.values()):
            worker.signal(signum)

    def _fail(self, status: int, message: str) -> None:
        if self._failure is None:
            self._failure = PoolExit(status, message)
        self._begin_stop(signal.SIGTERM)

    async def _forward_signals(self, signals: Any) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            log.info(
                "%s received: forwarding it to %d worker%s",
                name,
                len(self._live),
                "" if len(self._live) == 1 else "s",
                extra={"event": "shutdown_signal"},
            )
            self._begin_stop(signum)  # a second one makes the workers skip the rest of their drain

    async def _kill_stragglers(self) -> None:
        await self._stopping.wait()
        await trio.sleep(self._stop_timeout)
        for worker in list(self._live.values()):
            log.warning(
                "worker %d still running %.1fs after the stop: killing it",
                worker.pid,
                self._stop_timeout,
                extra={"event": "worker_killed", "worker_pid": worker.pid},
            )
            self._unclean_stop = True
            worker.signal(signal.SIGKILL)
