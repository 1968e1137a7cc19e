"""Scale-out end to end: ``serve --workers N --broker redis://...``, real processes, real sockets.

What docs/scaling.md promises, checked with the official clients against
real worker processes joined through a real Redis (tests/redis_server.py):

* many sessions, each making many calls, answered exactly, none lost, over
  both HTTP transports, by the official Python and TypeScript SDK clients,
  with requests forwarded between workers (their counters say so);
* two hosts behind a balancer with no affinity (tests/tcp_proxy.py);
* a worker killed with SIGKILL: its sessions answer 503 then 404 within the
  worker's liveness lifetime, never hang, and a stream forwarded for one ends;
  the others keep working;
* a worker drained with SIGTERM: its running call answers, its sessions are
  released as it stops;
* Redis stopped and restarted, or hung, under a running service: 503 at
  once (or within the operation timeout) for what needs it, the owner still
  answers directly, and service comes back by itself.

The app is tests/apps/scaleout_app.py: ``owner_pid`` tells which worker holds
a session, ``GET /worker`` which worker took a connection, and ``/metrics`` on
that connection the worker's forwarding counters.
Every test has an absolute ``trio.fail_after`` bound.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import mcp_types
import pytest
import trio
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from .e2e_support import ServerProcess, is_gone, running_server, serving_workers, until_logged
from .redis_server import RedisServer
from .tcp_proxy import round_robin_proxy
from .test_broker_memory import HEADERS, INIT
from .test_e2e_typescript import installed_ts_client

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:.*deprecated as of 2026-07-28"),
    pytest.mark.filterwarnings("ignore:.*removed as of 2026-07-28"),
]

APP = "tests.apps.scaleout_app:app"
SESSIONS = 100
CALLS = 20
CONCURRENCY = 25  # sessions at once
LOAD_BOUND = 180.0  # seconds for a test with thousands of calls (the machine may be shared)
BLOCK = 1.5  # seconds GET /worker?block= holds a worker (under worker_ttl: its liveness key survives)


@asynccontextmanager
async def serving(redis_url: str, workers: int) -> AsyncIterator[ServerProcess]:
    """``serve --workers N --broker URL`` on a free port, once every worker serves."""
    argv = [sys.executable, "-m", "trio_mcp_sse", "serve", APP, "--bind", "127.0.0.1:0", "--workers", str(workers)]
    async with running_server([*argv, "--broker", redis_url]) as server:
        await serving_workers(server, workers)
        yield server


async def each_worker(url: str, workers: int) -> dict[int, dict[str, Any]]:
    """The ``/metrics`` of every one of ``workers`` behind ``url``: pid -> its broker counters.

    The kernel gives a new connection to whichever worker accepts first, so
    each connection first blocks the worker it reached for a moment
    (``GET /worker?block=``, which says whose pid it is): the next one, opened
    meanwhile, can only be accepted by a worker not yet blocked.  (A worker
    slow to start blocking may take two; another round finds the rest.)  Then
    ``GET /metrics`` on the same connection reads that worker's counters.
    Call it once the traffic is over: the counters stand still.
    """
    by_pid: dict[int, dict[str, Any]] = {}

    async def ask() -> None:
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=1)) as client:
            pid = (await client.get(f"{url}/worker", params={"block": BLOCK})).json()["pid"]
            response = await client.get(f"{url}/metrics")
        assert response.status_code == 200, response.text
        by_pid[pid] = broker_metrics(response.text)

    while len(by_pid) < workers:
        async with trio.open_nursery() as nursery:
            for _ in range(workers):
                nursery.start_soon(ask)
                await trio.sleep(0.25)
    assert len(by_pid) == workers, by_pid
    return by_pid


def broker_metrics(text: str) -> dict[str, Any]:
    """The broker's lines of a worker's ``/metrics``: forwarded out and in, failures by reason, broker up."""
    values: dict[str, Any] = {"forward_failures": {}}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == 'mcp_forwarded_total{direction="out"}':
            values["forwarded_out"] = int(value)
        elif name == 'mcp_forwarded_total{direction="in"}':
            values["forwarded_in"] = int(value)
        elif name.startswith("mcp_forward_failures_total{"):
            values["forward_failures"][name.split('"')[1]] = int(value)
        elif name == "mcp_broker_up":
            values["broker_up"] = int(value)
    return values


def forwarded(counters: dict[int, dict[str, Any]]) -> tuple[int, int]:
    """Requests forwarded out and in, summed over the workers; every worker joined, none counted a failed forward."""
    assert all(answer["broker_up"] == 1 and answer["forward_failures"] == {} for answer in counters.values()), counters
    return sum(a["forwarded_out"] for a in counters.values()), sum(a["forwarded_in"] for a in counters.values())


def text_of(result: Any) -> str:
    assert not result.is_error, result
    (block,) = result.content
    assert isinstance(block, mcp_types.TextContent), block
    return block.text


# -- the official Python SDK client ----------------------------------------------------------------
async def python_sdk_sessions(url: str, transport: str, sessions: int = SESSIONS, calls: int = CALLS) -> int:
    """``sessions`` official-client sessions, ``calls`` echo calls each, every answer checked; returns the answers."""
    answered = 0
    limiter = trio.CapacityLimiter(CONCURRENCY)

    async def one(index: int) -> None:
        nonlocal answered
        async with limiter:
            streams = streamable_http_client(f"{url}/mcp") if transport == "streamable-http" else sse_client(f"{url}/sse")
            async with streams as (read, write, *_), ClientSession(read, write) as session:
                await session.initialize()
                for call in range(calls):
                    text = f"{transport} session {index} call {call} ✓"
                    assert text_of(await session.call_tool("echo", {"text": text})) == text
                    answered += 1

    async with trio.open_nursery() as nursery:
        for index in range(sessions):
            nursery.start_soon(one, index)
    return answered


async def both_transports(run: Callable[[str], Awaitable[Any]]) -> dict[str, Any]:
    """``run(transport)`` for Streamable HTTP and HTTP+SSE at the same time; what each returned."""
    results: dict[str, Any] = {}

    async def one(transport: str) -> None:
        results[transport] = await run(transport)

    async with trio.open_nursery() as nursery:
        for transport in ("streamable-http", "sse"):
            nursery.start_soon(one, transport)
    return results


async def test_official_python_client_many_sessions_on_four_workers(redis_url: str) -> None:
    with trio.fail_after(LOAD_BOUND):
        async with serving(redis_url, 4) as server:
            answered = await both_transports(functools.partial(python_sdk_sessions, server.url))
            out, into = forwarded(await each_worker(server.url, 4))
        assert "Traceback" not in server.log, server.log
    assert answered == {"streamable-http": SESSIONS * CALLS, "sse": SESSIONS * CALLS}
    assert out == into and out > 0


async def test_two_hosts_behind_a_balancer_without_affinity(redis_url: str) -> None:
    """Each new connection goes to the next host: a session's requests reach both, and all are answered."""
    with trio.fail_after(LOAD_BOUND):
        async with serving(redis_url, 2) as first, serving(redis_url, 2) as second:
            async with round_robin_proxy([first.port, second.port]) as port:
                answered = await both_transports(functools.partial(python_sdk_sessions, f"http://127.0.0.1:{port}", sessions=24))
            counters = [await each_worker(host.url, 2) for host in (first, second)]
        for host in (first, second):
            assert "Traceback" not in host.log, host.log
    assert answered == {"streamable-http": 24 * CALLS, "sse": 24 * CALLS}
    for host in counters:  # both hosts forwarded requests to the other and answered the other's
        out, into = forwarded(host)
        assert out > 0 and into > 0, counters
    out, into = forwarded({**counters[0], **counters[1]})
    assert out == into


