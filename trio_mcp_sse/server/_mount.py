"""Composition: how a request finds its handler -- middleware, mounted servers, a proxy's upstream.

Theory of operation
-------------------
Every server has a :class:`Composition`.  Without middleware, mounts or an
upstream it steps aside (:meth:`Composition.wrap` returns the handler itself),
so a plain server pays nothing.  Otherwise a request's handler is wrapped:
the server's middleware chain runs first, and its innermost step *routes*.

Mounting (``parent.mount(child, prefix="weather")``) copies the child's
definitions into the parent's catalog under prefixed names -- tools and
prompts ``weather_<name>``, resource URIs and URI templates with the prefix as
the first path segment after the scheme (``notes://today`` ->
``notes://weather/today``) -- and keeps them in step: the :class:`Mount`
listens to the child's catalog and adds, replaces or removes its copies,
which the parent's catalog announces to the parent's sessions as any change
(``list_changed``, ``resources/updated`` under the prefixed URI).  Because the
copies live in the parent's catalog, everything that reads a catalog (the
lists and their pages, the ``403`` of a tool's ``required_scopes``, the
2026-07-28 ``Mcp-Param`` checks and cache hints) treats them as the parent's
own.  A request for one of them (``tools/call``, ``prompts/get``,
``resources/read``, ``completion/complete``) is routed to the child instead:
params renamed back, the child's own middleware around the child's own
handler, the parent's :class:`Context` (so progress, logging and questions to
the client go to the parent's session), and the answer renamed forward.  The
parent's middleware sees every request under the parent's names; the child's
sees the requests routed to it, under its own names, never the parent's
lists.

A proxy (``MCPServer.as_proxy``) has an *upstream*: a remote server known
only per session.  Its items cannot be copied into a catalog, so a server
with an upstream -- or a mounted server that has one, however deep -- is
*dynamic*: its lists are built per request (its catalog, then what the
upstream lists, renamed along the mount path), and a request for a name its
catalog does not have goes to the dynamic mount whose prefix the name carries,
else to its own upstream.  ``resources/subscribe`` for a remote URI and
``logging/setLevel`` are passed on upstream as well as recorded here.

The mount path (the :class:`Mount` objects from the session's server down to
the one serving a request) travels with each routed request, so an upstream
can name its resources in the session's terms when it relays an update.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import orjson

from .._errors import MCPError, ResourceNotFound
from .._jsonrpc import METHOD_NOT_FOUND
from .._session import Incoming
from ._catalog import Catalog, Definition
from ._context import Context
from ._handlers import _listing
from ._middleware import Middleware, RequestInfo, run_notification, run_request
from ._prompts import Prompt
from ._resources import Resource, UriTemplate
from ._tools import Tool

__all__ = [
    "ComposedServer",
    "Composition",
    "Mount",
    "MountedConnection",
    "Upstream",
    "base_connection",
    "check_prefix",
    "prefixed_uri",
    "unprefixed_uri",
]

log = logging.getLogger("trio_mcp_sse.server")

AnyHandler = Callable[[Any, Mapping[str, Any], Context], Awaitable[dict[str, Any]]]
AnyNotificationHandler = Callable[[Any, Mapping[str, Any]], Awaitable[None]]

_PREFIX: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")
_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_KINDS: Final = ("tools", "prompts", "resources", "templates")
_CHANGED: Final = {
    "notifications/tools/list_changed": ("tools",),
    "notifications/prompts/list_changed": ("prompts",),
    "notifications/resources/list_changed": ("resources", "templates"),
}
_LISTINGS: Final = {
    # method: (result key, kind, the entry's identifying field)
    "tools/list": ("tools", "tools", "name"),
    "prompts/list": ("prompts", "prompts", "name"),
    "resources/list": ("resources", "resources", "uri"),
    "resources/templates/list": ("resourceTemplates", "templates", "uriTemplate"),
}
_SUBSCRIPTIONS: Final = frozenset({"resources/subscribe", "resources/unsubscribe"})


# -- names ---------------------------------------------------------------------------------------
def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ValueError(
            f"a mount prefix is letters, digits, '_' and '-', starting with a letter or digit, not {prefix!r}"
        )
    return prefix


def prefixed_uri(prefix: str, uri: str) -> str:
    """``scheme://rest`` -> ``scheme://prefix/rest``; ``scheme:rest`` -> ``scheme:prefix/rest``;
    anything else -> ``prefix/uri``.  Works on URI templates alike (the prefix is literal text)."""
    scheme, separator, rest = uri.partition("://")
    if separator and _SCHEME.fullmatch(scheme):
        return f"{scheme}://{prefix}/{rest}"
    scheme, separator, rest = uri.partition(":")
    if separator and _SCHEME.fullmatch(scheme):
        return f"{scheme}:{prefix}/{rest}"
    return f"{prefix}/{uri}"


def unprefixed_uri(prefix: str, uri: str) -> str | None:
    """The URI :func:`prefixed_uri` turned into ``uri``, or ``None`` if it did not."""
    marker = f"{prefix}/"
    candidates = []
    for separator in ("://", ":"):
        scheme, found, rest = uri.partition(separator)
        if found and rest.startswith(marker):
            candidates.append(f"{scheme}{separator}{rest[len(marker):]}")
    if uri.startswith(marker):
        candidates.append(uri[len(marker):])
    for candidate in candidates:
        if prefixed_uri(prefix, candidate) == uri:
            return candidate
    return None


# -- what composition needs of a server ------------------------------------------------------------
class ComposedServer(Protocol):
    """What a :class:`Composition` needs of its server (:class:`MCPServer` is one)."""

    @property
    def catalog(self) -> Catalog: ...
    @property
    def request_handlers(self) -> Mapping[str, Any]: ...
    @property
    def composition(self) -> Composition: ...


class Upstream(Protocol):
    """A remote server reached per session (``_proxy`` has the one :meth:`MCPServer.as_proxy` installs)."""

    async def forward(self, request: RequestInfo, path: Sequence[Mount]) -> dict[str, Any]:
        """Send ``request`` upstream as it is; its result, or the upstream's error as an :class:`MCPError`."""
        ...

    async def listing(self, method: str, key: str, request: RequestInfo, path: Sequence[Mount]) -> list[dict[str, Any]]:
        """Every entry the upstream lists for ``method`` (all pages)."""
        ...

    async def set_level(self, request: RequestInfo) -> None:
        """Pass ``logging/setLevel`` on, if this session's upstream is connected (best effort)."""
        ...

    @property
    def offers_completion(self) -> bool: ...


