"""Resources: fixed URIs and URI templates, read by calling a function.

A *resource* has one URI and is listed by ``resources/list``.  A *resource
template* (``resources/templates/list``) has a URI template such as
``notes://{name}``; reading a URI that matches it calls its function with the
template's variables as keyword arguments (validated and converted to the
parameters' types, like a tool's arguments).

Templates support the two RFC 6570 forms that describe a path: ``{var}``
(one segment: no ``/``, ``?`` or ``#``, percent-decoded) and ``{+var}``
(reserved expansion: anything, slashes included).  Other operators are
refused at registration rather than matched wrongly.

What a read function may return:

* ``str`` -> one text entry (``mimeType`` as registered, else ``text/plain``);
* ``bytes`` -> one binary entry sent as base64 (else ``application/octet-stream``);
* a list of entries built with :func:`resource_contents` -> sent as they are;
* anything else JSON-serialisable (dict, list, pydantic model) -> JSON text,
  ``application/json``.

:class:`Resource` and :class:`ResourceTemplate` are frozen values: change one
by replacing it (``dataclasses.replace`` + :meth:`MCPServer.replace`).
"""

from __future__ import annotations

import base64
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypedDict, Unpack
from urllib.parse import unquote

import orjson
import pydantic

from ._functions import Signature, list_entry
from ._protocol import CachePolicy

__all__ = ["Resource", "ResourceOptions", "ResourceTemplate", "UriTemplate", "build_resource", "to_read_result"]


class ResourceOptions(TypedDict, total=False):
    """What may be said about a resource or template besides its URI and function (all optional)."""

    name: str | None
    """Listed name; default the function's ``__name__``, else the URI."""
    title: str | None
    description: str | None
    """Default: the function's docstring."""
    mime_type: str | None
    size: int | None
    """Size in bytes, if known (fixed contents: their length)."""
    annotations: Mapping[str, Any] | pydantic.BaseModel | None
    """The spec's ``audience``, ``priority``, ``lastModified``."""
    meta: Mapping[str, Any] | None
    cache: CachePolicy | None
    """Caching hints of its reads for 2026-07-28 clients (default: the server's)."""

_EXPRESSION: Final = re.compile(r"\{([^{}]*)\}")
_NAME: Final = re.compile(r"[A-Za-z0-9_]+\Z")


class UriTemplate:
    """A URI template reduced to a regular expression over the two supported forms."""

    __slots__ = ("pattern", "template", "variables")

    def __init__(self, template: str) -> None:
        self.template = template
        parts: list[str] = []
        variables: list[str] = []
        position = 0
        for match in _EXPRESSION.finditer(template):
            parts.append(re.escape(template[position : match.start()]))
            expression = match.group(1)
            reserved = expression.startswith("+")
            name = expression[1:] if reserved else expression
            if not _NAME.match(name):
                raise ValueError(
                    f"URI template {template!r}: unsupported expression {{{expression}}} "
                    "(only {name} and {+name} are supported)"
                )
            if name in variables:
                raise ValueError(f"URI template {template!r}: variable {name!r} appears twice")
            variables.append(name)
            parts.append(f"(?P<{name}>.+?)" if reserved else f"(?P<{name}>[^/?#]+)")
            position = match.end()
        if "{" in template[position:] or "}" in template[position:]:
            raise ValueError(f"URI template {template!r}: unbalanced braces")
        parts.append(re.escape(template[position:]))
        self.pattern = re.compile("".join(parts) + r"\Z")
        self.variables = tuple(variables)

    @staticmethod
    def is_template(uri: str) -> bool:
        return _EXPRESSION.search(uri) is not None

    def match(self, uri: str) -> dict[str, str] | None:
        """The variables of ``uri``, percent-decoded, or ``None`` if it does not match."""
        found = self.pattern.match(uri)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}


