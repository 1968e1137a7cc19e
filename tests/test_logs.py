"""The log helpers and the file-descriptor arithmetic, without sockets."""

from __future__ import annotations

import errno
import logging

from trio_mcp_sse._logs import AcceptErrorFilter, RateLimiter
from trio_mcp_sse._session import session_cap


def test_the_rate_limiter_allows_a_burst_per_window_and_counts_the_rest() -> None:
    limiter = RateLimiter(2, 10.0)
    assert [limiter.allow("a", now=0.0), limiter.allow("a", now=1.0), limiter.allow("a", now=2.0)] == [0, 0, None]
    assert limiter.allow("b", now=2.0) == 0  # keys are independent
    assert limiter.allow("a", now=3.0) is None
    assert limiter.allow("a", now=10.5) == 2  # a new window reports what was suppressed


def accept_record() -> logging.LogRecord:
    error = OSError(errno.EMFILE, "Too many open files")
    return logging.LogRecord(
        "trio.serve_listeners", logging.ERROR, __file__, 1, "accept returned %s (%s); retrying in %s seconds",
        ("EMFILE", "Too many open files", 0.1), (OSError, error, None),
    )


def test_accept_errors_become_one_line_without_a_traceback() -> None:
    accept_filter = AcceptErrorFilter(window=60.0)
    first = accept_record()
    assert accept_filter.filter(first)
    assert first.exc_info is None
    assert first.getMessage() == "accept() failed: Too many open files (EMFILE); new connections wait in the listen backlog"
    assert not any(accept_filter.filter(accept_record()) for _ in range(100))


def test_the_session_cap_follows_the_open_files_limit() -> None:
    assert session_cap(10_000, 1024) == 480
    assert session_cap(100, 1024) == 100
    assert session_cap(None, 256) == 96
    assert session_cap(10_000, None) == 10_000
    assert session_cap(None, None) is None
    assert session_cap(10_000, 10) == 1
    # A large limit keeps at most 1,024 descriptors for POSTs: 10,000 sessions fit in 20,000.
    assert session_cap(None, 20_000) == 20_000 - 64 - 1024
    assert session_cap(10_000, 20_000) == 10_000
    assert session_cap(None, 2_112) == 1_024  # where the two rules meet
