"""A small but real OAuth 2.1 authorization server for the end-to-end tests (authlib + Flask).

The point of this server is independence: our resource-server code (JWT access
tokens checked against a JWKS, RFC 7662 introspection) and the OAuth clients
(ours and the official SDK's ``OAuthClientProvider``) are proved against OAuth
logic we did not write.  So every protocol decision is authlib's -- its
authorization-code, refresh-token and client-credentials grants, PKCE
(``CodeChallenge``), RFC 7591 registration, RFC 7662 introspection, RFC 9068
JWT access tokens, RFC 9207 ``iss`` and RFC 8414 metadata validation -- and
this module is only glue: in-memory models, an authorization endpoint that
approves without a login page, RFC 8707 resource indicators (authlib has none;
:class:`ResourceIndicators` is a grant extension in authlib's own style), and
test controls under ``/_test/``.

Run it as ``python -m tests.oauth_as`` (see :func:`main`); it prints one line
``OAUTH_AS_READY <issuer>`` on stdout once it accepts connections.  Trio tests
use :func:`authorization_server`, which starts it in a subprocess, and
:func:`authorize_headless` as the "open the browser" step of a client under
test.  Test infrastructure only: everything lives in memory, the user is
whoever ``login_hint`` names (``alice`` by default), the test controls are
unauthenticated (loopback only).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import trio
from authlib.common.security import generate_token
from authlib.integrations.flask_oauth2 import AuthorizationServer as FlaskAuthorizationServer
from authlib.oauth2 import OAuth2Error, rfc9207
from authlib.oauth2.claims import BaseClaims
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Request,
    TokenMixin,
    grants,
    list_to_scope,
    scope_to_list,
)
from authlib.oauth2.rfc7591 import ClientMetadataClaims, ClientRegistrationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from flask import Flask, Response, g, jsonify, request
from joserfc import jws
from joserfc.errors import InvalidClaimError
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server

__all__ = [
    "DEFAULT_SCOPES",
    "RS_CLIENT_ID",
    "RS_CLIENT_SECRET",
    "PreRegisteredClient",
    "RunningAuthorizationServer",
    "authorization_server",
    "authorize_headless",
    "create_app",
    "main",
]

log = logging.getLogger("oauth_as")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCOPES: tuple[str, ...] = ("notes:read", "notes:write", "offline_access")
RS_CLIENT_ID = "rs-client"
"""The pre-registered resource-server client allowed to introspect (client_secret_basic)."""
RS_CLIENT_SECRET = "rs-secret"
DEFAULT_USER = "alice"
READY_PREFIX = "OAUTH_AS_READY"
STARTUP_TIMEOUT = 30.0
AUTHORIZATION_CODE_TTL = 600
REFRESH_TOKEN_TTL = 24 * 3600
JWKS_HANG_SECONDS = 300.0
REQUEST_LOG_SIZE = 200
# Credentials and tokens never reach the request log (nor stderr): tests assert that a
# client *sent* them, never what they were.
REDACTED_PARAMS = frozenset(
    {"client_secret", "code_verifier", "refresh_token", "client_assertion", "assertion", "token", "password"}
)


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class User:
    """The resource owner: only a subject, since the authorization endpoint has no login."""

    user_id: str

    def get_user_id(self) -> str:
        return self.user_id


@dataclass(frozen=True)
class PreRegisteredClient:
    """A client known before the server starts (``--client ID:SECRET:URIS:METHOD``).

    ``client_secret`` empty and ``auth_method="none"`` make a public client;
    ``redirect_uris`` empty makes a client that can only use client_credentials.
    """

    client_id: str
    client_secret: str = ""
    redirect_uris: tuple[str, ...] = ()
    auth_method: str = "client_secret_basic"

    @classmethod
    def parse(cls, spec: str) -> PreRegisteredClient:
        """Parse ``ID:SECRET:REDIRECT_URI[,REDIRECT_URI...]:AUTH_METHOD``.

        Redirect URIs contain colons themselves, so the id and secret are the first
        two fields and the method the last; everything between is the URI list.
        """
        try:
            client_id, secret, rest = spec.split(":", 2)
            uris, method = rest.rsplit(":", 1)
        except ValueError:
            raise ValueError(f"--client wants ID:SECRET:REDIRECT_URI[,...]:AUTH_METHOD, got {spec!r}") from None
        if not client_id or method not in ("client_secret_basic", "client_secret_post", "none"):
            raise ValueError(f"bad --client {spec!r}: need an id and a supported auth method")
        if (method == "none") != (not secret):
            raise ValueError(f"bad --client {spec!r}: a secret if and only if the method is not 'none'")
        return cls(client_id, secret, tuple(uri for uri in uris.split(",") if uri), method)

    def to_cli(self) -> str:
        return f"{self.client_id}:{self.client_secret}:{','.join(self.redirect_uris)}:{self.auth_method}"


class Client(ClientMixin):
    """A registered client: RFC 7591 metadata plus the secret (``None`` for public clients)."""

    def __init__(
        self,
        client_id: str,
        client_secret: str | None,
        metadata: Mapping[str, Any],
        *,
        default_scope: str,
        resource_server: bool = False,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.metadata = dict(metadata)
        self.default_scope = default_scope
        self.resource_server = resource_server

    @property
    def redirect_uris(self) -> list[str]:
        return list(self.metadata.get("redirect_uris") or [])

    @property
    def token_endpoint_auth_method(self) -> str:
        return str(self.metadata.get("token_endpoint_auth_method", "client_secret_basic"))

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OAuth 2.1: redirect_uri may be left out only when exactly one is registered.
        uris = self.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = scope_to_list(self.metadata.get("scope") or self.default_scope) or []
        if not scope:
            return list_to_scope(allowed)
        return list_to_scope([s for s in scope_to_list(scope) if s in allowed])

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact string match, as OAuth 2.1 requires

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and secrets.compare_digest(self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint == "token":
            return method == self.token_endpoint_auth_method
        # Introspection: any client holding a secret authenticates with it;
        # IntrospectionEndpoint.check_permission decides who may look.
        return self.client_secret is not None and method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type in (self.metadata.get("response_types") or ["code"])

    def check_grant_type(self, grant_type: str) -> bool:
        granted = self.metadata.get("grant_types") or ["authorization_code"]
        # Refresh tokens always come with authorization codes (simplest for tests),
        # whether or not the client listed refresh_token when registering.
        return grant_type in granted or (grant_type == "refresh_token" and "authorization_code" in granted)


@dataclass
class AuthorizationCode(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str | None
    scope: str
    user_id: str
    code_challenge: str | None
    code_challenge_method: str | None
    resource: str
    expires_at: float

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


def _introspection_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti")
    return {key: claims[key] for key in keys if key in claims}


@dataclass
class AccessTokenRecord(TokenMixin):
    """An access token this server issued (or minted): its claims, and whether it was revoked."""

    token: str
    claims: dict[str, Any]
    revoked: bool = False

    def check_client(self, client: ClientMixin) -> bool:
        return bool(self.claims.get("client_id") == client.get_client_id())

    def get_scope(self) -> str:
        return str(self.claims.get("scope", ""))

    def get_expires_in(self) -> int:
        return int(self.claims.get("exp", 0)) - int(self.claims.get("iat", 0))

    def is_expired(self) -> bool:
        # "Not active" covers not-yet-valid too: a minted token with a future nbf.
        now = time.time()
        exp, nbf = self.claims.get("exp"), self.claims.get("nbf")
        try:
            return (exp is not None and float(exp) <= now) or (nbf is not None and float(nbf) > now)
        except (TypeError, ValueError):
            return True  # a hostile minted token with a non-numeric exp is never active

    def is_revoked(self) -> bool:
        return self.revoked

    def introspection(self) -> dict[str, Any]:
        return {"active": True, **_introspection_claims(self.claims), "token_type": "Bearer"}


@dataclass
class RefreshTokenRecord(TokenMixin):
    token: str
    client_id: str
    user_id: str | None
    scope: str
    resource: str
    issuer: str
    issued_at: int
    expires_at: int
    revoked: bool = False

    def check_client(self, client: ClientMixin) -> bool:
        return self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_at - self.issued_at

    def is_expired(self) -> bool:
        return self.expires_at <= time.time()

    def is_revoked(self) -> bool:
        return self.revoked

    def introspection(self) -> dict[str, Any]:
        return {
            "active": True,
            "scope": self.scope,
            "client_id": self.client_id,
            "sub": self.user_id or self.client_id,
            "aud": self.resource,
            "iss": self.issuer,
            "exp": self.expires_at,
            "iat": self.issued_at,
        }


class SigningKeys:
    """The RS256 signing key and the JWKS; rotated by ``/_test/rotate-keys``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current = self._generate()
        self._published = [self._current]

    @staticmethod
    def _generate() -> RSAKey:
        kid = f"k-{secrets.token_hex(6)}"
        return RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256", "use": "sig"}, private=True)

    @property
    def current(self) -> RSAKey:
        with self._lock:
            return self._current

    def signing_set(self) -> KeySet:
        # A KeySet, not the bare key: only then does joserfc put the key's kid in
        # the JWT header (with a single key it leaves kid out).
        return KeySet([self.current])

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [key.as_dict(private=False) for key in self._published]}

    def rotate(self, *, keep_old: bool) -> str:
        new = self._generate()
        with self._lock:
            self._published = [*self._published, new] if keep_old else [new]
            self._current = new
        return str(new.kid)


