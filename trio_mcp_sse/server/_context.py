"""What a handler may know about, and do within, the request it is serving."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._jsonrpc import RequestId
    from ._connection import ServerConnection

__all__ = ["Context"]


class Context:
    """Handed to a tool (or other handler) that declares a parameter of this type.

    It names the request being served and the session it belongs to, and is the
    handle for talking back to the client while the request runs.
    """

    __slots__ = ("_connection", "_headers", "meta", "request_id")

    def __init__(
        self,
        connection: ServerConnection,
        request_id: RequestId,
        headers: Mapping[str, str],
        meta: Mapping[str, Any] | None,
    ) -> None:
        self._connection = connection
        self._headers = headers
        self.request_id = request_id
        self.meta: Mapping[str, Any] = meta or {}
        """The request's ``_meta`` (progress token and the like)."""

    @property
    def session_id(self) -> str:
        return self._connection.session.id

    @property
    def principal(self) -> str | None:
        """Who opened the session, as the authentication hook named them (``None``: anonymous)."""
        return self._connection.session.principal

    @property
    def headers(self) -> Mapping[str, str]:
        """HTTP headers of the request that carried this message (names lower-case)."""
        return self._headers

    @property
    def client_info(self) -> Mapping[str, Any] | None:
        """``clientInfo`` from the client's ``initialize``."""
        return self._connection.client_info

    @property
    def protocol_version(self) -> str | None:
        return self._connection.protocol_version
