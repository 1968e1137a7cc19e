"""Tools: a Python function plus the JSON schema and validator derived from its signature."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pydantic
import trio

from ._context import Context

__all__ = ["Tool", "to_call_result"]


def _is_context(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Context)


@dataclass(slots=True)
class Tool:
    """A registered tool.  Built by :meth:`MCPServer.tool`."""

    name: str
    fn: Callable[..., Any]
    description: str | None
    title: str | None
    annotations: dict[str, Any] | None
    arguments_model: type[pydantic.BaseModel]
    input_schema: dict[str, Any]
    context_parameter: str | None
    is_async: bool
    definition: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        definition: dict[str, Any] = {"name": self.name, "inputSchema": self.input_schema}
        if self.title is not None:
            definition["title"] = self.title
        if self.description:
            definition["description"] = self.description
        if self.annotations:
            definition["annotations"] = self.annotations
        self.definition = definition

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: dict[str, Any] | None = None,
    ) -> Tool:
        """Derive the tool from ``fn``'s signature.

        Every parameter becomes a property of the input schema, typed by its
        annotation (``Annotated[..., pydantic.Field(description=...)]`` works),
        required unless it has a default.  A parameter annotated with
        :class:`Context` is filled in by the server instead.
        """
        tool_name = name or fn.__name__
        hints = typing.get_type_hints(fn, include_extras=True)
        fields: dict[str, Any] = {}
        context_parameter: str | None = None
        for parameter in inspect.signature(fn).parameters.values():
            annotation = hints.get(parameter.name, Any)
            if _is_context(annotation):
                context_parameter = parameter.name
                continue
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise TypeError(f"tool {tool_name!r}: *args / **kwargs cannot be described by a schema")
            if parameter.kind is parameter.POSITIONAL_ONLY:
                raise TypeError(f"tool {tool_name!r}: positional-only parameters are not supported")
            default = ... if parameter.default is parameter.empty else parameter.default
            fields[parameter.name] = (annotation, default)
        model = pydantic.create_model(
            f"{tool_name}_arguments",
            __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False),
            **fields,
        )
        schema = model.model_json_schema()
        schema.pop("title", None)
        schema.setdefault("properties", {})
        return cls(
            name=tool_name,
            fn=fn,
            description=description if description is not None else inspect.getdoc(fn),
            title=title,
            annotations=annotations,
            arguments_model=model,
            input_schema=schema,
            context_parameter=context_parameter,
            is_async=inspect.iscoroutinefunction(fn),
        )

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validated keyword arguments; raises :class:`pydantic.ValidationError`."""
        validated = self.arguments_model.model_validate(arguments)
        return {key: getattr(validated, key) for key in type(validated).model_fields}

    async def call(self, kwargs: dict[str, Any], context: Context | None) -> Any:
        if self.context_parameter is not None:
            kwargs[self.context_parameter] = context
        if self.is_async:
            return await self.fn(**kwargs)
        # Blocking code must not stall every other request of the session.
        return await trio.to_thread.run_sync(functools.partial(self.fn, **kwargs))


def to_call_result(value: Any) -> dict[str, Any]:
    """Turn what a tool returned into a ``CallToolResult``.

    ``str`` becomes one text block; a dict or pydantic model is returned both as
    ``structuredContent`` and as its JSON text (for clients that read only
    ``content``); content-block dicts and models pass through.
    """
    if value is None:
        return {"content": []}
    if isinstance(value, str):
        return {"content": [{"type": "text", "text": value}]}
    if isinstance(value, pydantic.BaseModel):
        if _is_content_block(value):
            return {"content": [_dump(value)]}
        structured = value.model_dump(mode="json", by_alias=True)
        return {"content": [_json_text(structured)], "structuredContent": structured}
    if isinstance(value, dict):
        if _is_content_block(value):
            return {"content": [value]}
        return {"content": [_json_text(value)], "structuredContent": value}
    if isinstance(value, list | tuple) and value and all(_is_content_block(item) for item in value):
        return {"content": [_dump(item) for item in value]}
    return {"content": [_json_text(value)]}


_CONTENT_TYPES = frozenset({"text", "image", "audio", "resource", "resource_link"})


def _is_content_block(value: Any) -> bool:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return isinstance(kind, str) and kind in _CONTENT_TYPES


def _dump(value: Any) -> dict[str, Any]:
    if isinstance(value, pydantic.BaseModel):
        dumped: dict[str, Any] = value.model_dump(mode="json", by_alias=True, exclude_none=True)
        return dumped
    return dict(value)


def _json_text(value: Any) -> dict[str, Any]:
    return {"type": "text", "text": orjson.dumps(value, default=_fallback).decode("utf-8")}


def _fallback(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    return str(value)
