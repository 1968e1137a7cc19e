"""``serve --workers N --broker URL``: real processes on real sockets, each test bounded.

The parent binds once and supervises N workers (tests/apps/worker_app.py
answers ``GET /worker`` with its pid and the broker URL it was handed).
"""

from __future__ import annotations

import os
import re
import signal
import sys

import httpx
import pytest
import trio

from .e2e_support import (
    ROOT,
    WORKER_RUNNING,
    WORKER_STARTED,
    ServerProcess,
    is_gone,
    open_sse,
    read_until,
    running_server,
    serving_workers,
    until_logged,
)

pytestmark = pytest.mark.e2e

APP = "tests.apps.worker_app:app"


def workers_argv(*extra: str, app: str = APP) -> list[str]:
    return [sys.executable, "-m", "trio_mcp_sse", "serve", app, "--bind", "127.0.0.1:0", "--workers", "2", *extra]


async def run_serve(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the command to its end; returns (status, stderr)."""
    with trio.fail_after(90):
        result = await trio.run_process(
            list(argv),
            cwd=str(ROOT),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        )
    return result.returncode, result.stderr.decode()


async def worker_answer(client: httpx.AsyncClient, server: ServerProcess, block: float = 0) -> dict[str, object]:
    """``GET /worker`` on a new connection (``Connection: close``), so the kernel picks a worker afresh."""
    response = await client.get(f"{server.url}/worker", params={"block": block} if block else None, headers={"Connection": "close"})
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


# -- usage -----------------------------------------------------------------------------------------
async def test_more_than_one_worker_without_a_broker_is_refused_with_the_fix() -> None:
    env = {"TRIO_MCP_SSE_BROKER": ""}
    status, stderr = await run_serve(*workers_argv(app="examples.echo_server:app"), env=env)
    assert status == 2
    assert stderr.startswith("error: --workers 2 needs a broker") and "add --broker redis://" in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            ("--broker", "http://127.0.0.1:6379"),
            {},
            "error: --broker 'http://127.0.0.1:6379': expected redis://",
        ),
        (
            ("--broker", "redis://:hunter2@host/zero"),
            {},
            "error: --broker 'redis://:***@host/zero': expected redis://",
        ),
        (
            (),
            {"TRIO_MCP_SSE_BROKER": "redis//nope"},
            "error: TRIO_MCP_SSE_BROKER='redis//nope': expected redis://",
        ),
        (
            ("--broker", "redis://127.0.0.1:6379/0?max_session=1"),
            {},
            "error: --broker 'redis://127.0.0.1:6379/0?max_session=1': unknown setting 'max_session' "
            "(did you mean max_sessions?)",
        ),
    ],
)
async def test_a_malformed_broker_url_is_one_line_naming_where_it_came_from(
    args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    status, stderr = await run_serve(*workers_argv(*args, app="examples.echo_server:app"), env=env)
    assert status == 2
    assert stderr.startswith(expected), stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "hunter2" not in stderr


async def test_an_app_the_workers_cannot_import_stops_the_service_with_status_2(redis_url: str) -> None:
    status, stderr = await run_serve(*workers_argv("--broker", redis_url, app="no_such_module:app"))
    assert status == 2, stderr
    assert re.search(r"^error: worker \d+ cannot start: cannot import module 'no_such_module'", stderr, re.M), stderr
    assert "Traceback" not in stderr


async def test_broker_none_runs_several_workers_for_an_app_that_keeps_no_sessions() -> None:
    env = {"TRIO_MCP_SSE_BROKER": "redis://127.0.0.1:1/0"}  # "none" wins over the environment too
    async with running_server(workers_argv("--broker", "none"), env=env) as server:
        with trio.fail_after(60):
            await serving_workers(server)
            async with httpx.AsyncClient(timeout=30) as client:
                answer = await worker_answer(client, server)
            assert answer["broker"] is None


# -- serving ---------------------------------------------------------------------------------------
async def test_two_workers_serve_the_one_port_and_each_is_handed_the_broker(redis_url: str) -> None:
    async with running_server(workers_argv("--broker", redis_url)) as server:
        with trio.fail_after(60):
            pids = await serving_workers(server)
            assert len(set(pids)) == 2 and server.process.pid not in pids
            async with httpx.AsyncClient(timeout=30) as client, trio.open_nursery() as nursery:
                # One worker is kept busy in a blocking call, so new connections can only go to the other.
                blocked: list[dict[str, object]] = []

                async def occupy_one() -> None:
                    blocked.append(await worker_answer(client, server, block=3))

                nursery.start_soon(occupy_one)
                await trio.sleep(0.5)
                meanwhile = [await worker_answer(client, server) for _ in range(5)]
            answered_by = {answer["pid"] for answer in meanwhile}
            assert len(answered_by) == 1 and answered_by != {blocked[0]["pid"]}, (meanwhile, blocked)
            assert {blocked[0]["pid"], *answered_by} == set(pids)
            assert all(answer["broker"] == redis_url for answer in [*blocked, *meanwhile])
            # One secret for all: a 2026-07-28 retry sealed by one worker opens on the other.
            secrets = {answer["request_state_secret"] for answer in [*blocked, *meanwhile]}
            assert len(secrets) == 1 and len(str(secrets.pop())) >= 32
        for pid in pids:
            assert re.search(rf"\[{pid}\] \[INFO\] Running on http://127\.0\.0\.1:{server.port}", server.log)


async def test_sigterm_drains_every_worker_and_the_parent_exits_0(redis_url: str) -> None:
    async with running_server(workers_argv("--broker", redis_url, "--drain-timeout", "3")) as server:
        with trio.fail_after(60):
            pids = await serving_workers(server)
            stream, buffer, _endpoint = await open_sse(server.port)
            server.process.send_signal(signal.SIGTERM)
            await read_until(stream, buffer, b"0\r\n\r\n")  # the open stream ends with a complete body
            assert await server.process.wait() == 0
        assert all(is_gone(pid) for pid in pids)
        for pid in pids:
            assert re.search(rf"\[{pid}\] \[INFO\] SIGTERM received: draining", server.log), server.log
            assert f"worker {pid} stopped (exit status 0)" in server.log
        assert "SIGTERM received: forwarding it to 2 workers" in server.log
        assert "Traceback" not in server.log


async def test_a_killed_worker_is_logged_and_replaced_while_the_service_answers(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIO_MCP_SSE_BROKER", redis_url)  # the broker from the environment this time
    async with running_server(workers_argv()) as server:
        with trio.fail_after(60):
            first, second = await serving_workers(server)
            os.kill(first, signal.SIGKILL)
            answers = []
            async with httpx.AsyncClient(timeout=10) as client:
                while len(re.findall(WORKER_RUNNING, server.log)) < 3:  # until the replacement serves
                    answers.append(await worker_answer(client, server))
                    await trio.sleep(0.05)
            replacement = int(re.findall(WORKER_STARTED, server.log)[2])
        assert f"worker {first} exited unexpectedly (killed by SIGKILL); starting a replacement" in server.log
        assert replacement not in (first, second) and not is_gone(replacement) and not is_gone(second)
        assert re.search(rf"\[{replacement}\] \[INFO\] Running on ", server.log)
        assert all(answer["pid"] != first for answer in answers)  # every request answered, none by the dead


async def test_workers_that_keep_dying_stop_the_service_with_status_1(redis_url: str) -> None:
    status, stderr = await run_serve(*workers_argv("--broker", redis_url), env={"WORKER_APP_CRASH": "1"})
    assert status == 1, stderr
    assert len(re.findall(r"exited unexpectedly \(exit status 3\); starting a replacement", stderr)) == 5, stderr
    assert re.search(r"^error: workers exited 6 times within 60s \(last: worker \d+, exit status 3\)", stderr, re.M), stderr


async def test_workers_drain_by_themselves_when_the_parent_is_killed(redis_url: str) -> None:
    async with running_server(workers_argv("--broker", redis_url, "--drain-timeout", "2")) as server:
        with trio.fail_after(60):
            pids = await serving_workers(server)
            server.process.kill()
            await server.process.wait()
            await until_logged(server, r"supervising process \d+ exited: draining this worker", 2)
            while not all(is_gone(pid) for pid in pids):
                await trio.sleep(0.05)


async def test_one_worker_with_a_broker_serves_in_the_process_itself(redis_url: str) -> None:
    argv = [sys.executable, "-m", "trio_mcp_sse", "serve", APP, "--bind", "127.0.0.1:0", "--broker", redis_url]
    async with running_server(argv) as server:
        with trio.fail_after(30):
            async with httpx.AsyncClient(timeout=10) as client:
                answer = await worker_answer(client, server)
        assert answer == {"pid": server.process.pid, "broker": redis_url, "request_state_secret": None}  # no extra process
        assert not WORKER_STARTED.search(server.log)