@dataclass
class ServerState:
    """Everything the server knows, in memory; one lock, since werkzeug runs a thread per request."""

    issuer: str
    scopes: tuple[str, ...]
    access_token_ttl: int
    keys: SigningKeys = field(default_factory=SigningKeys)
    lock: threading.RLock = field(default_factory=threading.RLock)
    clients: dict[str, Client] = field(default_factory=dict)
    codes: dict[str, AuthorizationCode] = field(default_factory=dict)
    access_tokens: dict[str, AccessTokenRecord] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshTokenRecord] = field(default_factory=dict)
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=REQUEST_LOG_SIZE))
    deny: bool = False
    last_resource: str | None = None
    # Set = /jwks answers; cleared by /_test/hang-jwks on=true.
    jwks_answers: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.jwks_answers.set()

    def add_client(self, client: Client) -> None:
        with self.lock:
            self.clients[client.client_id] = client

    def claim_code(self, code: AuthorizationCode) -> None:
        """Use up an authorization code, atomically: a second use is ``invalid_grant``."""
        with self.lock:
            if self.codes.pop(code.code, None) is None:
                raise InvalidGrantError("The authorization code was already used.")

    def claim_refresh_token(self, record: RefreshTokenRecord) -> None:
        """Revoke a refresh token as it is used (rotation), atomically."""
        with self.lock:
            if record.revoked:
                raise InvalidGrantError("The refresh token was already used.")
            record.revoked = True

    def store_access_token(self, token: str, claims: dict[str, Any]) -> None:
        with self.lock:
            self.access_tokens[token] = AccessTokenRecord(token, claims)

    def revoke(self, token: str) -> bool:
        with self.lock:
            record: AccessTokenRecord | RefreshTokenRecord | None = self.access_tokens.get(token)
            record = record or self.refresh_tokens.get(token)
            if record is None:
                return False
            record.revoked = True
            return True


