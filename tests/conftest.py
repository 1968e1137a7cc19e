from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from .redis_server import RedisServer, RedisUnavailable, redis_server_from_environment


@pytest.fixture
def library_errors(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture the library's logs so a test can assert nothing was logged as an error."""
    caplog.set_level(logging.DEBUG, logger="trio_mcp_sse")
    return caplog


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("trio_mcp_sse") and r.levelno >= logging.ERROR]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The suite's real Redis (tests/redis_server.py): started once, stopped at the end.

    Fails, never skips, when no Redis can be had: a broker test that silently
    does not run is worse than one that says what is missing.
    """
    try:
        server = redis_server_from_environment()
    except RedisUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an empty database on the suite's Redis (running again if a test stopped it)."""
    if not redis_server.running:
        redis_server.start()
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def restartable_redis(redis_server: RedisServer, redis_url: str) -> RedisServer:
    """The suite's Redis, for a test that stops and starts it; skipped only under ``REDIS_URL``."""
    if not redis_server.owned:
        pytest.skip("REDIS_URL names a Redis server this suite did not start, so it cannot restart it")
    return redis_server
