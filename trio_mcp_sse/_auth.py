"""Authentication: a bearer token becomes an :class:`AccessToken`, and sessions are bound to its subject.

The transport knows nothing about tokens beyond the ``Authorization: Bearer``
header; *which* tokens are valid is the application's business, expressed as
one async callable (:data:`TokenVerifier`: a JWT check against a JWKS, RFC 7662
introspection, or a table of static tokens).  The subject it returns is the
request's *principal*, bound to every session opened with it: a request
carrying another principal (or none) is answered exactly like a request for
an unknown session, so a session id alone never grants access.

With :class:`ProtectedResource` settings the server is an OAuth 2.1 resource
server as the MCP authorization specification describes it: it publishes
Protected Resource Metadata (RFC 9728) naming its authorization servers, its
challenges carry ``resource_metadata`` (and ``scope``), and a token whose
scopes fall short of what an operation needs is answered ``403
insufficient_scope`` with the scopes it needs, so the client can step up.
"""

from __future__ import annotations

import enum
import hmac
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, urlsplit

import trio

from ._access_token import AccessToken, VerificationUnavailable

__all__ = [
    "AUTH_UNAVAILABLE",
    "UNCHECKED",
    "AccessToken",
    "AuthSettings",
    "ProtectedResource",
    "StaticTokens",
    "TokenVerdict",
    "TokenVerifier",
    "base_url",
    "metadata_path",
    "verify_bearer",
]

log = logging.getLogger("trio_mcp_sse")

WELL_KNOWN_RESOURCE: Final = "/.well-known/oauth-protected-resource"
"""RFC 9728's well-known URI suffix for Protected Resource Metadata."""


TokenVerifier = Callable[[str], Awaitable["AccessToken | str | None"]]
"""``async def verify(token) -> AccessToken | principal | None``.

Return an :class:`AccessToken` (or just the principal's name, a token with no
scopes) for a valid token and ``None`` for an invalid one (expired, tampered,
issued for another resource...).  Raising, or taking longer than
``AuthSettings.timeout``, means "cannot tell now": the request gets ``503``.
:class:`~trio_mcp_sse.JWTVerifier` and :class:`~trio_mcp_sse.IntrospectionVerifier`
are verifiers of this shape."""


def _check_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{name} must be an absolute http(s) URL, got {url!r}")
    if parts.fragment or "#" in url:
        raise ValueError(f"{name} must not have a fragment: {url!r}")
    if '"' in url or "\\" in url:
        raise ValueError(f"{name} must not contain quotes or backslashes: {url!r}")


def _scope_tokens(name: str, scopes: Iterable[str]) -> tuple[str, ...]:
    """Scope names as RFC 6749 section 3.3 allows them (printable ASCII, no space, quote or backslash)."""
    if isinstance(scopes, str):
        raise TypeError(f"{name} must be a collection of scope names, not one string")
    out = tuple(dict.fromkeys(scopes))
    for scope in out:
        if not scope or any(not ("\x21" <= char <= "\x7e") or char in '"\\' for char in scope):
            raise ValueError(f"{name}: {scope!r} is not a valid scope name (RFC 6749 section 3.3)")
    return out


