"""The OAuth client's decisions, without I/O: challenges, discovery URLs, scopes, PKCE, the callback.

Everything the authorization flow decides from what it has read lives here,
as plain functions over strings and mappings, so each rule of the MCP
authorization specification (2025-11-25 and 2026-07-28) and of the RFCs it
names is tested on its own, like h11 tests HTTP, without a socket:

* ``WWW-Authenticate`` parsing (RFC 7235 / RFC 6750 / RFC 9728 section 5.1);
* where to look for Protected Resource Metadata (RFC 9728 section 3.1) and
  authorization server metadata (RFC 8414 section 3.1 with path insertion,
  then OpenID Connect Discovery), in the specification's order;
* whether a metadata document may be used (its ``resource`` covers the server
  the client called; its ``issuer`` is the one the URL was built from);
* which scopes to ask for (the challenge, else ``scopes_supported``, else
  none; on re-authorization the union with what was asked before);
* PKCE S256 (RFC 7636) and the authorization response checks: ``iss``
  (RFC 9207, simple string comparison, before anything else in the response
  is acted on), then ``state``, then ``error`` or ``code``;
* token endpoint client authentication and token responses.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from ._errors import AuthorizationError, OAuthDiscoveryError, TokenError

__all__ = [
    "AuthorizationServer",
    "BearerChallenge",
    "ClientRegistration",
    "TokenSet",
    "authorization_server_metadata_urls",
    "authorization_url",
    "bearer_challenge",
    "canonical_resource",
    "check_authorization_response",
    "choose_scopes",
    "client_authentication",
    "is_loopback",
    "parse_authorization_server",
    "parse_challenges",
    "parse_token_response",
    "pkce_pair",
    "protected_resource_urls",
    "resource_covers",
]

WELL_KNOWN_RESOURCE: Final = "/.well-known/oauth-protected-resource"
WELL_KNOWN_OAUTH: Final = "/.well-known/oauth-authorization-server"
WELL_KNOWN_OPENID: Final = "/.well-known/openid-configuration"
OFFLINE_ACCESS: Final = "offline_access"
_TCHAR: Final = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68: Final = _TCHAR | frozenset("/")
_LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


# -- WWW-Authenticate ------------------------------------------------------------------------------
def parse_challenges(value: str) -> list[tuple[str, dict[str, str]]]:
    """Every challenge of a ``WWW-Authenticate`` value: ``(scheme lower-cased, {param: value})``.

    RFC 7235 section 4.1 allows several challenges in one value, each a scheme
    followed by a token68 or comma-separated ``name=value`` parameters (values
    are tokens or quoted strings with ``\\`` escapes).  A parameter name is
    lower-cased; a token68 is kept under ``""``.  Malformed input never raises:
    what cannot be parsed is skipped.
    """
    challenges: list[tuple[str, dict[str, str]]] = []
    n = len(value)
    i = 0

    def skip(chars: str) -> None:
        nonlocal i
        while i < n and value[i] in chars:
            i += 1

    def token(allowed: frozenset[str] = _TCHAR) -> str:
        nonlocal i
        start = i
        while i < n and value[i] in allowed:
            i += 1
        return value[start:i]

    def quoted() -> str:
        nonlocal i
        i += 1  # the opening quote
        out: list[str] = []
        while i < n and value[i] != '"':
            if value[i] == "\\" and i + 1 < n:
                i += 1
            out.append(value[i])
            i += 1
        i += 1  # the closing quote (or the end)
        return "".join(out)

    current: dict[str, str] | None = None
    while i < n:
        skip(" \t,")
        if i >= n:
            break
        start = i
        name = token()
        if not name:
            i += 1  # not a token: skip a character of garbage
            continue
        skip(" \t")
        if current is not None and i < n and value[i] == "=" and (i + 1 >= n or value[i + 1] != "="):
            i += 1
            skip(" \t")
            current[name.lower()] = quoted() if i < n and value[i] == '"' else token(_TCHAR | frozenset("/:@?=[]"))
            continue
        # A new challenge: the scheme, then maybe a token68 ("Basic dXNlcg==").
        i = start + len(name)
        current = {}
        challenges.append((name.lower(), current))
        skip(" \t")
        mark = i
        candidate = token(_TOKEN68)
        while i < n and value[i] == "=":
            i += 1
        after = i
        skip(" \t")
        if candidate and (i >= n or value[i] == ","):
            current[""] = value[mark:after]
        else:
            i = mark  # parameters follow
    return challenges


@dataclass(frozen=True, slots=True)
class BearerChallenge:
    """The ``Bearer`` challenge of a ``401`` or ``403``: what the server says the client needs."""

    error: str | None = None
    error_description: str | None = None
    scopes: tuple[str, ...] | None = None
    """The ``scope`` parameter, split on spaces; ``None`` when absent."""
    resource_metadata: str | None = None

    @property
    def insufficient_scope(self) -> bool:
        return self.error == "insufficient_scope"


def bearer_challenge(values: Iterable[str]) -> BearerChallenge:
    """The first ``Bearer`` challenge among the ``WWW-Authenticate`` values (an empty one if none)."""
    for value in values:
        for scheme, params in parse_challenges(value):
            if scheme == "bearer":
                scope = params.get("scope")
                return BearerChallenge(
                    error=params.get("error"),
                    error_description=params.get("error_description"),
                    scopes=tuple(dict.fromkeys(scope.split())) if scope is not None else None,
                    resource_metadata=params.get("resource_metadata") or None,
                )
    return BearerChallenge()


# -- URLs ------------------------------------------------------------------------------------------
def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in _LOOPBACK


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def require_secure(url: str, what: str) -> None:
    """OAuth endpoints must be HTTPS (OAuth 2.1 section 1.5); loopback ones may be plain HTTP."""
    parts = urlsplit(url)
    secure = parts.scheme == "https" or (parts.scheme == "http" and is_loopback(url))
    if secure and parts.netloc and not parts.fragment:
        return
    raise OAuthDiscoveryError(f"{what} must be an https URL (or http on a loopback address), got {url!r}")


def canonical_resource(url: str) -> str:
    """The canonical URI of the MCP server at ``url`` (RFC 8707 section 2): lower-case scheme and
    host, no default port, no query or fragment, no trailing slash."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path.rstrip("/"), "", ""))


