"""``python -m trio_mcp_sse serve module:app``: hypercorn's trio worker with a graceful drain.

Why a command of our own: hypercorn's CLI catches SIGTERM in its parent process
and the application hears nothing until streams are cut at ``graceful_timeout``.
SSE streams are long-lived, so that cut *is* the shutdown, and clients see reset
connections.  Here the signal first *drains* every transport in the process
(new sessions get 503, in-flight requests finish, every stream ends with a
complete body), and only then does hypercorn stop.

Two guards keep shutdown bounded even with clients that stopped reading:
hypercorn writes to sockets inside a shielded scope with no timeout, so a peer
with a full receive window would hold its connection (and the process) forever.
Connections served here bound every write (``--write-timeout``) and are aborted
outright once the drain and the graceful period are over.

That guard replaces hypercorn's private ``TCPServer``; ``_hypercorn_internals``
checks, before anything starts, that the installed hypercorn still has what it
relies on, and the command stops with one line on stderr if not.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import importlib
import logging
import multiprocessing
import os
import signal
import sys
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import trio

from ._drain import DrainGroup
from ._hypercorn_internals import HypercornInternalsError, check_hypercorn_internals

__all__ = ["ServeOptions", "main", "serve"]

log = logging.getLogger("trio_mcp_sse.serve")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """What ``serve`` needs beyond hypercorn's own configuration."""

    drain_timeout: float = 10.0
    write_timeout: float = 30.0


def _install_bounded_writes(options: ServeOptions) -> weakref.WeakSet[Any]:
    """Make hypercorn's trio connections bound their writes and be abortable.

    Returns the live connections, for aborting at the end of a shutdown.
    """
    from hypercorn.events import Closed, RawData
    from hypercorn.trio import run as hypercorn_run
    from hypercorn.trio.tcp_server import TCPServer

    connections: weakref.WeakSet[Any] = weakref.WeakSet()

    class BoundedWriteTCPServer(TCPServer):
        """hypercorn's connection with a write deadline and an abort switch."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.writing = False
            connections.add(self)

        async def protocol_send(self, event: Any) -> None:
            if not isinstance(event, RawData):
                await super().protocol_send(event)
                return
            async with self.send_lock:
                try:
                    # Shielded as in hypercorn (a cancelled request must not tear a
                    # half-written frame), but no longer unbounded.
                    with trio.CancelScope(shield=True), trio.move_on_after(options.write_timeout) as timer:
                        self.writing = True
                        try:
                            await self.stream.send_all(event.data)
                        finally:
                            self.writing = False
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.protocol.handle(Closed())
                    return
                if timer.cancelled_caught:
                    log.warning(
                        "peer did not read for %.1fs; closing its connection",
                        options.write_timeout,
                        extra={"event": "write_timeout"},
                    )
                    await self.abort()
                    await self.protocol.handle(Closed())

        async def abort(self) -> None:
            with trio.CancelScope(shield=True), contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await self.stream.aclose()

    setattr(hypercorn_run, "TCPServer", BoundedWriteTCPServer)  # noqa: B010 -- worker_serve looks it up here
    return connections


async def serve(
    app: Any,
    config: Any,
    options: ServeOptions = ServeOptions(),
    *,
    sockets: Any = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` with hypercorn's trio worker until SIGTERM/SIGINT, then drain and exit.

    A second signal during the drain skips what is left of it.  Raises
    :class:`HypercornInternalsError` before serving if the installed hypercorn
    lacks an internal the bounded writes rely on.
    """
    check_hypercorn_internals()
    from hypercorn.trio.run import worker_serve
    from hypercorn.utils import wrap_app

    connections = _install_bounded_writes(options)
    shutting_down = trio.Event()
    drain_group = DrainGroup()  # every transport of ``app`` joins it from its lifespan
    served: Any = drain_group.wrap(app)

    with trio.open_signal_receiver(*_SIGNALS) as signals:

        async def shutdown_trigger() -> None:
            async for signum in signals:
                log.info(
                    "%s received: draining for up to %.1fs",
                    signal.Signals(signum).name,
                    options.drain_timeout,
                    extra={"event": "shutdown_signal"},
                )
                break
            async with trio.open_nursery() as nursery:

                async def skip_on_second_signal() -> None:
                    async for _ in signals:
                        log.warning("second signal: skipping the rest of the drain", extra={"event": "shutdown_forced"})
                        nursery.cancel_scope.cancel()

                nursery.start_soon(skip_on_second_signal)
                await drain_group.drain(options.drain_timeout)
                nursery.cancel_scope.cancel()
            shutting_down.set()

        async with trio.open_nursery() as nursery:

            async def abort_leftovers() -> None:
                await shutting_down.wait()
                # Streams had the whole drain to finish; one still stuck in a write
                # belongs to a client that stopped reading.  Others get the graceful period.
                for connection in list(connections):
                    if connection.writing:
                        await connection.abort()
                await trio.sleep(config.graceful_timeout)
                for connection in list(connections):
                    await connection.abort()

            nursery.start_soon(abort_leftovers)
            await worker_serve(
                wrap_app(served, config.wsgi_max_body_size, None),
                config,
                sockets=sockets,
                shutdown_trigger=shutdown_trigger,
                task_status=task_status,
            )
            nursery.cancel_scope.cancel()