class MountedConnection:
    """A session as a mounted server's handlers see it: the parent's session, the mounted catalog.

    ``server`` and ``catalog`` are the mounted server's; everything else is the
    session's (``base``), so subscriptions, log level and the way out stay one.
    """

    def __init__(self, base: Any, server: ComposedServer) -> None:
        self.base = base
        self.server = server
        self.catalog = server.catalog

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)

    def __repr__(self) -> str:
        return f"<MountedConnection {self.base!r} for {self.server!r}>"


def base_connection(connection: Any) -> Any:
    """The session's own connection behind any number of mounted views."""
    while isinstance(connection, MountedConnection):
        connection = connection.base
    return connection


# -- mounts ----------------------------------------------------------------------------------------
class Mount:
    """One server mounted on another under a prefix: the copies it keeps in the parent's catalog."""

    def __init__(self, parent: ComposedServer, server: ComposedServer, prefix: str) -> None:
        self.parent = parent
        self.server = server
        self.prefix = check_prefix(prefix)
        # kind -> the parent's key -> (the child's key, the child's definition copied)
        self._copies: dict[str, dict[str, tuple[str, Definition]]] = {kind: {} for kind in _KINDS}
        self._unsubscribe: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"<Mount {self.prefix!r}: {self.server!r}>"

    # -- names ---------------------------------------------------------------------------------
    def prefixed_name(self, name: str) -> str:
        return f"{self.prefix}_{name}"

    def unprefixed_name(self, name: str) -> str | None:
        marker = f"{self.prefix}_"
        return name[len(marker):] if name.startswith(marker) and len(name) > len(marker) else None

    def prefixed_uri(self, uri: str) -> str:
        return prefixed_uri(self.prefix, uri)

    def unprefixed_uri(self, uri: str) -> str | None:
        return unprefixed_uri(self.prefix, uri)

    def parent_key(self, kind: str, key: str) -> str:
        return self.prefixed_name(key) if kind in ("tools", "prompts") else self.prefixed_uri(key)

    def child_key(self, kind: str, parent_key: str) -> str | None:
        """The child's name (or URI, or URI template) of a copy this mount keeps, else ``None``."""
        copy = self._copies[kind].get(parent_key)
        return None if copy is None else copy[0]

    def rename_entry(self, key: str, entry: Mapping[str, Any]) -> dict[str, Any]:
        """A ``*/list`` entry of the mounted server in the parent's names."""
        renamed = dict(entry)
        field = {"tools": "name", "prompts": "name", "resources": "uri", "resourceTemplates": "uriTemplate"}[key]
        value = renamed.get(field)
        if isinstance(value, str):
            renamed[field] = self.prefixed_name(value) if field == "name" else self.prefixed_uri(value)
        return renamed

    # -- the copies ----------------------------------------------------------------------------
    def attach(self) -> None:
        """Copy everything the child has now (``ValueError`` if a name is taken), then follow it."""
        taken = [
            key
            for kind in _KINDS
            for key in (self.parent_key(kind, child_key) for child_key in _registry(self.server.catalog, kind))
            if key in _registry(self.parent.catalog, kind)
        ]
        if taken:
            raise ValueError(f"mounting {self.server!r} at {self.prefix!r}: already registered: {', '.join(taken)}")
        for kind in _KINDS:
            self._sync(kind)
        self._unsubscribe = self.server.catalog.subscribe(self._heard)

    def _heard(self, data: bytes, uri: str | None) -> None:
        """The child's catalog changed: bring the copies in step (a listener: synchronous, never blocks)."""
        if uri is not None:
            self.parent.catalog.resource_updated(self.prefixed_uri(uri))
            return
        for kind in _CHANGED.get(orjson.loads(data).get("method"), ()):
            self._sync(kind)

    def _sync(self, kind: str) -> None:
        catalog = self.parent.catalog
        wanted = {
            self.parent_key(kind, key): (key, definition)
            for key, definition in _registry(self.server.catalog, kind).items()
        }
        copies = self._copies[kind]
        for parent_key in [key for key in copies if key not in wanted]:
            del copies[parent_key]
            with contextlib.suppress(KeyError):  # removed from the parent by hand
                _remove(catalog, kind, parent_key)
        for parent_key, (child_key, definition) in wanted.items():
            known = copies.get(parent_key)
            if known is not None and known[1] is definition:
                continue
            copy = _copy(definition, parent_key)
            try:
                if known is not None and parent_key in _registry(catalog, kind):
                    catalog.replace(copy)
                else:
                    catalog.add(copy)
            except ValueError:
                log.warning(
                    "mount %r: %s %r is the parent's own; the mounted one is not served", self.prefix, kind, parent_key
                )
                continue
            copies[parent_key] = (child_key, definition)


