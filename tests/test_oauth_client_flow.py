"""The OAuth client's flow (``trio_mcp_sse.client.OAuth`` as an ``httpx.Auth``) against fakes of the other parties.

The MCP resource server and its authorization server are one
``httpx.MockTransport`` handler (:class:`World`): the resource server answers
``401``/``403`` with the challenges of RFC 6750 / RFC 9728 and checks the
tokens the authorization server issued; the authorization server publishes
RFC 8414 metadata, registers clients (RFC 7591), authenticates them at its
token endpoint, checks PKCE, ``redirect_uri`` and ``resource``, and rotates
refresh tokens.  The "browser" (:class:`Browser`) visits the authorization
URL in-process and brings back what the fake authorization server would
redirect with.  Each test asserts what ``docs/client.md`` ("OAuth") promises,
and the whole file checks that no token, secret, code or verifier ever reaches
a log record.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import orjson
import pytest
import trio

from trio_mcp_sse.client import (
    AuthorizationError,
    ClientRegistration,
    MemoryTokenStore,
    OAuth,
    OAuthDiscoveryError,
    TokenError,
    TokenSet,
)

MCP = "https://mcp.example.com"
MCP_URL = f"{MCP}/mcp"
PRM_URL = f"{MCP}/.well-known/oauth-protected-resource/mcp"
AS = "https://auth.example.com"
AS_METADATA = f"{AS}/.well-known/oauth-authorization-server"
TOKEN_ENDPOINT = f"{AS}/token"
REGISTER = f"{AS}/register"
REDIRECT_URI = "http://127.0.0.1:49152/callback"
CIMD_URL = "https://client.example/oauth/client.json"
PRE_ID = "pre-registered-client"

_serial = itertools.count(1)
SECRETS: set[str] = set()
"""Every token, secret, code and verifier any party issued or received in this file."""


def new_secret(kind: str) -> str:
    value = f"{kind}-SeCrEt-{next(_serial)}-zq8v"
    SECRETS.add(value)
    return value


PRE_SECRET = new_secret("CLIENTSECRET")


@pytest.fixture(autouse=True)
def no_secret_in_any_log_record(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every record of every logger, at every level, with tracebacks: never a secret."""
    caplog.set_level(logging.DEBUG)
    yield
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")  # with any traceback
    records = caplog.get_records("setup") + caplog.get_records("call")  # caplog.records is teardown's now
    assert records, "nothing was logged: the check below would prove nothing"
    text = "\n".join(formatter.format(record) for record in records)
    leaked = sorted(value for value in SECRETS if value in text)
    assert not leaked, f"{len(leaked)} secrets reached the log"


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def oauth_error(status: int, error: str) -> httpx.Response:
    return httpx.Response(status, json={"error": error})


