"""Authentication hook: a bearer token becomes a principal, and sessions are bound to it.

The transport knows nothing about tokens beyond the ``Authorization: Bearer``
header; *which* tokens are valid is the application's business, expressed as
one async callable.  The principal it returns is bound to every session opened
with it, and a POST carrying another principal (or none) is answered exactly
like a POST for an unknown session: a session id alone never grants access.
"""

from __future__ import annotations

import enum
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

import trio

__all__ = ["AuthSettings", "StaticTokens", "TokenVerdict", "TokenVerifier", "verify_bearer"]

log = logging.getLogger("trio_mcp_sse")

TokenVerifier = Callable[[str], Awaitable[str | None]]
"""``async def verify(token) -> principal or None`` (``None``: the token is not valid)."""


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """How the transport authenticates requests.

    ``verify_token``
        Called with the bearer token of every GET and POST; returns the
        principal (any string naming the caller) or ``None`` for an invalid token.
    ``required``
        With ``True`` (default) a request without a token gets ``401``.  With
        ``False`` it is served anonymously (principal ``None``), and can only
        reach anonymous sessions; an *invalid* token still gets ``401``.
    ``realm``
        The ``realm`` of the ``WWW-Authenticate`` challenge.
    ``resource_metadata``
        Optional URL of the OAuth protected-resource metadata, advertised in the
        challenge so OAuth-aware clients can discover the authorization server.
    ``timeout``
        Seconds a verification may take before the request gets ``503``.
    """

    verify_token: TokenVerifier
    required: bool = True
    realm: str = "mcp"
    resource_metadata: str | None = None
    timeout: float = 5.0

    def __post_init__(self) -> None:
        if '"' in self.realm or "\\" in self.realm:
            raise ValueError("realm must not contain quotes or backslashes")
        if self.resource_metadata is not None and '"' in self.resource_metadata:
            raise ValueError("resource_metadata must not contain quotes")
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")

    def challenge(self, error: str | None) -> bytes:
        """The ``WWW-Authenticate`` value (RFC 6750) for a missing or rejected token."""
        parts = [f'Bearer realm="{self.realm}"']
        if error is not None:
            parts.append(f'error="{error}"')
        if self.resource_metadata is not None:
            parts.append(f'resource_metadata="{self.resource_metadata}"')
        return ", ".join(parts).encode("latin-1")


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
TokenVerdict = str | None | _Pending
"""A principal, ``None`` (the verifier rejected the token), :data:`AUTH_UNAVAILABLE` or :data:`UNCHECKED`."""


async def verify_bearer(auth: AuthSettings, token: str) -> TokenVerdict:
    """Ask the application's verifier about ``token``, bounded by ``auth.timeout``.

    Returns the principal, ``None`` for a rejected token, or :data:`AUTH_UNAVAILABLE` when the
    verifier raised or timed out (the request then gets 503; the exception is
    logged, never the token).
    """
    with trio.move_on_after(auth.timeout) as waited:
        try:
            return await auth.verify_token(token)
        except Exception:
            log.exception("token verification failed", extra={"event": "auth_error"})
            return AUTH_UNAVAILABLE
    if waited.cancelled_caught:
        log.warning("token verification timed out after %.1fs", auth.timeout, extra={"event": "auth_timeout"})
    return AUTH_UNAVAILABLE
