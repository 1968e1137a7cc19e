"""``X-Forwarded-Host`` / ``-Proto`` / ``-Prefix`` from trusted proxies, applied to the ASGI scope.

A reverse proxy that serves the app under ``/tools`` and strips that prefix
before forwarding makes the app advertise ``/messages/?session_id=…``, which
the client resolves to the wrong URL; one that rewrites ``Host`` makes the
DNS-rebinding check answer 421.  The proxy says what the client saw in
``X-Forwarded-*`` headers, but any client can send those too, so they are
honoured only from the peers listed in ``SecuritySettings.trusted_proxies``
(off by default).

Applied once at the transport's entry, as a new scope: the Host checks, the
endpoint URL and routing then see what the client saw, and nothing downstream
knows about proxies.  Of a comma-separated list the last value is used: the
one the trusted proxy itself appended.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from typing import Final

from ._http import Scope

__all__ = ["ForwardedHeaders"]

_HOST: Final = b"x-forwarded-host"
_PROTO: Final = b"x-forwarded-proto"
_PREFIX: Final = b"x-forwarded-prefix"
_NETWORK = ipaddress.IPv4Network | ipaddress.IPv6Network


def _last(value: bytes) -> str:
    return value.decode("latin-1").rsplit(",", 1)[-1].strip()


class ForwardedHeaders:
    """Rewrite a scope from ``X-Forwarded-*`` when the peer is a trusted proxy."""

    __slots__ = ("_any", "_networks")

    def __init__(self, trusted: Sequence[str]) -> None:
        self._any = "*" in trusted
        self._networks: tuple[_NETWORK, ...] = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in trusted if entry != "*"
        )

    @functools.lru_cache(maxsize=256)  # noqa: B019 -- a handful of proxy addresses, objects live as long as the app
    def trusts(self, peer: str) -> bool:
        if self._any:
            return True
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def apply(self, scope: Scope) -> Scope:
        client = scope.get("client")
        if not client or not self.trusts(client[0]):
            return scope
        forwarded = {key: value for key, value in scope["headers"] if key in (_HOST, _PROTO, _PREFIX)}
        if not forwarded:
            return scope
        scope = dict(scope)
        host = forwarded.get(_HOST)
        if host is not None and _last(host):
            headers = [(key, value) for key, value in scope["headers"] if key != b"host"]
            headers.append((b"host", _last(host).encode("latin-1")))
            scope["headers"] = headers
        proto = forwarded.get(_PROTO)
        if proto is not None and _last(proto).lower() in ("http", "https"):
            scope["scheme"] = _last(proto).lower()
        prefix = forwarded.get(_PREFIX)
        if prefix is not None:
            text = _last(prefix).rstrip("/")
            if text.startswith("/") and not any(char in text for char in "?#\r\n\\"):
                scope["root_path"] = text + scope.get("root_path", "")
                scope["path"] = text + scope["path"]
        return scope