class World:
    """The MCP server at ``MCP_URL`` and its authorization server ``AS``, as one mock transport.

    Resource paths: ``/mcp`` (any token of the resource), ``/mcp/write`` (needs
    ``notes:write``), ``/mcp/admin`` (needs ``notes:admin``, which the
    authorization server never grants), ``/mcp/stubborn`` (``403`` naming
    ``notes:read`` whatever the token holds), ``/mcp/broken`` (``401`` to
    every token).  Any other host answers ``200``.
    """

    def __init__(self, *, prm_url: str = PRM_URL, resource: str = MCP_URL) -> None:
        self.prm_url = prm_url
        self.prm: dict[str, Any] = {"resource": resource, "authorization_servers": [AS], "scopes_supported": ["notes:read"]}
        self.metadata: dict[str, Any] = {
            "issuer": AS,
            "authorization_endpoint": f"{AS}/authorize",
            "token_endpoint": TOKEN_ENDPOINT,
            "registration_endpoint": REGISTER,
            "scopes_supported": ["notes:read", "notes:write", "offline_access"],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
            "authorization_response_iss_parameter_supported": True,
        }
        self.grantable = {"notes:read", "notes:write", "offline_access"}
        self.clients: dict[str, dict[str, Any]] = {
            PRE_ID: {"secret": PRE_SECRET, "redirect_uris": [REDIRECT_URI], "method": "client_secret_basic"},
            # A metadata-document client: the authorization server fetched the document.
            CIMD_URL: {"secret": None, "redirect_uris": [REDIRECT_URI], "method": "none"},
        }
        self.codes: dict[str, dict[str, Any]] = {}
        self.access: dict[str, dict[str, Any]] = {}
        self.refresh: dict[str, dict[str, Any]] = {}
        self.token_errors: list[str] = []
        """OAuth errors the token endpoint answers next, one per request."""
        self.expires_in = 3600
        self.requests: list[httpx.Request] = []
        self.challenged = 0
        self.scoped = {"/mcp/write": ("notes:write",), "/mcp/admin": ("notes:admin",)}

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # -- what was sent ---------------------------------------------------------------------------------
    def calls(self, host: str | None = None) -> list[tuple[str, str]]:
        return [
            (request.method, str(request.url.copy_with(query=None)))
            for request in self.requests
            if host is None or request.url.host == host
        ]

    def token_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if str(r.url) == TOKEN_ENDPOINT]

    def token_forms(self) -> list[dict[str, str]]:
        return [dict(parse_qsl(r.content.decode())) for r in self.token_requests()]

    def registrations(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.content) for r in self.requests if str(r.url) == REGISTER]

    # -- the parties -----------------------------------------------------------------------------------
    async def handle(self, request: httpx.Request) -> httpx.Response:
        # A copy: the auth flow sends the same Request object again, with new headers.
        self.requests.append(httpx.Request(request.method, request.url, headers=request.headers.copy(), content=request.content))
        await trio.lowlevel.checkpoint()  # a network round trip lets other tasks run
        if request.url.scheme == "https" and request.url.host == "mcp.example.com" and request.url.port is None:
            return self.resource_server(request)
        if request.url.scheme == "https" and request.url.host == "auth.example.com":
            return self.authorization_server(request)
        return httpx.Response(200, text="another server")

    def resource_server(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and str(request.url) == self.prm_url:
            return httpx.Response(200, json=self.prm)
        if path != "/mcp" and not path.startswith("/mcp/"):
            return httpx.Response(404)
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        grant = self.access.get(token or "")
        if grant is None or grant["resource"] != MCP_URL or path == "/mcp/broken":
            self.challenged += 1
            challenge = f'Bearer resource_metadata="{self.prm_url}"'
            if token is not None:
                challenge += ', error="invalid_token"'
            return httpx.Response(401, headers={"www-authenticate": challenge})
        needed = ("notes:read",) if path == "/mcp/stubborn" else self.scoped.get(path, ())
        if path == "/mcp/stubborn" or not set(needed) <= grant["scopes"]:
            challenge = f'Bearer error="insufficient_scope", scope="{" ".join(needed)}", resource_metadata="{self.prm_url}"'
            return httpx.Response(403, headers={"www-authenticate": challenge})
        return httpx.Response(200, json={"path": path, "scopes": sorted(grant["scopes"])})

    def authorization_server(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url.copy_with(query=None))
        if request.method == "GET" and url == AS_METADATA:
            return httpx.Response(200, json=self.metadata)
        if request.method == "POST" and url == REGISTER:
            return self.register(orjson.loads(request.content))
        if request.method == "POST" and url == TOKEN_ENDPOINT:
            return self.token(request)
        return httpx.Response(404)

    def register(self, body: dict[str, Any]) -> httpx.Response:
        client_id = f"dynamic-{next(_serial)}"
        method = body.get("token_endpoint_auth_method", "client_secret_basic")
        answer = {**body, "client_id": client_id, "token_endpoint_auth_method": method}
        secret = None
        if method != "none":
            secret = answer["client_secret"] = new_secret("CLIENTSECRET")
        self.clients[client_id] = {"secret": secret, "redirect_uris": list(body["redirect_uris"]), "method": method}
        return httpx.Response(201, json=answer)

    def _client_of(self, request: httpx.Request, form: Mapping[str, str]) -> str | None:
        """The authenticated client, as its registration says it authenticates."""
        header = request.headers.get("authorization")
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if header is not None:
            scheme, _, value = header.partition(" ")
            if scheme != "Basic" or client_id is not None:
                return None
            name, _, password = base64.b64decode(value).decode().partition(":")
            client_id, secret = unquote(name), unquote(password)
            SECRETS.update((secret, value))  # the encoded credentials are as secret
        entry = self.clients.get(client_id or "")
        if entry is None:
            return None
        if entry["method"] == "none":
            return client_id if header is None and secret is None else None
        if entry["method"] == "client_secret_basic" and header is None:
            return None
        return client_id if secret == entry["secret"] else None

    def token(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode()))
        SECRETS.update(form[name] for name in ("code", "code_verifier", "refresh_token", "client_secret") if name in form)
        client_id = self._client_of(request, form)
        if client_id is None:
            return oauth_error(401, "invalid_client")
        if self.token_errors:
            error = self.token_errors.pop(0)
            return oauth_error(401 if error == "invalid_client" else 400, error)
        if form.get("grant_type") == "authorization_code":
            code = self.codes.pop(form.get("code", ""), None)
            if (
                code is None
                or code["client_id"] != client_id
                or code["redirect_uri"] != form.get("redirect_uri")
                or code["challenge"] != s256(form.get("code_verifier", ""))
                or code["resource"] != form.get("resource")
            ):
                return oauth_error(400, "invalid_grant")
            return self.issue(client_id, code["scopes"], code["resource"])
        if form.get("grant_type") == "refresh_token":
            record = self.refresh.pop(form.get("refresh_token", ""), None)
            if record is None or record["client_id"] != client_id or record["resource"] != form.get("resource"):
                return oauth_error(400, "invalid_grant")
            return self.issue(client_id, record["scopes"], record["resource"])
        return oauth_error(400, "unsupported_grant_type")

    def issue(self, client_id: str, scopes: tuple[str, ...], resource: str) -> httpx.Response:
        access, refresh = self.grant(client_id, scopes, resource)
        body: dict[str, Any] = {
            "access_token": access, "token_type": "Bearer", "expires_in": self.expires_in, "scope": " ".join(scopes),
        }  # fmt: skip
        if refresh is not None:
            body["refresh_token"] = refresh
        return httpx.Response(200, json=body, headers={"cache-control": "no-store"})

    def grant(self, client_id: str, scopes: tuple[str, ...], resource: str = MCP_URL) -> tuple[str, str | None]:
        """Tokens for ``client_id`` (a refresh token with ``offline_access``), rotated on refresh."""
        access = new_secret("ACCESSTOKEN")
        self.access[access] = {"scopes": set(scopes), "resource": resource, "client_id": client_id}
        refresh = None
        if "offline_access" in scopes:
            refresh = new_secret("REFRESHTOKEN")
            self.refresh[refresh] = {"scopes": scopes, "resource": resource, "client_id": client_id}
        return access, refresh

    def approve(self, authorization_url: str) -> dict[str, str]:
        """The authorization endpoint, the user approving at once: the redirect's parameters."""
        assert authorization_url.startswith(f"{AS}/authorize?")
        params = query_of(authorization_url)
        client = self.clients.get(params["client_id"])
        assert client is not None, "an unknown client was sent to the authorization endpoint"
        assert params["redirect_uri"] in client["redirect_uris"]
        assert params["response_type"] == "code" and params["code_challenge_method"] == "S256"
        scopes = tuple(s for s in params.get("scope", "").split() if s in self.grantable)
        code = new_secret("CODE")
        self.codes[code] = {
            "client_id": params["client_id"], "redirect_uri": params["redirect_uri"], "scopes": scopes,
            "challenge": params["code_challenge"], "resource": params["resource"],
        }  # fmt: skip
        return {"code": code, "state": params["state"], "iss": AS}


