"""Host/Origin allow-lists (DNS-rebinding protection) and the body limit: settings and predicates.

A browser page on ``evil.example`` can resolve its own name to 127.0.0.1 and
then talk to a server on the user's machine; the tell-tale is the ``Host`` (and
``Origin``) header, which still says ``evil.example``.  So a server bound to a
loopback address only accepts loopback names unless told otherwise.  A server
bound to a routable address cannot guess its public names, so by default it does
not check ``Host``; it still refuses cross-origin browser requests.

Patterns (documented in ``docs/security.md``):

* hosts: ``"example.com"`` (exactly that Host header), ``"example.com:*"``
  (that name with any port, or none), ``"*"`` (any Host).
* origins: ``"https://app.example.com"`` (exact), ``"https://app.example.com:*"``
  (any port), ``"*"`` (any Origin).  Requests without ``Origin`` (every
  non-browser client) are never refused for it.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LOOPBACK_HOSTS", "LOOPBACK_ORIGINS", "SecuritySettings"]

LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1:*", "localhost:*", "[::1]:*")
LOOPBACK_ORIGINS: tuple[str, ...] = (
    "http://127.0.0.1:*",
    "http://localhost:*",
    "http://[::1]:*",
    "https://127.0.0.1:*",
    "https://localhost:*",
    "https://[::1]:*",
)
DEFAULT_MAX_BODY_SIZE = 4 * 1024 * 1024
DEFAULT_BODY_TIMEOUT = 10.0
DEFAULT_BODY_BUDGET = 64 * 1024 * 1024


def matches_pattern(value: str, patterns: Sequence[str]) -> bool:
    """Does ``value`` (lower-case) match one of the documented patterns?"""
    for pattern in patterns:
        if pattern == "*" or pattern == value:
            return True
        if pattern.endswith(":*"):
            base = pattern[:-2]
            if value == base:
                return True
            if value.startswith(base + ":") and value[len(base) + 1 :].isascii() and value[len(base) + 1 :].isdigit():
                return True
    return False


@functools.lru_cache(maxsize=256)
def is_loopback(host: str | None) -> bool:
    """Is this (bound) address a loopback one?  Cached: asked on every request, for a
    handful of distinct addresses."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """Who may talk to the transport, and how much they may send.

    ``allowed_hosts`` / ``allowed_origins``: ``None`` (the default) means
    *automatic*: when the server is bound to a loopback address only loopback
    names and origins are allowed; otherwise any Host is accepted and an Origin
    must name the same host as the Host header.  A list is enforced as given on
    every address.  ``max_body_size`` caps one POST body in bytes;
    ``body_timeout`` is how many seconds a body may take to arrive in full
    (then ``408`` and the connection is closed); ``body_budget`` caps the bytes
    of all request bodies being read at once by one transport, i.e. one worker
    process (beyond it ``503`` with ``Retry-After``).
    """

    allowed_hosts: Sequence[str] | None = None
    allowed_origins: Sequence[str] | None = None
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    body_budget: int = DEFAULT_BODY_BUDGET
    trusted_proxies: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.max_body_size < 1:
            raise ValueError("max_body_size must be >= 1")
        if not self.body_timeout > 0:
            raise ValueError("body_timeout must be > 0")
        if self.body_budget < self.max_body_size:
            raise ValueError("body_budget must be >= max_body_size (one largest body must fit)")
        for name in ("allowed_hosts", "allowed_origins", "trusted_proxies"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise TypeError(f"{name} must be a sequence of patterns, not a single string")

    def host_allowed(self, host: str | None, server_host: str | None) -> bool:
        """Is this ``Host`` header acceptable on a server bound to ``server_host``?"""
        if self.allowed_hosts is not None:
            return host is not None and matches_pattern(host.lower(), self.allowed_hosts)
        if is_loopback(server_host):
            return host is not None and matches_pattern(host.lower(), LOOPBACK_HOSTS)
        return True

    def origin_allowed(self, origin: str | None, host: str | None, server_host: str | None) -> bool:
        """Is this ``Origin`` header (absent for non-browser clients) acceptable?"""
        if origin is None:
            return True
        origin = origin.lower()
        if self.allowed_origins is not None:
            return matches_pattern(origin, self.allowed_origins)
        if is_loopback(server_host):
            return matches_pattern(origin, LOOPBACK_ORIGINS)
        # Routable address, nothing configured: same-origin requests only.
        scheme, sep, authority = origin.partition("://")
        if not sep or host is None or scheme not in ("http", "https"):
            return False
        return authority == host.lower()
