"""The broker's own Redis connections (``_resp``): RESP2 read in pieces, PUBLISH pipelined, a mailbox read."""

from __future__ import annotations

import contextlib
import functools
import re
import ssl
from collections.abc import AsyncIterator

import coredis
import pytest
import trio

from trio_mcp_sse._resp import (
    ProtocolError,
    Publisher,
    RedisEndpoint,
    RespError,
    Subscription,
    _Connection,
    _Incomplete,
    _parse,
    pack,
)

from .redis_server import RedisServer

BOUND = 20


def test_pack_is_a_resp_array_of_bulk_strings() -> None:
    assert pack(b"PUBLISH", "mcp:mailbox:é", b"a\r\nb") == b"*3\r\n$7\r\nPUBLISH\r\n$14\r\nmcp:mailbox:\xc3\xa9\r\n$4\r\na\r\nb\r\n"


@pytest.mark.parametrize(
    ("wire", "value"),
    [
        (b":42\r\n", 42),
        (b"+OK\r\n", b"OK"),
        (b"$5\r\nhello\r\n", b"hello"),
        (b"$0\r\n\r\n", b""),
        (b"$-1\r\n", None),
        (b"*-1\r\n", None),
        (b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$4\r\n\r\n\r\n\r\n", [b"message", b"ch", b"\r\n\r\n"]),
        (b"*2\r\n*1\r\n:1\r\n$-1\r\n", [[1], None]),
    ],
)
def test_every_value_is_read_only_once_it_has_all_arrived(wire: bytes, value: object) -> None:
    for cut in range(len(wire)):
        with pytest.raises(_Incomplete):
            _parse(bytearray(wire[:cut]), 0)
    assert _parse(bytearray(wire + b":7\r\n"), 0) == (value, len(wire))


def test_an_error_reply_is_a_value_and_junk_is_a_protocol_error() -> None:
    error, used = _parse(bytearray(b"-NOAUTH Authentication required.\r\n"), 0)
    assert isinstance(error, RespError) and str(error) == "NOAUTH Authentication required." and used == 34
    for junk in (b"?what\r\n", b"$x\r\nab\r\n", b":1.5\r\n"):
        with pytest.raises(ProtocolError):
            _parse(bytearray(junk), 0)


def test_the_endpoint_is_coredis_reading_of_the_url() -> None:
    def endpoint(url: str) -> RedisEndpoint:
        return RedisEndpoint.of_pool(coredis.Redis.from_url(url, decode_responses=False).connection_pool)

    plain = endpoint("redis://:secret@cache.internal:6380/3?client_name=mcp-a")
    assert (plain.host, plain.port, plain.path, plain.ssl_context) == ("cache.internal", 6380, None, None)
    assert plain.login() == [(b"AUTH", "secret"), (b"CLIENT", b"SETNAME", "mcp-a")]
    user = endpoint("rediss://worker:pw@cache.internal/0?ssl_cert_reqs=required")
    assert user.port == 6379 and isinstance(user.ssl_context, ssl.SSLContext)
    assert user.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert user.login() == [(b"AUTH", "worker", "pw")]
    unix = endpoint("unix:///run/redis.sock?db=1&password=zz&noevict=true")
    assert (unix.host, unix.path) == (None, "/run/redis.sock")
    assert unix.login() == [(b"AUTH", "zz"), (b"CLIENT", b"NO-EVICT", b"ON")]
    assert endpoint("redis://127.0.0.1:6379/0").login() == []


def endpoint_of(url: str) -> RedisEndpoint:
    return RedisEndpoint.of_pool(coredis.Redis.from_url(url, decode_responses=False).connection_pool)


async def test_concurrent_publishes_are_pipelined_and_all_delivered_in_order_of_writing(redis_url: str) -> None:
    endpoint = endpoint_of(redis_url)
    large = bytes(range(256)) * 8192  # 2 MiB: many reads for the subscriber
    messages = [f"message {i}".encode() for i in range(200)] + [large]
    with trio.fail_after(BOUND):
        subscription = await Subscription.open(endpoint, b"test:mailbox")
        publisher = Publisher(endpoint, write_timeout=5)
        received: list[bytes] = []
        reached: list[int] = []
        async with subscription, trio.open_nursery() as nursery:

            async def read() -> None:
                async for payload in subscription.messages():
                    received.append(payload)
                    if len(received) == len(messages):
                        return

            async def publish(message: bytes) -> None:
                reached.append(await publisher.publish(b"test:mailbox", message))

            nursery.start_soon(read)
            async with trio.open_nursery() as publishers:
                for message in messages:
                    publishers.start_soon(publish, message)
        await publisher.aclose()
    assert reached == [1] * len(messages)
    assert sorted(received) == sorted(messages)
    assert received[received.index(large)] == large


async def test_a_cancelled_publish_leaves_the_publisher_usable(redis_url: str) -> None:
    endpoint = endpoint_of(redis_url)
    publisher = Publisher(endpoint, write_timeout=5)
    with trio.fail_after(BOUND):
        assert await publisher.publish(b"test:nobody", b"first") == 0
        for _ in range(20):
            with trio.move_on_after(0):
                await publisher.publish(b"test:nobody", b"cancelled")
        async with trio.open_nursery() as nursery:
            # Cancelled while others wait behind it: they are still answered.
            for _ in range(10):
                nursery.start_soon(publisher.publish, b"test:nobody", b"queued")
            with trio.move_on_after(0):
                await publisher.publish(b"test:nobody", b"cancelled")
        assert await publisher.publish(b"test:nobody", b"after") == 0
    await publisher.aclose()


async def test_a_publish_fails_fast_while_redis_is_down_and_works_once_it_is_back(restartable_redis: RedisServer) -> None:
    endpoint = endpoint_of(restartable_redis.url)
    publisher = Publisher(endpoint, write_timeout=5)
    with trio.fail_after(BOUND):
        assert await publisher.publish(b"test:nobody", b"before") == 0
        restartable_redis.stop()
        with pytest.raises(ConnectionError):
            await publisher.publish(b"test:nobody", b"down")
        restartable_redis.start()
        assert await publisher.publish(b"test:nobody", b"back") == 0
        restartable_redis.stop()
        restartable_redis.start()  # the connection is stale now: replaced, the publish does not fail
        assert await publisher.publish(b"test:nobody", b"again") == 0
    await publisher.aclose()


async def test_a_wrong_password_is_refused_at_login(redis_url: str) -> None:
    if "@" in redis_url:
        pytest.skip("REDIS_URL has credentials of its own")
    endpoint = endpoint_of(redis_url.replace("redis://", "redis://:wrong@", 1))
    with trio.fail_after(BOUND), pytest.raises(RespError):
        await Publisher(endpoint, write_timeout=5).publish(b"test:nobody", b"x")


async def test_a_connection_redis_dropped_is_replaced_without_failing_the_publish(redis_url: str) -> None:
    """Closed by Redis while idle (``CLIENT KILL``, an idle timeout, a restart): the next publish opens a new one."""
    endpoint = endpoint_of(redis_url)
    publisher, killer = Publisher(endpoint, write_timeout=5), Publisher(endpoint, write_timeout=5)
    with trio.fail_after(BOUND):
        assert await publisher.publish(b"test:nobody", b"before") == 0
        killed = await killer._command(pack(b"CLIENT", b"KILL", b"TYPE", b"normal"))  # not itself (SKIPME yes)
        assert killed >= 1
        await trio.sleep(0.1)
        assert await publisher.publish(b"test:nobody", b"after") == 0
        await publisher.ping_if_idle(0)
    await publisher.aclose()
    await killer.aclose()



async def test_a_caller_cancelled_while_reading_leaves_the_others_answered_on_the_same_connection() -> None:
    """The caller doing the I/O is cancelled while its reply and others' are owed: theirs are read, its own dropped.

    A Redis stand-in answers nothing until told to, then every ``PUBLISH``
    with the length of its message, so each caller can see that it got its
    own reply and not the cancelled one's.
    """
    command = re.compile(rb"\*3\r\n\$7\r\nPUBLISH\r\n\$2\r\nch\r\n\$(\d+)\r\n")
    connections = 0
    seen = 0
    release = trio.Event()

    async def stand_in(stream: trio.SocketStream) -> None:
        nonlocal connections, seen
        connections += 1
        buffer = b""
        async with stream:
            while data := await stream.receive_some(65536):
                buffer += data
                lengths = []
                while (match := command.match(buffer)) and len(buffer) >= match.end() + int(match[1]) + 2:
                    lengths.append(int(match[1]))
                    buffer = buffer[match.end() + int(match[1]) + 2 :]
                seen += len(lengths)
                await release.wait()
                for length in lengths:
                    await stream.send_all(b":%d\r\n" % length)

    replies: dict[str, int] = {}
    scopes: dict[str, trio.CancelScope] = {}
    messages = {"first": b"a", "second": b"bb", "third": b"ccc"}
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            (listener,) = await nursery.start(functools.partial(trio.serve_tcp, stand_in, 0, host="127.0.0.1"))
            publisher = Publisher(RedisEndpoint(host="127.0.0.1", port=listener.socket.getsockname()[1]), write_timeout=5)

            async def publish(name: str) -> None:
                with trio.CancelScope() as scopes[name]:
                    replies[name] = await publisher.publish(b"ch", messages[name])

            nursery.start_soon(publish, "first")  # written first: its caller reads
            while seen < 1:
                await trio.sleep(0.01)
            nursery.start_soon(publish, "second")
            nursery.start_soon(publish, "third")
            await trio.sleep(0.05)
            scopes["first"].cancel()
            await trio.sleep(0.05)
            release.set()
            while len(replies) < 2:
                await trio.sleep(0.01)
            assert await publisher.publish(b"ch", b"dddd") == 4
            nursery.cancel_scope.cancel()
        await publisher.aclose()
    assert replies == {"second": 2, "third": 3}
    assert connections == 1


# -- posted PUBLISH: written, not waited for ------------------------------------------------------------------
def running_posts(publisher: Publisher, nursery: trio.Nursery, after: float = 60) -> None:
    nursery.start_soon(functools.partial(publisher.run_posts, after=after, read_bound=5))


async def test_posts_of_one_round_go_out_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[int] = []
    original = _Connection.send

    async def counted(self: _Connection, data: bytes) -> None:
        writes.append(data.count(b"PUBLISH"))
        await original(self, data)

    monkeypatch.setattr(_Connection, "send", counted)
    told: list[BaseException | None] = []
    async with stand_in_redis() as (publisher, redis), trio.open_nursery() as nursery:
        running_posts(publisher, nursery)
        with trio.fail_after(BOUND):
            for i in range(50):
                await publisher.post(b"ch", b"%d" % i, told.append)  # (no checkpoint in between)
            while redis.seen < 50:
                await trio.sleep(0.01)
            assert writes == [50]
            await publisher.post(b"ch", b"next round", told.append)
            while redis.seen < 51:
                await trio.sleep(0.01)
            assert writes == [50, 1]
        nursery.cancel_scope.cancel()
    assert told == []


async def test_a_posted_publish_is_delivered_and_its_reply_read_with_the_next_callers() -> None:
    """Nobody waits for a posted reply: the next caller's read takes it along, and a reply of 0 is told."""
    told: list[BaseException | None] = []
    async with stand_in_redis() as (publisher, redis), trio.open_nursery() as nursery:
        running_posts(publisher, nursery)
        with trio.fail_after(BOUND):
            await publisher.post(b"nobody", b"a", told.append)
            await publisher.post(b"ch", b"bb", told.append)
            while redis.seen < 2:
                await trio.sleep(0.01)
            await trio.sleep(0.05)
            assert told == []  # replied ("nobody" with 0), but nothing read them
            assert await publisher.publish(b"ch", b"ccc") == 3
            assert told == [None]  # the reply of 0, read with the publish's own; "bb" reached 1
            assert redis.connections == 1
        nursery.cancel_scope.cancel()


async def test_replies_nobody_else_read_are_read_a_moment_later() -> None:
    told: list[BaseException | None] = []
    async with stand_in_redis() as (publisher, redis), trio.open_nursery() as nursery:
        running_posts(publisher, nursery, after=0.05)
        with trio.fail_after(BOUND):
            for i in range(5):
                await publisher.post(b"nobody" if i % 2 else b"ch", b"x", told.append)
            while len(told) < 2:
                await trio.sleep(0.01)
            await trio.sleep(0.2)
            assert told == [None, None]
            await publisher.post(b"ch", b"later", told.append)  # the task wakes again for new ones
            await publisher.post(b"nobody", b"later", told.append)
            while len(told) < 3:
                await trio.sleep(0.01)
            assert told == [None, None, None]
            assert redis.connections == 1
        nursery.cancel_scope.cancel()


async def test_a_posted_publish_whose_connection_fails_before_its_reply_is_told_the_error() -> None:
    told: list[BaseException | None] = []
    async with stand_in_redis(answer=False) as (publisher, redis), trio.open_nursery() as nursery:
        running_posts(publisher, nursery, after=0.01)
        with trio.fail_after(BOUND):
            await publisher.post(b"ch", b"x", told.append)
            while redis.seen < 1:
                await trio.sleep(0.01)
            redis.hang_up.set()
            while not told:
                await trio.sleep(0.01)
            assert len(told) == 1 and isinstance(told[0], ConnectionError)
        nursery.cancel_scope.cancel()


async def test_a_post_while_redis_is_down_is_told_so_and_the_next_is_sent_once_it_is_back(
    restartable_redis: RedisServer,
) -> None:
    publisher = Publisher(endpoint_of(restartable_redis.url), write_timeout=5)
    told: list[BaseException | None] = []
    async with trio.open_nursery() as nursery:
        running_posts(publisher, nursery)
        with trio.fail_after(BOUND):
            restartable_redis.stop()
            await publisher.post(b"test:nobody", b"down", told.append)
            while not told:
                await trio.sleep(0.01)
            assert len(told) == 1 and isinstance(told[0], ConnectionError)
            restartable_redis.start()
            await publisher.post(b"test:nobody", b"back", told.append)
            await trio.sleep(0.1)
            assert await publisher.publish(b"test:nobody", b"read") == 0
            assert told[1:] == [None]  # "back" reached nobody
        nursery.cancel_scope.cancel()
    await publisher.aclose()


class StandIn:
    """A Redis stand-in: answers each ``PUBLISH`` with its message's length, 0 for the channel ``nobody``."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.seen = 0
        self.connections = 0
        self.hang_up = trio.Event()

    async def serve(self, stream: trio.SocketStream) -> None:
        command = re.compile(rb"\*3\r\n\$7\r\nPUBLISH\r\n\$(\d+)\r\n")
        self.connections += 1
        buffer = b""
        async with stream, trio.open_nursery() as nursery:

            async def hang_up() -> None:
                await self.hang_up.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(hang_up)
            while data := await stream.receive_some(65536):
                buffer += data
                while match := command.match(buffer):
                    channel_end = match.end() + int(match[1])
                    length = re.match(rb"\r\n\$(\d+)\r\n", buffer[channel_end:])
                    if length is None or len(buffer) < channel_end + length.end() + int(length[1]) + 2:
                        break
                    channel = buffer[match.end() : channel_end]
                    buffer = buffer[channel_end + length.end() + int(length[1]) + 2 :]
                    self.seen += 1
                    if self.answer:
                        await stream.send_all(b":%d\r\n" % (0 if channel == b"nobody" else int(length[1])))
            nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def stand_in_redis(*, answer: bool = True) -> AsyncIterator[tuple[Publisher, StandIn]]:
    redis = StandIn(answer)
    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(functools.partial(trio.serve_tcp, redis.serve, 0, host="127.0.0.1"))
        publisher = Publisher(RedisEndpoint(host="127.0.0.1", port=listener.socket.getsockname()[1]), write_timeout=5)
        try:
            yield publisher, redis
        finally:
            await publisher.aclose()
            nursery.cancel_scope.cancel()


async def test_a_post_queued_behind_a_caller_that_wrote_nothing_more_is_written_when_it_is_done() -> None:
    """A caller doing the I/O writes what is queued only before it reads on: once it is done, the posts go."""
    told: list[BaseException | None] = []
    async with stand_in_redis(answer=False) as (publisher, redis), trio.open_nursery() as nursery:
        running_posts(publisher, nursery)  # (no timer would write them before a minute)
        with trio.fail_after(BOUND):
            with trio.move_on_after(0.2):
                async with trio.open_nursery() as waiting:
                    waiting.start_soon(publisher.publish, b"ch", b"waited for")
                    while redis.seen < 1:
                        await trio.sleep(0.01)
                    await publisher.post(b"ch", b"posted meanwhile", told.append)
                    await trio.sleep(0.05)
                    assert redis.seen == 1  # the caller reading its reply has not written it yet
            # The caller was cancelled, with nothing more to read for: the post goes out now.
            while redis.seen < 2:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
