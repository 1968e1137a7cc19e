"""What tools, resource templates and prompts share: a Python function described by its signature.

A :class:`Signature` is built once, at registration, so a call costs one
pydantic validation and one function call: the arguments model, the name of the
parameter that wants the :class:`Context`, and whether the function is a
coroutine function are all decided up front.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic
import trio

from ._context import Context

__all__ = ["Signature", "derive_name", "describe_validation_error", "is_context", "list_entry"]


def derive_name(fn: Callable[..., Any], name: str | None, what: str) -> str:
    """The name a tool or prompt is listed under: ``name``, else the function's own.

    One rule for both: any callable is accepted, a lambda included, but a
    lambda (``<lambda>``) or an object without ``__name__`` has no name worth
    listing, so then ``name=`` is required.
    """
    if name:
        return name
    derived = getattr(fn, "__name__", None)
    if not isinstance(derived, str) or not derived or derived == "<lambda>":
        raise TypeError(f"cannot tell the name of {what} {fn!r}: pass name=")
    return derived


def list_entry(entry: dict[str, Any], optional: Mapping[str, Any]) -> dict[str, Any]:
    """A ``*/list`` entry (tool, prompt, resource): ``entry`` plus the optional
    fields that carry a value.  ``None``, empty strings and empty mappings are left
    out rather than sent as noise; mappings are copied, so later edits by the
    caller do not leak into the entry built once per definition."""
    for key, value in optional.items():
        if value is None or value == "" or (isinstance(value, Mapping) and not value):
            continue
        entry[key] = dict(value) if isinstance(value, Mapping) else value
    return entry


def is_context(annotation: Any) -> bool:
    """``Context``, a subclass, or a parametrised one (``Context[Pool]``)."""
    annotation = typing.get_origin(annotation) or annotation
    return isinstance(annotation, type) and issubclass(annotation, Context)


def _underlying(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Where the hints live: a partial's function, a callable object's ``__call__``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if not (inspect.isfunction(fn) or inspect.ismethod(fn)) and not isinstance(fn, type):
        call = getattr(fn, "__call__", None)  # noqa: B004 - the method itself is needed
        if call is not None:
            return call  # type: ignore[no-any-return]
    return fn


@dataclass(frozen=True, slots=True)
class Signature:
    """The calling convention of one registered function."""

    fn: Callable[..., Any]
    arguments_model: type[pydantic.BaseModel]
    context_parameter: str | None
    is_async: bool
    return_annotation: Any
    inline: bool = False
    """A plain ``def`` called on the event loop's thread (declared non-blocking), not a worker's."""

    @classmethod
    def of(cls, fn: Callable[..., Any], *, what: str, inline: bool = False) -> Signature:
        """Analyse ``fn``; ``what`` names it in errors (e.g. ``"tool 'add'"``).

        Every parameter becomes a field of the arguments model, typed by its
        annotation (``Annotated[..., pydantic.Field(description=...)]`` works),
        required unless it has a default.  A parameter annotated with
        :class:`Context` is filled in by the server instead.  ``inline``: see
        :meth:`call`; only a plain ``def`` can be inline.
        """
        if not callable(fn):
            raise TypeError(f"{what}: {fn!r} is not callable")
        target = _underlying(fn)
        try:
            hints = typing.get_type_hints(target, include_extras=True)
        except (NameError, TypeError) as unresolved:
            # The schema is built from the hints, so one that cannot be
            # resolved (e.g. a name imported only under TYPE_CHECKING) is a
            # registration error, named here rather than at the first call.
            raise TypeError(f"{what}: cannot resolve the type hints: {unresolved}") from None
        fields: dict[str, Any] = {}
        context_parameter: str | None = None
        parameters = inspect.signature(fn).parameters.values()
        for parameter in parameters:
            annotation = hints.get(parameter.name, Any)
            if is_context(annotation):
                context_parameter = parameter.name
                continue
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise TypeError(f"{what}: *args / **kwargs cannot be described by a schema")
            if parameter.kind is parameter.POSITIONAL_ONLY:
                raise TypeError(f"{what}: positional-only parameters are not supported")
            if parameter.name.startswith("_"):
                raise TypeError(f"{what}: parameter names may not start with '_' ({parameter.name})")
            default = ... if parameter.default is parameter.empty else parameter.default
            fields[parameter.name] = (annotation, default)
        model = pydantic.create_model(
            "arguments",
            __config__=pydantic.ConfigDict(extra="forbid"),
            **fields,
        )
        is_async = inspect.iscoroutinefunction(target)
        if inline and is_async:
            raise TypeError(f"{what}: inline=True is for a plain def; an async def always runs on the event loop")
        return cls(
            fn=fn,
            arguments_model=model,
            context_parameter=context_parameter,
            is_async=is_async,
            return_annotation=hints.get("return", inspect.Signature.empty),
            inline=inline,
        )

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(self.arguments_model.model_fields)

    def json_schema(self) -> dict[str, Any]:
        schema = self.arguments_model.model_json_schema()
        schema.pop("title", None)
        schema.setdefault("properties", {})
        return schema

    def validate(self, arguments: Any) -> dict[str, Any]:
        """Validated keyword arguments; raises :class:`pydantic.ValidationError`."""
        validated = self.arguments_model.model_validate(arguments)
        # Fields are exactly the parameters (extra="forbid"), so the instance
        # dict is the keyword arguments; cheaper than a getattr per field.
        return dict(validated.__dict__)

    async def call(self, kwargs: dict[str, Any], context: Context | None) -> Any:
        """Run the function: an ``async def`` in the calling task, a plain ``def`` on a
        worker thread, unless it was declared ``inline``.

        The thread is the safe default (blocking code must not stall every other
        request of the worker), and it costs a hand-off each way, about 200 us of
        server CPU per call end to end (docs/performance.md).  A function that only computes a
        little from its arguments can declare that it never blocks (``inline``)
        and is then called right here, like the body of an ``async def``.
        """
        if self.context_parameter is not None:
            kwargs[self.context_parameter] = context
        if self.is_async:
            return await self.fn(**kwargs)
        if self.inline:
            return self.fn(**kwargs)
        return await trio.to_thread.run_sync(functools.partial(self.fn, **kwargs))


def describe_validation_error(error: pydantic.ValidationError) -> str:
    """One line naming every invalid argument, without echoing the input."""
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'arguments'}: {item['msg']}"
        for item in error.errors(include_url=False, include_input=False)
    )
