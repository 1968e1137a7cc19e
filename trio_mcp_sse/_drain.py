"""Who drains what on shutdown: a group of transports, owned by the server that runs the app.

``serve`` creates one :class:`DrainGroup` per application it serves and puts it
in the ASGI lifespan scope (under :data:`DRAIN_EXTENSION` in ``extensions``).
Every transport of the app finds it there when its lifespan starts, joins, and
leaves when it stops; on SIGTERM ``serve`` drains the group.  Nothing is
process-global: two apps served in one process drain independently, and a
transport run without ``serve`` is drained by calling its own ``drain``.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

import trio

from ._http import ASGIApp, Receive, Scope, Send

__all__ = ["DRAIN_EXTENSION", "DrainGroup", "Drainable"]

DRAIN_EXTENSION: Final = "trio_mcp_sse.drain"


class Drainable(Protocol):
    async def drain(self, grace_period: float) -> None: ...


class DrainGroup:
    """The transports of one served application that are running right now."""

    def __init__(self) -> None:
        self._members: dict[int, Drainable] = {}

    def __len__(self) -> int:
        return len(self._members)

    def add(self, member: Drainable) -> None:
        self._members[id(member)] = member

    def discard(self, member: Drainable) -> None:
        self._members.pop(id(member), None)

    async def drain(self, grace_period: float) -> None:
        """Drain every member at once; returns when all of them are done."""
        async with trio.open_nursery() as nursery:
            for member in list(self._members.values()):
                nursery.start_soon(member.drain, grace_period)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """``app`` with this group offered to its lifespan (see :func:`drain_group_of`)."""

        async def app_with_drain_group(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "lifespan":
                scope = {**scope, "extensions": {**(scope.get("extensions") or {}), DRAIN_EXTENSION: self}}
            await app(scope, receive, send)

        return app_with_drain_group


def drain_group_of(scope: Scope) -> DrainGroup | None:
    """The drain group a server offered in this lifespan scope, if any."""
    extensions: Any = scope.get("extensions") or {}
    group = extensions.get(DRAIN_EXTENSION)
    return group if isinstance(group, DrainGroup) else None
