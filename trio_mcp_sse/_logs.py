"""What the library logs besides session events: refusals, accept errors, and the default handler.

Three problems this module exists for:

* A refusal (a 421 behind a proxy that rewrites ``Host``, a 413, a 503 at the
  session cap) is invisible to the deployer unless it is logged; logged per
  request it is a flood an attacker controls.  So each refusal is one line,
  with reason, method, path, a session-id prefix and the peer (never a body or
  a token), and lines per reason are rate-limited.
* Out of file descriptors, trio's ``serve_listeners`` logs a full traceback
  for every failed ``accept`` (ten a second).  :class:`AcceptErrorFilter` turns
  them into one rate-limited line.
* Under plain ``hypercorn`` nothing configures the ``trio_mcp_sse`` logger, so
  its records reach Python's last-resort handler (no time, no level, INFO
  dropped).  :func:`ensure_default_handler` installs a handler with the same
  format as hypercorn's own error log, unless the application configured
  logging itself (a handler on the library's logger or on the root logger).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Final

from ._http import Outcome, Scope, peer_of

__all__ = [
    "LOG_DATEFMT",
    "LOG_FORMAT",
    "AcceptErrorFilter",
    "RateLimiter",
    "ensure_default_handler",
    "log_refusal",
]

log = logging.getLogger("trio_mcp_sse")

LOG_FORMAT: Final = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
LOG_DATEFMT: Final = "[%Y-%m-%d %H:%M:%S %z]"
"""hypercorn's error-log format, so both kinds of line read alike in one stream."""

REFUSAL_LINES_PER_WINDOW: Final = 10
REFUSAL_WINDOW: Final = 10.0


class RateLimiter:
    """At most ``burst`` events per key in each ``window`` seconds; counts what it suppressed."""

    __slots__ = ("_burst", "_seen", "_window")

    def __init__(self, burst: int, window: float) -> None:
        self._burst = burst
        self._window = window
        self._seen: dict[str, tuple[float, int, int]] = {}  # key -> (window start, allowed, suppressed)

    def allow(self, key: str, now: float | None = None) -> int | None:
        """``None`` to suppress this event; otherwise how many were suppressed before it."""
        now = time.monotonic() if now is None else now
        start, allowed, suppressed = self._seen.get(key, (now, 0, 0))
        if now - start >= self._window:
            start, allowed = now, 0
        if allowed >= self._burst:
            self._seen[key] = (start, allowed, suppressed + 1)
            return None
        self._seen[key] = (start, allowed + 1, 0)
        return suppressed


_refusals = RateLimiter(REFUSAL_LINES_PER_WINDOW, REFUSAL_WINDOW)


def _session_prefix(scope: Scope) -> str:
    """The first 8 characters of the session id the request named, if any (never the whole id)."""
    query: bytes = scope.get("query_string", b"")
    for pair in query.split(b"&"):
        key, _, value = pair.partition(b"=")
        if key == b"session_id" and value:
            return value[:8].decode("latin-1", "replace")
    for key, value in scope.get("headers", ()):
        if key == b"mcp-session-id" and value:
            return bytes(value[:8]).decode("latin-1", "replace")
    return "-"


def log_refusal(scope: Scope, outcome: Outcome) -> None:
    """One line per refusal (rate-limited per outcome): why, what, which session, who."""
    if not log.isEnabledFor(logging.INFO):
        return
    suppressed = _refusals.allow(outcome.label)
    if suppressed is None:
        return
    more = f" ({suppressed} more {outcome.label} refusals not logged)" if suppressed else ""
    path: str = scope.get("path", "")
    log.info(
        "refused %s %s: %d %s (session %s…, peer %s)%s",
        scope.get("method", "-"),
        path,
        outcome.status,
        outcome.label,
        _session_prefix(scope),
        peer_of(scope) or "unknown",
        more,
        extra={"event": "request_refused", "reason": outcome.label, "status": outcome.status},
    )


class AcceptErrorFilter(logging.Filter):
    """Rate-limit trio's ``accept`` error records and drop their tracebacks.

    Installed on the ``trio.serve_listeners`` logger.  A process out of file
    descriptors gets one line per ``window`` seconds saying so, instead of a
    traceback ten times a second.
    """

    def __init__(self, window: float = 10.0) -> None:
        super().__init__()
        self._limiter = RateLimiter(1, window)

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        name = getattr(error, "strerror", None) or record.getMessage()
        suppressed = self._limiter.allow("accept")
        if suppressed is None:
            return False
        more = f"; {suppressed} more since the last report" if suppressed else ""
        record.msg = "accept() failed: %s (%s); new connections wait in the listen backlog%s"
        record.args = (name, _errno_name(error), more)
        record.exc_info = None
        record.exc_text = None
        return True


def _errno_name(error: BaseException | None) -> str:
    import errno

    number = getattr(error, "errno", None)
    return errno.errorcode.get(number, "error") if isinstance(number, int) else "error"


def install_accept_error_filter() -> None:
    """Idempotent: one filter on trio's listener logger."""
    listeners = logging.getLogger("trio.serve_listeners")
    if not any(isinstance(existing, AcceptErrorFilter) for existing in listeners.filters):
        listeners.addFilter(AcceptErrorFilter())


def ensure_default_handler(level: int = logging.INFO) -> None:
    """Give the library's logger a handler (hypercorn's format, stderr) unless logging was configured.

    Configured means a handler on ``trio_mcp_sse`` or on the root logger: then
    the application decides format, level and destination.
    """
    if logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATEFMT))
    for name in ("trio_mcp_sse", "trio.serve_listeners"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(handler)
            if logger.level == logging.NOTSET:
                logger.setLevel(level)
