"""Tools: a Python function plus the JSON schemas derived from its signature.

The input schema comes from the parameters.  The *output* schema comes from the
return annotation.  One that describes a JSON object (a pydantic model, a
``TypedDict``, a dataclass, a ``dict``) is the schema; such a tool answers with
``structuredContent`` (validated by clients against ``outputSchema``) and, as
the spec recommends for older clients, the same JSON as a text block.

Other data (``int``, ``float``, ``bool``, ``list[...]``, a union, an enum...)
cannot be the schema, which the spec requires to be an object, so it is
wrapped: ``outputSchema`` is an object with one required property,
``result``, and ``structuredContent`` is ``{"result": value}``, as the
official SDK does.  The content stays what it was without the wrapping, so
clients that read only ``content`` see no change.

No schema for ``str`` (the text block already is the value: wrapping would
send it twice, unless ``structured_output=True`` asks for it), for content
blocks and ``CallToolResult`` (what the model reads, not data), for ``bytes``
and ``Any`` (no JSON schema worth declaring), and for ``None`` or no
annotation at all: those keep the plain ``content`` result.

A :class:`Tool` is a frozen value.  To change one, build a new one
(``dataclasses.replace(tool, description=...)``) and hand it to
:meth:`MCPServer.replace`: its ``tools/list`` entry is built with it, so the
listing can never go stale, and live sessions are told the list changed.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import inspect
import types
import typing
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, Unpack

import mcp_types
import pydantic

from ._content import is_content_block, json_text, to_content_block
from ._functions import Signature, derive_name, list_entry

__all__ = ["Tool", "ToolOptions", "to_call_result"]


class ToolOptions(TypedDict, total=False):
    """What may be said about a tool besides its function (all optional)."""

    name: str | None
    """Listed name; default the function's ``__name__`` (required for a lambda)."""
    title: str | None
    description: str | None
    """Default: the function's docstring."""
    annotations: Mapping[str, Any] | pydantic.BaseModel | None
    """The spec's tool hints (``readOnlyHint``, ``destructiveHint``, ...), a dict or an
    ``mcp_types.ToolAnnotations``."""
    structured_output: bool | None
    """Force (``True``) or suppress (``False``) structured results; default: follow the
    return annotation."""
    meta: Mapping[str, Any] | None
    input_schema: Mapping[str, Any] | None
    """Advertise this JSON Schema as the tool's ``inputSchema`` instead of the one derived
    from the signature (for keywords a signature cannot express, e.g. ``$defs`` or
    ``if``/``then``).  Arguments are still validated against the signature, so the two
    must agree; it must describe an object (``"type": "object"``)."""
    inline: bool
    """Call a plain ``def`` on the event loop's thread instead of a worker thread (default
    ``False``).  Only for functions that never block (no I/O, no sleeping, no long
    computation): while one runs, every other request of the worker waits.  It saves the
    thread hand-off, about 200 us of server CPU per call.  ``TypeError`` for an ``async def``."""
    required_scopes: Collection[str] | None
    """OAuth scopes a caller's access token must grant to call the tool.  Over HTTP a call
    without them is answered ``403 insufficient_scope`` naming them, so the client can step up
    (``docs/security.md``); the call is also refused in the session whatever the transport, and
    when the request carries no access token at all."""
    task: bool | Literal["optional", "required"]
    """Run calls as tasks (the tasks extension, ``docs/tasks.md``): ``True`` (or ``"optional"``)
    for a client that declares the extension, and synchronously for one that does not;
    ``"required"``: only as a task (-32021 for a client without the extension)."""
    task_start: Literal["call", "explicit"]
    """When a call becomes a task: ``"call"`` (default) before the function runs;
    ``"explicit"`` when the function calls ``await ctx.start_task()``: until then it runs as a
    plain call (it may ask the client questions, or return at once)."""

_Serializer = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def _is_typeddict(annotation: Any) -> bool:
    # typing.is_typeddict does not know typing_extensions.TypedDict (which
    # pydantic requires before 3.12); both make dict subclasses with __total__.
    return isinstance(annotation, type) and issubclass(annotation, dict) and hasattr(annotation, "__total__")


_CONTENT_MODELS: tuple[type, ...] = (*typing.get_args(mcp_types.ContentBlock), mcp_types.CallToolResult)
_DATA_CLASSES: tuple[type, ...] = (
    str, int, float, bool, enum.Enum, datetime.date, datetime.time, uuid.UUID, pydantic.BaseModel,
)
_SEQUENCES: tuple[Any, ...] = (list, tuple, set, frozenset, Sequence, AbstractSet)
_MAPPINGS: tuple[Any, ...] = (dict, Mapping)


def _is_content(annotation: Any) -> bool:
    """Content blocks or a ``CallToolResult``, bare or inside a list, tuple, union or ``Annotated``."""
    origin = typing.get_origin(annotation)
    if origin is None:
        return isinstance(annotation, type) and issubclass(annotation, _CONTENT_MODELS)
    return any(_is_content(argument) for argument in typing.get_args(annotation))


