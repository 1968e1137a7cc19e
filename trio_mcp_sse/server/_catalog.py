"""The catalog: what a server offers (tools, resources, prompts, completion) and who hears of changes.

One catalog serves every session of a server.  Its registries are read-only
views to everyone else; only the catalog's own methods change them, and each
change is announced to whoever subscribed (each live connection registers one
listener for its lifetime).  A listener gets the encoded notification and,
for ``notifications/resources/updated``, the URI it concerns; it decides for
itself whether its client wants it (initialized? subscribed?).

Definitions are frozen, so the listings can never go stale: a change is a new
definition put in the old one's place with :meth:`Catalog.replace`.

Changes may come from any Trio task, or from a worker thread started by Trio
(announcements then hop to the Trio thread, where the sessions' channels
live).  Listeners are synchronous and never block.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final, TypeAlias, cast

import orjson
import trio

from .._rpc import encode_notification
from ._completion import CompletionHandler
from ._prompts import Prompt
from ._resources import Resource, ResourceTemplate
from ._tools import Tool

__all__ = ["Announcement", "Catalog", "Definition"]

Definition: TypeAlias = Tool | Prompt | Resource | ResourceTemplate
Announcement: TypeAlias = Callable[[bytes, "str | None"], None]
"""``listener(notification, uri)``: ``uri`` is set for ``resources/updated`` only."""

_TOOLS_CHANGED: Final = encode_notification("notifications/tools/list_changed")
_RESOURCES_CHANGED: Final = encode_notification("notifications/resources/list_changed")
_PROMPTS_CHANGED: Final = encode_notification("notifications/prompts/list_changed")


class Catalog:
    """The registries of one server and their change announcements."""

    def __init__(self, *, page_size: int | None = None) -> None:
        if page_size is not None and page_size < 1:
            raise ValueError("page_size must be >= 1 or None")
        self.page_size = page_size
        """Page length of the ``*/list`` results (``None``: one page)."""
        self._tools: dict[str, Tool] = {}
        self._prompts: dict[str, Prompt] = {}
        self._resources: dict[str, Resource] = {}
        self._templates: dict[str, ResourceTemplate] = {}
        self.tools: Mapping[str, Tool] = MappingProxyType(self._tools)
        self.prompts: Mapping[str, Prompt] = MappingProxyType(self._prompts)
        self.resources: Mapping[str, Resource] = MappingProxyType(self._resources)
        self.resource_templates: Mapping[str, ResourceTemplate] = MappingProxyType(self._templates)
        """Read-only views, by name (tools, prompts) or by URI (template)."""
        self.completion_handler: CompletionHandler | None = None
        self._listeners: dict[object, Announcement] = {}

    # -- listeners -------------------------------------------------------------------------------
    def subscribe(self, listener: Announcement) -> Callable[[], None]:
        """Hear of every change from now on; call the returned function to stop."""
        key = object()
        self._listeners[key] = listener

        def unsubscribe() -> None:
            self._listeners.pop(key, None)

        return unsubscribe

    def _announce(self, data: bytes, uri: str | None = None) -> None:
        if not self._listeners:
            return
        if not trio.lowlevel.in_trio_run():
            # Called from a worker thread: sessions' channels belong to the Trio thread.
            hopped = False

            def on_the_trio_thread() -> None:
                nonlocal hopped
                hopped = True
                self._announce(data, uri)

            try:
                trio.from_thread.run_sync(on_the_trio_thread)
            except RuntimeError:
                if hopped:
                    raise
                # No Trio at all (registrations at import time): no session is listening,
                # only in-process listeners such as a server this one is mounted on.
                for listener in tuple(self._listeners.values()):
                    listener(data, uri)
            return
        for listener in tuple(self._listeners.values()):
            listener(data, uri)

    # -- changes ---------------------------------------------------------------------------------
    def add(self, definition: Definition) -> None:
        """Register a new definition; ``ValueError`` if its name (or URI) is taken."""
        registry, key, what, announcement = self._slot(definition)
        if key in registry:
            raise ValueError(f"a {what} {key!r} is already registered")
        registry[key] = definition
        self._announce(announcement)

    def replace(self, definition: Definition) -> None:
        """Put ``definition`` in the place of the registered one of the same name (or URI).

        ``KeyError`` if there is none.  Listings show it at once and live
        sessions are told the list changed.
        """
        registry, key, _, announcement = self._slot(definition)
        if key not in registry:
            raise KeyError(key)
        registry[key] = definition
        self._announce(announcement)

    def remove_tool(self, name: str) -> None:
        del self._tools[name]
        self._announce(_TOOLS_CHANGED)

    def remove_prompt(self, name: str) -> None:
        del self._prompts[name]
        self._announce(_PROMPTS_CHANGED)

    def remove_resource(self, uri: str) -> None:
        """Unregister a resource or resource template (by its URI or URI template)."""
        if uri in self._resources:
            del self._resources[uri]
        elif uri in self._templates:
            del self._templates[uri]
        else:
            raise KeyError(uri)
        self._announce(_RESOURCES_CHANGED)

    def resource_updated(self, uri: str) -> None:
        """Tell subscribers of ``uri`` that it changed (``notifications/resources/updated``)."""
        data = orjson.dumps({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}})
        self._announce(data, uri)

    def _slot(self, definition: Definition) -> tuple[dict[str, Definition], str, str, bytes]:
        """The registry a definition belongs in, its key there, its kind, and the change notice."""
        # Each registry holds one kind; typed as the common union only for this lookup.
        if isinstance(definition, Tool):
            return cast("dict[str, Definition]", self._tools), definition.name, "tool named", _TOOLS_CHANGED
        if isinstance(definition, Prompt):
            return cast("dict[str, Definition]", self._prompts), definition.name, "prompt named", _PROMPTS_CHANGED
        if isinstance(definition, Resource):
            return cast("dict[str, Definition]", self._resources), definition.uri, "resource", _RESOURCES_CHANGED
        if isinstance(definition, ResourceTemplate):
            template = definition.uri_template.template
            return cast("dict[str, Definition]", self._templates), template, "resource template", _RESOURCES_CHANGED
        raise TypeError(f"not a tool, prompt, resource or resource template: {definition!r}")