# -- the official TypeScript SDK client ------------------------------------------------------------
@pytest.fixture(scope="module")
def node_load_client() -> Path:
    """tests/interop_ts/load_client.mjs, ready to run."""
    return installed_ts_client("load_client.mjs")


async def test_official_typescript_client_many_sessions_on_four_workers(redis_url: str, node_load_client: Path) -> None:
    async def node_sessions(transport: str) -> dict[str, Any]:
        kind, path = ("streamable", "/mcp") if transport == "streamable-http" else ("sse", "/sse")
        command = ["node", str(node_load_client), f"{server.url}{path}", kind, str(SESSIONS), str(CALLS), str(CONCURRENCY)]
        result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
        assert result.returncode == 0, result.stderr.decode()
        tally: dict[str, Any] = json.loads(result.stdout)
        return tally

    with trio.fail_after(LOAD_BOUND):
        async with serving(redis_url, 4) as server:
            tallies = await both_transports(node_sessions)
            out, into = forwarded(await each_worker(server.url, 4))
        assert "Traceback" not in server.log, server.log
    expected = {"sessions": SESSIONS, "calls": SESSIONS * CALLS, "errors": []}
    assert tallies == {"streamable-http": expected, "sse": expected}
    assert out == into and out > 0


# -- raw Streamable HTTP, to see every status ------------------------------------------------------
REQUEST_BOUND = 3.0  # seconds: no request for a session may take longer, whatever failed
WORKER_TTL = 3.0  # BrokerSettings().worker_ttl and heartbeat_interval, the defaults serve runs with
HEARTBEAT = 1.0
FRESH = {"Connection": "close"}  # a new connection per request: the kernel picks the worker afresh


