"""The official Python SDK's stdio client, on asyncio as most of its users run it, against a command.

Usage: ``python tests/sdk_stdio_client.py COMMAND [ARGS...]``.  It launches the command with the
SDK's ``stdio_client`` (through ``mcp.Client``, which probes ``server/discover`` and falls back
to ``initialize``), drives the ``tests/apps/stdio_app.py`` tools and prints what it saw as one
JSON object on stdout.  Exit status 2 and a traceback on stderr when anything fails.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings
from typing import Any

import anyio
import mcp_types
from mcp import Client
from mcp.client.stdio import StdioServerParameters

warnings.simplefilter("ignore")

TEXT = 'héllo ✓\nsecond line\t"quoted"'


def texts(result: Any) -> list[str]:
    return [block.text for block in result.content if isinstance(block, mcp_types.TextContent)]


async def main() -> dict[str, Any]:
    logs: list[Any] = []
    progress: list[list[Any]] = []

    async def on_log(params: mcp_types.LoggingMessageNotificationParams) -> None:
        logs.append(params.data)

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append([value, total, message])

    params = StdioServerParameters(command=sys.argv[1], args=sys.argv[2:], env=dict(os.environ))
    with anyio.fail_after(30):
        async with Client(params, logging_callback=on_log) as client:
            seen: dict[str, Any] = {
                "protocolVersion": client.protocol_version,
                "serverInfo": client.server_info.model_dump(mode="json", exclude_none=True) if client.server_info else None,
            }
            seen["tools"] = sorted(tool.name for tool in (await client.list_tools()).tools)
            seen["echoed"] = texts(await client.call_tool("echo", {"text": TEXT}))
            seen["sent"] = TEXT
            await client.set_logging_level("info")
            seen["chatty"] = texts(await client.call_tool("chatty", {}, progress_callback=on_progress))
            seen["slow"] = texts(await client.call_tool("slow", {"seconds": 0.05}))
            await client.send_ping()
            seen["logs"] = logs
            seen["progress"] = progress
    return seen


if __name__ == "__main__":
    try:
        result = anyio.run(main)
    except BaseException:
        traceback.print_exc()
        sys.exit(2)
    print(json.dumps(result))
