"""OAuth end to end: our server, protected by a real authorization server, reached by real clients.

The authorization server is ``tests/oauth_as.py`` (authlib: its grants, PKCE,
registration, RFC 9068 JWT access tokens, introspection), in its own process;
the MCP server is ``tests/apps/oauth_app.py`` under ``hypercorn --worker-class
trio``.  The clients are ours (:class:`trio_mcp_sse.client.OAuth`) and the
official Python SDK's ``OAuthClientProvider``; the browser is
``authorize_headless`` (the authorization server approves at once).  Then
hostile tokens, sent by hand, each get the documented answer and leave the
server serving everyone else.  Real sockets, real clock, an absolute bound per test.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import mcp_types
import orjson
import pytest
import trio
from mcp import ClientSession as SdkClientSession
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from trio_mcp_sse.client import OAuth, TokenSet, open_session

from .oauth_as import RunningAuthorizationServer, authorization_server, authorize_headless
from .server_helpers_e2e import RunningServer, free_port, hypercorn_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:.*deprecated as of 2026-07-28"),
    pytest.mark.filterwarnings("ignore:.*removed as of 2026-07-28"),
]

TEST_TIMEOUT = 90.0
REDIRECT_URI = "http://127.0.0.1:5999/callback"
OTHER_RESOURCE = "http://127.0.0.1:1/other-mcp"
CC_CLIENT = f"machine:machine-secret:{REDIRECT_URI}:client_secret_basic"


class HeadlessRedirect:
    """Our client's user agent in these tests: the authorization server approves at once."""

    redirect_uri = REDIRECT_URI

    def __init__(self) -> None:
        self.urls: list[str] = []

    async def authorize(self, authorization_url: str, state: str) -> Mapping[str, str]:
        self.urls.append(authorization_url)
        return await authorize_headless(authorization_url)


@asynccontextmanager
async def protected_server(
    issuer: str, *, verifier: str = "jwt", leeway: float = 30.0, fetch_timeout: float = 3.0, refresh_interval: float = 30.0
) -> AsyncIterator[tuple[RunningServer, str]]:
    port = free_port()
    resource = f"http://127.0.0.1:{port}"
    env = {
        "OAUTH_ISSUER": issuer,
        "OAUTH_RESOURCE": resource,
        "OAUTH_VERIFIER": verifier,
        "OAUTH_LEEWAY": str(leeway),
        "OAUTH_FETCH_TIMEOUT": str(fetch_timeout),
        "OAUTH_REFRESH_INTERVAL": str(refresh_interval),
    }
    async with hypercorn_server("tests.apps.oauth_app:app", port=port, env=env) as server:
        yield server, resource


def text_of(result: Any) -> str:
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent), block
    return block.text


async def authorize_requests(authority: RunningAuthorizationServer) -> list[dict[str, Any]]:
    return [entry for entry in await authority.requests() if entry["path"] == "/authorize"]


async def token_requests(authority: RunningAuthorizationServer) -> list[dict[str, Any]]:
    return [entry for entry in await authority.requests() if entry["path"] == "/token"]


# -- our client --------------------------------------------------------------------------------------
@pytest.mark.parametrize("endpoint", ["/mcp", "/sse"])
async def test_our_client_registers_authorizes_and_steps_up(endpoint: str) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with authorization_server() as authority, protected_server(authority.issuer) as (server, resource):
            browser = HeadlessRedirect()
            auth = OAuth(redirect=browser, client_name="e2e")
            async with open_session(server.base_url + endpoint, auth=auth) as session:
                who = text_of(await session.call_tool("whoami", {}))
                assert who.startswith("alice via ") and who.endswith(": notes:read offline_access")
                # add_note needs notes:write: 403, step up, and the call succeeds.
                assert text_of(await session.call_tool("add_note", {"text": "hello"})) == "1 notes"
                assert text_of(await session.call_tool("read_notes", {})) == "alice: hello"
            authorizations = await authorize_requests(authority)
            tokens = [entry["form"] for entry in await token_requests(authority)]
    assert len(authorizations) == 2  # the login, then the step-up; the other calls reused the token
    first, second = (entry["query"] for entry in authorizations)
    assert first["resource"] == second["resource"] == resource
    assert first["code_challenge_method"] == second["code_challenge_method"] == "S256"
    assert first["scope"] == "notes:read offline_access"  # scopes_supported, plus a refresh token
    assert second["scope"] == "notes:read offline_access notes:write"  # what it had, and what it was asked for
    assert [form["grant_type"] for form in tokens] == ["authorization_code", "authorization_code"]
    assert all(form["resource"] == resource and form["code_verifier"] == "***" for form in tokens)
    assert "Bearer" not in server.text() and "eyJ" not in server.text()  # no token in the server's log