@dataclass(frozen=True, slots=True)
class Resource:
    """A resource with a fixed URI (frozen).  Built by :meth:`MCPServer.resource` / ``add_resource``."""

    uri: str
    name: str
    signature: Signature
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None
    size: int | None = None
    annotations: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    cache: CachePolicy | None = None
    definition: dict[str, Any] = field(init=False, compare=False, repr=False)
    """The entry of ``resources/list``, built with the resource."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "definition", list_entry(
            {"uri": self.uri, "name": self.name},
            {
                "title": self.title,
                "description": self.description,
                "mimeType": self.mime_type,
                "size": self.size,
                "annotations": self.annotations,
                "_meta": self.meta,
            },
        ))

    @property
    def fn(self) -> Callable[..., Any]:
        return self.signature.fn


@dataclass(frozen=True, slots=True)
class ResourceTemplate:
    """A family of resources whose URIs match a template (frozen)."""

    uri_template: UriTemplate
    name: str
    signature: Signature
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None
    annotations: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    cache: CachePolicy | None = None
    definition: dict[str, Any] = field(init=False, compare=False, repr=False)
    """The entry of ``resources/templates/list``, built with the template."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "definition", list_entry(
            {"uriTemplate": self.uri_template.template, "name": self.name},
            {
                "title": self.title,
                "description": self.description,
                "mimeType": self.mime_type,
                "annotations": self.annotations,
                "_meta": self.meta,
            },
        ))

    @property
    def fn(self) -> Callable[..., Any]:
        return self.signature.fn


def build_resource(
    uri: str, fn: Callable[..., Any] | str | bytes, **options: Unpack[ResourceOptions]
) -> Resource | ResourceTemplate:
    """A :class:`Resource` for a plain URI, a :class:`ResourceTemplate` for a template.

    The function's parameters (other than a :class:`Context`) must be exactly
    the template's variables: a mismatch would only show up as a failed read.
    ``fn`` may also be fixed ``str`` / ``bytes`` contents.
    """
    if not isinstance(uri, str):
        raise TypeError(
            f"a resource's URI must be a string, not {type(uri).__name__}: the URI comes first, "
            'add_resource("notes://{name}", fn)'
        )
    name = options.get("name")
    title = options.get("title")
    description = options.get("description")
    mime_type = options.get("mime_type")
    size = options.get("size")
    annotations = options.get("annotations")
    meta = options.get("meta")
    cache = options.get("cache")
    if isinstance(fn, str | bytes):
        if size is None:
            size = len(fn if isinstance(fn, bytes) else fn.encode("utf-8"))
        fn = _constant(fn)
        name = name or uri
    if isinstance(annotations, pydantic.BaseModel):
        annotations = annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
    resource_name = name or getattr(fn, "__name__", None) or uri
    if resource_name == "<lambda>":
        resource_name = uri
    doc = description if description is not None else inspect.getdoc(fn)
    signature = Signature.of(fn, what=f"resource {uri!r}")
    parameters = set(signature.parameter_names)
    if not UriTemplate.is_template(uri):
        if parameters:
            raise TypeError(
                f"resource {uri!r}: the function takes {sorted(parameters)} but the URI has no "
                "template variables to fill them"
            )
        return Resource(
            uri=uri, name=resource_name, signature=signature, title=title, description=doc,
            mime_type=mime_type, size=size, annotations=dict(annotations) if annotations else None,
            meta=dict(meta) if meta else None, cache=cache,
        )
    template = UriTemplate(uri)
    if set(template.variables) != parameters:
        raise TypeError(
            f"resource template {uri!r}: variables {sorted(template.variables)} do not match the "
            f"function's parameters {sorted(parameters)}"
        )
    return ResourceTemplate(
        uri_template=template, name=resource_name, signature=signature, title=title,
        description=doc, mime_type=mime_type, annotations=dict(annotations) if annotations else None,
        meta=dict(meta) if meta else None, cache=cache,
    )


def _constant(value: str | bytes) -> Callable[[], Awaitable[str | bytes]]:
    async def read() -> str | bytes:
        return value

    return read


def _is_contents_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and "uri" in item and ("text" in item or "blob" in item) for item in value)
    )


def to_read_result(uri: str, mime_type: str | None, value: Any) -> dict[str, Any]:
    """The ``ReadResourceResult`` for what a read function returned (see the module docstring)."""
    entry: dict[str, Any]
    if isinstance(value, str):
        entry = {"uri": uri, "mimeType": mime_type or "text/plain", "text": value}
    elif isinstance(value, bytes | bytearray | memoryview):
        entry = {
            "uri": uri,
            "mimeType": mime_type or "application/octet-stream",
            "blob": base64.b64encode(value).decode("ascii"),
        }
    elif _is_contents_list(value):
        return {"contents": value}
    else:
        if isinstance(value, pydantic.BaseModel):
            value = value.model_dump(mode="json", by_alias=True)
        entry = {
            "uri": uri,
            "mimeType": mime_type or "application/json",
            "text": orjson.dumps(value).decode("utf-8"),
        }
    return {"contents": [entry]}