def _registry(catalog: Catalog, kind: str) -> Mapping[str, Definition]:
    if kind == "tools":
        return catalog.tools
    if kind == "prompts":
        return catalog.prompts
    if kind == "resources":
        return catalog.resources
    return catalog.resource_templates


def _remove(catalog: Catalog, kind: str, key: str) -> None:
    if kind == "tools":
        catalog.remove_tool(key)
    elif kind == "prompts":
        catalog.remove_prompt(key)
    else:
        catalog.remove_resource(key)


def _copy(definition: Definition, parent_key: str) -> Definition:
    """The child's definition under the parent's name; the same function, schemas and options."""
    if isinstance(definition, Tool | Prompt):
        return dataclasses.replace(definition, name=parent_key)
    if isinstance(definition, Resource):
        return dataclasses.replace(definition, uri=parent_key)
    return dataclasses.replace(definition, uri_template=UriTemplate(parent_key))


# -- routing ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class _Target:
    """Where a request for one item goes: a mount (``None``: this server's upstream), with what params."""

    mount: Mount | None
    params: Mapping[str, Any]
    uri: tuple[str, str] | None = None
    """(the URI as the target names it, as the request named it), for ``resources/read``."""


class Composition:
    """The middleware of one server, the servers mounted on it and its upstream (see the module docstring)."""

    def __init__(self, server: ComposedServer) -> None:
        self.server = server
        self.middleware: list[Middleware] = []
        """Registration order: the first is the outermost."""
        self.mounts: dict[str, Mount] = {}
        """By prefix, in the order they were mounted."""
        self.upstream: Upstream | None = None
        """A proxy's remote server."""

    @property
    def active(self) -> bool:
        return bool(self.middleware or self.mounts or self.upstream is not None)

    @property
    def dynamic(self) -> bool:
        """Some of what this server offers is known only per session (an upstream, here or mounted)."""
        return self.upstream is not None or any(mount.server.composition.dynamic for mount in self.mounts.values())

    @property
    def offers_completion(self) -> bool:
        """A completer here, upstream, or on a mounted server: ``completions`` is announced."""
        return (
            self.server.catalog.completion_handler is not None
            or (self.upstream is not None and self.upstream.offers_completion)
            or any(mount.server.composition.offers_completion for mount in self.mounts.values())
        )

    # -- mounting ------------------------------------------------------------------------------
    def mount(self, server: ComposedServer, prefix: str) -> Mount:
        check_prefix(prefix)
        if prefix in self.mounts:
            raise ValueError(f"a server is already mounted at {prefix!r}")
        if server is self.server or _reaches(server, self.server):
            raise ValueError(f"mounting {server!r} on {self.server!r} would make a cycle")
        mount = Mount(self.server, server, prefix)
        mount.attach()
        self.mounts[prefix] = mount
        return mount

    # -- the connection's seams ----------------------------------------------------------------
    def wrap(self, handler: AnyHandler) -> AnyHandler:
        """``handler`` as the connection should run it: through the middleware and the routing."""
        if not self.active:
            return handler

        async def composed(connection: Any, params: Mapping[str, Any], context: Context) -> dict[str, Any]:
            request = RequestInfo(context.method, params, connection, context, context.access_token, context.headers)
            return await self.serve(request, handler)

        return composed

    def wrap_notification(
        self, method: str, handler: AnyNotificationHandler | None, incoming: Incoming
    ) -> AnyNotificationHandler | None:
        """A client notification's handler (``None``: nothing to run) with the middleware around it."""
        if not self.middleware:
            return handler

        async def innermost(request: RequestInfo) -> None:
            if handler is not None:
                await handler(request.connection, request.params)

        async def composed(connection: Any, params: Mapping[str, Any]) -> None:
            request = RequestInfo(method, params, connection, None, incoming.access_token, incoming.headers)
            await run_notification(self.middleware, request, innermost)

        return composed

    # -- serving -------------------------------------------------------------------------------
    async def serve(
        self, request: RequestInfo, handler: AnyHandler | None, path: Sequence[Mount] = ()
    ) -> dict[str, Any]:
        """Serve ``request`` here: the middleware, then the route (``path``: the mounts that led here)."""

        async def innermost(current: RequestInfo) -> dict[str, Any]:
            return await self._route(current, handler, tuple(path))

        return await run_request(self.middleware, request, innermost)

    async def _route(self, request: RequestInfo, handler: AnyHandler | None, path: tuple[Mount, ...]) -> dict[str, Any]:
        method = request.method
        listing = _LISTINGS.get(method)
        if listing is not None and self.dynamic:
            return await self._merged_listing(request, path, *listing)
        if method in _SUBSCRIPTIONS and self.dynamic:
            await self._pass_subscription(request, path)
        else:
            target = self._target(request)
            if target is not None:
                return await self._delegate(target, request, path)
        if handler is None:
            raise MCPError(METHOD_NOT_FOUND, f"Method not found: {method}")
        if request.context is None:
            raise TypeError(f"{method}: a middleware passed on a request without its context")
        result = await handler(request.connection, request.params, request.context)
        if method == "logging/setLevel" and self.dynamic:
            await self._pass_level(request)
        return result

    def _target(self, request: RequestInfo) -> _Target | None:
        """Where a request for one item goes, if not to this server's own handler."""
        method, params = request.method, request.params
        catalog = self.server.catalog
        if method in ("tools/call", "prompts/get"):
            name = params.get("name")
            if not isinstance(name, str):
                return None
            kind = "tools" if method == "tools/call" else "prompts"
            if name in _registry(catalog, kind):
                return self._copied(kind, name, lambda child: {**params, "name": child})
            return self._by_name(name, lambda child: {**params, "name": child})
        if method == "resources/read":
            uri = params.get("uri")
            if not isinstance(uri, str):
                return None
            found = self._resolve_uri(uri)
            if found is not None:
                kind, key = found
                for mount in self.mounts.values():
                    child = mount.child_key(kind, key)
                    if child is not None:
                        child_uri = child if kind == "resources" else mount.unprefixed_uri(uri)
                        if child_uri is not None:
                            return _Target(mount, {**params, "uri": child_uri}, (child_uri, uri))
                return None
            return self._by_uri(uri, lambda child: {**params, "uri": child})
        if method == "completion/complete":
            ref = params.get("ref")
            if not isinstance(ref, dict):
                return None
            if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
                name = ref["name"]
                rename = lambda child: {**params, "ref": {**ref, "name": child}}  # noqa: E731
                if name in catalog.prompts:
                    return self._copied("prompts", name, rename)
                return self._by_name(name, rename)
            if ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
                uri = ref["uri"]
                rename = lambda child: {**params, "ref": {**ref, "uri": child}}  # noqa: E731
                for kind in ("templates", "resources"):
                    if uri in _registry(catalog, kind):
                        return self._copied(kind, uri, rename)
                return self._by_uri(uri, rename)
        return None

    def _copied(self, kind: str, key: str, rename: Callable[[str], Mapping[str, Any]]) -> _Target | None:
        for mount in self.mounts.values():
            child = mount.child_key(kind, key)
            if child is not None:
                return _Target(mount, rename(child))
        return None  # our own

    def _by_name(self, name: str, rename: Callable[[str], Mapping[str, Any]]) -> _Target | None:
        """A name nobody here has: the dynamic mount whose prefix it carries, else our upstream."""
        for mount in self.mounts.values():
            child = mount.unprefixed_name(name)
            if child is not None and mount.server.composition.dynamic:
                return _Target(mount, rename(child))
        return _Target(None, rename(name)) if self.upstream is not None else None

    def _by_uri(self, uri: str, rename: Callable[[str], Mapping[str, Any]]) -> _Target | None:
        for mount in self.mounts.values():
            child = mount.unprefixed_uri(uri)
            if child is not None and mount.server.composition.dynamic:
                return _Target(mount, rename(child), (child, uri))
        return _Target(None, rename(uri)) if self.upstream is not None else None

    def _resolve_uri(self, uri: str) -> tuple[str, str] | None:
        """Which entry of the catalog serves ``uri``, as ``resources/read`` decides: (kind, key)."""
        catalog = self.server.catalog
        if uri in catalog.resources:
            return "resources", uri
        for key, template in catalog.resource_templates.items():
            if template.uri_template.match(uri) is not None:
                return "templates", key
        return None

    async def _delegate(self, target: _Target, request: RequestInfo, path: tuple[Mount, ...]) -> dict[str, Any]:
        forwarded = request.replace(params=target.params)
        try:
            if target.mount is None:
                assert self.upstream is not None
                result = await self.upstream.forward(forwarded, path)
            else:
                child = target.mount.server
                view = MountedConnection(base_connection(request.connection), child)
                result = await child.composition.serve(
                    forwarded.replace(connection=view),
                    child.request_handlers.get(request.method),
                    (*path, target.mount),
                )
        except ResourceNotFound:
            if target.uri is None:
                raise
            raise ResourceNotFound(target.uri[1]) from None
        if target.uri is not None and target.uri[0] != target.uri[1]:
            result = _renamed_contents(result, *target.uri)
        return result

    # -- what a dynamic server does besides routing --------------------------------------------
    async def _merged_listing(
        self, request: RequestInfo, path: tuple[Mount, ...], key: str, kind: str, field: str
    ) -> dict[str, Any]:
        """A list of a dynamic server: its catalog's entries, then the upstream's, paged here."""
        catalog = self.server.catalog
        entries = [definition.definition for definition in _registry(catalog, kind).values()]
        own = {entry.get(field) for entry in entries}
        for entry in await self.dynamic_entries(request, path, key):
            if entry.get(field) not in own:
                entries.append(entry)
        return _listing(key, entries, request.params, catalog.page_size, request.method)

    async def dynamic_entries(self, request: RequestInfo, path: tuple[Mount, ...], key: str) -> list[dict[str, Any]]:
        """What the upstreams reachable from here list for ``request.method``, in this server's names."""
        entries: list[dict[str, Any]] = []
        if self.upstream is not None:
            entries.extend(await self.upstream.listing(request.method, key, request, path))
        for mount in self.mounts.values():
            child = mount.server.composition
            if child.dynamic:
                view = request.replace(connection=MountedConnection(base_connection(request.connection), mount.server))
                entries.extend(mount.rename_entry(key, entry) for entry in await child.dynamic_entries(view, (*path, mount), key))
        return entries

    async def _pass_subscription(self, request: RequestInfo, path: tuple[Mount, ...]) -> None:
        """A subscription to a remote URI is passed upstream (the session records it as well)."""
        uri = request.params.get("uri")
        if not isinstance(uri, str) or self._resolve_uri(uri) is not None:
            return
        for mount in self.mounts.values():
            child = mount.unprefixed_uri(uri)
            if child is not None and mount.server.composition.dynamic:
                view = MountedConnection(base_connection(request.connection), mount.server)
                await mount.server.composition._pass_subscription(
                    request.replace(params={**request.params, "uri": child}, connection=view), (*path, mount)
                )
                return
        if self.upstream is not None:
            await self.upstream.forward(request, path)

    async def _pass_level(self, request: RequestInfo) -> None:
        if self.upstream is not None:
            await self.upstream.set_level(request)
        for mount in self.mounts.values():
            if mount.server.composition.dynamic:
                await mount.server.composition._pass_level(request)


def _reaches(server: ComposedServer, target: ComposedServer) -> bool:
    """Whether ``target`` is mounted on ``server``, however deep."""
    return any(
        mount.server is target or _reaches(mount.server, target) for mount in server.composition.mounts.values()
    )


def _renamed_contents(result: Mapping[str, Any], old: str, new: str) -> dict[str, Any]:
    """A read result naming the URI as the client asked for it."""
    contents = result.get("contents")
    if not isinstance(contents, list):
        return dict(result)
    renamed = [
        {**entry, "uri": new} if isinstance(entry, dict) and entry.get("uri") == old else entry for entry in contents
    ]
    return {**result, "contents": renamed}