def _is_data(annotation: Any) -> bool:
    """Whether values of ``annotation`` are plain JSON data that a schema can describe.

    Strict on purpose: ``Any``, ``object``, ``bytes`` or a dict of ``Any`` (in
    this project the wire form of a content block) anywhere inside, and the
    return value might be content or have no JSON form, so it is not wrapped.
    """
    if annotation is None or annotation is type(None):
        return True
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is None:
        if not isinstance(annotation, type) or issubclass(annotation, _CONTENT_MODELS):
            return False
        return (
            issubclass(annotation, _DATA_CLASSES)
            or _is_typeddict(annotation)
            or dataclasses.is_dataclass(annotation)
        )
    if origin is typing.Annotated:
        return _is_data(arguments[0])
    if origin is typing.Literal:
        return all(argument is None or isinstance(argument, str | int | bool) for argument in arguments)
    if origin is typing.Union or origin is types.UnionType or origin in _SEQUENCES:
        return bool(arguments) and all(argument is Ellipsis or _is_data(argument) for argument in arguments)
    if origin in _MAPPINGS:
        return len(arguments) == 2 and arguments[0] is str and _is_data(arguments[1])
    return False


def _is_text(annotation: Any) -> bool:
    """``str``, also ``Annotated`` or optional: its text block already is the whole value."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _is_text(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        arms = [arm for arm in typing.get_args(annotation) if arm is not type(None)]
        return len(arms) == 1 and _is_text(arms[0])
    return annotation is str


def _object_schema(annotation: Any) -> tuple[dict[str, Any], _Serializer] | None:
    """The schema of an annotation that describes a JSON object, which is the output schema as it is."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        model = annotation

        def dump_model(value: Any) -> Any:
            if isinstance(value, model):
                return value.model_dump(mode="json", by_alias=True)
            return value

        return model.model_json_schema(mode="serialization"), dump_model
    origin = typing.get_origin(annotation) or annotation
    if _is_typeddict(annotation) or (isinstance(annotation, type) and dataclasses.is_dataclass(annotation)):
        adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(annotation)

        def dump(value: Any) -> Any:
            return adapter.dump_python(value, mode="json", by_alias=True)

        return adapter.json_schema(mode="serialization"), dump
    if origin in (dict, Mapping, typing.Mapping):
        schema = pydantic.TypeAdapter(annotation).json_schema(mode="serialization")
        return schema, _identity
    return None


def _wrapped_schema(annotation: Any) -> tuple[dict[str, Any], _Serializer] | None:
    """An object schema with the one property ``result`` holding ``annotation``'s value.

    ``None`` if pydantic cannot describe the annotation.  Definitions of
    nested models move to the root, where their ``#/$defs/...`` references
    point.
    """
    try:
        adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(annotation)
        inner = adapter.json_schema(mode="serialization")
    except (pydantic.PydanticUserError, TypeError, ValueError):
        return None
    definitions = inner.pop("$defs", None)
    schema: dict[str, Any] = {"type": "object", "properties": {"result": inner}, "required": ["result"]}
    if definitions:
        schema["$defs"] = definitions
    if annotation in (str, int, float, bool):
        # Already JSON: the hot path skips the serializer.
        def wrap_plain(value: Any) -> Any:
            return {"result": value}

        return schema, wrap_plain

    def wrap(value: Any) -> Any:
        return {"result": adapter.dump_python(value, mode="json", by_alias=True)}

    return schema, wrap


