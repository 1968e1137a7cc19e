"""The suite's round-robin TCP proxy (tests/tcp_proxy.py): alternation, intact bytes, closes."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio

from .tcp_proxy import round_robin_proxy

Handler = Callable[[trio.SocketStream], Awaitable[None]]


@asynccontextmanager
async def backend(handler: Handler) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        try:
            yield listeners[0].socket.getsockname()[1]
        finally:
            nursery.cancel_scope.cancel()


def greeter(name: bytes) -> Handler:
    """Say ``name``, then echo everything until the client half-closes, then close."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(name + b"\n")
            while chunk := await stream.receive_some(65536):
                await stream.send_all(chunk)

    return handle


async def read_to_eof(stream: trio.SocketStream) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some(65536):
        data += chunk
    return bytes(data)


async def test_consecutive_connections_alternate_between_backends() -> None:
    with trio.fail_after(20):
        async with backend(greeter(b"A")) as a, backend(greeter(b"B")) as b, round_robin_proxy([a, b]) as port:
            seen = []
            for _ in range(6):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                async with stream:
                    await stream.send_eof()
                    seen.append(await read_to_eof(stream))
            assert seen == [b"A\n", b"B\n"] * 3


async def test_a_large_payload_passes_intact_both_ways_with_half_close() -> None:
    payload = os.urandom(8 * 2**20)
    with trio.fail_after(60):
        async with backend(greeter(b"A")) as a, round_robin_proxy([a]) as port:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                received = bytearray()

                async def send() -> None:
                    await stream.send_all(payload)
                    await stream.send_eof()  # the backend echoes until it sees this, then closes

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(send)
                    received += await read_to_eof(stream)
    assert bytes(received[:2]) == b"A\n"
    assert len(received) - 2 == len(payload)
    assert hashlib.sha256(received[2:]).digest() == hashlib.sha256(payload).digest()


async def test_a_close_on_either_side_reaches_the_other() -> None:
    backend_saw_eof = trio.Event()

    async def closes_after_hello(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"hello")

    async def waits_for_client(stream: trio.SocketStream) -> None:
        async with stream:
            assert await read_to_eof(stream) == b"bye"
            backend_saw_eof.set()

    with trio.fail_after(20):
        async with backend(closes_after_hello) as closer, backend(waits_for_client) as waiter, round_robin_proxy(
            [closer, waiter]
        ) as port:
            # The backend closes: the client reads what it sent, then EOF.
            first = await trio.open_tcp_stream("127.0.0.1", port)
            async with first:
                assert await read_to_eof(first) == b"hello"
            # The client closes: the backend reads what it sent, then EOF.
            second = await trio.open_tcp_stream("127.0.0.1", port)
            await second.send_all(b"bye")
            await second.aclose()
            await backend_saw_eof.wait()


async def test_a_dead_backend_closes_the_client_connection() -> None:
    with trio.socket.socket() as unused:
        await unused.bind(("127.0.0.1", 0))
        dead_port = unused.getsockname()[1]
    with trio.fail_after(20):
        async with backend(greeter(b"A")) as alive, round_robin_proxy([dead_port, alive]) as port:
            first = await trio.open_tcp_stream("127.0.0.1", port)
            async with first:
                assert await read_to_eof(first) == b""
            second = await trio.open_tcp_stream("127.0.0.1", port)
            async with second:
                await second.send_eof()
                assert await read_to_eof(second) == b"A\n"


async def test_no_backend_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="at least one backend"):
        async with round_robin_proxy([]):
            pass  # pragma: no cover
