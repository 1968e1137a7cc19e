"""The server as an OAuth resource server, in memory: metadata, challenges, scopes, per-tool step-up.

The verifier here is a table of tokens (the transport's side is what is under
test; JWT and introspection verifiers have their own tests, and the end-to-end
tests run all of it against a real authorization server).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
import trio

from trio_mcp_sse import AccessToken, AuthSettings, Context, MCPServer, ProtectedResource
from trio_mcp_sse._errors import INSUFFICIENT_SCOPE
from trio_mcp_sse._websocket import CloseCode
from trio_mcp_sse.testing import connected_client, run_asgi_app

from .ws_support import websocket_peer, websocket_scope

HOST = ("host", "127.0.0.1:8000")
AS = "https://auth.example.com"
ACCEPT = ("accept", "application/json, text/event-stream")
JSON = ("content-type", "application/json")
TOKENS = {
    "reader": AccessToken("alice", scopes=frozenset({"notes:read"}), client_id="c1"),
    "writer": AccessToken("alice", scopes=frozenset({"notes:read", "notes:write"}), client_id="c1"),
    "admin": AccessToken("bob", scopes=frozenset({"notes:admin"})),
    "none": AccessToken("carol"),
}


async def verify(token: str) -> AccessToken | None:
    return TOKENS.get(token)


def make_server() -> MCPServer:
    server = MCPServer("notes", "1.0.0")

    @server.tool
    async def read(ctx: Context) -> str:
        """Anyone with a token."""
        token = ctx.access_token
        assert token is not None
        return f"{token.subject}:{' '.join(sorted(token.scopes))}"

    @server.tool(required_scopes=["notes:write"])
    async def write(text: str, ctx: Context) -> str:
        """Needs notes:write."""
        return f"written by {ctx.principal}"

    return server


def auth_settings(**changes: Any) -> AuthSettings:
    options: dict[str, Any] = {
        "verify_token": verify,
        "protected_resource": ProtectedResource(authorization_servers=[AS], scopes_supported=["notes:read", "notes:write"]),
        "required_scopes": ["notes:read"],
        "scope_hierarchy": {"notes:admin": ["notes:write"], "notes:write": ["notes:read"]},
    }
    options.update(changes)
    return AuthSettings(**options)


def bearer(token: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {token}")


def rpc(method: str, params: dict[str, Any] | None = None, request_id: int = 1) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}})


INIT = rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})


# -- Protected Resource Metadata ------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource/sse",
        "/.well-known/oauth-protected-resource/ws",
    ],
)
async def test_metadata_is_served_at_the_root_and_at_every_endpoints_path(path: str) -> None:
    app = make_server().http_app(auth=auth_settings(), websocket=True)
    async with run_asgi_app(app) as h:
        response = await h.request("GET", path, headers=(HOST,))
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["access-control-allow-origin"] == "*"
    assert orjson.loads(response.body) == {
        "resource": "http://127.0.0.1:8000",
        "authorization_servers": [AS],
        "scopes_supported": ["notes:read", "notes:write"],
        "bearer_methods_supported": ["header"],
    }


async def test_a_configured_resource_is_published_as_is_and_a_mount_prefix_is_honoured() -> None:
    resource = ProtectedResource(
        authorization_servers=[AS], resource="https://mcp.example.com/tools", resource_name="Notes",
        extra={"resource_documentation": "https://docs.example.com"},
    )
    app = make_server().http_app(auth=auth_settings(protected_resource=resource))
    async with run_asgi_app(app) as h:
        configured = await h.request("GET", "/.well-known/oauth-protected-resource/mcp", headers=(HOST,))
    assert orjson.loads(configured.body) == {
        "resource": "https://mcp.example.com/tools",
        "authorization_servers": [AS],
        "bearer_methods_supported": ["header"],
        "resource_name": "Notes",
        "resource_documentation": "https://docs.example.com",
    }
    derived = make_server().http_app(auth=auth_settings())
    async with run_asgi_app(derived) as h:
        mounted = await h.request(
            "GET", "/.well-known/oauth-protected-resource/mcp", headers=(HOST,), root_path="/tools"
        )
        challenge = await h.request("POST", "/mcp", headers=(HOST, JSON, ACCEPT), body=INIT, root_path="/tools")
    assert orjson.loads(mounted.body)["resource"] == "http://127.0.0.1:8000/tools"
    assert 'resource_metadata="http://127.0.0.1:8000/tools/.well-known/oauth-protected-resource/mcp"' in (
        challenge.headers["www-authenticate"]
    )


async def test_metadata_answers_only_get_head_and_preflight_and_checks_the_host() -> None:
    app = make_server().http_app(auth=auth_settings())
    path = "/.well-known/oauth-protected-resource"
    async with run_asgi_app(app) as h:
        head = await h.request("HEAD", path, headers=(HOST,))
        preflight = await h.request("OPTIONS", path, headers=(HOST, ("origin", "https://inspector.example")))
        post = await h.request("POST", path, headers=(HOST, JSON), body=b"{}")
        rebinding = await h.request("GET", path, headers=(("host", "evil.example"),))
    assert (head.status, head.body) == (200, b"")
    assert preflight.status == 204 and preflight.headers["access-control-allow-origin"] == "*"
    assert (post.status, post.headers["allow"]) == (405, "GET, HEAD, OPTIONS")
    assert rebinding.status == 421


async def test_without_protected_resource_settings_no_metadata_is_served() -> None:
    app = make_server().http_app(auth=AuthSettings(verify_token=verify))
    async with run_asgi_app(app) as h:
        response = await h.request("GET", "/.well-known/oauth-protected-resource", headers=(HOST,))
        challenge = await h.request("POST", "/mcp", headers=(HOST, JSON, ACCEPT), body=INIT)
    assert response.status == 404
    assert challenge.headers["www-authenticate"] == 'Bearer realm="mcp"'


# -- challenges --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "endpoint"), [("/mcp", "/mcp"), ("/sse", "/sse"), ("/messages/", "/sse")])
async def test_a_missing_token_gets_401_naming_the_metadata_and_the_required_scopes(path: str, endpoint: str) -> None:
    app = make_server().http_app(auth=auth_settings())
    async with run_asgi_app(app) as h:
        method = "GET" if path == "/sse" else "POST"
        response = await h.request(method, path, query="session_id=" + "a" * 32, headers=(HOST, JSON, ACCEPT), body=INIT)
    assert response.status == 401
    assert response.headers["www-authenticate"] == (
        'Bearer realm="mcp", scope="notes:read", '
        f'resource_metadata="http://127.0.0.1:8000/.well-known/oauth-protected-resource{endpoint}"'
    )


async def test_an_invalid_token_gets_401_invalid_token_and_a_short_one_403_insufficient_scope() -> None:
    app = make_server().http_app(auth=auth_settings())
    async with run_asgi_app(app) as h:
        invalid = await h.request("POST", "/mcp", headers=(HOST, JSON, ACCEPT, bearer("forged")), body=INIT)
        short = await h.request("POST", "/mcp", headers=(HOST, JSON, ACCEPT, bearer("none")), body=INIT)
        enough = await h.request("POST", "/mcp", headers=(HOST, JSON, ACCEPT, bearer("reader")), body=INIT)
    assert invalid.status == 401
    assert 'error="invalid_token"' in invalid.headers["www-authenticate"]
    assert short.status == 403
    assert short.headers["www-authenticate"].startswith('Bearer realm="mcp", error="insufficient_scope", scope="notes:read"')
    assert orjson.loads(short.body)["error"]["code"] == -32000
    assert enough.status == 200


# -- per-tool scopes ---------------------------------------------------------------------------------
async def call_over_streamable(h: Any, token: str, name: str, arguments: dict[str, Any]) -> Any:
    headers = (HOST, JSON, ACCEPT, bearer(token))
    opened = await h.request("POST", "/mcp", headers=headers, body=INIT)
    sid = ("mcp-session-id", opened.headers["mcp-session-id"])
    await h.request("POST", "/mcp", headers=(*headers, sid), body=orjson.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    return await h.request("POST", "/mcp", headers=(*headers, sid), body=rpc("tools/call", {"name": name, "arguments": arguments}, 2))


def result_text(response: Any) -> str:
    for line in response.body.decode().splitlines():
        if line.startswith("data: {"):
            message = orjson.loads(line.removeprefix("data: "))
            if "result" in message:
                return str(message["result"]["content"][0]["text"])
    raise AssertionError(response.body)


async def test_a_tool_that_needs_more_scopes_gets_a_step_up_challenge_over_streamable_http() -> None:
    app = make_server().http_app(auth=auth_settings())
    async with run_asgi_app(app) as h:
        refused = await call_over_streamable(h, "reader", "write", {"text": "x"})
        allowed = await call_over_streamable(h, "writer", "write", {"text": "x"})
        implied = await call_over_streamable(h, "admin", "read", {})
        unknown = await call_over_streamable(h, "reader", "nope", {})
    assert refused.status == 403
    assert refused.headers["www-authenticate"] == (
        'Bearer realm="mcp", error="insufficient_scope", scope="notes:read notes:write", '
        'resource_metadata="http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp"'
    )
    assert result_text(allowed) == "written by alice"
    # notes:admin implies notes:write, which implies notes:read; the tool sees them all.
    assert result_text(implied) == "bob:notes:admin notes:read notes:write"
    assert unknown.status == 200 and b"Unknown tool" in unknown.body  # no challenge names a tool nobody serves


async def test_the_step_up_challenge_is_the_same_over_http_sse_and_in_the_2026_era() -> None:
    app = make_server().http_app(auth=auth_settings())
    async with run_asgi_app(app) as h:
        async with h.stream(headers=(HOST, bearer("reader"))) as stream:
            endpoint = await stream.endpoint()
            path, _, query = endpoint.partition("?")
            refused = await h.request(
                "POST", path, query=query, headers=(HOST, JSON, bearer("reader")),
                body=rpc("tools/call", {"name": "write", "arguments": {"text": "x"}}),
            )
        modern = await h.request(
            "POST", "/mcp",
            headers=(HOST, JSON, ACCEPT, bearer("reader"), ("mcp-protocol-version", "2026-07-28")),
            body=rpc("tools/call", {"name": "write", "arguments": {"text": "x"}, "_meta": {}}),
        )
    for response in (refused, modern):
        assert response.status == 403
        assert 'error="insufficient_scope", scope="notes:read notes:write"' in response.headers["www-authenticate"]


async def test_in_the_session_a_scoped_tool_needs_a_token_with_its_scopes_whatever_the_transport() -> None:
    server = make_server()
    async with connected_client(server) as anonymous:
        error = await anonymous.call_error("tools/call", {"name": "write", "arguments": {"text": "x"}})
    assert error["code"] == INSUFFICIENT_SCOPE
    assert error["data"] == {"error": "insufficient_scope", "requiredScopes": ["notes:write"]}
    async with connected_client(server, access_token=TOKENS["reader"]) as reader:
        error = await reader.call_error("tools/call", {"name": "write", "arguments": {"text": "x"}})
        assert error["code"] == INSUFFICIENT_SCOPE
    async with connected_client(server, access_token=TOKENS["writer"]) as writer:
        result = await writer.call("tools/call", {"name": "write", "arguments": {"text": "x"}})
    assert result["content"][0]["text"] == "written by alice"


def test_settings_refuse_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="required=True"):
        AuthSettings(verify_token=verify, required=False, required_scopes=["a"])
    with pytest.raises(TypeError):
        AuthSettings(verify_token=verify, required_scopes="notes:read")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scope name"):
        AuthSettings(verify_token=verify, required_scopes=["a b"])
    with pytest.raises(ValueError, match="at least one"):
        ProtectedResource(authorization_servers=[])
    with pytest.raises(ValueError, match="absolute"):
        ProtectedResource(authorization_servers=["auth.example.com"])
    with pytest.raises(ValueError, match="fragment"):
        ProtectedResource(authorization_servers=[AS], resource="https://mcp.example.com/#x")
    with pytest.raises(ValueError, match="header"):
        ProtectedResource(authorization_servers=[AS], bearer_methods_supported=["query"])
    with pytest.raises(TypeError):
        MCPServer("x", "1").tool(required_scopes="notes:write")(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="subject"):
        AccessToken("")


async def test_a_plain_principal_verifier_still_works_and_its_tokens_have_no_scopes() -> None:
    async def names(token: str) -> str | None:
        return "dave" if token == "t" else None

    app = make_server().http_app(auth=AuthSettings(verify_token=names))
    async with run_asgi_app(app) as h:
        response = await call_over_streamable(h, "t", "read", {})
    assert result_text(response) == "dave:"


# -- WebSocket -----------------------------------------------------------------------------------------
async def test_a_websocket_ends_when_its_token_expires(autojump_clock: trio.testing.MockClock) -> None:
    expiring = AccessToken("erin", scopes=frozenset({"notes:read"}), expires_at=time.time() + 5)

    async def verify_expiring(token: str) -> AccessToken | None:
        return expiring if token == "soon" else None

    app = make_server().http_app(auth=auth_settings(verify_token=verify_expiring), websocket=True)
    scope = websocket_scope(headers=(("host", "127.0.0.1:8000"), ("authorization", "Bearer soon")))
    async with run_asgi_app(app), websocket_peer(app, scope=scope) as (peer, first):
        assert first["type"] == "websocket.accept"
        await peer.initialize()
        with trio.fail_after(60):
            closing = await peer.next()
    assert closing == {"type": "websocket.close", "code": int(CloseCode.POLICY_VIOLATION), "reason": "access token expired"}


async def test_behind_a_trusted_proxy_the_metadata_and_challenges_name_what_the_client_used() -> None:
    from trio_mcp_sse import SecuritySettings

    app = make_server().http_app(auth=auth_settings(), security=SecuritySettings(trusted_proxies=["127.0.0.1"], allowed_hosts=["mcp.example.com"]))
    forwarded = (
        ("host", "10.0.0.5:8000"),
        ("x-forwarded-host", "mcp.example.com"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-prefix", "/tools"),
    )
    async with run_asgi_app(app) as h:
        document = await h.request("GET", "/.well-known/oauth-protected-resource/mcp", headers=forwarded)
        challenge = await h.request("POST", "/mcp", headers=(*forwarded, JSON, ACCEPT), body=INIT)
    assert orjson.loads(document.body)["resource"] == "https://mcp.example.com/tools"
    assert 'resource_metadata="https://mcp.example.com/tools/.well-known/oauth-protected-resource/mcp"' in (
        challenge.headers["www-authenticate"]
    )