async def open_session(client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None) -> str:
    """A Streamable HTTP session, initialized; its ``Mcp-Session-Id``."""
    response = await client.post(f"{url}/mcp", json=INIT, headers={**HEADERS, **(headers or {})})
    assert response.status_code == 200, response.text
    session_id = response.headers["mcp-session-id"]
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    response = await client.post(f"{url}/mcp", json=initialized, headers={**HEADERS, **(headers or {}), "mcp-session-id": session_id})
    assert response.status_code == 202, response.text
    return session_id


async def call(
    client: httpx.AsyncClient, url: str, session_id: str, tool: str, arguments: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, str | None, float]:
    """``tools/call`` in ``session_id``: (status, the result's text or None, seconds it took)."""
    message = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    started = trio.current_time()
    response = await client.post(f"{url}/mcp", json=message, headers={**HEADERS, **(headers or {}), "mcp-session-id": session_id})
    took = trio.current_time() - started
    if response.status_code != 200:
        if response.status_code == 503:
            assert response.headers["retry-after"] == "1"
        return response.status_code, None, took
    if response.headers["content-type"].startswith("text/event-stream"):
        (data,) = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: {")]
    else:
        data = response.text
    answer = json.loads(data)
    (block,) = answer["result"]["content"]
    return 200, block["text"], took


async def owner_of(client: httpx.AsyncClient, url: str, session_id: str, headers: dict[str, str] | None = FRESH) -> int:
    status, text, _ = await call(client, url, session_id, "owner_pid", {}, headers)
    assert status == 200 and text is not None
    return int(text)


async def sessions_on_each(client: httpx.AsyncClient, url: str, pids: list[int], per_worker: int) -> dict[int, list[str]]:
    """At least ``per_worker`` sessions owned by each worker (the kernel picks; blocking one steers it)."""
    owned: dict[int, list[str]] = {pid: [] for pid in pids}
    async with trio.open_nursery() as nursery:
        while any(len(ids) < per_worker for ids in owned.values()):
            if sum(map(len, owned.values())) % 4 == 3:  # now and then, block a worker so the other gets one
                nursery.start_soon(functools.partial(client.get, f"{url}/worker", params={"block": 0.5}, headers=FRESH))
                await trio.sleep(0.1)
            session_id = await open_session(client, url, FRESH)
            owned[await owner_of(client, url, session_id)].append(session_id)
    return owned


async def test_sessions_of_a_killed_worker_answer_503_then_404_and_the_others_keep_working(redis_url: str) -> None:
    with trio.fail_after(60):
        async with serving(redis_url, 2) as server, AsyncExitStack() as stack, trio.open_nursery() as nursery:
            url = server.url
            pids = await serving_workers(server, 2)
            client = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
            owned = await sessions_on_each(client, url, pids, 3)
            victim, survivor = pids
            # A victim's session's standalone GET stream, open through the survivor (forwarded).
            through_survivor = (await pinned_clients(stack, url, pids))[survivor]
            stream_ended_at: list[float] = []

            async def forwarded_stream(task_status: trio.TaskStatus[None]) -> None:
                headers = {"accept": "text/event-stream", "mcp-session-id": owned[victim][0]}
                timeout = httpx.Timeout(10, read=None)
                async with through_survivor.stream("GET", f"{url}/mcp", headers=headers, timeout=timeout) as response:
                    assert response.status_code == 200
                    task_status.started()
                    with contextlib.suppress(httpx.HTTPError):  # cut mid-body: the owner is gone
                        async for _ in response.aiter_raw():
                            pass
                stream_ended_at.append(trio.current_time())

            await nursery.start(forwarded_stream)
            statuses: dict[str, list[tuple[float, int]]] = {sid: [] for sid in owned[victim]}
            os.kill(victim, signal.SIGKILL)
            killed_at = trio.current_time()
            while not is_gone(victim):  # (a request routed to it while it dies waits ack_timeout for its 503)
                await trio.sleep(0.01)
            while any(not seen or seen[-1][1] != 404 for seen in statuses.values()):
                for session_id, seen in statuses.items():
                    status, _, took = await call(client, url, session_id, "echo", {"text": "x"}, FRESH)
                    assert took < REQUEST_BOUND and status in (503, 404), (status, took)
                    seen.append((trio.current_time() - killed_at, status))
                for session_id in owned[survivor]:  # the survivor's sessions work throughout
                    status, text, _ = await call(client, url, session_id, "echo", {"text": session_id}, FRESH)
                    assert (status, text) == (200, session_id)
                session_id = await open_session(client, url, FRESH)  # and new sessions open
                status, text, _ = await call(client, url, session_id, "echo", {"text": "new"}, FRESH)
                assert (status, text) == (200, "new")
                await trio.sleep(0.1)
            # 404 once the liveness key expired, and for good.
            for seen in statuses.values():
                first_404 = next(at for at, status in seen if status == 404)
                assert first_404 <= WORKER_TTL + 2, seen
                assert all(status == 404 for at, status in seen if at >= first_404), seen
                assert all(status == 503 for at, status in seen if at < first_404), seen
            for session_id in statuses:
                status, _, _ = await call(client, url, session_id, "echo", {"text": "x"}, FRESH)
                assert status == 404
            # The stream forwarded through the survivor ended within the liveness lifetime and a heartbeat.
            with trio.fail_after(WORKER_TTL + HEARTBEAT + 2 - (trio.current_time() - killed_at)):
                while not stream_ended_at:
                    await trio.sleep(0.05)
            assert stream_ended_at[0] - killed_at <= WORKER_TTL + HEARTBEAT + 1
    assert f"worker {victim} exited unexpectedly (killed by SIGKILL)" in server.log
    assert "Traceback" not in server.log, server.log


async def pinned_clients(stack: AsyncExitStack, url: str, pids: list[int]) -> dict[int, httpx.AsyncClient]:
    """One client per worker, each on one kept-alive connection to that worker."""
    pinned: dict[int, httpx.AsyncClient] = {}
    async with trio.open_nursery() as nursery:
        while len(pinned) < len(pids):
            for client in pinned.values():  # only a worker not pinned yet can accept the next connection
                nursery.start_soon(functools.partial(client.get, f"{url}/worker", params={"block": 0.5}))
            await trio.sleep(0.1)
            client = await stack.enter_async_context(httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=1)))
            pid = (await client.get(f"{url}/worker")).json()["pid"]
            if pid not in pinned:
                pinned[pid] = client
    return pinned


