"""Content blocks: what tools return, prompts contain and sampling exchanges.

The constructors return plain dicts in wire form (camelCase keys, base64 for
binary data).  Plain dicts are what the server encodes anyway, so a tool that
returns one costs no model validation or dump on the hot path; the functions
exist so nobody has to remember the field names.

Content types by protocol revision: text, image and embedded resources exist
in every revision; audio since 2025-03-26; resource links since 2025-06-18.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Final

import orjson
import pydantic

__all__ = [
    "CONTENT_TYPES",
    "audio_content",
    "embedded_resource",
    "image_content",
    "is_content_block",
    "json_text",
    "resource_contents",
    "resource_link",
    "text_content",
    "to_content_block",
]

CONTENT_TYPES: Final = frozenset({"text", "image", "audio", "resource", "resource_link"})


def _b64(data: bytes | str) -> str:
    """Binary payloads travel base64-encoded; a ``str`` is taken as already encoded."""
    if isinstance(data, str):
        return data
    return base64.b64encode(data).decode("ascii")


def _extras(block: dict[str, Any], annotations: Mapping[str, Any] | None, meta: Mapping[str, Any] | None) -> dict[str, Any]:
    if annotations:
        block["annotations"] = dict(annotations)
    if meta:
        block["_meta"] = dict(meta)
    return block


def text_content(
    text: str, *, annotations: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A text block.  ``annotations`` as in the spec: ``audience``, ``priority``, ``lastModified``."""
    return _extras({"type": "text", "text": text}, annotations, meta)


def image_content(
    data: bytes | str,
    mime_type: str,
    *,
    annotations: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An image block; ``data`` is the raw bytes (or a base64 string)."""
    return _extras({"type": "image", "data": _b64(data), "mimeType": mime_type}, annotations, meta)


def audio_content(
    data: bytes | str,
    mime_type: str,
    *,
    annotations: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An audio block (protocol 2025-03-26 and later); ``data`` as for :func:`image_content`."""
    return _extras({"type": "audio", "data": _b64(data), "mimeType": mime_type}, annotations, meta)


def resource_contents(
    uri: str,
    *,
    text: str | None = None,
    blob: bytes | None = None,
    mime_type: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One entry of a ``resources/read`` result: text, or binary data sent as base64."""
    if (text is None) == (blob is None):
        raise ValueError("resource contents need exactly one of text= and blob=")
    contents: dict[str, Any] = {"uri": uri}
    if mime_type is not None:
        contents["mimeType"] = mime_type
    if text is not None:
        contents["text"] = text
    else:
        assert blob is not None
        contents["blob"] = _b64(blob)
    if meta:
        contents["_meta"] = dict(meta)
    return contents


def embedded_resource(
    uri: str,
    *,
    text: str | None = None,
    blob: bytes | None = None,
    mime_type: str | None = None,
    annotations: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A resource's contents carried inside a result (``type: resource``)."""
    resource = resource_contents(uri, text=text, blob=blob, mime_type=mime_type)
    return _extras({"type": "resource", "resource": resource}, annotations, meta)


def resource_link(
    uri: str,
    name: str,
    *,
    title: str | None = None,
    description: str | None = None,
    mime_type: str | None = None,
    size: int | None = None,
    annotations: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A pointer to a resource the client may read later (protocol 2025-06-18 and later)."""
    link: dict[str, Any] = {"type": "resource_link", "uri": uri, "name": name}
    if title is not None:
        link["title"] = title
    if description is not None:
        link["description"] = description
    if mime_type is not None:
        link["mimeType"] = mime_type
    if size is not None:
        link["size"] = size
    return _extras(link, annotations, meta)


def is_content_block(value: Any) -> bool:
    """A dict or model whose ``type`` names one of the content block kinds."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return isinstance(kind, str) and kind in CONTENT_TYPES


def to_content_block(value: Any) -> dict[str, Any]:
    """Wire form of one content block given as a dict, a pydantic model, or a string."""
    if isinstance(value, str):
        return {"type": "text", "text": value}
    if isinstance(value, dict):
        return value
    if isinstance(value, pydantic.BaseModel):
        dumped: dict[str, Any] = value.model_dump(mode="json", by_alias=True, exclude_none=True)
        return dumped
    raise TypeError(f"not a content block: {type(value).__name__}")


def _default(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    return str(value)


def json_text(value: Any) -> dict[str, Any]:
    """A text block holding ``value`` as JSON (for clients that only read ``content``)."""
    return {"type": "text", "text": orjson.dumps(value, default=_default).decode("utf-8")}