@dataclass(frozen=True, slots=True)
class ProtectedResource:
    """The Protected Resource Metadata (RFC 9728) the server publishes about itself.

    Served at ``/.well-known/oauth-protected-resource`` and at that path
    followed by each MCP endpoint's path (``.../mcp``, ``.../sse``), relative
    to the app's mount point; ``401``/``403`` challenges name it in
    ``resource_metadata``.

    ``authorization_servers``
        Issuer identifiers of the authorization servers that issue tokens for
        this server (at least one).
    ``resource``
        This server's resource identifier, the ``resource`` clients put in
        their authorization and token requests (RFC 8707) and the audience
        tokens must carry.  ``None`` derives it from each request: the
        origin the client used plus the mount prefix, one identifier for
        every endpoint of the app.  The derived value is only advertised,
        never trusted: a verifier's audience is always configured (a client
        chooses the ``Host`` header).
    ``scopes_supported``
        Scopes a client may request; clients that get no ``scope`` in a
        challenge request all of these.  Per the MCP specification, leave
        ``offline_access`` out.
    ``bearer_methods_supported``
        How tokens are presented: only the ``Authorization`` header.
    ``resource_name`` / ``resource_documentation``
        Shown to users by clients that display them.
    ``extra``
        Any other RFC 9728 field, as given.
    """

    authorization_servers: Sequence[str]
    resource: str | None = None
    scopes_supported: Sequence[str] | None = None
    bearer_methods_supported: Sequence[str] = ("header",)
    resource_name: str | None = None
    resource_documentation: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.authorization_servers, str):
            raise TypeError("authorization_servers must be a list of issuer URLs, not one string")
        servers = tuple(self.authorization_servers)
        if not servers:
            raise ValueError("authorization_servers must name at least one authorization server")
        for server in servers:
            _check_url("authorization_servers", server)
        object.__setattr__(self, "authorization_servers", servers)
        if self.resource is not None:
            _check_url("resource", self.resource)
        if self.scopes_supported is not None:
            object.__setattr__(self, "scopes_supported", _scope_tokens("scopes_supported", self.scopes_supported))
        methods = tuple(self.bearer_methods_supported)
        if not set(methods) <= {"header"}:
            raise ValueError("bearer_methods_supported: only 'header' is supported (tokens never travel in a URL)")
        object.__setattr__(self, "bearer_methods_supported", methods)
        reserved = {"resource", "authorization_servers", "scopes_supported", "bearer_methods_supported"}
        if reserved & set(self.extra):
            raise ValueError(f"extra must not set {sorted(reserved & set(self.extra))}: use the fields")

    def document(self, derived_resource: str) -> dict[str, Any]:
        """The metadata document; ``derived_resource`` stands in for an unset ``resource``."""
        document: dict[str, Any] = {
            "resource": self.resource or derived_resource,
            "authorization_servers": list(self.authorization_servers),
        }
        if self.scopes_supported is not None:
            document["scopes_supported"] = list(self.scopes_supported)
        document["bearer_methods_supported"] = list(self.bearer_methods_supported)
        if self.resource_name is not None:
            document["resource_name"] = self.resource_name
        if self.resource_documentation is not None:
            document["resource_documentation"] = self.resource_documentation
        document.update(self.extra)
        return document


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """How the transports authenticate requests.

    ``verify_token``
        Called with the bearer token of every request; returns an
        :class:`AccessToken` (or a principal's name) or ``None`` for an
        invalid token (:data:`TokenVerifier`).
    ``required``
        With ``True`` (default) a request without a token gets ``401``.  With
        ``False`` it is served anonymously (principal ``None``), and can only
        reach anonymous sessions; an *invalid* token still gets ``401``.
    ``protected_resource``
        Make the server an OAuth resource server: publish this Protected
        Resource Metadata and name it in every challenge.
    ``resource_metadata``
        The metadata URL challenges name; ``None`` derives it from the request
        (the app's own document) when ``protected_resource`` is set.  Give it
        when the document is served elsewhere.
    ``required_scopes``
        Scopes every request's token must have (``403 insufficient_scope``
        otherwise); also the ``scope`` of a ``401`` challenge.
    ``scope_hierarchy``
        Broader scopes and the narrower ones each implies, e.g.
        ``{"notes:admin": ["notes:write"], "notes:write": ["notes:read"]}``
        (transitive): a token with ``notes:admin`` satisfies a tool that
        requires ``notes:read``.
    ``scopes_for``
        The scopes one JSON-RPC message needs beyond ``required_scopes``
        (``MCPServer`` fills it in from the tools' ``required_scopes``): an
        HTTP request carrying a message its token is not enough for gets
        ``403`` with the challenge, before the message reaches the session.
    ``realm``
        The ``realm`` of the ``WWW-Authenticate`` challenge.
    ``timeout``
        Seconds a verification may take before the request gets ``503``.
    """

    verify_token: TokenVerifier
    required: bool = True
    protected_resource: ProtectedResource | None = None
    resource_metadata: str | None = None
    required_scopes: Collection[str] = ()
    scope_hierarchy: Mapping[str, Collection[str]] = field(default_factory=dict)
    scopes_for: Callable[[Any], Collection[str]] | None = None
    realm: str = "mcp"
    timeout: float = 5.0

    def __post_init__(self) -> None:
        if '"' in self.realm or "\\" in self.realm:
            raise ValueError("realm must not contain quotes or backslashes")
        if self.resource_metadata is not None:
            _check_url("resource_metadata", self.resource_metadata)
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        object.__setattr__(self, "required_scopes", frozenset(_scope_tokens("required_scopes", self.required_scopes)))
        if self.required_scopes and not self.required:
            raise ValueError("required_scopes needs required=True: an anonymous request has no scopes")
        closure: dict[str, frozenset[str]] = {}
        for broad in self.scope_hierarchy:
            seen: set[str] = set()
            pending = list(_scope_tokens("scope_hierarchy", self.scope_hierarchy[broad]))
            while pending:
                scope = pending.pop()
                if scope not in seen:
                    seen.add(scope)
                    pending.extend(self.scope_hierarchy.get(scope, ()))
            closure[broad] = frozenset(seen)
        object.__setattr__(self, "_implied", closure)

    _implied: Mapping[str, frozenset[str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def oauth(
        cls,
        *,
        issuer: str,
        audience: str | Sequence[str],
        resource: str | None = None,
        scopes_supported: Sequence[str] | None = None,
        required_scopes: Collection[str] = (),
        **options: Any,
    ) -> AuthSettings:
        """An OAuth resource server trusting one authorization server: JWT access tokens from
        ``issuer`` (keys from its JWKS, found through its metadata) for ``audience``.

        ``resource`` is advertised in the metadata (default: the first
        ``audience``); ``options`` are the other :class:`AuthSettings` fields,
        or :class:`~trio_mcp_sse.JWTVerifier` ones under ``jwt=`` (a mapping).
        """
        from ._oauth_verifiers import JWTVerifier

        audiences = (audience,) if isinstance(audience, str) else tuple(audience)
        if not audiences:
            raise ValueError("audience must name this server's resource identifier")
        verifier = JWTVerifier(issuer=issuer, audience=audiences, **dict(options.pop("jwt", {})))
        protected = ProtectedResource(
            authorization_servers=[issuer], resource=resource or audiences[0], scopes_supported=scopes_supported
        )
        return cls(verify_token=verifier, protected_resource=protected, required_scopes=required_scopes, **options)

    # -- scopes ------------------------------------------------------------------------------------
    def granted(self, token: AccessToken) -> frozenset[str]:
        """The token's scopes with every scope they imply (``scope_hierarchy``)."""
        if not self._implied:
            return token.scopes
        granted = set(token.scopes)
        for scope in token.scopes:
            granted |= self._implied.get(scope, frozenset())
        return frozenset(granted)

    def needed_for(self, message: Any) -> frozenset[str]:
        """Every scope serving ``message`` takes: the required ones and the message's own."""
        scopes = self.required_scopes
        if self.scopes_for is not None:
            extra = self.scopes_for(message)
            if extra:
                scopes = frozenset(scopes) | frozenset(extra)
        return frozenset(scopes)

    def missing(self, token: AccessToken | None, needed: Collection[str]) -> frozenset[str]:
        """The scopes in ``needed`` that ``token`` does not grant (all of them without a token)."""
        if not needed:
            return frozenset()
        if token is None:
            return frozenset(needed)
        return frozenset(needed) - self.granted(token)

    # -- challenges ----------------------------------------------------------------------------------
    def metadata_url(self, scope: Mapping[str, Any] | None, endpoint: str) -> str | None:
        """The absolute URL of the metadata document for ``endpoint`` as the client reached it."""
        if self.resource_metadata is not None:
            return self.resource_metadata
        if self.protected_resource is None or scope is None:
            return None
        return base_url(scope) + metadata_path(endpoint)

    def challenge(
        self,
        error: str | None,
        *,
        scope: Mapping[str, Any] | None = None,
        endpoint: str = "",
        scopes: Collection[str] | None = None,
        description: str | None = None,
    ) -> bytes:
        """The ``WWW-Authenticate`` value (RFC 6750 section 3, RFC 9728 section 5.1).

        ``scopes``: the ``scope`` attribute (default ``required_scopes``).
        """
        parts = [f'Bearer realm="{self.realm}"']
        if error is not None:
            parts.append(f'error="{error}"')
        if description is not None:
            parts.append(f'error_description="{description}"')
        wanted = self.required_scopes if scopes is None else scopes
        if wanted:
            parts.append('scope="{}"'.format(" ".join(sorted(wanted))))
        url = self.metadata_url(scope, endpoint)
        if url is not None:
            parts.append(f'resource_metadata="{url}"')
        return ", ".join(parts).encode("latin-1")


def base_url(scope: Mapping[str, Any]) -> str:
    """The origin and mount prefix the client used: ``https://host[:port]/prefix``."""
    host = None
    for key, value in scope.get("headers") or ():
        if key == b"host":
            host = value.decode("latin-1")
            break
    if not host or any(char in host for char in '"\\/ \r\n'):
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "localhost"
    scheme = scope.get("scheme") or "http"
    return f"{scheme}://{host}{quote(scope.get('root_path', ''), safe='/')}"


def metadata_path(endpoint: str) -> str:
    """Where the metadata of the resource at ``endpoint`` lives, relative to the app (RFC 9728 section 3.1)."""
    return WELL_KNOWN_RESOURCE + endpoint.rstrip("/")


class StaticTokens:
    """A verifier for a fixed token -> principal table (compared in constant time)."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens = [(token.encode(), principal) for token, principal in tokens.items()]

    async def __call__(self, token: str) -> str | None:
        candidate = token.encode()
        found: str | None = None
        for known, principal in self._tokens:
            if hmac.compare_digest(known, candidate):
                found = principal
        return found


class _Pending(enum.Enum):
    UNCHECKED = "unchecked"
    UNAVAILABLE = "unavailable"


UNCHECKED: Final = _Pending.UNCHECKED
"""No token has been verified yet."""
AUTH_UNAVAILABLE: Final = _Pending.UNAVAILABLE
"""The verifier raised or timed out."""
TokenVerdict = AccessToken | None | _Pending
"""An access token, ``None`` (the verifier rejected the token), :data:`AUTH_UNAVAILABLE` or :data:`UNCHECKED`."""


async def verify_bearer(auth: AuthSettings, token: str) -> TokenVerdict:
    """Ask the application's verifier about ``token``, bounded by ``auth.timeout``.

    Returns the :class:`AccessToken` (a principal's name becomes one without
    scopes), ``None`` for a rejected token, or :data:`AUTH_UNAVAILABLE` when
    the verifier raised or timed out (the request then gets 503; the
    exception is logged, never the token).
    """
    with trio.move_on_after(auth.timeout) as waited:
        try:
            verdict = await auth.verify_token(token)
        except VerificationUnavailable as unavailable:
            log.error("token verification unavailable: %s", unavailable, extra={"event": "auth_unavailable"})
            return AUTH_UNAVAILABLE
        except Exception:
            # The verifier's own exception (never the token: this module does not log it).
            log.exception("token verification failed", extra={"event": "auth_error"})
            return AUTH_UNAVAILABLE
        if verdict is None or isinstance(verdict, AccessToken):
            return verdict
        if isinstance(verdict, str) and verdict:
            return AccessToken(subject=verdict)
        log.error(
            "token verifier returned %s, not an AccessToken, a principal or None",
            type(verdict).__name__,
            extra={"event": "auth_error"},
        )
        return AUTH_UNAVAILABLE
    if waited.cancelled_caught:
        log.warning("token verification timed out after %.1fs", auth.timeout, extra={"event": "auth_timeout"})
    return AUTH_UNAVAILABLE
