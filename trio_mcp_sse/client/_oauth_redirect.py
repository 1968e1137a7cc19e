"""How the user authorizes: open the authorization URL in a browser, catch the redirect on loopback.

The OAuth client hands an :class:`AuthorizationHandler` the authorization URL;
the handler gets the user agent there and returns the query parameters the
authorization server redirected back with.  :class:`LoopbackRedirect` is the
native-app way (RFC 8252 section 7.3): a one-shot HTTP listener on
``127.0.0.1`` is the redirect URI, the URL is printed (and opened in the
default browser when there is one), and the first request to the callback
path carrying the expected ``state`` ends the wait.  Anything else a browser
sends (``/favicon.ico``, a stale tab's callback) gets ``404`` and is ignored.

Other user agents (a GUI's web view, a test driving the authorization server
headlessly) are handlers of their own: any object with ``redirect_uri`` and
``authorize``.
"""

from __future__ import annotations

import html
import logging
import socket
import sys
import webbrowser
from collections.abc import Callable, Mapping
from typing import Final, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

import h11
import trio

from ._errors import AuthorizationError

__all__ = ["AuthorizationHandler", "LoopbackRedirect"]

log = logging.getLogger("trio_mcp_sse.client")

_MAX_REQUEST: Final = 64 * 1024
_PAGE: Final = (
    "<!doctype html><meta charset=utf-8><title>{title}</title>"
    "<body style='font-family:sans-serif;margin:3em'><h1>{title}</h1><p>{text}</p></body>"
)


@runtime_checkable
class AuthorizationHandler(Protocol):
    """Takes the user agent to the authorization server and brings back its answer."""

    @property
    def redirect_uri(self) -> str:
        """Where the authorization server sends the user agent back (registered with the server)."""
        ...

    async def authorize(self, authorization_url: str, state: str) -> Mapping[str, str]:
        """Visit ``authorization_url``; return the query parameters of the redirect to
        ``redirect_uri`` (``code``, ``state``, ``iss``... or ``error``)."""
        ...


def _announce(url: str) -> None:
    print(f"Authorize this client by opening: {url}", file=sys.stderr, flush=True)


class LoopbackRedirect:
    """Receive the authorization redirect on a loopback port (RFC 8252), opening a browser.

    ``port=0`` picks a free port the first time ``redirect_uri`` is read and
    keeps it for the object's life (a registered redirect URI must not change
    between flows).  ``open_browser=False`` only prints the URL (over SSH, in
    a container).  ``timeout``: seconds to wait for the redirect.  ``announce``
    shows the URL to the user (default: one line on stderr).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/callback",
        open_browser: bool = True,
        timeout: float = 300.0,
        announce: Callable[[str], None] = _announce,
    ) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"the redirect listener must be on a loopback address, not {host!r}")
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.host = host
        self.path = path
        self.open_browser = open_browser
        self.timeout = timeout
        self.announce = announce
        self._port = port
        self._socket: socket.socket | None = None

    # -- the redirect URI ---------------------------------------------------------------------------
    def _bind(self) -> socket.socket:
        if self._socket is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1" if self.host == "localhost" else self.host, self._port))
                sock.listen(8)
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            self._port = sock.getsockname()[1]
            self._socket = sock
        return self._socket

    @property
    def redirect_uri(self) -> str:
        self._bind()
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}{self.path}"

    def close(self) -> None:
        """Stop listening (a later flow listens again, on the same port if it is free)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    # -- one authorization -------------------------------------------------------------------------
    async def authorize(self, authorization_url: str, state: str) -> Mapping[str, str]:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self._bind()))
        self.announce(authorization_url)
        if self.open_browser:
            opened = await trio.to_thread.run_sync(webbrowser.open, authorization_url)
            if not opened:
                log.info("no browser could be opened: open the printed URL yourself")
        with trio.move_on_after(self.timeout):
            while True:
                stream = await listener.accept()
                with trio.move_on_after(10):
                    params = await self._serve(stream, state)
                    if params is not None:
                        return params
        raise AuthorizationError(f"no authorization response reached {self.redirect_uri} within {self.timeout:g} s")

    async def _serve(self, stream: trio.SocketStream, state: str) -> dict[str, str] | None:
        """Answer one connection; the callback's parameters when it is the awaited callback."""
        async with stream:
            connection = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_REQUEST)
            request: h11.Request | None = None
            while request is None:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(_MAX_REQUEST)
                    if not data:
                        return None
                    connection.receive_data(data)
                elif isinstance(event, h11.Request):
                    request = event
                else:
                    return None
            target = urlsplit(request.target.decode("latin-1"))
            params = dict(parse_qsl(target.query, keep_blank_values=True))
            awaited = request.method == b"GET" and target.path == self.path and params.get("state") == state
            if not awaited:
                await self._answer(stream, connection, 404, "Not found", "This is not the awaited redirect.")
                return None
            if "error" in params:
                text = "The authorization server did not grant access. You can close this window."
                await self._answer(stream, connection, 200, "Authorization refused", text)
            else:
                text = "The client has its authorization. You can close this window."
                await self._answer(stream, connection, 200, "Authorization complete", text)
            return params

    @staticmethod
    async def _answer(stream: trio.SocketStream, connection: h11.Connection, status: int, title: str, text: str) -> None:
        body = _PAGE.format(title=html.escape(title), text=html.escape(text)).encode("utf-8")
        headers = [
            ("content-type", "text/html; charset=utf-8"),
            ("content-length", str(len(body))),
            ("cache-control", "no-store"),
            ("connection", "close"),
        ]
        try:
            await stream.send_all(connection.send(h11.Response(status_code=status, headers=headers)) or b"")
            await stream.send_all(connection.send(h11.Data(data=body)) or b"")
            await stream.send_all(connection.send(h11.EndOfMessage()) or b"")
        except (trio.BrokenResourceError, h11.LocalProtocolError):
            pass
