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
read the resources and prompts a server offers, where it has them, and list its
skills (SEP-2640), loading one, verified, only in the scenarios where a model
asks for it (:data:`SKILL_LOADING_SCENARIOS`).

Every session carries the client's OAuth provider, which stays idle unless
the server answers ``401``/``403``: then discovery, registration (the
credentials ``MCP_CONFORMANCE_CONTEXT`` gives, a Client ID Metadata Document
URL where the server supports them, else dynamic registration) and the
authorization code flow run, the browser's part played by
:class:`HeadlessBrowser` (it requests the authorization URL and reads the
redirect, as the suite's authorization servers approve at once).  For the
``client_credentials`` scenarios the context's key or secret is used instead.  The suite
judges what went over the wire; this program exits 0 when the session worked,
1 with a one-line error when it did not.

    python conformance/client.py http://localhost:PORT/mcp
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Awaitable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import trio

from trio_mcp_sse import MCPError
from trio_mcp_sse.client import (
    SUPPORTED_PROTOCOL_VERSIONS,
    ClientCredentials,
    ClientError,
    ClientSession,
    OAuth,
    OAuthBase,
    ProtocolChoice,
    ProtocolError,
    SkillLoadError,
    SkillsClient,
    open_session,
)

log = logging.getLogger("conformance.client")

# The json-schema-2020-12-preservation scenario asks the client to hand one
# tool's inputSchema, as it kept it, back through another tool.
ECHO_TOOL = "json_schema_echo"
ECHOED_TOOL = "json_schema_2020_12_tool"
# The Client ID Metadata Document URL the suite's authorization servers expect (basic-cimd).
CLIENT_METADATA_URL = "https://conformance-test.local/client-metadata.json"
REDIRECT_URI = "http://127.0.0.1:3030/callback"


class HeadlessBrowser:
    """The user agent of an authorization server that approves at once: request the
    authorization URL, do not follow its redirect, hand back the redirect's parameters."""

    redirect_uri = REDIRECT_URI

    async def authorize(self, authorization_url: str, state: str) -> Mapping[str, str]:
        async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
            response = await client.get(authorization_url)
        location = response.headers.get("location")
        if not response.is_redirect or location is None:
            raise ClientError(f"the authorization endpoint answered {response.status_code}, not a redirect")
        return dict(parse_qsl(urlsplit(location).query, keep_blank_values=True))


def _context() -> dict[str, Any]:
    try:
        context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    except json.JSONDecodeError:
        return {}
    return context if isinstance(context, dict) else {}


def oauth_provider(scenario: str, context: Mapping[str, Any]) -> OAuthBase:
    """The OAuth provider a user of this client would configure for the scenario's server."""
    client_id = context.get("client_id")
    if scenario.startswith("auth/client-credentials") and isinstance(client_id, str):
        key = context.get("private_key_pem")
        if isinstance(key, str):
            algorithm = context.get("signing_algorithm")
            return ClientCredentials(
                client_id=client_id, private_key=key, signing_algorithm=algorithm if isinstance(algorithm, str) else "ES256"
            )
        return ClientCredentials(client_id=client_id, client_secret=str(context.get("client_secret") or ""))
    secret = context.get("client_secret")
    return OAuth(
        redirect=HeadlessBrowser(),
        client_id=client_id if isinstance(client_id, str) else None,
        client_secret=secret if isinstance(secret, str) else None,
        client_metadata_url=CLIENT_METADATA_URL,
        client_name="trio-mcp-sse-conformance",
        login_before_connect=False,
    )


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


async def run(url: str, protocol: ProtocolChoice, protocol_version: str, auth: OAuthBase | None = None) -> None:
    with trio.fail_after(25):  # the suite gives a client 30 s
        await _session(url, protocol, protocol_version, auth)


async def _elicit(params: Any) -> dict[str, Any]:
    schema = getattr(params, "requested_schema", None) or {}
    return {"action": "accept", "content": _arguments(dict(schema))}


async def _sample(params: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": {"type": "text", "text": "test"}, "model": "conformance"}


async def _roots() -> dict[str, Any]:
    return {"roots": [{"uri": "file:///conformance", "name": "conformance"}]}


async def _session(url: str, protocol: ProtocolChoice, protocol_version: str, auth: OAuthBase | None) -> None:
    async with open_session(
        url,
        auth=auth,
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
        await _optional(_skills(session), "skills")


def _context_tool_calls() -> list[tuple[str, dict[str, Any]]] | None:
    """The calls a scenario spells out (``toolCalls`` in ``MCP_CONFORMANCE_CONTEXT``), if any."""
    calls = _context().get("toolCalls")
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


# The skills scenarios (SEP-2640) where the model asks for a skill, so the host loads it. Elsewhere
# (sep-2640-client-no-prefetch) skills are only listed: a host reads no file of a skill before
# it is loaded, not on connection, not on listing.
SKILL_LOADING_SCENARIOS = {
    "sep-2640-client-verify-digest", "sep-2640-client-verify-size", "sep-2640-client-verify-frontmatter",
}


async def _skills(session: ClientSession) -> None:
    """List the server's skills; in a scenario that loads one, load the first and read its files.

    A skill whose content fails verification is refused (logged), as a host refuses it: that is
    the client working, not failing."""
    skills = SkillsClient(session)
    if not skills.supported:
        return
    entries = await skills.list_all_skills()
    log.info("skills: %s", [entry.uri for entry in entries])
    if os.environ.get("MCP_CONFORMANCE_SCENARIO", "") not in SKILL_LOADING_SCENARIOS or not entries:
        return
    try:
        loaded = await skills.load_skill(entries[0])
        for path in loaded.files:
            await loaded.read(path)
    except SkillLoadError as refused:
        log.info("refused the skill %s: %s", entries[0].uri, refused)
        return
    log.info("loaded the skill %s (%d files)", entries[0].uri, len(loaded.files))


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
        trio.run(run, url, protocol, version, oauth_provider(scenario, _context()))
    except (ClientError, MCPError, trio.TooSlowError) as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
