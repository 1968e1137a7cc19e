"""Frames on a worker's mailbox that are not ours: dropped with one rate-limited line, counted, nothing else.

Issue 25, item 5: 606 malformed frames published to a worker's mailbox
produced 614 tracebacks.  Every frame is now checked whole before anything
acts on it (tests below: a header that is not JSON, JSON of the wrong shape,
a truncated frame, a huge one, an answer frame out of order for an exchange
in flight); a bad one is dropped with at most 10 WARNING lines per 10 s per
worker (no traceback, no contents), counted as
``mcp_forward_failures_total{reason="malformed_frame"}``, and the worker
goes on forwarding and answering forwarded requests.

With a ``MemoryBroker`` (its ``publish``), with two workers in one process on
the suite's Redis (a raw coredis client publishes), and with two ``serve``
processes on that Redis.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import coredis
import httpx
import pytest
import trio
import trio.lowlevel

from trio_mcp_sse._broker import MemoryBroker, encode_frame, scope_to_wire
from trio_mcp_sse._logs import REFUSAL_LINES_PER_WINDOW
from trio_mcp_sse.testing import open_http_transport

from .e2e_support import running_server
from .test_broker_memory import HEADERS, echo_call, initialize, make_server
from .test_broker_redis import link_of, redis_workers

BAD_FRAME = "dropped a malformed frame from its broker mailbox"


def _valid_request() -> bytes:
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 4000),
        "server": ("127.0.0.1", 8000),
    }
    return encode_frame(
        {"k": "q", "x": "900", "r": "elsewhere", "s": scope_to_wire(scope)},
        b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
    )


def _scope_with(**changes: Any) -> dict[str, Any]:
    wire = {
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mcp",
        "root_path": "",
        "raw_path": "/mcp",
        "query_string": "",
        "headers": [["host", "testserver"]],
        "client": ["127.0.0.1", 4000],
        "server": ["127.0.0.1", 8000],
    }
    wire.update(changes)
    return wire


def _request(scope: Any, **meta: Any) -> bytes:
    return encode_frame({"k": "q", "x": "901", "r": "elsewhere", "s": scope, **meta}, b"{}")


VALID = _valid_request()
GARBAGE: list[bytes] = [
    b"",
    b"no header line at all",
    b"{not json\nbody",
    b'{"k":"\xff\xfe"}\n',  # not UTF-8
    b'"a string"\n',
    b"[1, 2, 3]\n",
    b"null\n",
    b'{"x":"1"}\n',  # no kind
    b'{"k":["q"],"x":"1"}\n',  # a kind that is not even hashable
    b'{"k":"zz","x":"1"}\n',
    b'{"k":"q"}\n',  # no exchange id
    b'{"k":"q","x":{"id":1}}\n',
    b'{"k":"q","x":"1"}\nbody',  # a request without reply-to or scope
    b'{"k":"q","x":"1","r":"w"}\n',
    _request({"path": "/mcp"}),  # a scope missing most of its fields
    _request(_scope_with(headers=[[1, 2]])),
    _request(_scope_with(headers=[["x-euro", "\u20ac"]])),  # not latin-1
    _request(_scope_with(client=["127.0.0.1", "4000"])),
    _request(_scope_with(path=["/mcp"])),
    _request(_scope_with(), r=""),
    b'{"k":"d","x":"1"}\n',  # a disconnect naming no worker
    b'{"k":"r","x":"1","st":"200","h":[]}\n',
    b'{"k":"r","x":"1","st":99,"h":[]}\n',
    b'{"k":"r","x":"1","st":200,"h":{"a":"b"}}\n',
    b'{"k":"b","x":"1","m":"yes"}\n',
    VALID[: VALID.index(b"\n") // 2],  # truncated inside its header
    VALID[: VALID.index(b"\n")],  # truncated just before its header ends
    b"[" * 100_000 + b"\n",  # nested past any parser's depth
    b"\xff" * 2_000_000,  # huge, no header line
    b'{"k":"q","x":"2","pad":"' + b"x" * 2_000_000 + b'"}\n',  # huge, wrong shape
]
ROUNDS = 20  # 600 frames a worker, as in the issue


@asynccontextmanager
async def memory_workers(
    broker: MemoryBroker, **app_options: Any
) -> AsyncIterator[tuple[list[Any], list[httpx.AsyncClient]]]:
    """Two workers on ``broker``: their apps (to find their links) and one client each."""
    async with AsyncExitStack() as stack:
        apps, clients = [], []
        for _ in range(2):
            app = make_server().http_app(broker=broker, **app_options)
            transport = await stack.enter_async_context(open_http_transport(app))
            apps.append(app)
            clients.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url="http://testserver")
                )
            )
        yield apps, clients


def bad_frame_lines(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if BAD_FRAME in r.getMessage()]


def assert_logged_briefly(records: list[logging.LogRecord]) -> None:
    """At most the refusal logger's burst of lines per worker; no traceback, no frame contents."""
    lines = bad_frame_lines(records)
    per_worker: dict[str, int] = {}
    for record in lines:
        per_worker[record.__dict__["worker"]] = per_worker.get(record.__dict__["worker"], 0) + 1
        assert record.levelno == logging.WARNING
        assert len(record.getMessage()) < 200 and "\\xff" not in record.getMessage()
    assert lines and all(n <= REFUSAL_LINES_PER_WINDOW for n in per_worker.values()), per_worker
    assert not [r for r in records if r.exc_info], [r.getMessage() for r in records if r.exc_info]
    assert all(r.levelno < logging.ERROR for r in records if r.name.startswith("trio_mcp_sse")), [
        r.getMessage() for r in records
    ]


