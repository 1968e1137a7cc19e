"""The client program the MCP conformance suite runs in client mode.

The suite starts a scenario's server, then runs this program with the server's
URL as the last argument and the scenario's name in ``MCP_CONFORMANCE_SCENARIO``.
Every scenario it is used for (``initialize``, ``tools_call``, ``sse-retry``)
needs the same client behaviour: connect, initialize, list the tools, call the
first one with arguments its input schema asks for, close.  The suite judges
what went over the wire; this program exits 0 when the session worked, 1 with a
one-line error when it did not.

    python conformance/client.py http://localhost:PORT/mcp
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import trio

from trio_mcp_sse import MCPError
from trio_mcp_sse.client import SUPPORTED_PROTOCOL_VERSIONS, ClientError, open_session

log = logging.getLogger("conformance.client")


def _arguments(input_schema: dict[str, Any]) -> dict[str, Any]:
    """Plausible arguments for a tool: numbers 2, 3, ... and strings "test", by schema type."""
    arguments: dict[str, Any] = {}
    numbers = iter(range(2, 100))
    for name, schema in (input_schema.get("properties") or {}).items():
        kind = schema.get("type") if isinstance(schema, dict) else None
        if kind in ("number", "integer"):
            arguments[name] = next(numbers)
        elif kind == "boolean":
            arguments[name] = True
        elif kind == "string":
            arguments[name] = "test"
    return arguments


async def run(url: str, protocol_version: str) -> None:
    with trio.fail_after(25):  # the suite gives a client 30 s
        await _session(url, protocol_version)


async def _session(url: str, protocol_version: str) -> None:
    async with open_session(
        url, protocol_version=protocol_version, client_name="trio-mcp-sse-conformance"
    ) as session:
        log.info("initialized: protocol %s, server %s", session.protocol_version, session.server_info)
        tools = (await session.list_tools()).tools
        log.info("tools: %s", [tool.name for tool in tools])
        if tools:
            tool = tools[0]
            result = await session.call_tool(tool.name, _arguments(tool.input_schema))
            log.info("called %s: %s", tool.name, result.model_dump(mode="json", exclude_none=True))


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    if len(sys.argv) < 2:
        print("usage: python conformance/client.py URL", file=sys.stderr)
        return 2
    url = sys.argv[-1]
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    requested = os.environ.get("MCP_CONFORMANCE_PROTOCOL_VERSION", "")
    # A version this client does not speak (the stateless 2026 revision) is
    # not offered; the latest one is, and the scenario decides what it accepts.
    version = requested if requested in SUPPORTED_PROTOCOL_VERSIONS else SUPPORTED_PROTOCOL_VERSIONS[-1]
    log.info("scenario %r at %s, offering protocol %s", scenario, url, version)
    try:
        trio.run(run, url, version)
    except (ClientError, MCPError, trio.TooSlowError) as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