def _authority(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def resource_covers(resource: str, url: str) -> bool:
    """Whether a token for ``resource`` may be sent to ``url``: the same origin, and ``url``'s
    path is ``resource``'s or below it (a root resource covers every endpoint of its server)."""
    if _authority(resource) != _authority(url):
        return False
    base = urlsplit(resource).path.rstrip("/")
    path = urlsplit(url).path
    return not base or path.rstrip("/") == base or path.startswith(base + "/")


def protected_resource_urls(server_url: str) -> list[str]:
    """Where the metadata of the server at ``server_url`` may be, in the order to try them:
    the path-suffixed well-known URI, then the root one (RFC 9728 section 3.1)."""
    origin = _origin(server_url)
    path = urlsplit(server_url).path.rstrip("/")
    urls = [f"{origin}{WELL_KNOWN_RESOURCE}{path}"] if path else []
    urls.append(f"{origin}{WELL_KNOWN_RESOURCE}")
    return urls


def authorization_server_metadata_urls(issuer: str) -> list[str]:
    """The metadata URLs of ``issuer``, in the specification's order: RFC 8414 with path insertion,
    OpenID Connect Discovery with path insertion, then OpenID Connect with the path appended."""
    origin = _origin(issuer)
    path = urlsplit(issuer).path.rstrip("/")
    if not path:
        return [origin + WELL_KNOWN_OAUTH, origin + WELL_KNOWN_OPENID]
    return [origin + WELL_KNOWN_OAUTH + path, origin + WELL_KNOWN_OPENID + path, origin + path + WELL_KNOWN_OPENID]


# -- authorization server metadata ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AuthorizationServer:
    """What the client uses of an authorization server's metadata (RFC 8414)."""

    issuer: str
    authorization_endpoint: str | None
    token_endpoint: str
    registration_endpoint: str | None = None
    scopes_supported: tuple[str, ...] | None = None
    token_endpoint_auth_methods_supported: tuple[str, ...] | None = None
    code_challenge_methods_supported: tuple[str, ...] | None = None
    iss_parameter_supported: bool = False
    client_id_metadata_document_supported: bool = False
    legacy: bool = False
    """No metadata at all: the 2025-03-26 default endpoints at the MCP server's origin."""

    @classmethod
    def legacy_defaults(cls, server_url: str) -> AuthorizationServer:
        """The 2025-03-26 fallback: ``/authorize``, ``/token`` and ``/register`` at the server's origin."""
        origin = _origin(server_url)
        return cls(
            issuer=origin,
            authorization_endpoint=origin + "/authorize",
            token_endpoint=origin + "/token",
            registration_endpoint=origin + "/register",
            code_challenge_methods_supported=("S256",),
            legacy=True,
        )


def _strings(document: Mapping[str, Any], name: str) -> tuple[str, ...] | None:
    value = document.get(name)
    if not isinstance(value, list):
        return None
    return tuple(item for item in value if isinstance(item, str))


def parse_authorization_server(document: Any, issuer: str) -> AuthorizationServer:
    """Validate a metadata document fetched for ``issuer`` (RFC 8414 section 3.3).

    Its ``issuer`` must be identical to the one the URL was built from, or the
    document is not used (a document from one server naming another is how a
    mix-up attack starts); every endpoint must be HTTPS (loopback excepted).
    """
    if not isinstance(document, dict):
        raise OAuthDiscoveryError(f"the metadata of {issuer} is not a JSON object")
    if document.get("issuer") != issuer:
        raise OAuthDiscoveryError(
            f"the metadata fetched for issuer {issuer} names issuer {document.get('issuer')!r}: not used"
        )
    token_endpoint = document.get("token_endpoint")
    if not isinstance(token_endpoint, str):
        raise OAuthDiscoveryError(f"the metadata of {issuer} has no token_endpoint")
    endpoints: dict[str, str] = {
        name: value
        for name in ("authorization_endpoint", "registration_endpoint")
        if isinstance(value := document.get(name), str)
    }
    for name, url in (("token_endpoint", token_endpoint), *endpoints.items()):
        require_secure(url, f"{issuer}'s {name}")
    return AuthorizationServer(
        issuer=issuer,
        authorization_endpoint=endpoints.get("authorization_endpoint"),
        token_endpoint=token_endpoint,
        registration_endpoint=endpoints.get("registration_endpoint"),
        scopes_supported=_strings(document, "scopes_supported"),
        token_endpoint_auth_methods_supported=_strings(document, "token_endpoint_auth_methods_supported"),
        code_challenge_methods_supported=_strings(document, "code_challenge_methods_supported"),
        iss_parameter_supported=document.get("authorization_response_iss_parameter_supported") is True,
        client_id_metadata_document_supported=document.get("client_id_metadata_document_supported") is True,
    )


# -- scopes ------------------------------------------------------------------------------------------
def choose_scopes(
    *,
    challenged: Sequence[str] | None,
    supported: Sequence[str] | None,
    previous: Iterable[str] = (),
    offline_access: bool = False,
    server: AuthorizationServer | None = None,
) -> tuple[str, ...]:
    """The scopes to request, in the specification's order (an empty tuple: omit ``scope``).

    The challenge's ``scope`` is authoritative for the operation at hand; without
    one, every scope of the resource's ``scopes_supported``; without those,
    none.  When the client asked for scopes before (a step-up or another
    re-authorization), they are kept: the union avoids losing what other
    operations need.  ``offline_access`` is added only when the authorization
    server lists it and something else is requested.
    """
    if challenged:
        base = list(challenged)
    elif supported:
        base = list(supported)
    else:
        base = []
    chosen = list(dict.fromkeys([*previous, *base]))
    if (
        offline_access
        and chosen
        and server is not None
        and OFFLINE_ACCESS in (server.scopes_supported or ())
        and OFFLINE_ACCESS not in chosen
    ):
        chosen.append(OFFLINE_ACCESS)
    return tuple(chosen)


# -- the authorization request and response --------------------------------------------------------
def pkce_pair() -> tuple[str, str]:
    """A PKCE code verifier (43-128 unreserved characters) and its S256 challenge (RFC 7636 section 4)."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(endpoint: str, params: Mapping[str, str]) -> str:
    """``endpoint`` with the request's parameters added to any query it already has."""
    parts = urlsplit(endpoint)
    query = urlencode(dict(params), quote_via=quote)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, f"{parts.query}&{query}" if parts.query else query, ""))


