"""The OAuth 2.1 client of the MCP authorization specification, as an ``httpx.Auth``.

Theory of operation
-------------------
Every request the client sends goes through :meth:`OAuthBase.async_auth_flow`:

1. The token for the request's URL is attached: the stored token of the
   *resource* that covers the URL (same origin, the URL's path at or below
   the resource's), so a token is never sent to a server it was not issued
   for.  A token about to expire is refreshed first, when there is a refresh
   token.
2. The answer comes back.  ``401``: the token is missing, expired or no longer
   good; ``403`` with ``error="insufficient_scope"``: the operation needs more
   scopes.  Either way the client *recovers* (below) and sends the request
   again with the new token, at most ``max_attempts`` times per request; a
   ``403`` whose scopes the current token was already granted is not retried
   (asking again cannot help).  Any other answer goes to the caller.

Recovering, under one lock per client (concurrent requests share one flow;
a request that waited for it takes the token it produced):

* discovery: Protected Resource Metadata from the challenge's
  ``resource_metadata``, else the path-suffixed then the root well-known URI
  (RFC 9728); its ``resource`` must cover the server's URL; then the first
  authorization server's metadata, RFC 8414 then OpenID Connect Discovery,
  its ``issuer`` identical to the one asked for.  A server with no metadata
  document at all is a 2025-03-26 server: its origin's RFC 8414 document, or
  the default ``/authorize``, ``/token`` and ``/register``;
* a refresh (``401`` only, the same authorization server);
* otherwise a new grant: the scopes of the challenge, else of
  ``scopes_supported``, united with those asked before (a step-up keeps what
  other operations need), plus ``offline_access`` when the authorization
  server offers it.  :class:`OAuth` runs the authorization code flow with
  PKCE S256, ``state``, ``resource`` (RFC 8707) and the ``iss`` check
  (RFC 9207); :class:`ClientCredentials` the ``client_credentials`` grant.

Client registrations are kept per authorization server issuer: pre-registered
credentials (bound to one issuer), a Client ID Metadata Document URL when the
server supports them, else dynamic registration (RFC 7591), in that order.
Nothing here logs a token, a secret, a code or a verifier.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import httpx
import jwt
import orjson
import trio

from ._errors import OAuthDiscoveryError, OAuthError, TokenError
from ._oauth_redirect import AuthorizationHandler, LoopbackRedirect
from ._oauth_store import MemoryTokenStore, TokenStore
from ._oauth_wire import (
    AuthorizationServer,
    BearerChallenge,
    ClientRegistration,
    TokenSet,
    authorization_server_metadata_urls,
    authorization_url,
    bearer_challenge,
    canonical_resource,
    check_authorization_response,
    choose_scopes,
    client_authentication,
    is_loopback,
    parse_authorization_server,
    parse_token_response,
    pkce_pair,
    protected_resource_urls,
    require_secure,
    resource_covers,
    token_error,
)

__all__ = ["ClientCredentials", "OAuth", "OAuthBase"]

log = logging.getLogger("trio_mcp_sse.client")

_MAX_DOCUMENT: Final = 1024 * 1024
_JWT_BEARER: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_PUBLIC_FIRST: Final = ("none", "client_secret_basic", "client_secret_post")
_SECRET_FIRST: Final = ("client_secret_basic", "client_secret_post")


@dataclass(frozen=True, slots=True)
class _Discovery:
    """What discovery found for one server URL."""

    resource: str
    """The resource identifier to ask tokens for (the metadata's ``resource``)."""
    server: AuthorizationServer
    scopes_supported: tuple[str, ...] | None


def _scopes(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(item for item in value if isinstance(item, str) and item)


class OAuthBase(httpx.Auth):
    """What both grants share: attaching tokens, recovering from ``401``/``403``, discovery,
    the token endpoint, storage.  Use :class:`OAuth` or :class:`ClientCredentials`."""

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        *,
        store: TokenStore | None,
        offline_access: bool,
        max_attempts: int,
        timeout: float,
        http_client: httpx.AsyncClient | None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.store: TokenStore = store if store is not None else MemoryTokenStore()
        self.offline_access = offline_access
        self.max_attempts = max_attempts
        self.timeout = timeout
        self._http_client = http_client
        self._lock = trio.Lock()
        self._tokens: dict[str, TokenSet] | None = None
        """The store's tokens by resource, read once and written through."""

    # -- httpx.Auth ---------------------------------------------------------------------------------
    def sync_auth_flow(self, request: httpx.Request) -> Any:
        raise RuntimeError("trio_mcp_sse's OAuth works with httpx.AsyncClient only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        url = str(request.url.copy_with(query=None, fragment=None))
        tokens = await self._tokens_to_send(url)
        _attach(request, tokens)
        response = yield request
        for _ in range(self.max_attempts):
            status = response.status_code
            if status not in (401, 403):
                return
            challenge = bearer_challenge(response.headers.get_list("www-authenticate"))
            if status == 403:
                if not challenge.insufficient_scope:
                    return
                if tokens is not None and set(challenge.scopes or ()) <= set(tokens.scopes) and challenge.scopes:
                    log.info(
                        "%s still refuses a token granted %s: not asking again", url, " ".join(challenge.scopes)
                    )
                    return
            tokens = await self._recover(url, challenge, tokens, step_up=status == 403)
            _attach(request, tokens)
            response = yield request

    # -- tokens ---------------------------------------------------------------------------------------
    async def _all_tokens(self, *, reload: bool = False) -> dict[str, TokenSet]:
        if self._tokens is None or reload:
            tokens: dict[str, TokenSet] = {}
            for resource in await self.store.resources():
                found = await self.store.get_tokens(resource)
                if found is not None:
                    tokens[resource] = found
            self._tokens = tokens
        return self._tokens

    def _covering(self, tokens: Mapping[str, TokenSet], url: str) -> TokenSet | None:
        """The tokens of the most specific resource that covers ``url``."""
        best: TokenSet | None = None
        for resource, found in tokens.items():
            if resource_covers(resource, url) and (best is None or len(resource) > len(best.resource)):
                best = found
        return best

    async def _save(self, tokens: TokenSet) -> None:
        (await self._all_tokens())[tokens.resource] = tokens
        await self.store.set_tokens(tokens.resource, tokens)

    async def _forget(self, tokens: TokenSet) -> None:
        (await self._all_tokens()).pop(tokens.resource, None)
        await self.store.set_tokens(tokens.resource, None)

    async def _tokens_to_send(self, url: str) -> TokenSet | None:
        tokens = self._covering(await self._all_tokens(), url)
        if tokens is None or not tokens.expiring() or tokens.refresh_token is None:
            return tokens
        async with self._lock:
            current = self._covering(await self._all_tokens(), url)
            if current is None or current.access_token != tokens.access_token:
                return current  # another request refreshed them meanwhile
            try:
                return await self._refresh(current)
            except OAuthError as error:
                log.info("refreshing the token for %s failed: %s", current.resource, error)
                await self._forget(current)
                return None

    async def _recover(
        self, url: str, challenge: BearerChallenge, sent: TokenSet | None, *, step_up: bool
    ) -> TokenSet:
        async with self._lock:
            current = self._covering(await self._all_tokens(reload=True), url)
            if current is not None and (sent is None or current.access_token != sent.access_token):
                wanted = set(challenge.scopes or ()) if step_up else set()
                if wanted <= set(current.scopes):
                    return current  # another request got what this one needs while it waited
            found = await self._discover(url, challenge)
            previous = current if current is not None and current.resource == found.resource else None
            if (
                not step_up
                and previous is not None
                and previous.refresh_token is not None
                and previous.issuer == found.server.issuer
            ):
                try:
                    return await self._refresh(previous)
                except OAuthError as error:
                    log.info("refreshing the token for %s failed (%s): authorizing again", previous.resource, error)
            scopes = choose_scopes(
                challenged=challenge.scopes,
                supported=found.scopes_supported,
                previous=previous.scopes if previous is not None else (),
                offline_access=self.offline_access,
                server=found.server,
            )
            tokens = await self._grant(found, scopes)
            await self._save(tokens)
            log.info(
                "obtained an access token for %s from %s (scopes: %s)",
                tokens.resource,
                tokens.issuer,
                " ".join(tokens.scopes) or "none asked",
            )
            return tokens

    async def _refresh(self, tokens: TokenSet) -> TokenSet:
        assert tokens.refresh_token is not None
        server = AuthorizationServer(issuer=tokens.issuer, authorization_endpoint=None, token_endpoint=tokens.token_endpoint)
        registration = await self._refresh_registration(server)
        if registration is None:
            raise TokenError(f"no client registration with {tokens.issuer} to refresh the token with")
        form = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token, "resource": tokens.resource}
        refreshed = await self._token_request(
            server, registration, form, resource=tokens.resource, scopes=tokens.scopes, previous=tokens.refresh_token
        )
        await self._save(refreshed)
        log.info("refreshed the access token for %s", tokens.resource)
        return refreshed

    # -- what the grants define -------------------------------------------------------------------------
    async def _grant(self, found: _Discovery, scopes: tuple[str, ...]) -> TokenSet:
        raise NotImplementedError

    async def _refresh_registration(self, server: AuthorizationServer) -> ClientRegistration | None:
        raise NotImplementedError

    def _assertion(self, server: AuthorizationServer, registration: ClientRegistration) -> dict[str, str]:
        """Extra form fields authenticating the client (``private_key_jwt``); none by default."""
        return {}

    # -- HTTP ----------------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._http_client is not None:
            yield self._http_client
            return
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
            yield client

    async def _send(self, client: httpx.AsyncClient, request: httpx.Request, what: str) -> tuple[int, Any]:
        """Send, read at most 1 MiB of body and parse it as JSON (``None`` when it is not JSON)."""
        try:
            with trio.fail_after(self.timeout):
                response = await client.send(request, stream=True)
                try:
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body.extend(chunk)
                        if len(body) > _MAX_DOCUMENT:
                            raise TokenError(f"{what} at {request.url} answered more than 1 MiB")
                finally:
                    await response.aclose()
        except trio.TooSlowError:
            raise TokenError(f"{what} at {request.url} did not answer within {self.timeout:g} s") from None
        except httpx.HTTPError as error:
            raise TokenError(f"{what} at {request.url} failed: {type(error).__name__}: {error}") from None
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        return response.status_code, data

    async def _get_json(self, client: httpx.AsyncClient, url: str, what: str) -> Any:
        """A metadata document, or ``None`` when there is none at ``url`` (any failure counts as none)."""
        try:
            status, data = await self._send(
                client, client.build_request("GET", url, headers={"accept": "application/json"}), what
            )
        except TokenError as error:
            log.info("%s", error)
            return None
        return data if status == 200 else None

    # -- discovery ---------------------------------------------------------------------------------------
    async def _discover(self, url: str, challenge: BearerChallenge) -> _Discovery:
        async with self._client() as client:
            candidates = protected_resource_urls(url)
            if challenge.resource_metadata is not None:
                candidates = [challenge.resource_metadata, *(c for c in candidates if c != challenge.resource_metadata)]
            metadata: dict[str, Any] | None = None
            for candidate in candidates:
                document = await self._get_json(client, candidate, "the protected resource metadata")
                if isinstance(document, dict) and isinstance(document.get("authorization_servers"), list):
                    metadata = document
                    break
            if metadata is None:
                return await self._discover_legacy(client, url)
            resource = metadata.get("resource")
            if not isinstance(resource, str) or not resource:
                resource = canonical_resource(url)
            elif not resource_covers(resource, url):
                raise OAuthDiscoveryError(
                    f"the protected resource metadata of {url} is for resource {resource!r}, "
                    "which does not cover that URL: no token is asked for another resource"
                )
            issuers = [server for server in metadata["authorization_servers"] if isinstance(server, str) and server]
            if not issuers:
                raise OAuthDiscoveryError(f"the protected resource metadata of {url} names no authorization server")
            server = await self._authorization_server(client, issuers[0])
            return _Discovery(resource, server, _scopes(metadata.get("scopes_supported")))

    async def _authorization_server(self, client: httpx.AsyncClient, issuer: str) -> AuthorizationServer:
        require_secure(issuer, "the authorization server")
        refusals: list[str] = []
        for candidate in authorization_server_metadata_urls(issuer):
            document = await self._get_json(client, candidate, "the authorization server metadata")
            if document is None:
                continue
            try:
                return parse_authorization_server(document, issuer)
            except OAuthDiscoveryError as refused:
                log.warning("%s (%s)", refused, candidate)
                refusals.append(str(refused))
        detail = "; ".join(refusals) if refusals else "no metadata document found"
        raise OAuthDiscoveryError(f"cannot use authorization server {issuer}: {detail}")

    async def _discover_legacy(self, client: httpx.AsyncClient, url: str) -> _Discovery:
        """A server without Protected Resource Metadata: the 2025-03-26 rules (its origin is the
        authorization server: its RFC 8414 document, or the default endpoints)."""
        legacy = AuthorizationServer.legacy_defaults(url)
        document = await self._get_json(
            client, legacy.issuer + "/.well-known/oauth-authorization-server", "the authorization server metadata"
        )
        log.info("%s publishes no protected resource metadata: using its origin as the authorization server", url)
        server = legacy if document is None else parse_authorization_server(document, legacy.issuer)
        return _Discovery(canonical_resource(url), server, None)

    # -- the token endpoint --------------------------------------------------------------------------------
    async def _token_request(
        self,
        server: AuthorizationServer,
        registration: ClientRegistration,
        form: dict[str, str],
        *,
        resource: str,
        scopes: Collection[str],
        previous: str | None = None,
    ) -> TokenSet:
        headers, fields = client_authentication(registration)
        body = {**form, **fields, **self._assertion(server, registration)}
        async with self._client() as client:
            request = client.build_request(
                "POST", server.token_endpoint, data=body, headers={"accept": "application/json", **headers}
            )
            status, data = await self._send(client, request, "the token endpoint")
        if status != 200:
            error = token_error(status, data, server.token_endpoint)
            if error.error == "invalid_client" and registration.source == "dynamic":
                await self.store.set_client(registration.issuer, None)  # registers afresh next time
            raise error
        return parse_token_response(
            data, resource=resource, server=server, requested=tuple(scopes), previous_refresh_token=previous
        )

    # -- an explicit login ------------------------------------------------------------------------------
    async def login(self, url: str, *, http_client: httpx.AsyncClient | None = None) -> None:
        """Authorize for the server at ``url`` now, if it asks for a token and none is stored.

        Sends one unauthenticated ``GET`` (``Accept: text/event-stream``: no
        JSON-RPC message, so nothing a server could take for a request) and
        lets a ``401`` start the flow, so a login that waits for a person
        happens before a session's request timeouts start counting.  A server
        that answers anything else asks for nothing yet (a later ``401`` still
        starts the flow); an unreachable one is left to the connection to report.
        """
        if self._covering(await self._all_tokens(), url) is not None:
            return
        owned = http_client is None
        client = http_client if http_client is not None else httpx.AsyncClient(timeout=self.timeout)
        try:
            with trio.move_on_after(self.timeout):  # the probe itself (a login is bounded by its handler)
                async with client.stream(
                    "GET", url, headers={"accept": "text/event-stream"}, auth=_Probe(self)
                ) as response:
                    challenged = response.status_code in (401, 403)
                    challenge = bearer_challenge(response.headers.get_list("www-authenticate"))
        except httpx.HTTPError as error:
            log.debug("login probe of %s failed: %s", url, error)
            return
        finally:
            if owned:
                await client.aclose()
        if challenged and (response.status_code == 401 or challenge.insufficient_scope):
            await self._recover(url, challenge, None, step_up=response.status_code == 403)


class _Probe(httpx.Auth):
    """The login probe goes out without a token and is not retried (the flow runs unbounded after it)."""

    def __init__(self, owner: OAuthBase) -> None:
        self.owner = owner

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        yield request


def _attach(request: httpx.Request, tokens: TokenSet | None) -> None:
    if tokens is None:
        request.headers.pop("authorization", None)
    else:
        request.headers["authorization"] = f"Bearer {tokens.access_token}"


class OAuth(OAuthBase):
    """OAuth for a client acting for a user: the authorization code grant with PKCE.

    Pass it as ``auth=`` to :func:`~trio_mcp_sse.client.open_session` (or any
    ``httpx.AsyncClient``): the first ``401`` starts discovery, registration
    and the user's authorization; tokens are refreshed and stepped up as the
    server asks (see ``docs/client.md``).

    ``redirect``
        How the user authorizes (:class:`LoopbackRedirect` by default: the
        URL is printed and opened in a browser, the redirect caught on
        ``127.0.0.1``).
    ``client_id`` / ``client_secret`` / ``client_issuer`` / ``token_endpoint_auth_method``
        Pre-registered credentials, used first.  They belong to one
        authorization server: ``client_issuer`` names it (otherwise the first
        one met), and a resource that moves to another is an error rather
        than a reason to present them there.
    ``client_metadata_url``
        An HTTPS URL of this client's Client ID Metadata Document, used as
        its ``client_id`` where the authorization server supports them.
    ``client_name`` / ``client_metadata``
        What dynamic registration (RFC 7591) sends: the name, and any other
        client metadata (``client_uri``, ``logo_uri``, ...).
    ``store``
        Tokens and registrations (:class:`MemoryTokenStore` by default;
        :class:`FileTokenStore` keeps them across runs).
    ``offline_access``
        Ask for ``offline_access`` (a refresh token) where the authorization
        server offers it.
    ``max_attempts``
        Authorizations (or refreshes) one request may trigger before its
        ``401``/``403`` is given to the caller.
    ``timeout``
        Seconds for each request to a metadata, registration or token endpoint.
    ``login_before_connect``
        :func:`~trio_mcp_sse.client.open_session` first calls :meth:`login`
        when no token for the URL is stored, so a person's authorization is
        not cut short by a request timeout; ``False`` leaves it to the first
        ``401`` (fine when the redirect needs no person).
    """

    def __init__(
        self,
        *,
        redirect: AuthorizationHandler | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        client_issuer: str | None = None,
        token_endpoint_auth_method: str | None = None,
        client_metadata_url: str | None = None,
        client_name: str = "trio-mcp-sse",
        client_metadata: Mapping[str, Any] | None = None,
        store: TokenStore | None = None,
        offline_access: bool = True,
        max_attempts: int = 3,
        timeout: float = 10.0,
        http_client: httpx.AsyncClient | None = None,
        login_before_connect: bool = True,
    ) -> None:
        super().__init__(
            store=store, offline_access=offline_access, max_attempts=max_attempts, timeout=timeout, http_client=http_client
        )
        self.login_before_connect = login_before_connect
        if client_secret is not None and client_id is None:
            raise ValueError("client_secret needs client_id")
        if client_metadata_url is not None:
            parsed = httpx.URL(client_metadata_url)
            if parsed.scheme != "https" or parsed.path in ("", "/"):
                raise ValueError("client_metadata_url must be an https URL with a path (the document's address)")
        self.redirect: AuthorizationHandler = redirect if redirect is not None else LoopbackRedirect()
        self.client_id = client_id
        self.client_secret = client_secret
        self.client_issuer = client_issuer
        self.token_endpoint_auth_method = token_endpoint_auth_method
        self.client_metadata_url = client_metadata_url
        self.client_name = client_name
        self.client_metadata = dict(client_metadata or {})

    # -- registration -------------------------------------------------------------------------------
    def _pre_registered(self, server: AuthorizationServer, redirect_uri: str | None) -> ClientRegistration | None:
        if self.client_id is None:
            return None
        if self.client_issuer is None:
            self.client_issuer = server.issuer  # credentials belong to the first server they meet
        elif self.client_issuer != server.issuer:
            raise OAuthDiscoveryError(
                f"the pre-registered client {self.client_id} belongs to {self.client_issuer}, but the server now "
                f"names authorization server {server.issuer}: register the client there and configure it"
            )
        method = self.token_endpoint_auth_method or _method_for(server, _SECRET_FIRST if self.client_secret else ("none",))
        return ClientRegistration(
            issuer=server.issuer,
            client_id=self.client_id,
            client_secret=self.client_secret,
            token_endpoint_auth_method=method,
            redirect_uris=(redirect_uri,) if redirect_uri else (),
            source="pre-registered",
        )

    async def _registration(self, server: AuthorizationServer, redirect_uri: str) -> ClientRegistration:
        configured = self._pre_registered(server, redirect_uri)
        if configured is not None:
            return configured
        stored = await self.store.get_client(server.issuer)
        if stored is not None and stored.usable(redirect_uri):
            return stored
        if self.client_metadata_url is not None and server.client_id_metadata_document_supported:
            registration = ClientRegistration(
                issuer=server.issuer, client_id=self.client_metadata_url, source="metadata-document"
            )
            await self.store.set_client(server.issuer, registration)
            return registration
        if server.registration_endpoint is not None:
            return await self._register(server, redirect_uri)
        raise OAuthDiscoveryError(
            f"cannot register with {server.issuer}: it offers no dynamic registration"
            + ("" if self.client_metadata_url is None else " and no Client ID Metadata Documents")
            + "; configure a pre-registered client_id"
        )

    async def _register(self, server: AuthorizationServer, redirect_uri: str) -> ClientRegistration:
        """Dynamic client registration (RFC 7591), as a public client where the server allows one."""
        assert server.registration_endpoint is not None
        method = _method_for(server, _PUBLIC_FIRST)
        metadata = {
            "client_name": self.client_name,
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": method,
            "application_type": "native" if is_loopback(redirect_uri) else "web",
            **self.client_metadata,
        }
        async with self._client() as client:
            request = client.build_request(
                "POST", server.registration_endpoint, json=metadata, headers={"accept": "application/json"}
            )
            status, data = await self._send(client, request, "the registration endpoint")
        if status not in (200, 201) or not isinstance(data, dict) or not isinstance(data.get("client_id"), str):
            error = token_error(status, data, server.registration_endpoint)
            raise TokenError(f"dynamic registration failed: {error}", error=error.error, status_code=status)
        secret = data.get("client_secret") if isinstance(data.get("client_secret"), str) else None
        granted = data.get("token_endpoint_auth_method")
        expires = data.get("client_secret_expires_at")
        registration = ClientRegistration(
            issuer=server.issuer,
            client_id=data["client_id"],
            client_secret=secret,
            token_endpoint_auth_method=granted if isinstance(granted, str) else (method if secret or method == "none" else "none"),
            redirect_uris=tuple(u for u in data.get("redirect_uris") or [redirect_uri] if isinstance(u, str)),
            secret_expires_at=float(expires) if isinstance(expires, int | float) and expires > 0 else None,
            source="dynamic",
        )
        await self.store.set_client(server.issuer, registration)
        log.info("registered client %s with %s", registration.client_id, server.issuer)
        return registration

    async def _refresh_registration(self, server: AuthorizationServer) -> ClientRegistration | None:
        if self.client_id is not None and self.client_issuer in (None, server.issuer):
            return self._pre_registered(server, None)
        return await self.store.get_client(server.issuer)

    # -- the grant ----------------------------------------------------------------------------------
    async def _grant(self, found: _Discovery, scopes: tuple[str, ...]) -> TokenSet:
        server = found.server
        if server.authorization_endpoint is None:
            raise OAuthDiscoveryError(f"{server.issuer} has no authorization_endpoint")
        if "S256" not in (server.code_challenge_methods_supported or ()):
            raise OAuthDiscoveryError(
                f"{server.issuer} does not advertise PKCE S256 (code_challenge_methods_supported): refusing to proceed"
            )
        redirect_uri = self.redirect.redirect_uri
        registration = await self._registration(server, redirect_uri)
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(32)
        params = {
            "response_type": "code",
            "client_id": registration.client_id,
            "redirect_uri": redirect_uri,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": state,
            "resource": found.resource,
        }
        if scopes:
            params["scope"] = " ".join(scopes)
        log.info("authorization needed for %s: asking %s", found.resource, server.issuer)
        answer = await self.redirect.authorize(authorization_url(server.authorization_endpoint, params), state)
        code = check_authorization_response(answer, state=state, server=server)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "resource": found.resource,
        }
        return await self._token_request(server, registration, form, resource=found.resource, scopes=scopes)


class ClientCredentials(OAuthBase):
    """OAuth for a client acting on its own behalf: the ``client_credentials`` grant.

    The client authenticates with ``client_secret`` (``client_secret_basic``,
    or ``client_secret_post`` where only that is offered) or with a signed
    assertion (``private_key_jwt``, RFC 7523): ``private_key`` is a PEM
    private key, ``signing_algorithm`` its JWS algorithm (``ES256``,
    ``RS256``...), ``key_id`` the ``kid`` the server knows it by.  There is no
    user to ask, so it needs no redirect; ``scopes`` are asked for when no
    challenge names any.  Other options as for :class:`OAuth`.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str | None = None,
        private_key: str | bytes | None = None,
        signing_algorithm: str = "ES256",
        key_id: str | None = None,
        client_issuer: str | None = None,
        token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post", "private_key_jwt"] | None = None,
        scopes: Collection[str] | None = None,
        store: TokenStore | None = None,
        max_attempts: int = 3,
        timeout: float = 10.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(store=store, offline_access=False, max_attempts=max_attempts, timeout=timeout, http_client=http_client)
        if (client_secret is None) == (private_key is None):
            raise ValueError("give exactly one of client_secret and private_key")
        if signing_algorithm.upper().startswith("HS") or signing_algorithm.lower() == "none":
            raise ValueError("signing_algorithm must be an asymmetric JWS algorithm (ES256, RS256, PS256, EdDSA...)")
        self.client_id = client_id
        self.client_secret = client_secret
        self.private_key = private_key
        self.signing_algorithm = signing_algorithm
        self.key_id = key_id
        self.client_issuer = client_issuer
        self.token_endpoint_auth_method = token_endpoint_auth_method
        self.scopes = tuple(scopes or ())

    def _registration(self, server: AuthorizationServer) -> ClientRegistration:
        if self.client_issuer is None:
            self.client_issuer = server.issuer
        elif self.client_issuer != server.issuer:
            raise OAuthDiscoveryError(
                f"client {self.client_id} belongs to {self.client_issuer}, but the server now names "
                f"authorization server {server.issuer}"
            )
        if self.private_key is not None:
            method = "private_key_jwt"
        else:
            method = self.token_endpoint_auth_method or _method_for(server, _SECRET_FIRST)
        return ClientRegistration(
            issuer=server.issuer,
            client_id=self.client_id,
            client_secret=self.client_secret,
            token_endpoint_auth_method=method,
            source="pre-registered",
        )

    def _assertion(self, server: AuthorizationServer, registration: ClientRegistration) -> dict[str, str]:
        if registration.token_endpoint_auth_method != "private_key_jwt" or self.private_key is None:
            return {}
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": server.issuer,  # the issuer identifier, as RFC 7523bis asks
            "jti": secrets.token_urlsafe(24),
            "iat": now,
            "exp": now + 300,
        }
        headers = {"kid": self.key_id} if self.key_id else None
        assertion = jwt.encode(claims, self.private_key, algorithm=self.signing_algorithm, headers=headers)
        return {"client_assertion_type": _JWT_BEARER, "client_assertion": assertion}

    async def _refresh_registration(self, server: AuthorizationServer) -> ClientRegistration | None:
        return self._registration(server)

    async def _grant(self, found: _Discovery, scopes: tuple[str, ...]) -> TokenSet:
        server = found.server
        registration = self._registration(server)
        chosen = scopes or self.scopes
        form = {"grant_type": "client_credentials", "resource": found.resource}
        if chosen:
            form["scope"] = " ".join(chosen)
        return await self._token_request(server, registration, form, resource=found.resource, scopes=chosen)


def _method_for(server: AuthorizationServer, preference: tuple[str, ...]) -> str:
    """The first of ``preference`` the server supports (RFC 8414's default, ``client_secret_basic``,
    when it does not say; a public client asks for ``none`` then)."""
    supported = server.token_endpoint_auth_methods_supported
    if supported is None:
        return preference[0]
    for method in preference:
        if method in supported:
            return method
    return preference[0]