async def test_our_client_refreshes_an_expiring_token_and_rotates_the_refresh_token() -> None:
    with trio.fail_after(TEST_TIMEOUT):
        # 20 s tokens are "expiring" (the client refreshes within 30 s of expiry) at once.
        async with authorization_server(access_token_ttl=20) as authority, protected_server(authority.issuer) as (server, _):
            auth = OAuth(redirect=HeadlessRedirect())
            async with open_session(server.base_url + "/mcp", auth=auth) as session:
                first = (await auth.store.get_tokens(server.base_url))
                assert isinstance(first, TokenSet) and first.refresh_token
                await session.call_tool("whoami", {})
                await session.call_tool("whoami", {})
                latest = await auth.store.get_tokens(server.base_url)
                grants = [entry["form"]["grant_type"] for entry in await token_requests(authority)]
    assert grants[0] == "authorization_code"
    assert grants[1:] and set(grants[1:]) == {"refresh_token"}
    assert latest is not None and latest.refresh_token != first.refresh_token  # rotated


async def test_a_denied_authorization_ends_open_session_with_the_servers_error() -> None:
    from trio_mcp_sse.client import AuthorizationError

    with trio.fail_after(TEST_TIMEOUT):
        async with authorization_server() as authority, protected_server(authority.issuer) as (server, _):
            await authority.deny(True)
            with pytest.raises(AuthorizationError, match="access_denied") as refused:
                async with open_session(server.base_url + "/mcp", auth=OAuth(redirect=HeadlessRedirect())):
                    pass  # pragma: no cover
    assert refused.value.error == "access_denied"


# -- the official SDK's client ------------------------------------------------------------------------
class SdkStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


async def test_the_official_sdk_client_authorizes_and_calls_a_scoped_tool() -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with authorization_server() as authority, protected_server(authority.issuer) as (server, resource):
            answers: list[dict[str, str]] = []

            async def redirect(url: str) -> None:
                answers.append(await authorize_headless(url))

            async def callback() -> AuthorizationCodeResult:
                answer = answers.pop()
                return AuthorizationCodeResult(code=answer["code"], state=answer.get("state"), iss=answer.get("iss"))

            # Registered here, without a scope: this authorization server (like many) grants a
            # client only the scopes it registered, and the SDK would register the first ones it asks.
            async with httpx.AsyncClient(timeout=10) as http:
                registered = await http.post(authority.url("/register"), json={
                    "client_name": "sdk-e2e", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none",
                    "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
                })  # fmt: skip
            storage = SdkStorage()
            storage.client = OAuthClientInformationFull.model_validate(registered.json())
            provider = OAuthClientProvider(
                server_url=server.base_url + "/mcp",
                client_metadata=OAuthClientMetadata(
                    client_name="sdk-e2e",
                    redirect_uris=[REDIRECT_URI],  # type: ignore[list-item]
                    grant_types=["authorization_code", "refresh_token"],
                    response_types=["code"],
                    token_endpoint_auth_method="none",
                ),
                storage=storage,
                redirect_handler=redirect,
                callback_handler=callback,
            )
            async with (
                httpx2.AsyncClient(auth=provider, timeout=30) as http,
                streamable_http_client(server.base_url + "/mcp", http_client=http) as (read, write),
                SdkClientSession(read, write) as session,
            ):
                await session.initialize()
                whoami = await session.call_tool("whoami", {})
                added = await session.call_tool("add_note", {"text": "from the sdk"})
            authorizations = await authorize_requests(authority)
    assert text_of(whoami).startswith("alice via ")
    assert text_of(added) == "1 notes"
    assert authorizations[0]["query"]["resource"].rstrip("/") == resource
    assert authorizations[-1]["query"]["scope"].split().count("notes:write") == 1


# -- hostile tokens -----------------------------------------------------------------------------------
INIT = orjson.dumps({
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
})  # fmt: skip
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