def _unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT this server has just signed itself (so nothing to verify)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


# --------------------------------------------------------------------------- RFC 8707


class InvalidTargetError(OAuth2Error):
    """RFC 8707 section 2: the requested resource is invalid, missing or not allowed."""

    error = "invalid_target"
    status_code = 400


def _requested_resource(request: OAuth2Request, *, required: bool) -> str | None:
    values = request.payload.datalist.get("resource") or []
    if not values:
        if required:
            raise InvalidTargetError("The 'resource' parameter (RFC 8707) is required.")
        return None
    if len(set(values)) > 1:
        raise InvalidTargetError("This server issues tokens for one 'resource' per request.")
    resource = str(values[0])
    parts = urlsplit(resource)
    absolute = bool(parts.scheme) and (parts.scheme not in ("http", "https") or bool(parts.netloc))
    if not absolute or "#" in resource or any(c.isspace() for c in resource):
        raise InvalidTargetError("'resource' must be an absolute URI without a fragment.")
    return resource


class ResourceIndicators:
    """RFC 8707 resource indicators as an authlib grant extension (authlib has none).

    * Authorization requests must carry one ``resource``; it is checked in the
      same hook authlib's ``CodeChallenge`` uses, so a bad one is an
      ``invalid_target`` *redirect* (with ``state`` and ``iss``), and
      ``save_authorization_code`` binds it to the code.
    * Token requests are checked in ``before_create_token_response``: it runs
      after all of authlib's validation (client authentication, PKCE) and
      before the token is generated.  The chosen resource goes into
      ``flask.g.oauth_resource``, where :meth:`JWTTokens.get_audiences` reads
      it for ``aud`` (authlib's RFC 9068 generator has a TODO where RFC 8707
      would go and takes ``aud`` from ``get_audiences``).
    """

    def __call__(self, grant: grants.BaseGrant) -> None:
        if isinstance(grant, grants.AuthorizationCodeGrant):
            grant.register_hook("after_validate_authorization_request_payload", self.check_authorization_request)
        grant.register_hook("before_create_token_response", self.bind_token_request)

    @staticmethod
    def check_authorization_request(grant: grants.BaseGrant, _result: object) -> None:
        _requested_resource(grant.request, required=True)

    @staticmethod
    def bind_token_request(grant: grants.BaseGrant) -> None:
        request = grant.request
        if isinstance(grant, grants.AuthorizationCodeGrant):
            resource = _requested_resource(request, required=True)
            if resource != request.authorization_code.resource:
                raise InvalidTargetError("'resource' differs from the one in the authorization request.")
        elif isinstance(grant, grants.RefreshTokenGrant):
            original = request.refresh_token.resource
            resource = _requested_resource(request, required=False) or original
            if resource != original:
                raise InvalidTargetError("'resource' differs from the one originally granted.")
        else:
            resource = _requested_resource(request, required=True)
        g.oauth_resource = resource


# --------------------------------------------------------------------------- authlib glue