async def test_redis_stopped_then_restarted_under_a_running_service(restartable_redis: RedisServer) -> None:
    with trio.fail_after(60):
        async with serving(restartable_redis.url, 2) as server, AsyncExitStack() as stack:
            url = server.url
            pids = await serving_workers(server, 2)
            fresh = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
            pinned = await pinned_clients(stack, url, pids)
            owned = {pid: await open_session(client, url) for pid, client in pinned.items()}  # opened on its worker
            for pid, session_id in owned.items():
                assert await owner_of(pinned[pid], url, session_id, headers=None) == pid
            one, other = pids

            await trio.to_thread.run_sync(restartable_redis.stop)
            # New sessions and forwarded requests: 503 at once.
            for _ in range(3):
                started = trio.current_time()
                response = await fresh.post(f"{url}/mcp", json=INIT, headers={**HEADERS, **FRESH})
                assert response.status_code == 503 and trio.current_time() - started < REQUEST_BOUND
                assert response.json()["error"]["message"] == "Session broker unavailable; retry later"
            assert (await pinned[other].get(f"{url}/worker")).json()["pid"] == other
            status, _, took = await call(pinned[other], url, owned[one], "echo", {"text": "x"})
            assert status == 503 and took < REQUEST_BOUND
            # A request reaching its session's owner needs no broker.
            for pid, session_id in owned.items():
                assert (await call(pinned[pid], url, session_id, "echo", {"text": "direct"}))[:2] == (200, "direct")

            await trio.to_thread.run_sync(restartable_redis.start)
            restarted = trio.current_time()
            while True:  # within a few seconds, without restarting a worker
                response = await fresh.post(f"{url}/mcp", json=INIT, headers={**HEADERS, **FRESH})
                if response.status_code == 200:
                    break
                assert response.status_code == 503
                await trio.sleep(0.1)
            back = trio.current_time() - restarted
            forwarded_back = []
            for pid, session_id in owned.items():
                while (await call(pinned[other if pid == one else one], url, session_id, "echo", {"text": "again"}))[:2] != (200, "again"):
                    await trio.sleep(0.1)
                forwarded_back.append(trio.current_time() - restarted)
            assert back < 5 and max(forwarded_back) < 5, (back, forwarded_back)
            assert set(await each_worker(url, 2)) == set(pids)
    assert "exited unexpectedly" not in server.log
    assert "Traceback" not in server.log, server.log