class Browser:
    """The redirect handler: visits the authorization URL, returns the redirect's parameters
    (``answer`` may change them, as a hostile or confused user agent would)."""

    redirect_uri = REDIRECT_URI

    def __init__(
        self, world: World, *, delay: float = 0.0, answer: Callable[[dict[str, str]], dict[str, str]] | None = None
    ) -> None:
        self.world = world
        self.delay = delay
        self.answer = answer
        self.urls: list[str] = []

    async def authorize(self, authorization_url: str, state: str) -> Mapping[str, str]:
        self.urls.append(authorization_url)
        await trio.sleep(self.delay)
        params = self.world.approve(authorization_url)
        return params if self.answer is None else self.answer(params)

    @property
    def queries(self) -> list[dict[str, str]]:
        return [query_of(url) for url in self.urls]


@asynccontextmanager
async def client_for(
    world: World, *, browser: Browser | None = None, **options: Any
) -> AsyncIterator[tuple[OAuth, httpx.AsyncClient, Browser]]:
    """An ``OAuth`` whose authorization-server calls go to ``world``, and a client using it there."""
    browser = browser if browser is not None else Browser(world)
    async with httpx.AsyncClient(transport=world.transport()) as for_the_as:
        auth = OAuth(redirect=browser, http_client=for_the_as, **options)
        async with httpx.AsyncClient(transport=world.transport(), auth=auth) as http:
            yield auth, http, browser


