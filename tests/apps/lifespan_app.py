"""An MCPServer with a lifespan that records its enter and exit in a file, for the end-to-end tests.

``LIFESPAN_LOG`` names the file (one line per event: ``entered <pid>``, ``exited <pid>``);
``LIFESPAN_FAIL`` set makes entering fail as a database that is down would.  The tool
``opened`` answers how many times the "pool" was opened, as the tool sees it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from trio_mcp_sse import Context, MCPServer


class Pool:
    def __init__(self) -> None:
        self.opened = 1


def _record(event: str) -> None:
    with Path(os.environ["LIFESPAN_LOG"]).open("a", encoding="utf-8") as log:
        log.write(f"{event} {os.getpid()}\n")


@asynccontextmanager
async def lifespan(server: MCPServer) -> AsyncIterator[Pool]:
    await trio.lowlevel.checkpoint()  # connecting
    if os.environ.get("LIFESPAN_FAIL"):
        raise ConnectionRefusedError("database at 127.0.0.1:5432 refused the connection")
    _record("entered")
    try:
        yield Pool()
    finally:
        _record("exited")


server = MCPServer("lifespan-e2e", lifespan=lifespan)


@server.tool
async def opened(ctx: Context[Pool]) -> int:
    return ctx.lifespan_context.opened