async def test_redis_that_stops_answering_is_503_within_the_operation_timeout(restartable_redis: RedisServer) -> None:
    """A hung Redis (SIGSTOP: connections open, no answers) costs at most ``operation_timeout``, then recovers."""
    with trio.fail_after(60):
        async with serving(restartable_redis.url, 2) as server, AsyncExitStack() as stack:
            url = server.url
            pids = await serving_workers(server, 2)
            fresh = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
            pinned = await pinned_clients(stack, url, pids)
            owned = {pid: await open_session(client, url) for pid, client in pinned.items()}
            one, other = pids
            elsewhere = {one: pinned[other], other: pinned[one]}
            try:
                restartable_redis.pause()
                started = trio.current_time()
                response = await fresh.post(f"{url}/mcp", json=INIT, headers={**HEADERS, **FRESH})
                assert response.status_code == 503 and trio.current_time() - started < REQUEST_BOUND
                for pid, session_id in owned.items():
                    status, _, took = await call(elsewhere[pid], url, session_id, "echo", {"text": "x"})
                    assert status == 503 and took < REQUEST_BOUND
                    assert (await call(pinned[pid], url, session_id, "echo", {"text": "direct"}))[:2] == (200, "direct")
            finally:
                restartable_redis.resume()
            resumed = trio.current_time()
            # Back within a few seconds, and every answer is its own request's (no reply read out of turn).
            async def until_answered(pid: int, session_id: str, index: int) -> None:
                text = f"{pid} {index}"
                while (await call(elsewhere[pid], url, session_id, "echo", {"text": text}))[:2] != (200, text):
                    await trio.sleep(0.1)

            for round_ in range(3):
                async with trio.open_nursery() as nursery:
                    for pid, session_id in owned.items():
                        nursery.start_soon(until_answered, pid, session_id, round_)
            assert trio.current_time() - resumed < 5
            assert (await fresh.post(f"{url}/mcp", json=INIT, headers={**HEADERS, **FRESH})).status_code == 200
    assert "exited unexpectedly" not in server.log
    assert "Traceback" not in server.log, server.log


