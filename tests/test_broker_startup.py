"""A worker whose session broker does not answer when it starts: it says so, is not ready, and joins later.

Issue 25, item 2: ``serve app --broker redis://127.0.0.1:1/0`` used to log
"joined the session broker", answer ``/readyz`` 200 and every ``initialize``
503.  Now start-up checks the broker (bounded by ``operation_timeout``), logs
one warning saying it is unreachable, answers ``/readyz`` 503 while it
cannot reach it (at start-up or later: it can open no session then), and
joins it without a restart once it answers.

Real processes with a real clock and absolute bounds (``serve --broker``
against a port nobody listens on, and against the suite's Redis stopped then
started), and the same in one process with a ``MemoryBroker`` switched off.
"""

from __future__ import annotations

import logging
import socket
import sys

import httpx
import pytest
import trio

from trio_mcp_sse._broker import MemoryBroker
from trio_mcp_sse.testing import open_http_transport

from .e2e_support import running_server
from .redis_server import RedisServer
from .test_broker_memory import HEADERS, INIT, make_server

APP = "tests.apps.scaleout_app:app"
UNREACHABLE = "cannot reach the session broker"
JOINED = "joined the session broker"


def serve_argv(broker: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "trio_mcp_sse",
        "serve",
        APP,
        "--bind",
        "127.0.0.1:0",
        "--broker",
        broker,
    ]


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def broker_up(metrics: str) -> int:
    (line,) = [line for line in metrics.splitlines() if line.startswith("mcp_broker_up ")]
    return int(line.split()[1])


@pytest.mark.e2e
async def test_serve_against_a_broker_nobody_listens_on_warns_and_is_not_ready() -> None:
    port = unused_port()
    with trio.fail_after(30):
        async with (
            running_server(serve_argv(f"redis://127.0.0.1:{port}/0")) as server,
            httpx.AsyncClient(timeout=10) as client,
        ):
            # "Running on" is logged after the lifespan's start-up: the check has been made by then.
            (warning,) = [line for line in server.log.splitlines() if UNREACHABLE in line]
            assert (
                "[WARNING]" in warning
                and f"127.0.0.1:{port}" in warning
                and "retrying every 1s" in warning
            ), warning
            assert JOINED not in server.log
            ready = await client.get(f"{server.url}/readyz")
            assert ready.status_code == 503, ready.text
            assert "session broker" in ready.text
            assert (
                await client.get(f"{server.url}/healthz")
            ).status_code == 200  # alive, only not ready
            refused = await client.post(f"{server.url}/mcp", json=INIT, headers=HEADERS)
            assert refused.status_code == 503
            assert refused.json()["error"]["message"] == "Session broker unavailable; retry later"
            assert broker_up((await client.get(f"{server.url}/metrics")).text) == 0
            await trio.sleep(2.5)  # it keeps retrying, quietly: one warning, not one per heartbeat
            assert (await client.get(f"{server.url}/readyz")).status_code == 503
            assert server.log.count(UNREACHABLE) == 1, server.log
    assert "Traceback" not in server.log, server.log


@pytest.mark.e2e
async def test_serve_started_while_redis_is_down_joins_it_once_it_is_up(
    restartable_redis: RedisServer,
) -> None:
    await trio.to_thread.run_sync(restartable_redis.stop)
    with trio.fail_after(40):
        async with (
            running_server(serve_argv(restartable_redis.url)) as server,
            httpx.AsyncClient(timeout=10) as client,
        ):
            assert UNREACHABLE in server.log and JOINED not in server.log, server.log
            assert (await client.get(f"{server.url}/readyz")).status_code == 503
            assert (
                await client.post(f"{server.url}/mcp", json=INIT, headers=HEADERS)
            ).status_code == 503

            await trio.to_thread.run_sync(restartable_redis.start)
            started = trio.current_time()
            while (await client.get(f"{server.url}/readyz")).status_code != 200:
                await trio.sleep(0.1)
            assert trio.current_time() - started < 5  # within a few heartbeats, without a restart
            assert JOINED in server.log.split(UNREACHABLE, 1)[1], server.log
            response = await client.post(f"{server.url}/mcp", json=INIT, headers=HEADERS)
            assert response.status_code == 200, response.text
            assert broker_up((await client.get(f"{server.url}/metrics")).text) == 1
    assert "Traceback" not in server.log, server.log


async def test_a_worker_is_not_ready_while_its_broker_is_off(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_mcp_sse")
    broker = MemoryBroker()
    broker.available = False
    with trio.fail_after(60):
        async with open_http_transport(
            make_server().http_app(broker=broker, metrics_path="/metrics")
        ) as transport:
            client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
            warnings = [r for r in caplog.records if r.getMessage().find(UNREACHABLE) >= 0]
            assert [r.levelno for r in warnings] == [logging.WARNING]
            assert "MemoryBroker(prefix='mcp')" in warnings[0].getMessage()
            assert not any(JOINED in r.getMessage() for r in caplog.records)
            ready = await client.get("/readyz")
            assert (ready.status_code, ready.text) == (503, "Not ready: session broker unreachable")
            assert (await client.post("/mcp", json=INIT, headers=HEADERS)).status_code == 503
            await trio.sleep(5 * broker.settings.heartbeat_interval)
            assert (await client.get("/readyz")).status_code == 503
            assert (
                len([r for r in caplog.records if UNREACHABLE in r.getMessage()]) == 1
            )  # warned once

            broker.available = True
            await trio.sleep(broker.settings.heartbeat_interval + 0.1)
            assert (await client.get("/readyz")).status_code == 200
            assert [r.levelno for r in caplog.records if JOINED in r.getMessage()] == [logging.INFO]
            assert (await client.post("/mcp", json=INIT, headers=HEADERS)).status_code == 200

            # Lost later, the broker makes the worker unready again, and ready once it is back.
            broker.available = False
            await trio.sleep(2 * broker.settings.heartbeat_interval)
            assert (await client.get("/readyz")).status_code == 503
            assert broker_up((await client.get("/metrics")).text) == 0
            broker.available = True
            await trio.sleep(broker.settings.heartbeat_interval + 0.1)
            assert (await client.get("/readyz")).status_code == 200
            assert (
                len([r for r in caplog.records if JOINED in r.getMessage()]) == 1
            )  # joined is said once


async def test_a_worker_whose_broker_answers_at_start_is_ready_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trio_mcp_sse")
    with trio.fail_after(10):
        async with open_http_transport(make_server().http_app(broker=MemoryBroker())) as transport:
            client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
            assert (await client.get("/readyz")).status_code == 200
            assert any(JOINED in r.getMessage() for r in caplog.records)
            assert not any(UNREACHABLE in r.getMessage() for r in caplog.records)
