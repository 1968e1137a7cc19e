"""Tasks across real worker processes: ``serve --workers 2 --broker redis://...``.

docs/scaling.md, "Tasks across workers": a task lives with the worker that
created it, its id names that worker, and a ``tasks/get``, ``tasks/update`` or
``tasks/cancel`` reaching the other worker is forwarded to it through Redis.
Here each worker starts tasks of the everything server (``slow_compute``,
``confirm_delete``; tests/apps/tasks_scaleout_app.py) on a connection it
accepted, and the other worker's connection polls, answers and cancels every
one of them until each reaches its terminal state with its exact result.  The
workers' counters must show every one of those requests forwarded, none
failed.  Real clock, one absolute ``trio.fail_after`` bound.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
import trio

from examples.everything_server import DELETE_SCHEMA

from .e2e_support import ServerProcess, running_server, serving_workers
from .test_scaleout_e2e import each_worker, forwarded, pinned_clients

pytestmark = [pytest.mark.e2e]

APP = "tests.apps.tasks_scaleout_app:app"
MODERN = "2026-07-28"
BOUND = 90.0  # seconds for the whole test, start-up of both workers included
SERVER_INFO = {"name": "mcp-conformance-test-server", "version": "1.0.0"}
COMPLETE = {"resultType": "complete", "_meta": {"io.modelcontextprotocol/serverInfo": SERVER_INFO}}


@asynccontextmanager
async def serving(redis_url: str) -> AsyncIterator[ServerProcess]:
    argv = [sys.executable, "-m", "trio_mcp_sse", "serve", APP, "--bind", "127.0.0.1:0", "--workers", "2"]
    async with running_server([*argv, "--broker", redis_url]) as server:
        await serving_workers(server, 2)
        yield server


async def post(client: httpx.AsyncClient, url: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """One 2026-07-28 request declaring the tasks extension, its routing headers derived from it; its result."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}, "extensions": {"io.modelcontextprotocol/tasks": {}}},
        "io.modelcontextprotocol/clientInfo": {"name": "scaleout-tasks", "version": "1.0"},
    }
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": MODERN,
        "mcp-method": method,
        "mcp-name": params["taskId"] if "taskId" in params else params["name"],
    }
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}})
    response = await client.post(f"{url}/mcp", content=body, headers=headers)
    assert response.status_code == 200, (method, response.status_code, response.text)
    assert response.headers["content-type"] == "application/json", response.headers
    answer: dict[str, Any] = response.json()
    assert set(answer) == {"jsonrpc", "id", "result"}, answer
    result: dict[str, Any] = answer["result"]
    return result


def owner_pid(task_id: str) -> int:
    """The pid in the worker id a task id starts with (``<pid>-<12 hex digits>.<random>``)."""
    owner, dot, random = task_id.partition(".")
    pid, dash, suffix = owner.partition("-")
    assert dot and dash and len(suffix) == 12 and len(random) == 32, task_id
    return int(pid)


async def start(client: httpx.AsyncClient, url: str, tool: str, arguments: dict[str, Any]) -> str:
    created = await post(client, url, "tools/call", {"name": tool, "arguments": arguments})
    assert created["resultType"] == "task" and created["status"] == "working", created
    task_id: str = created["taskId"]
    return task_id


async def until(client: httpx.AsyncClient, url: str, task_id: str, statuses: set[str]) -> dict[str, Any]:
    while True:
        task = await post(client, url, "tasks/get", {"taskId": task_id})
        assert task["taskId"] == task_id
        if task["status"] in statuses:
            return task
        assert task["status"] == "working", task
        await trio.sleep(0.05)


async def test_tasks_started_on_each_worker_are_driven_to_their_end_from_the_other(redis_url: str) -> None:
    with trio.fail_after(BOUND):
        async with serving(redis_url) as server, AsyncExitStack() as stack:
            url = server.url
            pids = await serving_workers(server, 2)
            pinned = await pinned_clients(stack, url, pids)  # one kept-alive connection to each worker
            finished: dict[str, dict[str, Any]] = {}
            requests_through_other = 0

            async def drive(owner: int, other: int) -> None:
                nonlocal requests_through_other
                here, there = pinned[owner], pinned[other]
                compute = await start(here, url, "slow_compute", {"seconds": 1.0, "label": f"sum of {owner}"})
                keep = await start(here, url, "confirm_delete", {"filename": f"keep-{owner}.txt"})
                delete = await start(here, url, "confirm_delete", {"filename": f"delete-{owner}.txt"})
                endless = await start(here, url, "slow_compute", {"seconds": 3600, "label": "never"})
                for task_id in (compute, keep, delete, endless):
                    assert owner_pid(task_id) == owner  # created where the connection was accepted

                # Through the other worker: the questions, the answers, the cancellation.
                for task_id, filename, response in (
                    (keep, f"keep-{owner}.txt", {"action": "accept", "content": {"confirm": False}}),
                    (delete, f"delete-{owner}.txt", {"action": "accept", "content": {"confirm": True}}),
                ):
                    asking = await until(there, url, task_id, {"input_required"})
                    assert asking["inputRequests"] == {
                        "elicitation-1": {
                            "method": "elicitation/create",
                            "params": {"message": f"Delete {filename}?", "requestedSchema": DELETE_SCHEMA},
                        }
                    }
                    update = {"taskId": task_id, "inputResponses": {"elicitation-1": response}}
                    assert await post(there, url, "tasks/update", update) == COMPLETE
                    requests_through_other += 2
                assert await post(there, url, "tasks/cancel", {"taskId": endless}) == COMPLETE
                requests_through_other += 1
                for task_id in (compute, keep, delete, endless):
                    finished[task_id] = await until(there, url, task_id, {"completed", "failed", "cancelled"})
                    requests_through_other += 1
                assert finished[compute]["status"] == "completed"
                assert finished[compute]["result"] == {"content": [{"type": "text", "text": f"Computed sum of {owner} in 1 s"}]}
                assert finished[keep]["status"] == "completed"
                assert finished[keep]["result"] == {"content": [{"type": "text", "text": f"Kept keep-{owner}.txt"}]}
                assert finished[delete]["status"] == "completed"
                assert finished[delete]["result"] == {"content": [{"type": "text", "text": f"Deleted delete-{owner}.txt"}]}
                assert finished[endless]["status"] == "cancelled"
                assert finished[endless]["statusMessage"] == "The task was cancelled."
                # The owner shows each task exactly as the other worker relayed it.
                for task_id in (compute, keep, delete, endless):
                    assert await post(here, url, "tasks/get", {"taskId": task_id}) == finished[task_id]

            first, second = pids
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drive, first, second)
                nursery.start_soon(drive, second, first)
            counters = await each_worker(url, 2)
        assert "Traceback" not in server.log, server.log
    assert len(finished) == 8
    out, into = forwarded(counters)  # (no forward failed)
    assert out == into >= requests_through_other >= 2 * 9
    for pid in pids:
        assert counters[pid]["forwarded_out"] > 0 and counters[pid]["forwarded_in"] > 0, counters
