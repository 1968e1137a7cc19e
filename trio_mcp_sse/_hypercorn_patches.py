"""Three small patches to hypercorn's per-request path, applied by ``serve`` and nowhere else.

A profile of a tool call served by hypercorn's trio worker over HTTP/1.1 put
three costs inside hypercorn rather than in this package:

* ``keep-alive-deadline``: every request stops the connection's keep-alive
  idle timer (a task in its own cancel scope) and every response starts a new
  one: a lock, a cancel, ``nursery.start`` and two task switches per request.
* ``coalesced-response-writes``: the head, the body and the end of a response
  are three socket writes, each under the connection's send lock in a
  shielded scope (the end of a ``Content-Length`` body is even an empty one).
* ``cached-date-header``: the ``Date`` header is formatted from scratch for
  every response, though it changes once a second.

Each patch is written as the change hypercorn itself could make
(``docs/contrib/hypercorn-patches.md`` has the upstream diffs and the
measurements); here each one is applied to the installed hypercorn for the
lifetime of ``serve`` (:func:`hypercorn_patches`) and undone after it, so
importing this package changes nothing, and plain ``hypercorn --worker-class
trio`` runs stock code.  Nothing on the wire changes but the number of writes.

A patch relies on hypercorn internals, so each one names the functions it
was written against and the hash of their source (:data:`PATCHES`); on a
hypercorn outside the tested series, or where one of those functions is
missing or differs, that patch is skipped with one log line and ``serve``
runs hypercorn's own code for it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.metadata
import inspect
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.handlers import format_date_time

import trio

from ._hypercorn_internals import SUPPORTED_HYPERCORN

__all__ = [
    "PATCHES",
    "TESTED_HYPERCORN_SERIES",
    "HypercornPatch",
    "KeepAliveDeadline",
    "hypercorn_patches",
    "patch_problem",
    "source_hash",
]

log = logging.getLogger("trio_mcp_sse.serve")

TESTED_HYPERCORN_SERIES = ("0.18",)
"""The ``major.minor`` releases the patches were reviewed against (within :data:`SUPPORTED_HYPERCORN`)."""

Undo = Callable[[], None]

_COALESCE_LIMIT = 64 * 1024
"""A body up to this size is written together with its held head; a larger one is
written after it, so the patch never copies a large body to save one write."""


@dataclass(frozen=True, slots=True)
class HypercornPatch:
    """One patch: what it replaces (pinned by source hash) and how to apply it."""

    name: str
    summary: str
    pinned: dict[str, str]
    """``module:Qualified.name`` -> SHA-256 prefix of the source the patch was written against."""
    install: Callable[[], Undo]
    """Applies the patch; returns the function that undoes it."""
    precondition: Callable[[], str | None] = lambda: None
    """A further check beyond the pinned sources: ``None``, or why the patch cannot apply."""


# -- keep-alive-deadline ----------------------------------------------------------------------------
class KeepAliveDeadline:
    """hypercorn's keep-alive idle timer as one task per connection whose deadline moves.

    Stock hypercorn keeps the timer in a ``TrioSingleTask``: a response that
    leaves the connection idle *starts* a task (``nursery.start``: a new task,
    a cancel scope, two switches, under a lock) and the next request cancels
    it.  On a keep-alive connection that is one task per request, about 18% of
    a small request's CPU.  This object stands in for the ``TrioSingleTask``
    (same ``restart``/``stop`` methods, called at the same places): the first
    ``restart`` starts one watcher task, and from then on becoming idle or busy
    only moves its cancel scope's deadline (``keep_alive_timeout`` from now, or
    infinity), which costs Trio a heap update.

    What the stock timer does is kept: an idle connection is closed after
    ``keep_alive_timeout`` or as soon as the worker is terminating; a busy one
    is never closed by it (if the worker terminates while a request runs, the
    connection is closed once idle, as hypercorn's own recycling already does).
    Stock hypercorn has no timer task while a request runs, so when the
    connection stops reading in that state the watcher ends too
    (:meth:`reading_ended`) instead of keeping the connection's task group open.
    """

    __slots__ = ("_connection", "_scope")

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self._scope: trio.CancelScope | None = None  # the live watcher's; None when there is none

    async def restart(self, task_group: Any, action: Any) -> None:  # TrioSingleTask's; _watch is the action
        """The connection is idle: close it ``keep_alive_timeout`` from now (now if the worker is stopping)."""
        connection = self._connection
        timeout = 0.0 if connection.context.terminated.is_set() else connection.config.keep_alive_timeout
        deadline = trio.current_time() + timeout
        if self._scope is None:
            self._scope = trio.CancelScope(deadline=deadline)
            task_group.spawn(self._watch, self._scope)
        else:
            self._scope.deadline = deadline

    async def stop(self) -> None:
        """A request is in progress: no deadline until the connection is idle again."""
        if self._scope is not None:
            self._scope.deadline = math.inf

    def reading_ended(self) -> None:
        """The connection stopped reading: a watcher of a busy connection is not needed any more."""
        scope = self._scope
        if scope is not None and scope.deadline == math.inf:
            self._scope = None
            scope.cancel()

    async def _watch(self, scope: trio.CancelScope) -> None:
        with scope:
            await self._connection.context.terminated.wait()
            if scope.deadline == math.inf:  # terminating while busy: close once idle
                await trio.sleep_forever()
        if self._scope is not scope:  # retired by reading_ended
            return
        self._scope = None
        with trio.CancelScope(shield=True):
            await self._connection._initiate_server_close()


def _install_keep_alive_deadline() -> Undo:
    from hypercorn.trio.tcp_server import TCPServer

    original_init = TCPServer.__init__
    original_read_data = TCPServer._read_data

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.idle_task = KeepAliveDeadline(self)

    @functools.wraps(original_read_data)
    async def _read_data(self: Any) -> None:
        try:
            await original_read_data(self)
        finally:
            if isinstance(self.idle_task, KeepAliveDeadline):
                self.idle_task.reading_ended()

    return _replace_attributes(TCPServer, {"__init__": __init__, "_read_data": _read_data})


def _keep_alive_precondition() -> str | None:
    from hypercorn.trio.task_group import TaskGroup
    from hypercorn.trio.worker_context import TrioSingleTask

    if list(inspect.signature(TrioSingleTask.restart).parameters) != ["self", "task_group", "action"]:
        return "TrioSingleTask.restart(self, task_group, action) changed"
    if not callable(getattr(TaskGroup, "spawn", None)):
        return "hypercorn.trio.task_group.TaskGroup.spawn is missing"
    return None


# -- coalesced-response-writes ---------------------------------------------------------------------
def _install_coalesced_response_writes() -> Undo:
    """Hold an HTTP/1.1 response head until its first body event, then write them together.

    A small response (a ``202``, a JSON answer) is three writes in stock
    hypercorn: the head, the body and the end of the body (an empty write
    when the length was declared), each under the connection's send lock in a
    shielded scope.  The ASGI specification already says the server must not
    start sending a response before the application's first body message, so
    holding the serialised head until then changes nothing an application
    may rely on: the head goes out with the first body (or with the end of
    an empty one), and an empty write is not made.  A complete small response
    with ``Content-Length`` becomes one write; a streamed one (SSE) still
    writes every body event as it comes, the first together with the head.
    Bytes leave in the order h11 serialised them: anything else written
    (WebSocket data, the end of a stream) first flushes a held head.
    """
    import h11
    from hypercorn.events import RawData
    from hypercorn.protocol.events import Body, EndBody
    from hypercorn.protocol.h11 import H11Protocol

    original_stream_send = H11Protocol.stream_send

    async def _send_h11_event(self: Any, event: Any) -> None:
        try:
            data = self.connection.send(event) or b""
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            return
        if isinstance(event, h11.Response):
            self._held_head = data
            return
        head = self._held_head
        if head:
            self._held_head = b""
            if len(data) <= _COALESCE_LIMIT:
                data = head + data
            else:
                await self.send(RawData(data=head))
        if data:
            await self.send(RawData(data=data))

    @functools.wraps(original_stream_send)
    async def stream_send(self: Any, event: Any) -> None:
        if self._held_head and not isinstance(event, Body | EndBody):
            head, self._held_head = self._held_head, b""
            await self.send(RawData(data=head))
        await original_stream_send(self, event)

    return _replace_attributes(
        H11Protocol, {"_send_h11_event": _send_h11_event, "stream_send": stream_send, "_held_head": b""}
    )


# -- cached-date-header ----------------------------------------------------------------------------
class _DatePerSecond:
    """``wsgiref.handlers.format_date_time`` remembered for the current second.

    The header has a resolution of one second (``format_date_time`` truncates
    to it), so the text is identical to formatting it every time.
    """

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, timestamp: float) -> str:
        second = int(timestamp)
        if second != self._second:
            self._text = format_date_time(second)
            self._second = second
        return self._text


def _install_cached_date_header() -> Undo:
    """Format hypercorn's ``Date`` header once a second instead of once per response."""
    import hypercorn.config

    return _replace_attributes(hypercorn.config, {"format_date_time": _DatePerSecond()})


def _date_precondition() -> str | None:
    import hypercorn.config

    if getattr(hypercorn.config, "format_date_time", None) is not format_date_time:
        return "hypercorn.config.format_date_time is not wsgiref's"
    return None


PATCHES: tuple[HypercornPatch, ...] = (
    HypercornPatch(
        "keep-alive-deadline",
        "one keep-alive timer task per connection, its deadline moved per request",
        {
            "hypercorn.trio.tcp_server:TCPServer.__init__": "4c1d42457bc197b2",
            "hypercorn.trio.tcp_server:TCPServer.run": "fd34b021d1a86c98",
            "hypercorn.trio.tcp_server:TCPServer.protocol_send": "225856426bff7be0",
            "hypercorn.trio.tcp_server:TCPServer._read_data": "7ca747d922c65cf1",
            "hypercorn.trio.tcp_server:TCPServer._idle_timeout": "210ce1014d98e1cb",
            "hypercorn.trio.tcp_server:TCPServer._initiate_server_close": "7c1b548a65adc8b1",
        },
        _install_keep_alive_deadline,
        _keep_alive_precondition,
    ),
    HypercornPatch(
        "coalesced-response-writes",
        "an HTTP/1.1 response head written with its first body event; no empty writes",
        {
            "hypercorn.protocol.h11:H11Protocol._send_h11_event": "5e40283daa303ec7",
            "hypercorn.protocol.h11:H11Protocol.stream_send": "56a36254a368d71a",
            "hypercorn.protocol.h11:H11Protocol._maybe_recycle": "3ac53f52bc4e65de",
            "hypercorn.protocol.http_stream:HTTPStream.app_send": "c806044b99736985",
        },
        _install_coalesced_response_writes,
    ),
    HypercornPatch(
        "cached-date-header",
        "the Date header formatted once a second",
        {"hypercorn.config:Config.response_headers": "5a637c3d48180e55"},
        _install_cached_date_header,
        _date_precondition,
    ),
)
"""Every patch ``serve`` applies, in the order it applies them.  Each is independent of the others."""


def _replace_attributes(owner: Any, replacements: dict[str, Any]) -> Undo:
    missing = object()
    originals = {name: vars(owner).get(name, missing) for name in replacements}
    for name, value in replacements.items():
        setattr(owner, name, value)

    def undo() -> None:
        for name, value in originals.items():
            if value is missing:
                delattr(owner, name)
            else:
                setattr(owner, name, value)

    return undo


def source_hash(target: str) -> str:
    """SHA-256 prefix of the source of ``module:Qualified.name`` (raises LookupError if absent)."""
    module_name, _, qualified = target.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualified.split("."):
            found = getattr(found, part)
        source = inspect.getsource(found)
    except (ImportError, AttributeError) as error:
        raise LookupError(f"{target} is missing") from error
    except (OSError, TypeError) as error:
        raise LookupError(f"the source of {target} is unavailable") from error
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _installed_version() -> str:
    try:
        return importlib.metadata.version("hypercorn")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


def patch_problem(patch: HypercornPatch) -> str | None:
    """Why ``patch`` cannot apply to the installed hypercorn (one phrase), or ``None``."""
    version = _installed_version()
    if ".".join(version.split(".")[:2]) not in TESTED_HYPERCORN_SERIES:
        return f"hypercorn {version} is not a tested release ({', '.join(s + '.x' for s in TESTED_HYPERCORN_SERIES)})"
    for target, expected in patch.pinned.items():
        try:
            actual = source_hash(target)
        except LookupError as error:
            return str(error)
        if actual != expected:
            return f"{target} differs from the source the patch was written against"
    return patch.precondition()


_active: set[str] = set()


@contextlib.contextmanager
def hypercorn_patches(enabled: bool = True, patches: tuple[HypercornPatch, ...] | None = None) -> Iterator[list[str]]:
    """Apply every patch (of :data:`PATCHES` by default) that fits the installed hypercorn; undo them on exit.

    Yields the names of the patches applied.

    A patch that does not fit is skipped with one warning line naming it and
    the reason; hypercorn's own code then runs for that part.  A patch already
    applied by an enclosing call is left to that call.
    """
    applied: list[str] = []
    undos: list[Undo] = []
    try:
        for patch in (PATCHES if patches is None else patches) if enabled else ():
            if patch.name in _active:
                continue
            problem = patch_problem(patch)
            if problem is not None:
                log.warning(
                    "hypercorn patch %s skipped: %s; hypercorn's own code runs instead (supported: hypercorn%s)",
                    patch.name,
                    problem,
                    SUPPORTED_HYPERCORN,
                    extra={"event": "hypercorn_patch_skipped"},
                )
                continue
            undos.append(patch.install())
            _active.add(patch.name)
            applied.append(patch.name)
        if applied:
            log.debug("hypercorn patches applied: %s", ", ".join(applied), extra={"event": "hypercorn_patches"})
        yield applied
    finally:
        for undo, name in zip(reversed(undos), reversed(applied), strict=True):
            undo()
            _active.discard(name)
