"""Stateless Streamable HTTP: no session ids, one short-lived session per request."""

from __future__ import annotations

import json
from typing import Any

import trio

from trio_mcp_sse import MCPServer
from trio_mcp_sse.server import Context
from trio_mcp_sse.testing import run_asgi_app

HEADERS = (
    ("host", "127.0.0.1:8000"),
    ("content-type", "application/json"),
    ("accept", "application/json, text/event-stream"),
)


def make_server() -> MCPServer:
    server = MCPServer("stateless", "1.0.0")

    @server.tool
    async def echo(text: str) -> str:
        """Return the text."""
        return text

    @server.tool
    async def ask(ctx: Context) -> str:
        """Try to elicit, which a stateless server cannot."""
        await ctx.elicit("name?", {"type": "object", "properties": {"name": {"type": "string"}}})
        return "unreachable"

    return server


def message(method: str, params: dict[str, Any] | None = None, request_id: int | None = 1) -> bytes:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if request_id is not None:
        body["id"] = request_id
    if params is not None:
        body["params"] = params
    return json.dumps(body).encode()


async def test_each_request_is_answered_without_a_session() -> None:
    server = make_server()
    app = server.http_app(sse_path=None, stateless=True, response_mode="json")
    transport = app.extensions["trio_mcp_sse"]
    async with run_asgi_app(app) as client:
        init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        response = await client.request("POST", "/mcp", headers=HEADERS, body=message("initialize", init))
        assert response.status == 200
        assert "mcp-session-id" not in response.headers
        assert json.loads(response.body)["result"]["protocolVersion"] == "2025-11-25"

        # No handshake needed: the next request stands alone, version from its header.
        headers = (*HEADERS, ("mcp-protocol-version", "2025-06-18"))
        call = message("tools/call", {"name": "echo", "arguments": {"text": "hi"}}, request_id=7)
        response = await client.request("POST", "/mcp", headers=headers, body=call)
        assert response.status == 200
        assert json.loads(response.body) == {
            "jsonrpc": "2.0",
            "id": 7,
            "result": {"content": [{"type": "text", "text": "hi"}]},
        }

        notification = message("notifications/initialized", request_id=None)
        response = await client.request("POST", "/mcp", headers=HEADERS, body=notification)
        assert (response.status, response.body) == (202, b"")

        for method in ("GET", "DELETE"):
            response = await client.request(method, "/mcp", headers=HEADERS)
            assert response.status == 405
            assert response.headers["allow"] == "POST"
        await trio.testing.wait_all_tasks_blocked()
        assert len(transport.sessions) == 0  # every request's session ended with its answer


async def test_a_tool_cannot_ask_the_client_on_a_stateless_server() -> None:
    app = make_server().http_app(sse_path=None, stateless=True, response_mode="json")
    async with run_asgi_app(app) as client:
        call = message("tools/call", {"name": "ask", "arguments": {}})
        response = await client.request("POST", "/mcp", headers=HEADERS, body=call)
    result = json.loads(response.body)["result"]
    assert result["isError"] is True
    assert result["content"][0]["text"] == (
        "elicitation/create needs a session: this server is stateless, so the client's answer could not reach it"
    )


async def test_stateless_event_streams_carry_no_event_ids() -> None:
    app = make_server().http_app(sse_path=None, stateless=True)
    async with run_asgi_app(app) as client:
        call = message("tools/call", {"name": "echo", "arguments": {"text": "yo"}})
        response = await client.request("POST", "/mcp", headers=HEADERS, body=call)
    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert b"id:" not in response.body and b"retry:" not in response.body
    data = [line[6:] for line in response.body.split(b"\n") if line.startswith(b"data: ")]
    assert [json.loads(item)["result"]["content"][0]["text"] for item in data] == ["yo"]


async def test_a_browser_client_may_send_and_read_the_session_headers_under_cors() -> None:
    from trio_mcp_sse import CorsSettings

    app = make_server().http_app(cors=CorsSettings(allow_origins=["https://app.example.com"]))
    origin = ("origin", "https://app.example.com")
    async with run_asgi_app(app) as client:
        preflight = await client.request(
            "OPTIONS",
            "/mcp",
            headers=(
                ("host", "127.0.0.1:8000"),
                origin,
                ("access-control-request-method", "DELETE"),
                ("access-control-request-headers", "mcp-session-id, mcp-protocol-version"),
            ),
        )
        assert preflight.status == 204
        assert "DELETE" in preflight.headers["access-control-allow-methods"].split(", ")
        allowed = preflight.headers["access-control-allow-headers"].split(", ")
        assert {"mcp-session-id", "mcp-protocol-version", "last-event-id", "mcp-method", "mcp-name"} <= set(allowed)
        init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        response = await client.request("POST", "/mcp", headers=(*HEADERS, origin), body=message("initialize", init))
    assert response.status == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
    assert response.headers["access-control-expose-headers"] == "mcp-session-id"
    assert len(response.headers["mcp-session-id"]) == 32