async def test_a_draining_worker_finishes_accepted_work_then_its_sessions_are_404(redis_url: str) -> None:
    """SIGTERM to one worker: its running call answers, its sessions are released (404 at once) as it stops."""
    with trio.fail_after(60):
        async with serving(redis_url, 2) as server, AsyncExitStack() as stack, trio.open_nursery() as nursery:
            url = server.url
            pids = await serving_workers(server, 2)
            client = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
            owned = await sessions_on_each(client, url, pids, 2)
            leaving, staying = pids
            pinned = await pinned_clients(stack, url, pids)
            answers: list[tuple[int, str | None]] = []

            async def slow_call() -> None:
                # Through the staying worker: forwarded to the owner, which is told to stop meanwhile.
                status, text, _ = await call(pinned[staying], url, owned[leaving][0], "slow_echo", {"text": "done", "seconds": 2})
                answers.append((status, text))

            nursery.start_soon(slow_call)
            await trio.sleep(0.5)
            os.kill(leaving, signal.SIGTERM)
            await until_logged(server, rf"\[{leaving}\] \[INFO\] SIGTERM received: draining")
            # A client kept alive on the draining worker is refused and told to reconnect.
            kept_alive = await pinned[leaving].post(f"{url}/mcp", json=INIT, headers=HEADERS)
            assert (kept_alive.status_code, kept_alive.headers["connection"]) == (503, "close")
            new_sessions: set[tuple[int, str]] = set()
            while not is_gone(leaving):
                for session_id in owned[staying]:  # the other worker's sessions work throughout
                    status, text, _ = await call(client, url, session_id, "echo", {"text": session_id}, FRESH)
                    assert (status, text) == (200, session_id)
                # A new connection the kernel hands to the draining worker is refused, to be retried.
                response = await client.post(f"{url}/mcp", json=INIT, headers={**HEADERS, **FRESH})
                refused = response.status_code == 503 and response.headers["retry-after"] == "5"
                new_sessions.add((response.status_code, response.json()["error"]["message"] if refused else ""))
                await trio.sleep(0.1)
            assert answers == [(200, "done")]
            assert new_sessions <= {(200, ""), (503, "Server is shutting down")}, new_sessions
            for session_id in owned[leaving]:  # released as it stopped: no 503 while a liveness key runs out
                for _ in range(5):
                    status, _, _ = await call(client, url, session_id, "echo", {"text": "x"}, FRESH)
                    assert status == 404
            for _ in range(5):  # and new sessions open on the workers left
                assert (await client.post(f"{url}/mcp", json=INIT, headers={**HEADERS, **FRESH})).status_code == 200
    assert f"[{leaving}] [INFO] SIGTERM received: draining" in server.log
    assert "Traceback" not in server.log, server.log