def check_authorization_response(
    params: Mapping[str, str], *, state: str, server: AuthorizationServer
) -> str:
    """The authorization code of a redirect, after the checks that must come first.

    RFC 9207 section 2.4, as the MCP specification's table applies it: a
    server that advertises ``iss`` must send it; a present ``iss`` must equal
    the recorded issuer by simple string comparison (no normalization); only
    then are ``state``, ``error`` and ``code`` looked at, so a mismatched
    response's error text is never shown.
    """
    iss = params.get("iss")
    if iss is None:
        if server.iss_parameter_supported:
            raise AuthorizationError(
                f"the authorization response has no iss, though {server.issuer} says it sends one: rejected"
            )
    elif iss != server.issuer:
        raise AuthorizationError(
            f"the authorization response comes from issuer {iss!r}, not {server.issuer!r}: rejected (mix-up)"
        )
    if params.get("state") != state:
        raise AuthorizationError("the authorization response's state does not match the request's: rejected")
    error = params.get("error")
    if error is not None:
        raise AuthorizationError(
            f"the authorization server refused: {error}"
            + (f" ({params['error_description']})" if params.get("error_description") else ""),
            error=error,
        )
    code = params.get("code")
    if not code:
        raise AuthorizationError("the authorization response has neither a code nor an error")
    return code