def _load_app(path: str) -> Any:
    """Import ``module:attribute`` (attribute defaults to ``app``), then freeze the heap.

    ``gc.freeze()`` moves everything imported so far (Quart, pydantic, the MCP
    types...) out of the cyclic collector's reach.  Under load the collector
    otherwise walks all of it about once a second, a pause that shows up as the
    p99 latency (halved at 20 sessions in ``docs/performance.md``).
    """
    module_name, _, attribute = path.partition(":")
    module = importlib.import_module(module_name)
    target: Any = module
    for part in (attribute or "app").split("."):
        target = getattr(target, part)
    gc.collect()
    gc.freeze()
    return target


def _worker_process(app_path: str, config: Any, options: ServeOptions, sockets: Any) -> None:
    """Entry point of one worker process (spawned): own signals, own drain."""
    _configure_logging(config.loglevel)
    for sock in sockets.insecure_sockets + sockets.secure_sockets:
        sock.listen(config.backlog)
    trio.run(functools.partial(serve, _load_app(app_path), config, options, sockets=sockets))


def _configure_logging(level: str) -> None:
    """Our records next to hypercorn's, same format (hypercorn configures its own loggers)."""
    library = logging.getLogger("trio_mcp_sse")
    if not library.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"))
        library.addHandler(handler)
    library.setLevel(level.upper())


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m trio_mcp_sse serve",
        description="Serve an ASGI app with hypercorn's trio worker; drain sessions on SIGTERM/SIGINT.",
    )
    parser.add_argument("app", help="the application, as module:attribute (default attribute: app)")
    parser.add_argument("-b", "--bind", action="append", help="address to bind, HOST:PORT (repeatable; default 127.0.0.1:8000)")
    parser.add_argument("-w", "--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--drain-timeout", type=float, default=10.0, help="seconds in-flight requests get to finish on shutdown (default 10)")
    parser.add_argument("--graceful-timeout", type=float, default=1.0, help="seconds other connections get after the drain before they are closed (default 1)")
    parser.add_argument("--write-timeout", type=float, default=30.0, help="seconds a write to a client may block before its connection is closed (default 30)")
    parser.add_argument("--root-path", default="", help="ASGI root_path, when mounted under a prefix")
    parser.add_argument("--keep-alive-max-requests", type=int, default=None, help="hypercorn's keep_alive_max_requests")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--access-log", action="store_true", help="log every request (hypercorn's access log)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    for name in ("drain_timeout", "graceful_timeout", "write_timeout"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    return args


def main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    try:
        check_hypercorn_internals()
    except HypercornInternalsError as error:
        sys.stderr.write(f"error: {error}\n")
        return 1
    from hypercorn.config import Config

    _configure_logging(args.log_level)
    config = Config()
    config.bind = args.bind or ["127.0.0.1:8000"]
    config.worker_class = "trio"
    config.graceful_timeout = args.graceful_timeout
    config.root_path = args.root_path
    config.loglevel = args.log_level.upper()
    config.errorlog = "-"
    if args.access_log:
        config.accesslog = "-"
    if args.keep_alive_max_requests is not None:
        config.keep_alive_max_requests = args.keep_alive_max_requests
    config.application_path = args.app
    options = ServeOptions(drain_timeout=args.drain_timeout, write_timeout=args.write_timeout)
    sys.path.insert(0, os.getcwd())

    if args.workers == 1:
        try:
            app = _load_app(args.app)
        except (ImportError, AttributeError) as error:
            sys.stderr.write(f"error: cannot load {args.app!r}: {error}\n")
            return 2
        trio.run(serve, app, config, options)
        return 0
    return _run_workers(args.app, config, options, args.workers)


def _run_workers(app_path: str, config: Any, options: ServeOptions, workers: int) -> int:
    """Parent of N worker processes sharing the listening sockets; forwards SIGTERM/SIGINT."""
    sockets = config.create_sockets()
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker_process, args=(app_path, config, options, sockets), name=f"worker-{n}")
        for n in range(workers)
    ]
    forwarded = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal forwarded
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM if not forwarded else signal.SIGINT)
        forwarded = True

    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in _SIGNALS}
    try:
        for process in processes:
            process.start()
        for signum in _SIGNALS:
            signal.signal(signum, forward)
        for process in processes:
            process.join()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
        for sock in sockets.insecure_sockets + sockets.secure_sockets:
            sock.close()
    codes = [process.exitcode or 0 for process in processes]
    return max(codes, default=0)
