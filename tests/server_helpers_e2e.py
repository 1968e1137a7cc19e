"""Run an app under a real ``hypercorn --worker-class trio`` process on 127.0.0.1.

The server binds port 0 and the port is read from hypercorn's own
"Running on" line, so there is no window in which another process could take
a port we picked.  The process's output is collected the whole time (a full
pipe would stall the server) so a test can assert that, for instance, no
traceback was printed.  The process is always killed on the way out.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
_RUNNING = re.compile(rb"Running on http://127\.0\.0\.1:(\d+)")
STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    """A port nobody listens on right now (for a server that must know its URL before it starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class RunningServer:
    base_url: str
    output: bytearray = field(default_factory=bytearray)

    @property
    def sse_url(self) -> str:
        return f"{self.base_url}/sse"

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")


@asynccontextmanager
async def hypercorn_server(
    app: str, *extra_args: str, port: int = 0, env: Mapping[str, str] | None = None
) -> AsyncIterator[RunningServer]:
    """``port``: a port the caller picked (when the app must know its own URL before it serves,
    e.g. an OAuth resource identifier); ``env``: added to this process's environment."""
    command = [
        sys.executable, "-m", "hypercorn", "--worker-class", "trio", "--bind", f"127.0.0.1:{port}", *extra_args, app,
    ]
    process = await trio.lowlevel.open_process(
        command, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=None if env is None else {**os.environ, **env},
    )
    server = RunningServer(base_url="")
    ready = trio.Event()
    try:
        async with trio.open_nursery() as nursery:

            async def collect_output() -> None:
                assert process.stdout is not None
                async for chunk in process.stdout:
                    server.output.extend(chunk)
                    if not ready.is_set() and (found := _RUNNING.search(server.output)):
                        server.base_url = f"http://127.0.0.1:{int(found.group(1))}"
                        ready.set()
                if not ready.is_set():
                    raise RuntimeError(f"hypercorn exited before serving:\n{server.text()}")

            nursery.start_soon(collect_output)
            with trio.fail_after(STARTUP_TIMEOUT):
                await ready.wait()
            try:
                yield server
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            process.terminate()
            with trio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
