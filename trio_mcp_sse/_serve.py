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

``--workers N`` runs N such processes on the sockets this one binds
(``_workers``), and only with a broker: a session's messages may reach any
worker, and only a broker shared by all of them (``--broker``, handed to each
worker as ``TRIO_MCP_SSE_BROKER``) can deliver them to the one holding the
session.  One worker keeps the single-process path: no extra process.
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import os
import resource
import secrets
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Final, Literal

import trio

from ._bounded_writes import install_bounded_writes
from ._drain import DrainGroup
from ._hypercorn_internals import HypercornInternalsError, check_hypercorn_internals
from ._hypercorn_patches import hypercorn_patches
from ._llhttp import llhttp_available, llhttp_connections_installed
from ._load import LoadError, import_attribute
from ._logs import ensure_default_handler, install_accept_error_filter
from ._redis_broker import BROKER_ENVIRONMENT_VARIABLE, check_broker_url
from ._redis_broker import redacted_url as _redacted
from ._workers import (
    RestartPolicy,
    WorkerPool,
    detach_from_terminal_signals,
    report_fatal,
    stop_when_supervisor_exits,
)
from .server._input import REQUEST_STATE_SECRET_VARIABLE

__all__ = [
    "BROKER_ENV",
    "DEFAULT_GC_THRESHOLD",
    "LoadError",
    "ServeOptions",
    "apply_gc_threshold",
    "check_broker_url",
    "main",
    "raise_fd_limit",
    "serve",
]

log = logging.getLogger("trio_mcp_sse.serve")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DEFAULT_GC_THRESHOLD = 50_000


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """What ``serve`` needs beyond hypercorn's own configuration."""

    drain_timeout: float = 10.0
    write_timeout: float = 30.0
    gc_threshold: int | None = DEFAULT_GC_THRESHOLD
    """Generation-0 threshold of the garbage collector, set once the worker has started
    (``None``: leave Python's, 700).  See :func:`apply_gc_threshold`."""
    hypercorn_patches: bool = True
    """Apply the patches to hypercorn's per-request path while serving (``_hypercorn_patches``:
    a keep-alive timer per connection instead of per request, a small response in one write,
    the ``Date`` header cached per second); each is skipped, with one log line, on a
    hypercorn it was not written against."""
    http_parser: Literal["llhttp", "h11"] = "llhttp"
    """How cleartext HTTP/1.1 connections are served: ``"llhttp"``, by :mod:`trio_mcp_sse._llhttp`
    (the C parser of ``httptools``, one task per connection, the same ASGI scope and the same
    bytes on the wire as hypercorn's); ``"h11"``, by hypercorn's own h11 connection class.
    TLS listeners always use hypercorn's."""


def _use_llhttp(options: ServeOptions) -> bool:
    """Whether this worker serves cleartext HTTP/1.1 with llhttp (it falls back, with one line, without httptools)."""
    if options.http_parser != "llhttp":
        return False
    if llhttp_available():
        return True
    log.warning(
        "httptools is not installed: serving HTTP/1.1 with hypercorn's h11 connections (pip install httptools)",
        extra={"event": "llhttp_unavailable"},
    )
    return False


def apply_gc_threshold(threshold: int | None) -> None:
    """Collect generation 0 every ``threshold`` net allocations instead of every 700.

    Every request allocates short-lived containers (hypercorn's events, h11's
    state, Trio's tasks and cancel scopes), and with Python's default a young
    collection runs every few requests; almost nothing it walks survives it.
    Raising the threshold (the older generations keep their 10/10) spends a
    few megabytes of garbage-in-waiting to run it far less often (the CPU per
    call measured in docs/performance.md).  Applied after start-up, so the
    import and the lifespan ran, and were frozen, under the default.
    """
    if threshold is None:
        return
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)