async def with_stored_tokens(
    world: World,
    store: MemoryTokenStore,
    *,
    scopes: tuple[str, ...] = ("notes:read", "offline_access"),
    expires_in: float = 3600.0,
    resource: str = MCP_URL,
) -> TokenSet:
    """A client registered earlier (dynamically) and the tokens it got then, in ``store``."""
    client_id = f"dynamic-{next(_serial)}"
    world.clients[client_id] = {"secret": None, "redirect_uris": [REDIRECT_URI], "method": "none"}
    await store.set_client(
        AS,
        ClientRegistration(issuer=AS, client_id=client_id, redirect_uris=(REDIRECT_URI,), source="dynamic"),
    )
    access, refresh = world.grant(client_id, scopes, resource)
    tokens = TokenSet(
        access_token=access, resource=resource, issuer=AS, token_endpoint=TOKEN_ENDPOINT,
        expires_at=time.time() + expires_in, refresh_token=refresh, scopes=scopes,
    )  # fmt: skip
    await store.set_tokens(resource, tokens)
    return tokens


def bearer(request: httpx.Request) -> str | None:
    return request.headers.get("authorization")


# -- discovery -------------------------------------------------------------------------------------
async def test_a_401_leads_to_the_metadata_its_challenge_names_then_to_one_authorization(
    caplog: pytest.LogCaptureFixture,
) -> None:
    elsewhere = f"{MCP}/metadata/for-the-mcp-endpoint"
    world = World(prm_url=elsewhere)
    async with client_for(world) as (auth, http, browser):
        response = await http.get(MCP_URL)
    assert response.status_code == 200
    assert world.calls() == [
        ("GET", MCP_URL),
        ("GET", elsewhere),  # resource_metadata first: no well-known URL was tried
        ("GET", AS_METADATA),
        ("POST", REGISTER),
        ("POST", TOKEN_ENDPOINT),
        ("GET", MCP_URL),
    ]
    first, retried = (r for r in world.requests if str(r.url) == MCP_URL)
    stored = await auth.store.get_tokens(MCP_URL)
    assert stored is not None and stored.issuer == AS
    assert bearer(first) is None and bearer(retried) == f"Bearer {stored.access_token}"
    (asked,) = browser.queries
    assert asked["response_type"] == "code"
    assert asked["redirect_uri"] == REDIRECT_URI
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert asked["resource"] == MCP_URL
    assert asked["scope"] == "notes:read offline_access"  # scopes_supported, plus a refresh token
    assert len(asked["state"]) >= 32
    (form,) = world.token_forms()
    assert form["grant_type"] == "authorization_code" and form["resource"] == MCP_URL
    assert form["redirect_uri"] == REDIRECT_URI and s256(form["code_verifier"]) == asked["code_challenge"]
    # The log says what happened (so the file's no-secret check looks at real records).
    assert f"obtained an access token for {MCP_URL} from {AS}" in caplog.text


