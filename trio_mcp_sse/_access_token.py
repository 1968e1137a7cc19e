"""What a verified access token says: kept apart so every layer can name it without import cycles."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AccessToken", "VerificationUnavailable"]


@dataclass(frozen=True, slots=True)
class AccessToken:
    """What a verified access token says: who it is for and what it allows.

    The raw token is never kept, so neither a ``repr`` nor a log line can
    leak it.  ``subject`` is the request's principal (what sessions are bound
    to and tools read as ``Context.principal``); for a token a client obtained
    for itself (``client_credentials``) that is usually its client id.
    """

    subject: str
    scopes: frozenset[str] = frozenset()
    client_id: str | None = None
    issuer: str | None = None
    audience: tuple[str, ...] = ()
    expires_at: float | None = None
    """POSIX seconds (the ``exp`` claim); ``None``: the token did not say."""
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """The verified JWT claims, or the introspection response."""

    def __post_init__(self) -> None:
        if not isinstance(self.subject, str) or not self.subject:
            raise ValueError("an access token's subject must be a non-empty string")
        if not isinstance(self.scopes, frozenset):
            object.__setattr__(self, "scopes", frozenset(self.scopes))
        if not isinstance(self.audience, tuple):
            object.__setattr__(self, "audience", tuple(self.audience))

    def expired(self, now: float | None = None, leeway: float = 0.0) -> bool:
        """Whether ``expires_at`` has passed (``now``: POSIX seconds, default the wall clock)."""
        if self.expires_at is None:
            return False
        return (time.time() if now is None else now) >= self.expires_at + leeway


class VerificationUnavailable(RuntimeError):
    """A verifier cannot tell whether a token is valid right now: its authorization server,
    key set or introspection endpoint failed or did not answer (the request gets ``503``).

    Raise it from a verifier of your own for the same answer with one log line and no
    traceback; its message names the endpoint and what went wrong, never a token.
    """