def _output_schema(annotation: Any, *, insist: bool = False) -> tuple[dict[str, Any], _Serializer, bool] | None:
    """The output schema for a return annotation, how to turn a value into structured content,
    and whether that wraps the value as ``{"result": value}``.

    ``None`` when the annotation declares nothing, content, or no JSON data
    (see the module docstring); ``insist`` (``structured_output=True``) wraps
    anything but ``None`` that pydantic can describe, ``str`` included.
    """
    if annotation is inspect.Signature.empty or annotation is None or annotation is type(None):
        return None
    if _is_content(annotation) and not insist:
        return None
    described = _object_schema(annotation)
    if described is not None:
        return (*described, False)
    if not insist and (_is_text(annotation) or not _is_data(annotation)):
        return None
    wrapped = _wrapped_schema(annotation)
    return (*wrapped, True) if wrapped is not None else None


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool definition, frozen.  Built by :meth:`MCPServer.tool` / :meth:`MCPServer.add_tool`."""

    name: str
    signature: Signature
    description: str | None = None
    title: str | None = None
    annotations: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    input_schema: dict[str, Any] = field(default_factory=dict)
    output_schema: dict[str, Any] | None = None
    structured: _Serializer | None = None
    required_scopes: frozenset[str] = frozenset()
    task: Literal["optional", "required"] | None = None
    """Task support (``None``: never a task)."""
    task_start: Literal["call", "explicit"] = "call"
    wraps_result: bool = False
    """``structured`` wraps the value as ``{"result": value}`` (a return annotation that is not
    an object); the content is then what the tool would send without an output schema."""
    definition: dict[str, Any] = field(init=False, compare=False, repr=False)
    """The entry of ``tools/list``, built with the tool."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "definition", list_entry(
            {"name": self.name, "inputSchema": self.input_schema},
            {
                "title": self.title,
                "description": self.description,
                "outputSchema": self.output_schema,
                "annotations": self.annotations,
                "_meta": self.meta,
            },
        ))

    @property
    def fn(self) -> Callable[..., Any]:
        return self.signature.fn

    @classmethod
    def from_function(cls, fn: Callable[..., Any], **options: Unpack[ToolOptions]) -> Tool:
        """Derive the tool from ``fn``'s signature and docstring (options: :class:`ToolOptions`)."""
        tool_name = derive_name(fn, options.get("name"), "tool")
        description = options.get("description")
        annotations = options.get("annotations")
        structured_output = options.get("structured_output")
        meta = options.get("meta")
        signature = Signature.of(fn, what=f"tool {tool_name!r}", inline=bool(options.get("inline", False)))
        output = (
            None if structured_output is False
            else _output_schema(signature.return_annotation, insist=bool(structured_output))
        )
        if structured_output and output is None:
            raise TypeError(
                f"tool {tool_name!r}: structured output needs a return annotation that JSON Schema "
                "can describe (a pydantic model, TypedDict, dataclass, dict, or data such as int or "
                "list[str]), not None"
            )
        if isinstance(annotations, pydantic.BaseModel):
            annotations = annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
        declared_schema = options.get("input_schema")
        if declared_schema is not None and (
            not isinstance(declared_schema, Mapping) or declared_schema.get("type") != "object"
        ):
            raise TypeError(f'tool {tool_name!r}: input_schema must be a JSON Schema with "type": "object"')
        scopes = options.get("required_scopes") or ()
        if isinstance(scopes, str):
            raise TypeError(f"tool {tool_name!r}: required_scopes must be a collection of scope names, not one string")
        if any(not isinstance(scope, str) or not scope or " " in scope for scope in scopes):
            raise ValueError(f"tool {tool_name!r}: required_scopes must be non-empty scope names without spaces")
        task = options.get("task", False)
        if task not in (False, True, "optional", "required"):
            raise ValueError(f"tool {tool_name!r}: task must be True, False, 'optional' or 'required', not {task!r}")
        task_start = options.get("task_start", "call")
        if task_start not in ("call", "explicit"):
            raise ValueError(f"tool {tool_name!r}: task_start must be 'call' or 'explicit', not {task_start!r}")
        if task_start == "explicit" and not task:
            raise ValueError(f"tool {tool_name!r}: task_start='explicit' needs task=True or task='required'")
        return cls(
            name=tool_name,
            signature=signature,
            task="optional" if task is True else (task or None),
            task_start=task_start,
            description=description if description is not None else inspect.getdoc(fn),
            title=options.get("title"),
            annotations=dict(annotations) if annotations else None,
            meta=dict(meta) if meta else None,
            input_schema=dict(declared_schema) if declared_schema is not None else signature.json_schema(),
            output_schema=output[0] if output else None,
            structured=output[1] if output else None,
            required_scopes=frozenset(scopes),
            wraps_result=output[2] if output else False,
        )

    def to_result(self, value: Any) -> dict[str, Any]:
        """The ``CallToolResult`` for what the function returned."""
        if self.structured is None or isinstance(value, mcp_types.CallToolResult):
            return to_call_result(value)
        structured = self.structured(value)
        if self.wraps_result:
            return {"content": to_call_result(value)["content"], "structuredContent": structured}
        return {"content": [json_text(structured)], "structuredContent": structured}


def to_call_result(value: Any) -> dict[str, Any]:
    """Turn what a tool without an output schema returned into a ``CallToolResult``.

    ``str`` becomes one text block; a content block (dict or model) or a list
    of them passes through; ``None`` is an empty result; an
    ``mcp_types.CallToolResult`` is the result as it is (the way to set
    ``isError`` or ``_meta`` yourself); a dict or model that is not a content
    block is sent as structured content plus its JSON text; anything else is
    sent as JSON text.
    """
    if isinstance(value, str):
        return {"content": [{"type": "text", "text": value}]}
    if value is None:
        return {"content": []}
    if isinstance(value, mcp_types.CallToolResult):
        dumped: dict[str, Any] = value.model_dump(mode="json", by_alias=True, exclude_none=True)
        dumped.pop("resultType", None)  # a 2026-07-28 field; not part of the revisions served here
        return dumped
    if isinstance(value, dict | pydantic.BaseModel):
        if is_content_block(value):
            return {"content": [to_content_block(value)]}
        structured = value.model_dump(mode="json", by_alias=True) if isinstance(value, pydantic.BaseModel) else value
        return {"content": [json_text(structured)], "structuredContent": structured}
    if isinstance(value, list | tuple) and value and all(
        isinstance(item, str) or is_content_block(item) for item in value
    ):
        return {"content": [to_content_block(item) for item in value]}
    return {"content": [json_text(value)]}