@pytest.mark.parametrize("resource", [f"{MCP}/other", "https://evil.example/mcp", "http://mcp.example.com/mcp"])
async def test_metadata_for_a_resource_that_does_not_cover_the_url_stops_before_the_authorization_server(
    resource: str,
) -> None:
    world = World(resource=resource)
    async with client_for(world) as (_, http, browser):
        with pytest.raises(OAuthDiscoveryError, match="does not cover"):
            await http.get(MCP_URL)
    assert world.calls("auth.example.com") == []
    assert browser.urls == []


@pytest.mark.parametrize("methods", [None, ["plain"], []])
async def test_an_authorization_server_without_pkce_s256_is_refused_before_any_authorization(
    methods: list[str] | None,
) -> None:
    world = World()
    if methods is None:
        del world.metadata["code_challenge_methods_supported"]
    else:
        world.metadata["code_challenge_methods_supported"] = methods
    async with client_for(world) as (_, http, browser):
        with pytest.raises(OAuthDiscoveryError, match="S256"):
            await http.get(MCP_URL)
    assert browser.urls == []
    assert world.calls("auth.example.com") == [("GET", AS_METADATA)]  # no registration, no token request


# -- registration ------------------------------------------------------------------------------------
async def test_pre_registered_credentials_of_another_authorization_server_are_never_presented() -> None:
    world = World()
    async with client_for(world, client_id=PRE_ID, client_secret=PRE_SECRET, client_issuer="https://a.example") as (
        _,
        http,
        browser,
    ):
        with pytest.raises(OAuthDiscoveryError, match=r"belongs to https://a\.example"):
            await http.get(MCP_URL)
    assert browser.urls == []
    assert world.calls("auth.example.com") == [("GET", AS_METADATA)]


async def test_pre_registered_credentials_are_used_first() -> None:
    world = World()  # it offers dynamic registration too
    async with client_for(world, client_id=PRE_ID, client_secret=PRE_SECRET, client_issuer=AS) as (auth, http, browser):
        assert (await http.get(MCP_URL)).status_code == 200
    assert ("POST", REGISTER) not in world.calls()
    assert browser.queries[0]["client_id"] == PRE_ID
    (token_request,) = world.token_requests()
    assert token_request.headers["authorization"].startswith("Basic ")  # client_secret_basic, as offered
    assert "client_secret" not in world.token_forms()[0]
    assert await auth.store.get_client(AS) is None  # configuration, not something to store


@pytest.mark.parametrize("supported", [True, False])
async def test_a_client_id_metadata_document_is_the_client_id_where_supported(supported: bool) -> None:
    world = World()
    world.metadata["client_id_metadata_document_supported"] = supported
    async with client_for(world, client_metadata_url=CIMD_URL) as (auth, http, browser):
        assert (await http.get(MCP_URL)).status_code == 200
    registration = await auth.store.get_client(AS)
    assert registration is not None
    if supported:
        assert len(world.registrations()) == 0
        assert browser.queries[0]["client_id"] == CIMD_URL == world.token_forms()[0]["client_id"]
        assert registration.source == "metadata-document" and registration.client_id == CIMD_URL
    else:
        assert len(world.registrations()) == 1  # dynamic registration instead
        assert registration.source == "dynamic" and browser.queries[0]["client_id"] == registration.client_id


