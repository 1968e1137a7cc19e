"""The official Python SDK's MCP server under uvicorn: the interop judge.

Run as a script: binds 127.0.0.1 on a free port, prints ``PORT <n>`` on
stdout once listening, and serves until terminated.  The argument picks the
transport: ``sse`` (default; ``/sse``), ``streamable`` (Streamable HTTP at
``/mcp``, answers as event streams) or ``streamable-json`` (the same, answering
each request with one JSON body).  It exercises every client
feature: tools (with progress, logging, and a tool that waits to be
cancelled), resources, prompts, and tools that turn around and ask the client
for sampling, elicitation and roots.
"""

from __future__ import annotations

import socket
import sys
import warnings
from typing import Annotated

import anyio
import mcp_types as types
import pydantic
import uvicorn
from mcp.server.mcpserver import Context, Elicit, ListRoots, MCPServer, Resolve

warnings.simplefilter("ignore")  # sampling and roots are deprecated in the newest revision

server = MCPServer("sdk-server", version="2.0", instructions="an interop test server")
cancelled_calls: list[str] = []


@server.tool()
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
async def add(a: float, b: float) -> float:
    return a + b


@server.tool()
async def count(n: int, ctx: Context) -> str:
    """Report progress n times, log once, then answer."""
    for step in range(1, n + 1):
        await ctx.report_progress(step, n, f"step {step}")
    await ctx.info("counted")
    return f"counted to {n}"


@server.tool()
async def wait_forever(ctx: Context) -> str:
    """Run until cancelled; a progress report says it has started."""
    try:
        await ctx.report_progress(0, None, "started")
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        cancelled_calls.append(str(ctx.request_id))
        raise
    return "unreachable"


@server.tool()
async def was_cancelled() -> list[str]:
    """The ids of wait_forever calls the client cancelled."""
    return cancelled_calls


@server.tool()
async def ask_model(question: str, ctx: Context) -> str:
    result = await ctx.session.create_message(
        messages=[
            types.SamplingMessage(
                role="user", content=types.TextContent(type="text", text=question)
            )
        ],
        max_tokens=20,
    )
    content = result.content
    return f"model said: {content.text}" if isinstance(content, types.TextContent) else "no text"


class Name(pydantic.BaseModel):
    name: str


@server.tool()
async def ask_user(ctx: Context) -> str:
    answer = await ctx.elicit("What is your name?", Name)
    return f"{answer.action}: {answer.data.name if answer.data else '-'}"


def _ask_for_name() -> Elicit[Name]:
    return Elicit("Who is signing up?", Name)


def _ask_for_roots() -> ListRoots:
    return ListRoots()


@server.tool()
async def sign_up(
    name: Annotated[Name, Resolve(_ask_for_name)],
    where: Annotated[types.ListRootsResult, Resolve(_ask_for_roots)],
) -> str:
    """Elicit a name and list the roots the way both eras can: requests mid-call in the
    handshake era, an InputRequiredResult (then a retry) in 2026-07-28."""
    return f"signed up {name.name} at {', '.join(str(root.uri) for root in where.roots)}"


@server.tool()
async def roots(ctx: Context) -> list[str]:
    listed = await ctx.session.list_roots()
    return [str(root.uri) for root in listed.roots]


@server.resource("memo://greeting", name="greeting", mime_type="text/plain")
def greeting() -> str:
    return "hello from a resource"


@server.resource("memo://items/{item}")
def item(item: str) -> str:
    return f"item {item}"


@server.prompt()
def greet(who: str) -> str:
    """Greet someone."""
    return f"Please greet {who}."


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "sse"
    if mode == "sse":
        app = server.sse_app()
    elif mode in ("streamable", "streamable-json"):
        app = server.streamable_http_app(json_response=mode == "streamable-json")
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