async def serve(
    app: Any,
    config: Any,
    options: ServeOptions = ServeOptions(),
    *,
    sockets: Any = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` with hypercorn's trio worker until SIGTERM/SIGINT, then drain and exit.

    A second signal during the drain skips what is left of it.  Once the
    worker serves, ``options.gc_threshold`` is applied; ``options.hypercorn_patches``
    are in force while it serves and undone when it returns.  Raises
    :class:`HypercornInternalsError` before serving if the installed hypercorn
    lacks an internal the bounded writes rely on.
    """
    check_hypercorn_internals()
    from hypercorn.trio.run import worker_serve
    from hypercorn.utils import wrap_app

    connections = install_bounded_writes(options.write_timeout)
    shutting_down = trio.Event()
    drain_group = DrainGroup()  # every transport of ``app`` joins it from its lifespan
    served: Any = drain_group.wrap(app)

    with (
        trio.open_signal_receiver(*_SIGNALS) as signals,
        hypercorn_patches(options.hypercorn_patches),
        llhttp_connections_installed(_use_llhttp(options)) as close_idle_connections,
    ):

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
            close_idle_connections()  # (hypercorn's own connections watch for the end themselves)
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

            async def run_worker(task_status: trio.TaskStatus[list[str]]) -> None:
                await worker_serve(
                    wrap_app(served, config.wsgi_max_body_size, None),
                    config,
                    sockets=sockets,
                    shutdown_trigger=shutdown_trigger,
                    task_status=task_status,
                )
                nursery.cancel_scope.cancel()

            nursery.start_soon(abort_leftovers)
            binds = await nursery.start(run_worker)
            apply_gc_threshold(options.gc_threshold)
            task_status.started(binds)


BROKER_ENV: Final = BROKER_ENVIRONMENT_VARIABLE
"""The environment variable a process reads its broker URL from (``serve`` sets it in each worker)."""

NO_BROKER: Final = "none"
"""``--broker none``: several workers, knowingly without a broker (an app that keeps no sessions)."""

STOP_MARGIN: Final = 5.0
"""Seconds a worker gets beyond its drain and graceful periods before the parent kills it."""

_WORKERS_REFUSED = (
    "--workers {n} needs a broker: sessions live in the memory of the worker that holds their "
    "stream, so without one a POST that reaches another worker would get 404; add --broker "
    "redis://HOST:6379/0 (or set " + BROKER_ENV + "); an app that keeps no sessions (stateless, or "
    "2026-07-28 clients only) can say --broker none"
)


def _load_app(path: str) -> Any:
    """Import ``module:attribute`` (attribute defaults to ``app``), then freeze the heap.

    An :class:`~trio_mcp_sse.MCPServer` is served as its ``http_app()``: Streamable HTTP
    at ``/mcp`` and HTTP+SSE at ``/sse``, what a client of either transport expects to find.

    ``gc.freeze()`` moves everything imported so far (Quart, pydantic, the MCP
    types...) out of the cyclic collector's reach.  Under load the collector
    otherwise walks all of it about once a second, a pause that shows up as the
    p99 latency (halved at 20 sessions in ``docs/performance.md``).
    """
    from .server import MCPServer

    target = import_attribute(path, "app")
    if isinstance(target, MCPServer):
        target = target.http_app()
    if not callable(target):
        raise LoadError(f"{path!r} is a {type(target).__name__}, not an ASGI application or an MCPServer")
    gc.collect()
    gc.freeze()
    return target


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; returns (before, after).

    Every stream holds a descriptor for its whole life, and the common default
    soft limit (1024) caps a server at a few hundred sessions for no reason.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, hard
    return soft, soft


def _run_worker(fatal: Connection, app_path: str, config: Any, options: ServeOptions, sockets: Any, log_level: str) -> None:
    """One worker process of ``serve --workers N``: import the app, serve it until told to stop.

    Runs in a process started with ``spawn``: nothing of the parent's memory
    is inherited, ``sys.path``, the working directory and the environment
    (with the broker URL) are.
    """
    detach_from_terminal_signals()
    _configure_logging(log_level)
    try:
        app = _load_app(app_path)
    except LoadError as error:
        report_fatal(fatal, str(error))
        sys.exit(2)
    fatal.close()
    try:
        trio.run(_serve_supervised, app, config, options, sockets)
    except BaseException as error:
        failure = _startup_failure(error)
        if failure is None:
            raise
        sys.stderr.write(f"error: {failure}\n")
        sys.stderr.flush()
        sys.exit(1)


def _startup_failure(error: BaseException) -> str | None:
    """The app's own account of a failed lifespan start-up, if that is what ended the run.

    The app reported it (``lifespan.startup.failed``, e.g. its server's lifespan
    could not open a database) and hypercorn raised it: the line says it all,
    and a traceback through hypercorn's internals would bury it.
    """
    from hypercorn.utils import LifespanFailureError

    if isinstance(error, BaseExceptionGroup):
        matched, _ = error.split(LifespanFailureError)
        if matched is None:
            return None
        leaf: BaseException = matched
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        error = leaf
    if not isinstance(error, LifespanFailureError):
        return None
    text = str(error)  # hypercorn's "Lifespan failure in startup. '<the app's message>'"
    prefix = "Lifespan failure in startup. '"
    if text.startswith(prefix) and text.endswith("'"):
        return f"start-up failed: {text[len(prefix) : -1]}"
    return text


async def _serve_supervised(app: Any, config: Any, options: ServeOptions, sockets: Any) -> None:
    """:func:`serve`, plus a drain if the supervising parent disappears without a word."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_when_supervisor_exits)
        await serve(app, config, options, sockets=sockets)
        nursery.cancel_scope.cancel()


def _configure_logging(level: str) -> None:
    """Our records next to hypercorn's, in hypercorn's format (configured logging is left alone)."""
    ensure_default_handler()
    logging.getLogger("trio_mcp_sse").setLevel(level.upper())
    install_accept_error_filter()


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m trio_mcp_sse serve",
        description=(
            "Serve an ASGI app (or an MCPServer) with hypercorn's trio worker; drain sessions on SIGTERM/SIGINT. "
            "An MCPServer is served as its http_app(): Streamable HTTP at /mcp, HTTP+SSE at /sse. "
            "Raises the soft open-files limit to the hard one."
        ),
    )
    parser.add_argument(
        "app",
        help="module:attribute, an ASGI app or an MCPServer (default attribute: app); an MCPServer is served "
        "as its http_app(): /mcp (Streamable HTTP) and /sse (HTTP+SSE)",
    )
    parser.add_argument("-b", "--bind", action="append", help="address to bind, HOST:PORT (repeatable; default 127.0.0.1:8000)")
    parser.add_argument(
        "--stdio",
        action="store_true",
        help="serve the MCPServer (module:attribute, default attribute: server) over stdin/stdout instead: "
        "one session, newline-delimited JSON-RPC, for a client that launches this command (docs/stdio.md); "
        "--drain-timeout and --log-level apply, the HTTP options do not",
    )
    parser.add_argument(
        "-w",
        "--workers",
        type=int,
        default=1,
        help="worker processes on the same sockets (default 1); more than 1 needs --broker: sessions live in "
        "one worker's memory and, without a broker, a POST reaching another worker would get 404. "
        "A worker that dies is replaced",
    )
    parser.add_argument(
        "--broker",
        metavar="URL",
        help=f"the broker every worker shares (redis://HOST[:PORT][/DB], rediss://..., unix:///PATH, with "
        f"optional settings in the query: ?prefix=app&max_sessions=N); default: ${BROKER_ENV}. Handed to the "
        f"app as {BROKER_ENV}. 'none': several workers without one, for apps that keep no sessions "
        f"(stateless=True, or 2026-07-28 clients only)",
    )
    parser.add_argument("--drain-timeout", type=float, default=10.0, help="seconds in-flight requests get to finish on shutdown (default 10)")
    parser.add_argument("--graceful-timeout", type=float, default=1.0, help="seconds other connections get after the drain before they are closed (default 1)")
    parser.add_argument("--write-timeout", type=float, default=30.0, help="seconds a write to a client may block before its connection is closed (default 30)")
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=DEFAULT_GC_THRESHOLD,
        help=f"garbage collector's generation-0 threshold, set once serving (default {DEFAULT_GC_THRESHOLD}; 0 keeps Python's 700)",
    )
    parser.add_argument(
        "--no-hypercorn-patches",
        dest="hypercorn_patches",
        action="store_false",
        help="run hypercorn's own per-request code instead of serve's patches to it (keep-alive deadline, coalesced response writes, cached Date header)",
    )
    parser.add_argument(
        "--http-parser",
        choices=["llhttp", "h11"],
        default="llhttp",
        help="how cleartext HTTP/1.1 is served: llhttp (httptools' C parser, one task per connection; default) "
        "or h11 (hypercorn's own connection class); TLS always uses hypercorn's",
    )
    parser.add_argument("--root-path", default="", help="ASGI root_path, when mounted under a prefix")
    parser.add_argument("--keep-alive-max-requests", type=int, default=None, help="hypercorn's keep_alive_max_requests")
    parser.add_argument(
        "--backlog", type=int, default=None, help="the listen backlog (hypercorn's backlog, default 100): raise it for bursts of connections"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--access-log", action="store_true", help="log every request (hypercorn's access log)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.gc_threshold < 0:
        parser.error("--gc-threshold must be >= 0")
    if args.backlog is not None and args.backlog < 1:
        parser.error("--backlog must be >= 1")
    for name in ("drain_timeout", "graceful_timeout", "write_timeout"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    return args


def _broker_from(args: argparse.Namespace) -> str | None:
    """The broker URL from ``--broker``, else from the environment; :class:`ValueError` if malformed."""
    if args.broker == NO_BROKER:
        return NO_BROKER
    if args.broker is not None:
        try:
            return check_broker_url(args.broker)
        except ValueError as error:
            raise ValueError(f"--broker {error}") from None
    from_environment = os.environ.get(BROKER_ENV)
    if not from_environment:
        return None
    try:
        return check_broker_url(from_environment)
    except ValueError as error:
        raise ValueError(f"{BROKER_ENV}={error}") from None


def main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    if args.stdio:
        if args.bind or args.workers != 1 or args.broker:
            sys.stderr.write("error: --stdio serves one session on stdin/stdout: no --bind, --workers or --broker\n")
            return 2
        from ._stdio import main as serve_stdio_main

        return serve_stdio_main(args.app, drain_timeout=args.drain_timeout, log_level=args.log_level)
    try:
        broker = _broker_from(args)
    except ValueError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    if args.workers > 1 and broker is None:
        sys.stderr.write(f"error: {_WORKERS_REFUSED.format(n=args.workers)}\n")
        return 2
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
    if args.backlog is not None:
        config.backlog = args.backlog
    config.application_path = args.app
    options = ServeOptions(
        drain_timeout=args.drain_timeout,
        write_timeout=args.write_timeout,
        gc_threshold=args.gc_threshold or None,
        hypercorn_patches=args.hypercorn_patches,
        http_parser=args.http_parser,
    )
    sys.path.insert(0, os.getcwd())
    if broker == NO_BROKER:
        os.environ.pop(BROKER_ENV, None)
    elif broker is not None:
        os.environ[BROKER_ENV] = broker  # read by the app in this process or, below, in every worker
    if args.workers > 1:
        # 2026-07-28 retries may land on any worker: all of them must open what one sealed.
        os.environ.setdefault(REQUEST_STATE_SECRET_VARIABLE, secrets.token_urlsafe(32))
        return _serve_workers(args, config, options)

    try:
        app = _load_app(args.app)
    except LoadError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    try:
        sockets = config.create_sockets()
    except OSError as error:
        sys.stderr.write(f"error: cannot bind {', '.join(config.bind)}: {error.strerror or error}\n")
        return 1
    for sock in sockets.insecure_sockets + sockets.secure_sockets:
        sock.listen(config.backlog)
    before, after = raise_fd_limit()
    log.info(
        "open files limit: %d%s", after, f" (raised from {before})" if after != before else "", extra={"event": "fd_limit"}
    )
    try:
        trio.run(functools.partial(serve, app, config, options, sockets=sockets))
    except BaseException as error:
        failure = _startup_failure(error)
        if failure is None:
            raise
        sys.stderr.write(f"error: {failure}\n")
        return 1
    finally:
        for sock in sockets.insecure_sockets + sockets.secure_sockets:
            sock.close()
    return 0


def _serve_workers(args: argparse.Namespace, config: Any, options: ServeOptions) -> int:
    """Bind here, then supervise ``args.workers`` worker processes on the sockets (see ``_workers``)."""
    try:
        sockets = config.create_sockets()
    except OSError as error:
        sys.stderr.write(f"error: cannot bind {', '.join(config.bind)}: {error.strerror or error}\n")
        return 1
    try:
        for sock in sockets.insecure_sockets + sockets.secure_sockets:
            sock.listen(config.backlog)
        before, after = raise_fd_limit()  # inherited by every worker
        log.info(
            "open files limit: %d%s", after, f" (raised from {before})" if after != before else "", extra={"event": "fd_limit"}
        )
        log.info(
            "starting %d workers of %s (broker %s)",
            args.workers,
            args.app,
            _redacted(os.environ[BROKER_ENV]) if BROKER_ENV in os.environ else "none: sessions stay in their worker",
            extra={"event": "workers_starting"},
        )
        pool = WorkerPool(
            _run_worker,
            (args.app, config, options, sockets, args.log_level),
            workers=args.workers,
            stop_timeout=options.drain_timeout + config.graceful_timeout + STOP_MARGIN,
            policy=RestartPolicy(),
        )
        result = pool.run()
    finally:
        for sock in sockets.insecure_sockets + sockets.secure_sockets:
            sock.close()
    if result.error is not None:
        sys.stderr.write(f"error: {result.error}\n")
    return result.status
