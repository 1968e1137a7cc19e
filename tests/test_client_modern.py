"""The client in the 2026-07-28 era, against a scripted Streamable HTTP server (in memory).

What a user relies on: ``open_session`` lands on the newest era both sides
speak (probing ``server/discover``, falling back to ``initialize`` only when
the server is not a modern one); every modern request carries the envelope and
the mirrored headers, and no session; an ``InputRequiredResult`` is answered
with the same handlers a handshake-era server would have asked, and retried
with the server's state, a bounded number of times; ``subscriptions/listen``
delivers its notifications to the usual handlers.  Each test has an absolute
``fail_after``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import mcp_types
import pytest
import trio

from tests.client_helpers import asgi_http_client
from tests.client_helpers_streamable import (
    ENDPOINT,
    Answer,
    FakeStreamableServer,
    message_event,
    result,
)
from trio_mcp_sse import MCPError
from trio_mcp_sse._jsonrpc import JSONRPCNotification
from trio_mcp_sse.client import (
    ClientSession,
    ProtocolError,
    ProtocolVersionError,
    connect_streamable_http,
    open_session,
)
from trio_mcp_sse.client._eras import (
    header_value,
    mirrored_headers,
    param_header_paths,
    param_headers,
)

MODERN = "2026-07-28"
VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
INFO_KEY = "io.modelcontextprotocol/clientInfo"
CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
SUBSCRIPTION_KEY = "io.modelcontextprotocol/subscriptionId"


def complete(value: dict[str, Any]) -> dict[str, Any]:
    return {"resultType": "complete", **value}


def discover_answer(message: dict[str, Any]) -> Answer:
    return Answer(
        json=result(
            message,
            complete(
                {
                    "supportedVersions": ["2025-11-25", MODERN],
                    "capabilities": {"tools": {"listChanged": True}},
                    "instructions": "be kind",
                    "ttlMs": 0,
                    "cacheScope": "private",
                    "_meta": {
                        "io.modelcontextprotocol/serverInfo": {"name": "modern", "version": "1"}
                    },
                }
            ),
        )
    )


def modern_server() -> FakeStreamableServer:
    """Answers ``server/discover``; has no ``initialize`` (a modern-only server)."""
    server = FakeStreamableServer(session_id=None)
    del server.answers["initialize"]
    server.answers["server/discover"] = discover_answer
    server.answers["tools/list"] = lambda message: Answer(
        json=result(message, complete({"tools": []}))
    )
    return server


def text_result(text: str) -> dict[str, Any]:
    return complete({"content": [{"type": "text", "text": text}]})


def text_of(call: mcp_types.CallToolResult) -> str:
    block = call.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


@asynccontextmanager
async def opened(server: FakeStreamableServer, **options: Any) -> AsyncIterator[ClientSession]:
    async with (
        asgi_http_client(server, lifespan=False) as http_client,
        open_session(
            ENDPOINT, http_client=http_client, client_name="tester", client_version="9", **options
        ) as session,
    ):
        yield session


# -- sans-io: the mirrored headers ------------------------------------------------------------
def test_headers_mirror_the_version_the_method_and_the_name() -> None:
    meta = {"_meta": {VERSION_KEY: MODERN}}
    assert mirrored_headers("tools/call", {**meta, "name": "get_weather"}) == {
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": "get_weather",
    }
    assert (
        mirrored_headers("resources/read", {**meta, "uri": "file:///a b.txt"})["mcp-name"]
        == "file:///a b.txt"
    )
    assert "mcp-name" not in mirrored_headers("tools/list", meta)
    # A handshake-era request (no envelope) gets none of them.
    assert mirrored_headers("tools/call", {"name": "x"}) == {}


def test_unsafe_header_values_use_the_base64_sentinel() -> None:
    assert header_value("us-west1") == "us-west1"
    assert header_value("Hello, 世界") == "=?base64?SGVsbG8sIOS4lueVjA==?="
    assert header_value(" padded ") == "=?base64?IHBhZGRlZCA=?="
    assert header_value("line1\nline2") == "=?base64?bGluZTEKbGluZTI=?="
    assert header_value("=?base64?literal?=") == "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="


# -- choosing the era -------------------------------------------------------------------------
async def test_auto_speaks_2026_to_a_modern_server_with_the_envelope_on_every_request(
    autojump_clock: Any,
) -> None:
    server = modern_server()
    server.answers["tools/call"] = lambda message: Answer(
        json=result(message, text_result("sunny"))
    )

    async def elicit(params: Any) -> dict[str, Any]:
        raise AssertionError("not asked")

    with trio.fail_after(10):
        async with opened(server, elicitation_handler=elicit) as session:
            assert session.era == "modern"
            assert session.protocol_version == MODERN
            assert session.server_info is not None and session.server_info.name == "modern"
            assert session.instructions == "be kind"
            assert session.server_capabilities is not None
            assert session.server_capabilities.tools is not None
            assert text_of(await session.call_tool("weather", {"city": "Oslo"})) == "sunny"
    assert [seen.message["method"] for seen in server.requests("POST")] == [
        "server/discover",
        "tools/call",
    ]
    assert server.requests("GET") == [] and server.requests("DELETE") == []
    call = server.posted("tools/call")[0]
    assert call.headers["mcp-protocol-version"] == MODERN
    assert call.headers["mcp-method"] == "tools/call"
    assert call.headers["mcp-name"] == "weather"
    assert "mcp-session-id" not in call.headers
    assert call.message["params"]["arguments"] == {"city": "Oslo"}
    assert call.message["params"]["_meta"] == {
        VERSION_KEY: MODERN,
        INFO_KEY: {"name": "tester", "version": "9"},
        CAPABILITIES_KEY: {"elicitation": {}},
    }


async def test_auto_falls_back_to_initialize_when_discover_is_not_found(
    autojump_clock: Any,
) -> None:
    server = FakeStreamableServer()  # handshake only: server/discover is -32601
    with trio.fail_after(10):
        async with opened(server) as session:
            assert session.era == "handshake"
            assert session.protocol_version == "2025-11-25"
            assert (await session.list_tools()).tools == []
    methods = [seen.message["method"] for seen in server.requests("POST")]
    assert methods == ["server/discover", "initialize", "notifications/initialized", "tools/list"]
    assert "_meta" not in (server.posted("tools/list")[0].message.get("params") or {})


async def test_auto_falls_back_when_the_probe_gets_a_400_without_a_modern_error(
    autojump_clock: Any,
) -> None:
    server = FakeStreamableServer()
    server.answers["server/discover"] = lambda message: Answer(
        status=400, body=b"Bad Request: no session"
    )
    with trio.fail_after(10):
        async with opened(server) as session:
            assert session.era == "handshake"


async def test_an_unsupported_version_error_naming_2026_makes_the_probe_ask_again(
    autojump_clock: Any,
) -> None:
    server = modern_server()
    refused: list[int] = []

    def discover(message: dict[str, Any]) -> Answer:
        if not refused:
            refused.append(message["id"])
            error = {
                "code": -32022,
                "message": "Unsupported protocol version",
                "data": {"supported": [MODERN], "requested": MODERN},
            }
            return Answer(status=400, json={"jsonrpc": "2.0", "id": message["id"], "error": error})
        return discover_answer(message)

    server.answers["server/discover"] = discover
    with trio.fail_after(10):
        async with opened(server) as session:
            assert session.era == "modern"
    assert len(server.posted("server/discover")) == 2
    assert server.posted("initialize") == []


async def test_a_modern_server_sharing_no_version_is_an_error_not_a_fallback(
    autojump_clock: Any,
) -> None:
    server = modern_server()
    error = {
        "code": -32022,
        "message": "Unsupported",
        "data": {"supported": ["2099-01-01"], "requested": MODERN},
    }
    server.answers["server/discover"] = lambda message: Answer(
        status=400, json={"jsonrpc": "2.0", "id": message["id"], "error": error}
    )
    with trio.fail_after(10), pytest.raises(MCPError) as raised:
        async with opened(server):
            pytest.fail("no common version")
    assert raised.value.code == -32022
    assert server.posted("initialize") == []


async def test_protocol_2026_does_not_fall_back(autojump_clock: Any) -> None:
    server = FakeStreamableServer()
    with trio.fail_after(10), pytest.raises(ProtocolVersionError, match="2026-07-28"):
        async with opened(server, protocol="2026-07-28"):
            pytest.fail("the server is handshake-only")
    assert server.posted("initialize") == []


async def test_protocol_handshake_never_probes(autojump_clock: Any) -> None:
    server = FakeStreamableServer()
    with trio.fail_after(10):
        async with opened(server, protocol="handshake") as session:
            assert session.era == "handshake"
    assert server.posted("server/discover") == []


# -- multi round-trip requests ----------------------------------------------------------------
async def test_input_required_is_answered_by_the_handlers_and_retried_with_the_state(
    autojump_clock: Any,
) -> None:
    server = modern_server()
    calls: list[dict[str, Any]] = []

    def call(message: dict[str, Any]) -> Answer:
        calls.append(message)
        if len(calls) == 1:
            return Answer(
                json=result(
                    message,
                    {
                        "resultType": "input_required",
                        "inputRequests": {
                            "login": {
                                "method": "elicitation/create",
                                "params": {
                                    "mode": "form",
                                    "message": "Your name?",
                                    "requestedSchema": {
                                        "type": "object",
                                        "properties": {"name": {"type": "string"}},
                                    },
                                },
                            },
                            "capital": {
                                "method": "sampling/createMessage",
                                "params": {
                                    "messages": [
                                        {
                                            "role": "user",
                                            "content": {"type": "text", "text": "Capital?"},
                                        }
                                    ],
                                    "maxTokens": 10,
                                },
                            },
                            "where": {"method": "roots/list"},
                        },
                        "requestState": "opaque-1",
                    },
                )
            )
        return Answer(json=result(message, text_result("thanks")))

    server.answers["tools/call"] = call
    asked: list[Any] = []

    async def elicit(params: Any) -> dict[str, Any]:
        asked.append(params)
        return {"action": "accept", "content": {"name": "octocat"}}

    async def sample(params: mcp_types.CreateMessageRequestParams) -> dict[str, Any]:
        return {"role": "assistant", "content": {"type": "text", "text": "Paris"}, "model": "m"}

    async def roots() -> dict[str, Any]:
        return {"roots": [{"uri": "file:///work"}]}

    with trio.fail_after(10):
        async with opened(
            server, elicitation_handler=elicit, sampling_handler=sample, roots_handler=roots
        ) as session:
            assert text_of(await session.call_tool("signup")) == "thanks"
    assert asked[0].message == "Your name?"
    first, retry = calls
    assert first["id"] != retry["id"]
    assert "inputResponses" not in first["params"] and "requestState" not in first["params"]
    assert retry["params"]["name"] == "signup"
    assert retry["params"]["requestState"] == "opaque-1"
    assert retry["params"]["inputResponses"] == {
        "login": {"action": "accept", "content": {"name": "octocat"}},
        "capital": {
            "role": "assistant",
            "content": {"type": "text", "text": "Paris"},
            "model": "m",
        },
        "where": {"roots": [{"uri": "file:///work"}]},
    }
    assert retry["params"]["_meta"][CAPABILITIES_KEY] == {
        "sampling": {},
        "elicitation": {},
        "roots": {},
    }


async def test_a_retry_without_state_sends_none_and_a_later_call_carries_nothing(
    autojump_clock: Any,
) -> None:
    server = modern_server()
    calls: list[dict[str, Any]] = []

    def call(message: dict[str, Any]) -> Answer:
        calls.append(message)
        if message["params"]["name"] == "ask" and "inputResponses" not in message["params"]:
            elicit = {
                "method": "elicitation/create",
                "params": {
                    "message": "ok?",
                    "requestedSchema": {"type": "object", "properties": {}},
                },
            }
            return Answer(
                json=result(
                    message, {"resultType": "input_required", "inputRequests": {"q": elicit}}
                )
            )
        return Answer(
            json=result(message, {"content": [{"type": "text", "text": "done"}]})
        )  # no resultType

    server.answers["tools/call"] = call

    async def elicit(params: Any) -> dict[str, Any]:
        return {"action": "decline"}

    with trio.fail_after(10):
        async with opened(server, elicitation_handler=elicit) as session:
            assert text_of(await session.call_tool("ask")) == "done"
            assert text_of(await session.call_tool("other")) == "done"
    assert [("requestState" in c["params"], "inputResponses" in c["params"]) for c in calls] == [
        (False, False),
        (False, True),
        (False, False),
    ]
    assert calls[1]["params"]["inputResponses"] == {"q": {"action": "decline"}}


async def test_input_rounds_are_bounded(autojump_clock: Any) -> None:
    server = modern_server()
    server.answers["tools/call"] = lambda message: Answer(
        json=result(message, {"resultType": "input_required", "requestState": "again"})
    )
    with trio.fail_after(10):
        async with opened(server, max_input_rounds=3) as session:
            with pytest.raises(ProtocolError, match="after 3 rounds"):
                await session.call_tool("loop")
    assert len(server.posted("tools/call")) == 4


async def test_an_input_the_client_cannot_give_fails_the_request(autojump_clock: Any) -> None:
    server = modern_server()
    server.answers["tools/call"] = lambda message: Answer(
        json=result(
            message,
            {"resultType": "input_required", "inputRequests": {"r": {"method": "roots/list"}}},
        )
    )
    with trio.fail_after(10):
        async with opened(server) as session:
            with pytest.raises(ProtocolError, match="does not support roots"):
                await session.call_tool("needs_roots")
    assert len(server.posted("tools/call")) == 1


# -- subscriptions and logging ----------------------------------------------------------------
async def test_listen_delivers_its_notifications_to_the_handlers(autojump_clock: Any) -> None:
    server = modern_server()
    listened: list[dict[str, Any]] = []

    def listen(message: dict[str, Any]) -> Answer:
        listened.append(message)
        meta = {SUBSCRIPTION_KEY: message["id"]}
        acknowledged = {
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": {"_meta": meta, "notifications": {"toolsListChanged": True}},
        }
        changed = {
            "jsonrpc": "2.0",
            "method": "notifications/tools/list_changed",
            "params": {"_meta": meta},
        }
        return Answer(frames=[message_event(acknowledged), message_event(changed)], end=False)

    server.answers["subscriptions/listen"] = listen
    received: list[JSONRPCNotification] = []
    got = trio.Event()

    async def on_changed(notification: JSONRPCNotification) -> None:
        received.append(notification)
        got.set()

    with trio.fail_after(10):
        async with opened(
            server, notification_handlers={"notifications/tools/list_changed": on_changed}
        ) as session:
            async with session.listen(
                tools_list_changed=True, resource_subscriptions=["memo://a"]
            ) as subscription:
                assert subscription.acknowledged == {"toolsListChanged": True}
                await got.wait()
                assert not subscription.closed
            # Leaving closed the stream; the session goes on.
            assert (await session.list_tools()).tools == []
    assert listened[0]["params"]["notifications"] == {
        "toolsListChanged": True,
        "resourceSubscriptions": ["memo://a"],
    }
    assert listened[0]["params"]["_meta"][VERSION_KEY] == MODERN
    # Closing the stream is the cancellation: there is no session to send a notification to.
    assert server.posted("notifications/cancelled") == []
    assert received[0].method == "notifications/tools/list_changed"


async def test_listen_is_a_modern_method(autojump_clock: Any) -> None:
    with trio.fail_after(10):
        async with opened(FakeStreamableServer()) as session:
            with pytest.raises(RuntimeError, match="2026-07-28"):
                async with session.listen(tools_list_changed=True):
                    pytest.fail("handshake era")


async def test_the_log_level_travels_in_the_envelope(autojump_clock: Any) -> None:
    server = modern_server()
    with trio.fail_after(10):
        async with opened(server) as session:
            await session.set_logging_level("warning")
            await session.list_tools()
    assert server.posted("logging/setLevel") == []
    assert (
        server.posted("tools/list")[0].message["params"]["_meta"][
            "io.modelcontextprotocol/logLevel"
        ]
        == "warning"
    )


# -- x-mcp-header: tool arguments mirrored in Mcp-Param-* headers ------------------------------
ANNOTATED = {
    "type": "object",
    "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "priority": {"type": "integer", "x-mcp-header": "Priority"},
        "verbose": {"type": "boolean", "x-mcp-header": "Verbose"},
        "where": {
            "type": "object",
            "properties": {"zone": {"type": "string", "x-mcp-header": "Zone"}},
        },
        "query": {"type": "string"},
    },
}


def test_param_header_paths_and_values() -> None:
    paths = param_header_paths(ANNOTATED)
    assert paths == {
        "Region": ("region",),
        "Priority": ("priority",),
        "Verbose": ("verbose",),
        "Zone": ("where", "zone"),
    }
    arguments = {
        "region": "Hello, 世界",
        "priority": 42,
        "verbose": None,
        "where": {"zone": "b"},
        "query": "x",
    }
    assert param_headers(paths, arguments) == {
        "mcp-param-region": "=?base64?SGVsbG8sIOS4lueVjA==?=",
        "mcp-param-priority": "42",
        "mcp-param-zone": "b",
    }
    assert param_headers(paths, {"verbose": False})["mcp-param-verbose"] == "false"


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ({"properties": {"a": {"type": "string", "x-mcp-header": ""}}}, "empty"),
        ({"properties": {"a": {"type": "string", "x-mcp-header": "A B"}}}, "token"),
        (
            {"properties": {"a": {"type": "number", "x-mcp-header": "A"}}},
            "not a string, integer or boolean",
        ),
        (
            {"properties": {"a": {"type": "object", "x-mcp-header": "A"}}},
            "not a string, integer or boolean",
        ),
        (
            {
                "properties": {
                    "a": {"type": "string", "x-mcp-header": "A"},
                    "b": {"type": "string", "x-mcp-header": "a"},
                }
            },
            "used twice",
        ),
        (
            {
                "properties": {
                    "a": {"type": "array", "items": {"type": "string", "x-mcp-header": "A"}}
                }
            },
            "reachable",
        ),
        ({"anyOf": [{"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}]}, "reachable"),
    ],
)
def test_invalid_x_mcp_header_annotations_are_named(schema: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        param_header_paths(schema)
    # A property merely named like the keyword is not an annotation.
    assert param_header_paths({"properties": {"x-mcp-header": {"type": "string"}}}) == {}


async def test_calls_mirror_annotated_arguments_and_invalid_tools_are_left_out(
    autojump_clock: Any,
) -> None:
    server = modern_server()
    broken = {"type": "object", "properties": {"a": {"type": "number", "x-mcp-header": "A"}}}
    tools = [
        {"name": "query", "inputSchema": ANNOTATED},
        {"name": "broken", "inputSchema": broken},
    ]
    server.answers["tools/list"] = lambda message: Answer(
        json=result(message, complete({"tools": tools}))
    )
    server.answers["tools/call"] = lambda message: Answer(json=result(message, text_result("ok")))
    with trio.fail_after(10):
        async with opened(server) as session:
            assert [tool.name for tool in (await session.list_tools()).tools] == ["query"]
            await session.call_tool(
                "query", {"region": "us-west1", "priority": 7, "query": "SELECT 1"}
            )
    headers = server.posted("tools/call")[0].headers
    assert {key: value for key, value in headers.items() if key.startswith("mcp-param-")} == {
        "mcp-param-region": "us-west1",
        "mcp-param-priority": "7",
    }


async def test_a_modern_stream_ending_before_its_response_fails_that_request_alone(
    autojump_clock: Any,
) -> None:
    server = modern_server()
    progress = {
        "jsonrpc": "2.0",
        "method": "notifications/message",
        "params": {"level": "info", "data": "x"},
    }
    server.answers["tools/call"] = lambda message: Answer(frames=[message_event(progress, id="e1")])
    with trio.fail_after(10):
        async with opened(server) as session:
            with pytest.raises(MCPError, match="ended before its response") as raised:
                await session.call_tool("dies")
            assert raised.value.code == -32603
            assert (await session.list_tools()).tools == []
    assert server.requests("GET") == []  # never resumed, even with an event id to resume from


@pytest.mark.parametrize(
    ("make_server", "era"), [(modern_server, "modern"), (FakeStreamableServer, "handshake")]
)
async def test_negotiate_on_a_session_built_by_hand(
    autojump_clock: Any, make_server: Any, era: str
) -> None:
    server = make_server()
    with trio.fail_after(10):
        async with (
            asgi_http_client(server, lifespan=False) as http_client,
            connect_streamable_http(ENDPOINT, http_client=http_client) as connection,
            ClientSession(connection) as session,
        ):
            await session.negotiate()
            assert session.era == era
            assert (await session.list_tools()).tools == []
            with pytest.raises(RuntimeError, match="already initialized"):
                await session.initialize()