class S256CodeChallenge(CodeChallenge):
    """PKCE, required for every authorization request, S256 only.

    authlib's ``CodeChallenge(required=True)`` only insists on a verifier at the
    token endpoint (for public clients) and lets an authorization request
    without ``code_challenge`` through as plain RFC 6749; it also defaults a
    missing method to ``plain``.  OAuth 2.1 / the MCP spec want a challenge on
    every request and S256, so both are refused here, as an ``invalid_request``
    redirect.
    """

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 -- authlib's class attribute
    CODE_CHALLENGE_METHODS = {"S256": compare_s256_code_challenge}  # noqa: RUF012

    def validate_code_challenge(self, grant: grants.BaseGrant, redirect_uri: object) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: missing 'code_challenge'.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012

    @property
    def state(self) -> ServerState:
        return self.server.state  # type: ignore[no-any-return]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        resource = _requested_resource(request, required=True)
        assert resource is not None
        data = request.payload.data
        with self.state.lock:
            self.state.codes[code] = AuthorizationCode(
                code=code,
                client_id=request.client.get_client_id(),
                redirect_uri=request.payload.redirect_uri,
                scope=request.scope or "",
                user_id=request.user.get_user_id(),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                resource=resource,
                expires_at=time.time() + AUTHORIZATION_CODE_TTL,
            )

    def query_authorization_code(self, code: str, client: ClientMixin) -> AuthorizationCode | None:
        with self.state.lock:
            found = self.state.codes.get(code)
        if found and found.client_id == client.get_client_id() and found.expires_at > time.time():
            return found
        return None

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User:
        # The first step of authlib's token response, after all validation: use the
        # code up here, atomically, so two racing redemptions cannot both succeed.
        self.state.claim_code(authorization_code)
        return User(authorization_code.user_id)

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        with self.state.lock:
            self.state.codes.pop(authorization_code.code, None)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: a new refresh token each time, the old one revoked

    @property
    def state(self) -> ServerState:
        return self.server.state  # type: ignore[no-any-return]

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshTokenRecord | None:
        with self.state.lock:
            record = self.state.refresh_tokens.get(refresh_token)
        if record and not record.is_revoked() and not record.is_expired():
            return record
        return None

    def authenticate_user(self, refresh_token: RefreshTokenRecord) -> User:
        self.state.claim_refresh_token(refresh_token)  # see AuthorizationCodeGrant.authenticate_user
        return User(refresh_token.user_id or refresh_token.client_id)

    def revoke_old_credential(self, refresh_token: RefreshTokenRecord) -> None:
        refresh_token.revoked = True  # already, by claim_refresh_token


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]  # noqa: RUF012


class JWTTokens(JWTBearerTokenGenerator):
    """RFC 9068 access tokens signed with the current key, ``aud`` = the RFC 8707 resource."""

    def __init__(self, state: ServerState) -> None:
        super().__init__(
            issuer=state.issuer,
            alg="RS256",
            refresh_token_generator=lambda **_: generate_token(48),
            expires_generator=state.access_token_ttl,
        )
        self.state = state

    def get_jwks(self) -> KeySet:
        return self.state.keys.signing_set()

    def get_audiences(self, client: ClientMixin, user: User | None, scope: str) -> str:
        resource = getattr(g, "oauth_resource", None)
        if resource is None:
            raise RuntimeError("no RFC 8707 resource bound to this token request")
        return str(resource)


class IssuerParameter(rfc9207.IssuerParameter):
    """RFC 9207: ``iss`` on every authorization response redirect, errors included."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer


class Introspection(IntrospectionEndpoint):
    """RFC 7662 over the token store (so revocation shows), for resource-server clients only."""

    CLIENT_AUTH_METHODS = ["client_secret_basic"]  # noqa: RUF012

    @property
    def state(self) -> ServerState:
        return self.server.state  # type: ignore[no-any-return]

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenMixin | None:
        with self.state.lock:
            access = self.state.access_tokens.get(token_string)
            refresh = self.state.refresh_tokens.get(token_string)
        if token_type_hint == "refresh_token":
            return refresh or access
        return access or refresh

    def check_permission(self, token: TokenMixin, client: Client, request: OAuth2Request) -> bool:
        return client.resource_server

    def introspect_token(self, token: AccessTokenRecord | RefreshTokenRecord) -> dict[str, Any]:
        return token.introspection()


class ApplicationTypeClaim(BaseClaims):
    """``application_type`` (OpenID Connect registration): validated, and echoed only when sent.

    Not authlib's OIDC registration claims class: that one also adds defaults
    (``application_type: web``, ``id_token_signed_response_alg``...) to every
    registration, which a plain OAuth client never asked for.
    """

    REGISTERED_CLAIMS = ["application_type"]  # noqa: RUF012 -- authlib's class attribute

    def validate(self, now: object = None, leeway: int = 0) -> None:
        super().validate(now, leeway)
        if "application_type" in self and self["application_type"] not in ("web", "native"):
            raise InvalidClaimError("application_type")


class Registration(ClientRegistrationEndpoint):
    """RFC 7591 open registration (no initial access token), public or confidential clients."""

    def __init__(self, server: AuthorizationServer) -> None:
        super().__init__(server, claims_classes=[ClientMetadataClaims, ApplicationTypeClaim])

    @property
    def state(self) -> ServerState:
        return self.server.state  # type: ignore[no-any-return]

    def authenticate_token(self, request: object) -> bool:
        return True  # open registration

    def get_server_metadata(self) -> dict[str, Any]:
        return self.server.metadata  # type: ignore[no-any-return]

    def generate_client_secret(self, request: Any) -> str | None:
        data = request.payload.data or {}
        if data.get("token_endpoint_auth_method") == "none":
            return None  # a public client gets no secret
        return super().generate_client_secret(request)  # type: ignore[no-any-return]

    def generate_client_info(self, request: Any) -> dict[str, Any]:
        info: dict[str, Any] = super().generate_client_info(request)
        if info.get("client_secret") is None:
            info.pop("client_secret", None)
            info.pop("client_secret_expires_at", None)
        return info

    def save_client(self, client_info: dict[str, Any], client_metadata: dict[str, Any], request: object) -> Client:
        client = Client(
            client_info["client_id"],
            client_info.get("client_secret"),
            client_metadata,
            default_scope=" ".join(self.state.scopes),
        )
        self.state.add_client(client)
        return client


class AuthorizationServer(FlaskAuthorizationServer):
    """authlib's Flask authorization server over :class:`ServerState`."""

    def __init__(self, app: Flask, state: ServerState, metadata: dict[str, Any]) -> None:
        self.state = state
        self.metadata = metadata
        super().__init__(app)
        self.scopes_supported = list(state.scopes)

    def query_client(self, client_id: str) -> Client | None:
        with self.state.lock:
            return self.state.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        claims = _unverified_claims(token["access_token"])
        state = self.state
        state.store_access_token(token["access_token"], claims)
        with state.lock:
            state.last_resource = str(claims["aud"])
            if refresh := token.get("refresh_token"):
                now = int(time.time())
                state.refresh_tokens[refresh] = RefreshTokenRecord(
                    token=refresh,
                    client_id=request.client.get_client_id(),
                    user_id=request.user.get_user_id() if request.user else None,
                    scope=str(claims.get("scope", "")),
                    resource=str(claims["aud"]),
                    issuer=state.issuer,
                    issued_at=now,
                    expires_at=now + REFRESH_TOKEN_TTL,
                )