# -- the token endpoint -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ClientRegistration:
    """How the client is known to one authorization server (never to be used with another).

    ``source``: ``"pre-registered"`` (configured), ``"metadata-document"`` (a
    Client ID Metadata Document URL), ``"dynamic"`` (RFC 7591 registration).
    """

    issuer: str
    client_id: str
    client_secret: str | None = None
    token_endpoint_auth_method: str = "none"
    redirect_uris: tuple[str, ...] = ()
    secret_expires_at: float | None = None
    source: str = "dynamic"

    def __repr__(self) -> str:
        secret = "***" if self.client_secret else None
        return (
            f"ClientRegistration(issuer={self.issuer!r}, client_id={self.client_id!r}, client_secret={secret}, "
            f"token_endpoint_auth_method={self.token_endpoint_auth_method!r}, source={self.source!r})"
        )

    def usable(self, redirect_uri: str | None, now: float | None = None) -> bool:
        """Still good: the secret has not expired, and the redirect URI is one it was registered with."""
        if self.secret_expires_at and (time.time() if now is None else now) >= self.secret_expires_at:
            return False
        return redirect_uri is None or self.source != "dynamic" or redirect_uri in self.redirect_uris

    def to_json(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            "redirect_uris": list(self.redirect_uris),
            "secret_expires_at": self.secret_expires_at,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClientRegistration:
        return cls(
            issuer=str(data["issuer"]),
            client_id=str(data["client_id"]),
            client_secret=data.get("client_secret"),
            token_endpoint_auth_method=str(data.get("token_endpoint_auth_method") or "none"),
            redirect_uris=tuple(data.get("redirect_uris") or ()),
            secret_expires_at=data.get("secret_expires_at"),
            source=str(data.get("source") or "dynamic"),
        )


def client_authentication(registration: ClientRegistration) -> tuple[dict[str, str], dict[str, str]]:
    """The headers and form fields that authenticate the client at the token endpoint.

    ``client_secret_basic``: an ``Authorization: Basic`` header of the
    form-urlencoded id and secret (RFC 6749 section 2.3.1); ``client_secret_post``:
    both in the body; ``none`` (a public client): the id in the body.
    ``private_key_jwt`` assertions are added by the caller, which has the key.
    """
    method = registration.token_endpoint_auth_method
    if method == "client_secret_basic":
        if registration.client_secret is None:
            raise TokenError(f"client {registration.client_id} uses client_secret_basic but has no secret")
        pair = f"{quote(registration.client_id, safe='')}:{quote(registration.client_secret, safe='')}"
        return {"authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii")}, {}
    if method == "client_secret_post":
        if registration.client_secret is None:
            raise TokenError(f"client {registration.client_id} uses client_secret_post but has no secret")
        return {}, {"client_id": registration.client_id, "client_secret": registration.client_secret}
    return {}, {"client_id": registration.client_id}


