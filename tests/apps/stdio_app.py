"""A server for the stdio tests: it prints and logs in every way a tool might (all of which must
reach stderr, never the client's stdout), reports progress, and takes its time when asked.

Run as ``python -m trio_mcp_sse serve --stdio tests.apps.stdio_app:server`` or as a script
(``python tests/apps/stdio_app.py``, which calls ``server.run_stdio()``).
"""

from __future__ import annotations

import logging
import os
import sys

import trio

from trio_mcp_sse.server import Context, MCPServer

if __name__ != "__main__":
    # ``serve --stdio`` claims stdout before it imports the module, so even this reaches stderr.
    # (Run as a script, the module runs before ``run_stdio()`` does: it must print nothing first.)
    print("stdio_app imported (a print at import time)")

server = MCPServer("stdio-test", "1.0.0")
log = logging.getLogger("stdio_app")


@server.tool
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool
async def chatty(ctx: Context) -> str:
    """Write to stdout in five ways, log, tell the client, report progress; then answer."""
    print("printed by a tool")
    sys.stdout.write("written to sys.stdout by a tool\n")
    sys.stdout.flush()
    os.write(1, b"written to fd 1 by a tool\n")
    log.warning("logged by a tool")
    await trio.run_process(["echo", "printed by a child process"])
    await ctx.info("a log message for the client")
    await ctx.report_progress(1, 2, "halfway")
    await ctx.report_progress(2, 2, "done")
    # The TypeScript SDK client handles notifications a tick after the messages read with them,
    # and forgets a request's progress callback as soon as its result is read: progress that
    # shares a read with the result would reach no callback there.
    await trio.sleep(0.1)
    return "chatted"


@server.tool
async def ask_model(question: str, ctx: Context) -> str:
    """A request of the server's own (sampling), answered by the client over stdin."""
    result = await ctx.sample(question, max_tokens=20)
    text = getattr(result.content, "text", None)
    return f"the model said: {text}"


@server.tool
async def slow(seconds: float) -> str:
    """Sleep, then answer (or be cancelled)."""
    await trio.sleep(seconds)
    return f"slept {seconds:g}s"


@server.tool
async def big(size: int) -> str:
    """A text of ``size`` characters."""
    return "x" * size


if __name__ == "__main__":
    server.run_stdio()
