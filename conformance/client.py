"""The client program the MCP conformance suite runs in client mode.

The suite starts a scenario's server, then runs this program with the server's
URL as the last argument, the scenario's name in ``MCP_CONFORMANCE_SCENARIO``
and, when it asks for one, the protocol revision in
``MCP_CONFORMANCE_PROTOCOL_VERSION``.  One behaviour serves every scenario:
connect in the newest protocol era both sides speak (only the handshake era when
a handshake revision is asked for), list the tools and call each with arguments
its input schema asks for (or make the calls ``MCP_CONFORMANCE_CONTEXT`` spells
out), answering elicitation (accept, with values for the
requested schema), sampling and roots, whether the server asks mid-call
(handshake era) or in an ``InputRequiredResult`` (2026-07-28); then list and
read the resources and prompts a server offers, where it has them.  The suite
judges what went over the wire; this program exits 0 when the session worked,
1 with a one-line error when it did not.

    python conformance/client.py http://localhost:PORT/mcp
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Awaitable
from typing import Any

import trio

from trio_mcp_sse import MCPError
from trio_mcp_sse.client import (
    SUPPORTED_PROTOCOL_VERSIONS,
    ClientError,
    ClientSession,
    ProtocolChoice,
    ProtocolError,
    open_session,
)

log = logging.getLogger("conformance.client")

# The json-schema-2020-12-preservation scenario asks the client to hand one
# tool's inputSchema, as it kept it, back through another tool.
ECHO_TOOL = "json_schema_echo"
ECHOED_TOOL = "json_schema_2020_12_tool"


def _arguments(input_schema: dict[str, Any]) -> dict[str, Any]:
    """Plausible arguments for a tool (or an elicitation form): a property's default, else its
    first enum value, else numbers 2, 3, ..., strings "test" and true, by schema type."""
    arguments: dict[str, Any] = {}
    numbers = iter(range(2, 100))
    for name, schema in (input_schema.get("properties") or {}).items():
        kind = schema.get("type") if isinstance(schema, dict) else None
        if isinstance(schema, dict) and "default" in schema:
            arguments[name] = schema["default"]
        elif isinstance(schema, dict) and isinstance(schema.get("enum"), list) and schema["enum"]:
            arguments[name] = schema["enum"][0]
        elif kind in ("number", "integer"):
            arguments[name] = next(numbers)
        elif kind == "boolean":
            arguments[name] = True
        elif kind == "string":
            arguments[name] = "test"
    return arguments


async def run(url: str, protocol: ProtocolChoice, protocol_version: str) -> None:
    with trio.fail_after(25):  # the suite gives a client 30 s
        await _session(url, protocol, protocol_version)


async def _elicit(params: Any) -> dict[str, Any]:
    schema = getattr(params, "requested_schema", None) or {}
    return {"action": "accept", "content": _arguments(dict(schema))}


async def _sample(params: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": {"type": "text", "text": "test"}, "model": "conformance"}


async def _roots() -> dict[str, Any]:
    return {"roots": [{"uri": "file:///conformance", "name": "conformance"}]}


async def _session(url: str, protocol: ProtocolChoice, protocol_version: str) -> None:
    async with open_session(
        url,
        protocol=protocol,
        protocol_version=protocol_version,
        client_name="trio-mcp-sse-conformance",
        elicitation_handler=_elicit,
        sampling_handler=_sample,
        roots_handler=_roots,
    ) as session:
        log.info(
            "connected: %s era, protocol %s, server %s",
            session.era,
            session.protocol_version,
            session.server_info,
        )
        tools = (await session.list_tools()).tools
        log.info("tools: %s", [tool.name for tool in tools])
        schemas = {tool.name: tool.input_schema for tool in tools}
        calls = _context_tool_calls()
        if calls is None:
            calls = [(tool.name, _arguments(tool.input_schema)) for tool in tools]
        for name, arguments in calls:
            if name == ECHO_TOOL:
                arguments = {"schema": schemas.get(ECHOED_TOOL, {})}
            await _optional(_call(session, name, arguments), f"answer from {name}")
        await _optional(_resources(session), "resources")
        await _optional(_prompts(session), "prompts")


def _context_tool_calls() -> list[tuple[str, dict[str, Any]]] | None:
    """The calls a scenario spells out (``toolCalls`` in ``MCP_CONFORMANCE_CONTEXT``), if any."""
    try:
        context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    except json.JSONDecodeError:
        return None
    calls = context.get("toolCalls") if isinstance(context, dict) else None
    if not isinstance(calls, list):
        return None
    return [
        (call["name"], dict(call.get("arguments") or {}))
        for call in calls
        if isinstance(call, dict) and isinstance(call.get("name"), str)
    ]


async def _call(session: ClientSession, name: str, arguments: dict[str, Any]) -> None:
    result = await session.call_tool(name, arguments)
    log.info("called %s: %s", name, result.model_dump(mode="json", exclude_none=True))


async def _optional(step: Awaitable[None], what: str) -> None:
    """A scenario's server answers only what it tests: a refusal of anything else is logged."""
    try:
        await step
    except (MCPError, ProtocolError) as refused:
        log.info("no %s: %s", what, refused)


async def _resources(session: ClientSession) -> None:
    for resource in (await session.list_resources()).resources:
        await session.read_resource(str(resource.uri))
        log.info("read %s", resource.uri)


async def _prompts(session: ClientSession) -> None:
    for prompt in (await session.list_prompts()).prompts:
        arguments = {argument.name: "test" for argument in prompt.arguments or []}
        await session.get_prompt(prompt.name, arguments)
        log.info("got prompt %s", prompt.name)


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    if len(sys.argv) < 2:
        print("usage: python conformance/client.py URL", file=sys.stderr)
        return 2
    url = sys.argv[-1]
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    requested = os.environ.get("MCP_CONFORMANCE_PROTOCOL_VERSION", "")
    # A handshake revision asked for is the one offered in initialize, with no
    # probe; otherwise the newest era both sides speak.
    protocol: ProtocolChoice = "handshake" if requested in SUPPORTED_PROTOCOL_VERSIONS else "auto"
    version = requested if requested in SUPPORTED_PROTOCOL_VERSIONS else SUPPORTED_PROTOCOL_VERSIONS[-1]
    log.info("scenario %r at %s, protocol %s (initialize offers %s)", scenario, url, protocol, version)
    try:
        trio.run(run, url, protocol, version)
    except (ClientError, MCPError, trio.TooSlowError) as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