async def test_garbage_in_a_memory_mailbox_is_dropped_counted_and_the_workers_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trio_mcp_sse")
    broker = MemoryBroker()
    with trio.fail_after(30):
        async with memory_workers(broker, metrics_path="/metrics") as (apps, (first, second)):
            session_id = await initialize(first)
            on_first = {**HEADERS, "mcp-session-id": session_id}
            links = [link_of(app) for app in apps]
            for _ in range(ROUNDS):
                for frame in GARBAGE:
                    for link in links:
                        assert broker.publish(link.worker_id, frame)
                await trio.lowlevel.checkpoint()
            response = await second.post(
                "/mcp", json=echo_call(2, "still forwarded"), headers=on_first
            )
            assert response.status_code == 200 and "still forwarded" in response.text
            for client, link in zip((first, second), links, strict=True):
                assert link.metrics.forward_failures["malformed_frame"] == ROUNDS * len(GARBAGE)
                metrics = (await client.get("/metrics")).text
                assert (
                    f'mcp_forward_failures_total{{reason="malformed_frame"}} {ROUNDS * len(GARBAGE)}'
                    in metrics
                )
    assert_logged_briefly(caplog.records)


async def test_answer_frames_out_of_order_for_an_exchange_in_flight_are_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Well-formed frames naming a forwarded exchange that is running, in an order an owner never sends."""
    caplog.set_level(logging.INFO, logger="trio_mcp_sse")
    broker = MemoryBroker()
    with trio.fail_after(30):
        async with (
            memory_workers(broker) as (apps, (first, second)),
            trio.open_nursery() as nursery,
        ):
            session_id = await initialize(first)
            receiving = link_of(apps[1])
            answers: list[httpx.Response] = []

            async def slow_call() -> None:
                slow = {
                    "jsonrpc": "2.0",
                    "id": 3,
                    "method": "tools/call",
                    "params": {"name": "slow", "arguments": {"seconds": 0.5}},
                }
                answers.append(
                    await second.post(
                        "/mcp", json=slow, headers={**HEADERS, "mcp-session-id": session_id}
                    )
                )

            nursery.start_soon(slow_call)
            while not receiving._outgoing:
                await trio.sleep(0.01)
            (exchange,) = receiving._outgoing
            for frame in (
                {"k": "b", "x": exchange, "m": True},  # a body before the response started
                {
                    "k": "r",
                    "x": exchange,
                    "st": 200,
                    "h": [["content-type", "application/json"]],
                    "m": True,
                },
                {"k": "r", "x": exchange, "st": 500, "h": [], "m": False},  # a second start
            ):
                broker.publish(receiving.worker_id, encode_frame(frame))
            await trio.sleep(0.05)
    # The injected start began the answer; the rest of it never arrives in that shape, but nothing crashed.
    assert receiving.metrics.forward_failures["malformed_frame"] >= 2
    assert len(answers) == 1
    assert_logged_briefly(caplog.records)


async def test_garbage_published_to_a_redis_mailbox_is_dropped_and_the_workers_go_on(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_mcp_sse")
    with trio.fail_after(60):
        async with (
            redis_workers(redis_url, 2) as (apps, (first, second)),
            coredis.Redis.from_url(redis_url, decode_responses=False) as redis,
        ):
            session_id = await initialize(first)
            on_first = {**HEADERS, "mcp-session-id": session_id}
            links = [link_of(app) for app in apps]
            for _ in range(ROUNDS):
                for frame in GARBAGE:
                    for link in links:
                        assert await redis.publish(f"mcp:mailbox:{link.worker_id}", frame) == 1
            expected = ROUNDS * len(GARBAGE)
            while any(
                link.metrics.forward_failures["malformed_frame"] < expected for link in links
            ):
                await trio.sleep(0.05)
            for i in range(3):
                response = await second.post(
                    "/mcp", json=echo_call(10 + i, f"after {i}"), headers=on_first
                )
                assert response.status_code == 200 and f"after {i}" in response.text
            assert all(
                link.metrics.forward_failures["malformed_frame"] == expected for link in links
            )
            assert all(link.up for link in links)
    assert_logged_briefly(caplog.records)


@pytest.mark.e2e
async def test_garbage_published_to_the_mailboxes_of_serve_processes(redis_url: str) -> None:
    """Two ``serve`` processes on one Redis; every frame of GARBAGE, 20 times, to each one's mailbox."""
    from .test_scaleout_e2e import call, open_session

    argv = [
        sys.executable,
        "-m",
        "trio_mcp_sse",
        "serve",
        "tests.apps.scaleout_app:app",
        "--bind",
        "127.0.0.1:0",
        "--broker",
        redis_url,
    ]
    joined = re.compile(r"worker (\S+) joined the session broker")
    with trio.fail_after(60):
        async with (
            running_server(argv) as owner,
            running_server(argv) as other,
            coredis.Redis.from_url(redis_url, decode_responses=False) as redis,
            httpx.AsyncClient(timeout=10) as client,
        ):
            worker_ids = [joined.search(server.log).group(1) for server in (owner, other)]  # type: ignore[union-attr]
            session_id = await open_session(client, owner.url)
            assert (await call(client, other.url, session_id, "echo", {"text": "before"}))[:2] == (
                200,
                "before",
            )
            for _ in range(ROUNDS):
                for frame in GARBAGE:
                    for worker_id in worker_ids:
                        assert await redis.publish(f"mcp:mailbox:{worker_id}", frame) == 1
            expected = (
                f'mcp_forward_failures_total{{reason="malformed_frame"}} {ROUNDS * len(GARBAGE)}'
            )
            for server in (owner, other):
                while expected not in (await client.get(f"{server.url}/metrics")).text:
                    await trio.sleep(0.1)
            for i in range(3):  # forwarded through the other process, answered by the owner
                assert (await call(client, other.url, session_id, "echo", {"text": f"after {i}"}))[
                    :2
                ] == (200, f"after {i}")
            assert (await client.get(f"{other.url}/readyz")).status_code == 200
    for server in (owner, other):
        assert "Traceback" not in server.log, server.log[-5000:]
        assert 0 < server.log.count(BAD_FRAME) <= REFUSAL_LINES_PER_WINDOW, server.log[-5000:]
        assert "[ERROR]" not in server.log, server.log[-5000:]