# --------------------------------------------------------------------------- the app


def server_metadata(issuer: str, scopes: Sequence[str]) -> dict[str, Any]:
    """RFC 8414 metadata, validated by authlib (RFC 8414 + RFC 9207 fields)."""
    metadata = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "registration_endpoint": f"{issuer}/register",
        "introspection_endpoint": f"{issuer}/introspect",
        "jwks_uri": f"{issuer}/jwks",
        "scopes_supported": list(scopes),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
        "authorization_response_iss_parameter_supported": True,
    }
    AuthorizationServerMetadata(metadata).validate(metadata_classes=[rfc9207.AuthorizationServerMetadata])
    return metadata


def _redact(params: Iterable[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params:
        shown = "***" if key in REDACTED_PARAMS else value
        if key in out:  # keep repeated parameters (RFC 8707 allows several resource values)
            out[key] = [*out[key], shown] if isinstance(out[key], list) else [out[key], shown]
        else:
            out[key] = shown
    return out


class BadControl(Exception):
    """A malformed ``/_test/`` request: answered 400 with the reason."""


def _flag(name: str, default: bool | None = None) -> bool:
    raw = _param(name)
    if raw is None:
        if default is None:
            raise BadControl(f"missing {name}=true|false")
        return default
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise BadControl(f"{name} must be true or false, not {raw!r}")


def _param(name: str) -> Any:
    """A test-control parameter from the form, a JSON body or the query string."""
    if name in request.form:
        return request.form[name]
    body = request.get_json(silent=True)
    if isinstance(body, dict) and name in body:
        return body[name]
    return request.args.get(name)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_token(
    state: ServerState, claims: Mapping[str, Any], header: Mapping[str, Any], *, foreign_key: bool = False
) -> str:
    """Sign arbitrary claims: the hostile tokens tests feed to a resource server.

    The claims are merged over sensible defaults (a token this server could
    have issued: ``sub`` alice, all scopes, the configured lifetime, ``aud``
    the resource of the last token issued, else the issuer -- pass ``aud`` to
    be sure); a ``None`` value removes a claim, likewise for the header.
    ``alg`` RS256/RS384/RS512/PS256/... signs with the current RSA key,
    ``none`` makes an unsigned token, HS256/384/512 an HMAC keyed with the
    public key's PEM (the classic algorithm-confusion attack).
    ``foreign_key`` signs with a fresh key that is in no JWKS.  The token is
    recorded, so introspection reports on it like on any other.
    """
    now = int(time.time())
    key = RSAKey.generate_key(2048, private=True) if foreign_key else state.keys.current
    defaults: dict[str, Any] = {
        "iss": state.issuer,
        "sub": DEFAULT_USER,
        "aud": state.last_resource or state.issuer,
        "iat": now,
        "exp": now + state.access_token_ttl,
        "jti": generate_token(16),
        "scope": " ".join(state.scopes),
        "client_id": "minted-client",
    }
    body = {k: v for k, v in {**defaults, **claims}.items() if v is not None}
    head = {"alg": "RS256", "typ": "at+jwt", "kid": state.keys.current.kid}
    head = {k: v for k, v in {**head, **header}.items() if v is not None}
    alg = str(head.get("alg", "none"))
    payload = json.dumps(body, separators=(",", ":")).encode()
    if alg == "none" or "alg" not in head:
        signing_input = f"{_b64url(json.dumps(head).encode())}.{_b64url(payload)}"
        token = f"{signing_input}."
    elif alg in ("HS256", "HS384", "HS512"):
        signing_input = f"{_b64url(json.dumps(head).encode())}.{_b64url(payload)}"
        digest = getattr(hashlib, f"sha{alg[2:]}")
        mac = hmac.new(key.as_pem(private=False), signing_input.encode(), digest).digest()
        token = f"{signing_input}.{_b64url(mac)}"
    elif alg[:2] in ("RS", "PS"):
        # A copy without the key's "alg" pin, so RS384/PS256... are allowed too.
        unpinned = RSAKey.import_key({k: v for k, v in key.as_dict(private=True).items() if k != "alg"})
        token = jws.serialize_compact(head, payload, unpinned, algorithms=[alg])
    else:
        raise BadControl(f"cannot sign with alg {alg!r} (the key is RSA)")
    state.store_access_token(token, body)
    return token


def create_app(
    *,
    issuer: str,
    scopes: Sequence[str] = DEFAULT_SCOPES,
    access_token_ttl: int = 300,
    clients: Iterable[PreRegisteredClient] = (),
) -> Flask:
    """The authorization server as a Flask app whose issuer is ``issuer`` (no trailing slash)."""
    if issuer.endswith("/"):
        raise ValueError("the issuer has no trailing slash")
    state = ServerState(issuer=issuer, scopes=tuple(scopes), access_token_ttl=access_token_ttl)
    metadata = server_metadata(issuer, state.scopes)
    default_scope = " ".join(state.scopes)
    state.add_client(
        Client(
            RS_CLIENT_ID,
            RS_CLIENT_SECRET,
            {"token_endpoint_auth_method": "client_secret_basic", "grant_types": [], "response_types": []},
            default_scope=default_scope,
            resource_server=True,
        )
    )
    for pre in clients:
        grant_types = ["authorization_code", "refresh_token"] if pre.redirect_uris else []
        if pre.client_secret:
            grant_types.append("client_credentials")
        state.add_client(
            Client(
                pre.client_id,
                pre.client_secret or None,
                {
                    "redirect_uris": list(pre.redirect_uris),
                    "token_endpoint_auth_method": pre.auth_method,
                    "grant_types": grant_types,
                    "response_types": ["code"] if pre.redirect_uris else [],
                },
                default_scope=default_scope,
            )
        )

    app = Flask("oauth_as")
    app.extensions["oauth_as"] = state
    server = AuthorizationServer(app, state, metadata)
    server.register_token_generator("default", JWTTokens(state))
    resource_indicators = ResourceIndicators()
    server.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True), resource_indicators])
    server.register_grant(RefreshTokenGrant, [resource_indicators])
    server.register_grant(ClientCredentialsGrant, [resource_indicators])
    issuer_parameter = IssuerParameter(issuer)
    server.register_extension(issuer_parameter)
    server.register_endpoint(Introspection)
    server.register_endpoint(Registration)

    @app.before_request
    def record_request() -> Response | None:
        if request.path.startswith("/_test/"):
            if not ipaddress.ip_address(request.remote_addr or "0.0.0.0").is_loopback:
                return Response("test controls are loopback only", status=403)
            return None
        authorization = request.headers.get("Authorization")
        entry: dict[str, Any] = {
            "time": time.time(),
            "method": request.method,
            "path": request.path,
            "query": _redact(request.args.items(multi=True)),
            "form": _redact(request.form.items(multi=True)) if not request.is_json else {},
            "authorization": authorization.split(" ", 1)[0] if authorization else None,
            "status": None,  # filled in by log_response (present from the start: no resizing under a reader)
        }
        if request.is_json:
            body = request.get_json(silent=True)
            entry["json"] = _redact(body.items()) if isinstance(body, dict) else body
        g.request_entry = entry
        with state.lock:
            state.requests.append(entry)
        return None

    @app.after_request
    def log_response(response: Response) -> Response:
        if entry := g.get("request_entry"):
            with state.lock:
                entry["status"] = response.status_code
        log.info("%s %s %s", request.method, request.path, response.status_code)  # no query: it may carry codes
        return response

    @app.get("/.well-known/oauth-authorization-server")
    @app.get("/.well-known/openid-configuration")
    def metadata_document() -> Response:
        return jsonify(metadata)

    @app.route("/authorize", methods=["GET", "POST"])
    def authorize() -> Response:
        user = User(request.values.get("login_hint") or DEFAULT_USER)
        try:
            grant = server.get_consent_grant(end_user=user)
        except OAuth2Error as error:
            # An invalid_target / PKCE error with a verified redirect_uri is a redirect,
            # and RFC 9207 wants iss on those too; other errors are a 400 here.
            response: Response = server.handle_error_response(None, error)
            issuer_parameter.add_issuer_parameter(server, response)
            return response
        granted = None if state.deny else user
        result: Response = server.create_authorization_response(grant_user=granted, grant=grant)
        return result

    @app.post("/token")
    def token() -> Response:
        response: Response = server.create_token_response()
        return response

    @app.post("/register")
    def register() -> Response:
        response: Response = server.create_endpoint_response("client_registration")
        return response

    @app.post("/introspect")
    def introspect() -> Response:
        response: Response = server.create_endpoint_response("introspection")
        return response

    @app.get("/jwks")
    def jwks() -> Response:
        # /_test/hang-jwks: this request thread waits; the threaded server keeps serving others.
        state.jwks_answers.wait(JWKS_HANG_SECONDS)
        return jsonify(state.keys.jwks())

    # ---- test controls

    @app.errorhandler(BadControl)
    def bad_control(error: BadControl) -> tuple[Response, int]:
        return jsonify({"error": "bad_test_control", "error_description": str(error)}), 400

    @app.post("/_test/rotate-keys")
    def rotate_keys() -> Response:
        kid = state.keys.rotate(keep_old=_flag("keep_old", default=True))
        return jsonify({"kid": kid, "jwks": state.keys.jwks()})

    @app.post("/_test/hang-jwks")
    def hang_jwks() -> Response:
        on = _flag("on")
        if on:
            state.jwks_answers.clear()
        else:
            state.jwks_answers.set()
        return jsonify({"on": on})

    @app.post("/_test/deny")
    def deny() -> Response:
        state.deny = _flag("on")
        return jsonify({"on": state.deny})

    @app.post("/_test/mint")
    def mint() -> Response:
        body = request.get_json(force=True, silent=True) or {}
        if not isinstance(body, dict):
            raise BadControl("the body is a JSON object")
        claims = body["claims"] if "claims" in body else {k: v for k, v in body.items() if k not in ("header", "foreign_key")}
        header = body.get("header") or {}
        if not isinstance(claims, dict) or not isinstance(header, dict):
            raise BadControl("claims and header are JSON objects")
        token = mint_token(state, claims, header, foreign_key=bool(body.get("foreign_key", False)))
        return jsonify({"access_token": token})

    @app.post("/_test/revoke")
    def revoke() -> Response:
        token = _param("token")
        if not token:
            raise BadControl("missing token=...")
        return jsonify({"revoked": state.revoke(str(token))})

    @app.get("/_test/requests")
    def requests_log() -> Response:
        with state.lock:
            entries = [dict(entry) for entry in state.requests]
        return jsonify(entries)

    return app