@pytest.mark.parametrize(
    ("offered", "method"),
    [(["client_secret_basic", "none"], "none"), (["client_secret_basic"], "client_secret_basic")],
)
async def test_dynamic_registration_sends_the_documented_client_metadata(offered: list[str], method: str) -> None:
    world = World()
    world.metadata["token_endpoint_auth_methods_supported"] = offered
    options = {"client_name": "notes-cli", "client_metadata": {"client_uri": "https://client.example"}}
    async with client_for(world, **options) as (auth, http, _):
        assert (await http.get(MCP_URL)).status_code == 200
        assert (await http.get(MCP_URL)).status_code == 200
    assert world.registrations() == [
        {
            "client_name": "notes-cli",
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": method,  # a public client where the server allows one
            "application_type": "native",  # a loopback redirect URI
            "client_uri": "https://client.example",
        }
    ]
    registration = await auth.store.get_client(AS)
    assert registration is not None and registration.source == "dynamic"
    assert registration.token_endpoint_auth_method == method and registration.redirect_uris == (REDIRECT_URI,)
    assert (registration.client_secret is None) == (method == "none")
    # The fake token endpoint authenticated the client the registered way (else invalid_client).
    (token_request,) = world.token_requests()
    assert ("authorization" in token_request.headers) == (method == "client_secret_basic")


async def test_invalid_client_for_a_dynamic_registration_forgets_it_and_the_next_flow_registers_again() -> None:
    world = World()
    world.token_errors = ["invalid_client"]
    async with client_for(world) as (auth, http, browser):
        with pytest.raises(TokenError) as refused:
            await http.get(MCP_URL)
        assert refused.value.error == "invalid_client" and refused.value.status_code == 401
        assert await auth.store.get_client(AS) is None
        assert (await http.get(MCP_URL)).status_code == 200
        registration = await auth.store.get_client(AS)
    first, second = (query["client_id"] for query in browser.queries)
    assert len(world.registrations()) == 2 and first != second
    assert registration is not None and registration.client_id == second


# -- refresh -------------------------------------------------------------------------------------------
async def test_an_expiring_token_is_refreshed_before_the_request_and_the_new_one_saved() -> None:
    world = World()
    store = MemoryTokenStore()
    old = await with_stored_tokens(world, store, expires_in=10)  # within the 30 s margin
    async with client_for(world, store=store) as (_, http, browser):
        response = await http.get(MCP_URL)
    assert response.status_code == 200
    assert world.calls() == [("POST", TOKEN_ENDPOINT), ("GET", MCP_URL)]  # no 401 met
    (form,) = world.token_forms()
    registration = await store.get_client(AS)
    assert registration is not None
    assert form == {
        "grant_type": "refresh_token", "refresh_token": old.refresh_token, "resource": MCP_URL,
        "client_id": registration.client_id,
    }  # fmt: skip
    new = await store.get_tokens(MCP_URL)
    assert new is not None and new.access_token != old.access_token
    assert new.refresh_token is not None and new.refresh_token != old.refresh_token  # rotated
    assert bearer(world.requests[-1]) == f"Bearer {new.access_token}"
    assert browser.urls == []


async def test_an_expiring_token_whose_refresh_fails_is_dropped_and_the_user_asked_again() -> None:
    world = World()
    store = MemoryTokenStore()
    old = await with_stored_tokens(world, store, expires_in=10)
    world.token_errors = ["invalid_grant"]
    async with client_for(world, store=store) as (_, http, browser):
        assert (await http.get(MCP_URL)).status_code == 200
    assert [form["grant_type"] for form in world.token_forms()] == ["refresh_token", "authorization_code"]
    assert len(browser.urls) == 1
    new = await store.get_tokens(MCP_URL)
    assert new is not None and new.access_token != old.access_token


