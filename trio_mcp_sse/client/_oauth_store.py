"""Where the OAuth client keeps tokens and client registrations: in memory, or in a file.

Tokens are kept per *resource* (the MCP server they were issued for), client
registrations per *authorization server issuer*: a registration is only ever
used with the server that issued it (the MCP specification's "authorization
server binding"), so when a resource moves to another authorization server
the client registers there afresh instead of presenting another server's
credentials.

A store is anything with the four async methods of :class:`TokenStore` (a
keyring, a database); :class:`MemoryTokenStore` is the default and
:class:`FileTokenStore` keeps both across runs in one JSON file readable by
its owner only.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import trio

from ._errors import OAuthError
from ._oauth_wire import ClientRegistration, TokenSet

__all__ = ["FileTokenStore", "MemoryTokenStore", "TokenStore"]

_FORMAT: Final = 1


@runtime_checkable
class TokenStore(Protocol):
    """Storage of tokens (per resource URL) and client registrations (per issuer).

    Saving ``None`` deletes.  Methods may do I/O; they are awaited from the
    OAuth flow, one at a time per :class:`~trio_mcp_sse.client.OAuth` object.
    """

    async def resources(self) -> list[str]:
        """The resources tokens are stored for."""
        ...

    async def get_tokens(self, resource: str) -> TokenSet | None: ...

    async def set_tokens(self, resource: str, tokens: TokenSet | None) -> None: ...

    async def get_client(self, issuer: str) -> ClientRegistration | None: ...

    async def set_client(self, issuer: str, registration: ClientRegistration | None) -> None: ...


class MemoryTokenStore:
    """Tokens and registrations for the life of the process (the default store)."""

    def __init__(self) -> None:
        self._tokens: dict[str, TokenSet] = {}
        self._clients: dict[str, ClientRegistration] = {}

    async def resources(self) -> list[str]:
        return list(self._tokens)

    async def get_tokens(self, resource: str) -> TokenSet | None:
        return self._tokens.get(resource)

    async def set_tokens(self, resource: str, tokens: TokenSet | None) -> None:
        if tokens is None:
            self._tokens.pop(resource, None)
        else:
            self._tokens[resource] = tokens

    async def get_client(self, issuer: str) -> ClientRegistration | None:
        return self._clients.get(issuer)

    async def set_client(self, issuer: str, registration: ClientRegistration | None) -> None:
        if registration is None:
            self._clients.pop(issuer, None)
        else:
            self._clients[issuer] = registration


class FileTokenStore:
    """Tokens and registrations in one JSON file, mode ``0600`` in a directory of its own user.

    Each change rewrites the file atomically (a temporary file renamed over
    it), so a crash leaves the old contents or the new, never half.  Refresh
    tokens are long-lived secrets: the file is refused if other users can
    read it.  Meant for one process at a time (the CLI's default,
    ``~/.cache/trio-mcp-sse/oauth.json``); a file another process rewrote is
    read again on the next flow.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()

    # -- reading and writing ----------------------------------------------------------------------
    def _read(self) -> dict[str, Any]:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return {"version": _FORMAT, "tokens": {}, "clients": {}}
        if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise OAuthError(
                f"{self.path} is readable by other users; it holds OAuth tokens: chmod 600 it (or delete it)"
            )
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError) as error:
            raise OAuthError(f"cannot read the token store {self.path}: {error}") from None
        if (
            not isinstance(data, dict)
            or data.get("version") != _FORMAT
            or not isinstance(data.setdefault("tokens", {}), dict)
            or not isinstance(data.setdefault("clients", {}), dict)
        ):
            raise OAuthError(f"{self.path} is not a token store of this version; delete it to start afresh")
        return data

    def _malformed(self, section: str, key: str) -> OAuthError:
        # Never the entry itself: it may hold a token or a secret.
        return OAuthError(f"{self.path} has a malformed {section} entry for {key!r}; delete it to start afresh")

    def _write(self, data: dict[str, Any]) -> None:
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                os.chmod(temporary, 0o600)
                json.dump(data, file, indent=1, sort_keys=True)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    async def _load(self) -> dict[str, Any]:
        return await trio.to_thread.run_sync(self._read)

    async def _update(self, section: str, key: str, value: dict[str, Any] | None) -> None:
        def change() -> None:
            data = self._read()
            if value is None:
                data[section].pop(key, None)
            else:
                data[section][key] = value
            self._write(data)

        await trio.to_thread.run_sync(change)

    # -- the store -----------------------------------------------------------------------------------
    async def resources(self) -> list[str]:
        return list((await self._load())["tokens"])

    async def get_tokens(self, resource: str) -> TokenSet | None:
        entry = (await self._load())["tokens"].get(resource)
        try:
            return None if entry is None else TokenSet.from_json(entry)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise self._malformed("tokens", resource) from None

    async def set_tokens(self, resource: str, tokens: TokenSet | None) -> None:
        await self._update("tokens", resource, None if tokens is None else tokens.to_json())

    async def get_client(self, issuer: str) -> ClientRegistration | None:
        entry = (await self._load())["clients"].get(issuer)
        try:
            return None if entry is None else ClientRegistration.from_json(entry)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise self._malformed("clients", issuer) from None

    async def set_client(self, issuer: str, registration: ClientRegistration | None) -> None:
        await self._update("clients", issuer, None if registration is None else registration.to_json())