# --------------------------------------------------------------------------- the process


def _client_arg(spec: str) -> PreRegisteredClient:
    try:
        return PreRegisteredClient.parse(spec)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.oauth_as", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--scopes", default=",".join(DEFAULT_SCOPES), help="comma-separated scopes_supported")
    parser.add_argument("--access-token-ttl", type=int, default=300, help="seconds")
    parser.add_argument(
        "--client",
        action="append",
        default=[],
        type=_client_arg,
        metavar="ID:SECRET:REDIRECT_URI[,REDIRECT_URI...]:AUTH_METHOD",
        help="a pre-registered client (repeatable); empty SECRET with AUTH_METHOD none for a public one",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve on a threaded werkzeug server until SIGTERM/SIGINT.

    The socket is bound (port 0 by default) before the app exists, because the
    issuer -- in the metadata, in every token -- is the URL with the real port.
    """
    args = _parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="oauth_as %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # its access log shows query strings
    host = args.host
    try:
        if not ipaddress.ip_address(host).is_loopback:
            # authlib refuses plain http except on loopback; this is a test server anyway.
            os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
    except ValueError:
        if host != "localhost":
            os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
    apps: list[Flask] = []

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return apps[0](environ, start_response)

    server = make_server(host, args.port, dispatch, threaded=True)
    netloc = f"[{host}]" if ":" in host else host
    issuer = f"http://{netloc}:{server.port}"
    app = create_app(
        issuer=issuer,
        scopes=[s for s in args.scopes.split(",") if s],
        access_token_ttl=args.access_token_ttl,
        clients=args.client,
    )
    apps.append(app)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # A short poll interval: shutdown() waits for the serve loop to look up.
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="oauth-as", daemon=True)
    serving.start()
    print(f"{READY_PREFIX} {issuer}", flush=True)
    log.info("serving %s", issuer)
    while not stop.wait(0.05):  # short: the signal handler only sets the event
        pass
    app.extensions["oauth_as"].jwks_answers.set()  # let hung /jwks requests go
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------------------- trio launcher

# Up to the newline: a read may end mid-line, and half a port is still digits.
_READY = re.compile(rb"^" + READY_PREFIX.encode() + rb" (\S+)\r?\n", re.MULTILINE)


@dataclass
class RunningAuthorizationServer:
    """A started ``python -m tests.oauth_as``: its issuer and the test controls."""

    issuer: str
    process: trio.Process
    output: bytearray
    http: httpx.AsyncClient

    def url(self, path: str) -> str:
        """``issuer + path`` (``path`` starts with ``/``)."""
        return f"{self.issuer}{path}"

    def text(self) -> str:
        """What the server printed so far (stdout and stderr), for failure messages."""
        return self.output.decode("utf-8", "replace")

    async def _control(self, path: str, **kwargs: Any) -> Any:
        response = await self.http.post(self.url(f"/_test/{path}"), **kwargs)
        if response.status_code != 200:
            raise RuntimeError(f"/_test/{path}: {response.status_code} {response.text}")
        return response.json()

    async def rotate_keys(self, keep_old: bool = True) -> str:
        """A new signing key (returns its kid); ``keep_old`` keeps the old public key in the JWKS."""
        return str((await self._control("rotate-keys", data={"keep_old": str(keep_old).lower()}))["kid"])

    async def hang_jwks(self, on: bool) -> None:
        """While on, ``GET /jwks`` does not answer (until turned off, or 300 s)."""
        await self._control("hang-jwks", data={"on": str(on).lower()})

    async def deny(self, on: bool) -> None:
        """While on, the authorization endpoint redirects with ``error=access_denied``."""
        await self._control("deny", data={"on": str(on).lower()})

    async def mint(self, claims: Mapping[str, Any], *, foreign_key: bool = False, **header: Any) -> str:
        """A JWT with ``claims`` over the defaults and ``header`` (kid/alg/typ) overrides.

        ``None`` removes a default claim or header; ``foreign_key`` signs with a
        key that is in no JWKS.  See :func:`mint_token`.
        """
        body = {"claims": dict(claims), "header": header, "foreign_key": foreign_key}
        return str((await self._control("mint", json=body))["access_token"])

    async def revoke(self, token: str) -> None:
        """Revoke an access (or refresh) token: introspection then says inactive."""
        result = await self._control("revoke", data={"token": token})
        if not result["revoked"]:
            raise RuntimeError("the authorization server does not know that token")

    async def requests(self) -> list[dict[str, Any]]:
        """The last requests the server received (secrets redacted to ``***``)."""
        response = await self.http.get(self.url("/_test/requests"))
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()
        return entries


def _unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside a nursery's group (a test's own failure, say), else the group."""
    while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
        group = group.exceptions[0]  # type: ignore[assignment]
    return group


@asynccontextmanager
async def authorization_server(
    *,
    scopes: Sequence[str] = DEFAULT_SCOPES,
    access_token_ttl: int = 300,
    clients: Iterable[PreRegisteredClient | str] = (),
) -> AsyncIterator[RunningAuthorizationServer]:
    """Run the authorization server in a subprocess for the duration of the block.

    Like ``tests/server_helpers_e2e.hypercorn_server``: port 0 and the real
    address read back from the process (its READY line), its output drained
    the whole time (a full pipe would stall it) and kept for failure
    messages, start-up bounded, the process always killed on the way out.
    ``clients`` are :class:`PreRegisteredClient` or their ``--client`` strings.
    """
    command = [
        sys.executable, "-m", "tests.oauth_as", "--host", "127.0.0.1", "--port", "0",
        "--scopes", ",".join(scopes), "--access-token-ttl", str(access_token_ttl),
    ]  # fmt: skip
    for client in clients:
        command += ["--client", client.to_cli() if isinstance(client, PreRegisteredClient) else client]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = await trio.lowlevel.open_process(
        command, cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output = bytearray()
    try:
        assert process.stdout is not None
        stdout = process.stdout
        # Read in this task until READY (so a start-up failure is a plain error), then
        # keep draining in a nursery task while the block runs.
        with trio.fail_after(STARTUP_TIMEOUT):
            while not (found := _READY.search(output)):
                chunk = await stdout.receive_some(65536)
                if not chunk:
                    await process.wait()
                    raise RuntimeError(f"the authorization server exited ({process.returncode}):\n{output.decode(errors='replace')}")
                output += chunk
        issuer = found.group(1).decode()

        async def drain() -> None:
            async for chunk in stdout:
                output.extend(chunk)

        unwrapped: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery, httpx.AsyncClient(timeout=10) as http:
                nursery.start_soon(drain)
                try:
                    yield RunningAuthorizationServer(issuer, process, output, http)
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            unwrapped = _unwrap(group)
            if unwrapped is group:
                raise
        if unwrapped is not None:
            # Outside the except block, so the test's own exception propagates as it
            # was raised, not chained to the nursery's group.
            raise unwrapped
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.terminate()
                with trio.move_on_after(5):
                    await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


async def authorize_headless(authorization_url: str) -> dict[str, str]:
    """Be the user agent: GET the authorization URL, return the redirect's query parameters.

    The authorization server approves without a page, so its answer is a
    redirect to the client's redirect URI carrying ``code``, ``state`` and
    ``iss`` (or ``error``); nothing is followed, the client under test gets
    the parameters as if its redirect listener had received them.
    """
    async with httpx.AsyncClient(follow_redirects=False, timeout=10) as http:
        response = await http.get(authorization_url)
    if response.status_code not in (302, 303):
        raise RuntimeError(f"the authorization endpoint did not redirect: {response.status_code} {response.text}")
    location = response.headers["location"]
    return dict(parse_qsl(urlsplit(location).query, keep_blank_values=True))


if __name__ == "__main__":
    main()