@dataclass(frozen=True, slots=True)
class TokenSet:
    """Tokens for one resource, from one authorization server.

    ``scopes`` are the scopes requested (the granted ones when the server
    said); ``token_endpoint`` lets a refresh happen without discovery.  The
    ``repr`` never shows a token.
    """

    access_token: str
    resource: str
    issuer: str
    token_endpoint: str
    expires_at: float | None = None
    refresh_token: str | None = None
    scopes: tuple[str, ...] = ()
    obtained_at: float = field(default_factory=time.time)

    def __repr__(self) -> str:
        refresh = "***" if self.refresh_token else None
        return (
            f"TokenSet(access_token=***, resource={self.resource!r}, issuer={self.issuer!r}, "
            f"expires_at={self.expires_at!r}, refresh_token={refresh}, scopes={self.scopes!r})"
        )

    def expiring(self, margin: float = 30.0, now: float | None = None) -> bool:
        """Expired, or expiring within ``margin`` seconds."""
        if self.expires_at is None:
            return False
        return (time.time() if now is None else now) + margin >= self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "resource": self.resource,
            "issuer": self.issuer,
            "token_endpoint": self.token_endpoint,
            "expires_at": self.expires_at,
            "refresh_token": self.refresh_token,
            "scopes": list(self.scopes),
            "obtained_at": self.obtained_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TokenSet:
        return cls(
            access_token=str(data["access_token"]),
            resource=str(data["resource"]),
            issuer=str(data["issuer"]),
            token_endpoint=str(data["token_endpoint"]),
            expires_at=data.get("expires_at"),
            refresh_token=data.get("refresh_token"),
            scopes=tuple(data.get("scopes") or ()),
            obtained_at=float(data.get("obtained_at") or 0.0),
        )


def token_error(status: int, body: Any, endpoint: str) -> TokenError:
    """The error of a refused token request (RFC 6749 section 5.2), described without echoing secrets."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        error = body["error"]
        description = body.get("error_description")
        text = f"the token endpoint {endpoint} refused ({status}): {error}"
        if isinstance(description, str) and description:
            text += f" ({description[:200]})"
        return TokenError(text, error=error, status_code=status)
    return TokenError(f"the token endpoint {endpoint} answered {status} without an OAuth error", status_code=status)


def parse_token_response(
    body: Any,
    *,
    resource: str,
    server: AuthorizationServer,
    requested: Sequence[str],
    previous_refresh_token: str | None = None,
    now: float | None = None,
) -> TokenSet:
    """A successful token response (RFC 6749 section 5.1) as a :class:`TokenSet`.

    Only ``Bearer`` tokens are used (a DPoP-bound token would need proofs this
    client does not make).  A refresh response without a refresh token keeps
    the one it replaced.
    """
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) or not body["access_token"]:
        raise TokenError(f"the token endpoint {server.token_endpoint} answered without an access_token")
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise TokenError(f"the token endpoint {server.token_endpoint} issued a {token_type!r} token, not Bearer")
    moment = time.time() if now is None else now
    expires_in = body.get("expires_in")
    expires_at = None
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        expires_at = moment + float(expires_in)
    granted = body.get("scope")
    scopes = tuple(granted.split()) if isinstance(granted, str) and granted.strip() else tuple(requested)
    refresh = body.get("refresh_token")
    return TokenSet(
        access_token=body["access_token"],
        resource=resource,
        issuer=server.issuer,
        token_endpoint=server.token_endpoint,
        expires_at=expires_at,
        refresh_token=refresh if isinstance(refresh, str) and refresh else previous_refresh_token,
        scopes=scopes,
        obtained_at=moment,
    )
