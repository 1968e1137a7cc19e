"""Real servers in subprocesses for end-to-end tests: real sockets, real clock."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
_RUNNING_ON = re.compile(rb"Running on https?://[^:]+:(\d+)")


@dataclass
class ServerProcess:
    process: trio.Process
    port: int = 0
    output: bytearray = field(default_factory=bytearray)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return self.output.decode("utf-8", "replace")


@asynccontextmanager
async def running_server(argv: Sequence[str], *, port_pattern: re.Pattern[bytes] = _RUNNING_ON) -> AsyncIterator[ServerProcess]:
    """Start ``argv`` (which must bind 127.0.0.1:0 and log its port), stop it on exit."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    process = await trio.lowlevel.open_process(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(ROOT), env=env
    )
    server = ServerProcess(process)
    ready = trio.Event()
    try:
        async with trio.open_nursery() as nursery:

            async def collect() -> None:
                assert process.stdout is not None
                async for chunk in process.stdout:
                    server.output += chunk
                    if not ready.is_set():
                        match = port_pattern.search(server.output)
                        if match:
                            server.port = int(match.group(1))
                            ready.set()
                ready.set()

            nursery.start_soon(collect)
            with trio.fail_after(30):
                await ready.wait()
            if not server.port:
                raise RuntimeError(f"server did not start:\n{server.log}")
            try:
                yield server
            finally:
                process.send_signal(signal.SIGTERM)
                with trio.move_on_after(10):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    finally:
        if process.returncode is None:
            process.kill()


def hypercorn_argv(app: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hypercorn", "--worker-class", "trio", "--bind", "127.0.0.1:0", *extra, app]