@pytest.mark.parametrize("refresh_works", [True, False])
async def test_a_401_tries_a_refresh_then_falls_back_to_a_new_authorization(refresh_works: bool) -> None:
    world = World()
    store = MemoryTokenStore()
    old = await with_stored_tokens(world, store)  # not expiring: sent as it is
    del world.access[old.access_token]  # revoked: the server answers 401
    if not refresh_works:
        del world.refresh[old.refresh_token or ""]  # invalid_grant
    async with client_for(world, store=store) as (_, http, browser):
        response = await http.get(MCP_URL)
    assert response.status_code == 200
    forms = world.token_forms()
    assert forms[0]["grant_type"] == "refresh_token" and forms[0]["resource"] == MCP_URL
    if refresh_works:
        assert len(forms) == 1 and browser.urls == []
    else:
        assert [form["grant_type"] for form in forms] == ["refresh_token", "authorization_code"]
        assert len(browser.urls) == 1
        assert len(world.registrations()) == 0  # the stored registration is still good
    new = await store.get_tokens(MCP_URL)
    assert new is not None and bearer(world.requests[-1]) == f"Bearer {new.access_token}"


# -- where tokens go -------------------------------------------------------------------------------------
async def test_tokens_are_attached_only_to_urls_their_resource_covers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "mcp.example.com" and request.url.path == "/a/moved":
            return httpx.Response(307, headers={"location": "https://other.example.com/a/moved"})
        return httpx.Response(200)

    world = World()
    store = MemoryTokenStore()
    tokens = await with_stored_tokens(world, store, resource=f"{MCP}/a")
    covered = [f"{MCP}/a", f"{MCP}/a/", f"{MCP}/a/deeper/path?x=1"]
    elsewhere = [
        f"{MCP}/b",
        f"{MCP}/ab",  # a path that merely starts with the resource's
        f"{MCP}/",
        "https://other.example.com/a",
        "http://mcp.example.com/a",  # another scheme is another origin
        "https://mcp.example.com:8443/a",
    ]
    async with (
        httpx.AsyncClient(transport=world.transport()) as for_the_as,
        httpx.AsyncClient(
            transport=httpx.MockTransport(handler),
            auth=OAuth(redirect=Browser(world), store=store, http_client=for_the_as),
            follow_redirects=True,
        ) as http,
    ):
        for url in covered + elsewhere:
            await http.get(url)
        await http.get(f"{MCP}/a/moved")  # a redirect to another host
    sent = {str(r.url): bearer(r) for r in seen}
    for url in covered:
        assert sent[url] == f"Bearer {tokens.access_token}", url
    for url in elsewhere:
        assert sent[url] is None, url
    assert sent[f"{MCP}/a/moved"] == f"Bearer {tokens.access_token}"
    assert sent["https://other.example.com/a/moved"] is None
    assert world.requests == []  # nothing needed discovery


# -- step-up and its bounds ------------------------------------------------------------------------------
async def test_a_step_up_asks_for_the_challenged_scopes_with_the_ones_held() -> None:
    world = World()
    store = MemoryTokenStore()
    await with_stored_tokens(world, store)
    async with client_for(world, store=store) as (_, http, browser):
        response = await http.get(f"{MCP_URL}/write")
    assert response.status_code == 200 and response.json()["scopes"] == ["notes:read", "notes:write", "offline_access"]
    (asked,) = browser.queries
    assert asked["scope"] == "notes:read offline_access notes:write"
    assert [form["grant_type"] for form in world.token_forms()] == ["authorization_code"]  # no refresh for a step-up


async def test_a_403_naming_scopes_the_token_already_has_goes_to_the_caller_without_authorizing() -> None:
    world = World()
    store = MemoryTokenStore()
    await with_stored_tokens(world, store)
    async with client_for(world, store=store) as (_, http, browser):
        response = await http.get(f"{MCP_URL}/stubborn")
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert browser.urls == []
    assert world.calls() == [("GET", f"{MCP_URL}/stubborn")]