async def post_with(server: RunningServer, token: str, body: bytes = INIT) -> httpx.Response:
    async with httpx.AsyncClient(timeout=20) as http:
        return await http.post(server.base_url + "/mcp", content=body, headers={**HEADERS, "authorization": f"Bearer {token}"})


async def client_credentials_token(authority: RunningAuthorizationServer, resource: str, scope: str = "notes:read") -> str:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            authority.url("/token"),
            data={"grant_type": "client_credentials", "resource": resource, "scope": scope},
            auth=("machine", "machine-secret"),
        )
    response.raise_for_status()
    return str(response.json()["access_token"])


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "notes:read notes:write notes:admin"
    forged = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def test_hostile_tokens_get_the_documented_answers_and_break_nothing_else() -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with (
            authorization_server(clients=[CC_CLIENT]) as authority,
            protected_server(authority.issuer, leeway=0, fetch_timeout=1.5, refresh_interval=0.5) as (server, resource),
        ):
            good = await client_credentials_token(authority, resource)
            assert (await post_with(server, good)).status_code == 200
            claims = {"aud": resource, "scope": "notes:read", "sub": "mallory"}
            cases = {
                "for another resource": await client_credentials_token(authority, OTHER_RESOURCE),
                "expired": await authority.mint({**claims, "exp": 1_000_000_000}),
                "tampered": tampered(good),
                "unsigned": await authority.mint(claims, alg="none"),
                "signed with the public key as an HMAC secret": await authority.mint(claims, alg="HS256"),
                "signed by another key": await authority.mint(claims, foreign_key=True),
                "from another issuer": await authority.mint({**claims, "iss": "http://127.0.0.1:2"}),
                "not a JWT": "definitely-not-a-jwt",
            }
            for what, token in cases.items():
                response = await post_with(server, token)
                assert response.status_code == 401, what
                assert 'error="invalid_token"' in response.headers["www-authenticate"], what
                assert (await post_with(server, good)).status_code == 200, f"after {what}"
            # Not enough scope for the endpoint: 403, naming the scope needed.
            unscoped = await authority.mint({**claims, "scope": "profile"})
            refused = await post_with(server, unscoped)
            assert refused.status_code == 403
            assert 'error="insufficient_scope", scope="notes:read"' in refused.headers["www-authenticate"]
            # A JWKS that hangs: a token signed by a new key cannot be checked (503, bounded), while
            # tokens of the known key are still served at once.
            await authority.hang_jwks(True)
            await authority.rotate_keys(keep_old=True)
            fresh = await authority.mint(claims)
            await trio.sleep(0.6)  # past refresh_interval: an unknown key may be looked for
            started = trio.current_time()
            unavailable = await post_with(server, fresh)
            waited = trio.current_time() - started
            assert unavailable.status_code == 503 and unavailable.headers["retry-after"] == "5"
            assert waited < 4.0
            assert (await post_with(server, good)).status_code == 200
            await authority.hang_jwks(False)
            # Once the key set answers again (after the verifier's short pause between failed
            # fetches), the new key is found.
            renewed = await authority.mint(claims)
            with trio.fail_after(10):
                while (await post_with(server, renewed)).status_code != 200:
                    await trio.sleep(0.2)
    log = server.text()
    for token in (good, *cases.values(), fresh):
        assert token not in log
    assert "Traceback" not in log


async def test_introspection_verifier_against_the_real_authorization_server() -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with (
            authorization_server(clients=[CC_CLIENT]) as authority,
            protected_server(authority.issuer, verifier="introspection") as (server, resource),
        ):
            good = await client_credentials_token(authority, resource)
            other = await client_credentials_token(authority, OTHER_RESOURCE)
            assert (await post_with(server, good)).status_code == 200
            assert (await post_with(server, other)).status_code == 401
            await authority.revoke(good)
            assert (await post_with(server, good)).status_code == 401
            # The session layer sees the introspected subject (client_credentials: the client id).
            auth_token = await client_credentials_token(authority, resource)
            async with httpx.AsyncClient(timeout=20) as http:
                headers = {**HEADERS, "authorization": f"Bearer {auth_token}"}
                opened = await http.post(server.base_url + "/mcp", content=INIT, headers=headers)
                session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
                await http.post(
                    server.base_url + "/mcp", headers={**headers, **session},
                    content=orjson.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                )
                called = await http.post(
                    server.base_url + "/mcp", headers={**headers, **session},
                    content=orjson.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}),
                )
    assert "machine via machine: notes:read" in called.text