@pytest.mark.parametrize("max_attempts", [1, 2, 3])
async def test_max_attempts_bounds_the_authorizations_one_request_triggers(max_attempts: int) -> None:
    world = World()  # /mcp/admin needs notes:admin, which is never granted
    async with client_for(world, max_attempts=max_attempts) as (_, http, browser):
        response = await http.get(f"{MCP_URL}/admin")
        assert response.status_code == 403
        assert len(browser.urls) == max_attempts  # the login, then step-ups
        # The next request has a budget of its own.
        assert (await http.get(f"{MCP_URL}/admin")).status_code == 403
        assert len(browser.urls) == 2 * max_attempts
    if max_attempts > 1:
        assert browser.queries[1]["scope"] == "notes:read offline_access notes:admin"


@pytest.mark.parametrize("max_attempts", [1, 3])
async def test_max_attempts_bounds_refreshes_against_a_server_that_refuses_every_token(max_attempts: int) -> None:
    world = World()
    async with client_for(world, max_attempts=max_attempts) as (_, http, browser):
        response = await http.get(f"{MCP_URL}/broken")
    assert response.status_code == 401
    assert len(browser.urls) == 1
    assert [form["grant_type"] for form in world.token_forms()] == ["authorization_code"] + ["refresh_token"] * (
        max_attempts - 1
    )
    assert world.challenged == max_attempts + 1


# -- concurrency -------------------------------------------------------------------------------------------
async def test_concurrent_requests_meeting_a_401_share_one_authorization(autojump_clock: trio.abc.Clock) -> None:
    world = World()
    browser = Browser(world, delay=5.0)  # a person takes a while
    statuses: list[int] = []
    async with client_for(world, browser=browser) as (_, http, _):

        async def call(n: int) -> None:
            statuses.append((await http.get(f"{MCP_URL}/{n}")).status_code)

        async with trio.open_nursery() as nursery:
            for n in range(5):
                nursery.start_soon(call, n)
    assert statuses == [200] * 5
    assert len(browser.urls) == 1
    assert world.challenged == 5  # every one of them met the 401
    assert len(world.registrations()) == 1 and len(world.token_requests()) == 1


async def test_concurrent_step_ups_share_one_authorization(autojump_clock: trio.abc.Clock) -> None:
    world = World()
    store = MemoryTokenStore()
    await with_stored_tokens(world, store)
    browser = Browser(world, delay=5.0)
    statuses: list[int] = []
    async with client_for(world, browser=browser, store=store) as (_, http, _):

        async def call() -> None:
            statuses.append((await http.get(f"{MCP_URL}/write")).status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(call)
    assert statuses == [200] * 5
    assert len(browser.urls) == 1


# -- the authorization response ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "match", "error"),
    [
        (lambda p: {**p, "state": "another-state"}, "state does not match", None),
        (lambda p: {"error": "access_denied", "state": p["state"], "iss": AS}, "access_denied", "access_denied"),
        (lambda p: {**p, "iss": "https://evil.example"}, "mix-up", None),
        (lambda p: {key: value for key, value in p.items() if key != "iss"}, "no iss", None),
    ],
    ids=["wrong-state", "access-denied", "other-issuer", "no-iss"],
)
async def test_a_bad_authorization_response_is_an_authorization_error_and_no_code_is_redeemed(
    answer: Callable[[dict[str, str]], dict[str, str]], match: str, error: str | None
) -> None:
    world = World()
    async with client_for(world, browser=Browser(world, answer=answer)) as (auth, http, _):
        with pytest.raises(AuthorizationError, match=match) as refused:
            await http.get(MCP_URL)
    assert refused.value.error == error
    assert world.token_requests() == []
    assert await auth.store.get_tokens(MCP_URL) is None
