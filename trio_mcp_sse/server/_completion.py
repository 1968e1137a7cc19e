"""Argument completion (``completion/complete``): suggestions while the user types.

One handler serves the whole server (register it with
:meth:`MCPServer.completion`).  It receives a :class:`CompletionRequest` naming
what is being completed -- an argument of a prompt, or a variable of a
resource template -- and returns the suggestions as a list of strings or a
:class:`Completion`.  The spec caps a response at 100 values: longer lists are
cut, and ``hasMore`` tells the client there were more.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

import trio

from ._context import Context
from ._functions import is_context

__all__ = [
    "MAX_COMPLETION_VALUES",
    "Completion",
    "CompletionHandler",
    "CompletionRequest",
    "completion_handler",
    "to_complete_result",
]

MAX_COMPLETION_VALUES: Final = 100


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """What the client wants completed."""

    ref_type: Literal["prompt", "resource"]
    """``"prompt"`` (``ref/prompt``) or ``"resource"`` (``ref/resource``, a resource template)."""
    ref: str
    """The prompt's name, or the resource template's URI template."""
    argument: str
    """The argument (or template variable) being completed."""
    value: str
    """What the user typed so far."""
    context: Mapping[str, str] = field(default_factory=dict)
    """Values of the other arguments already chosen (protocol 2025-06-18 and later)."""


@dataclass(frozen=True, slots=True)
class Completion:
    """Suggestions with the optional ``total`` and ``hasMore`` hints."""

    values: Sequence[str]
    total: int | None = None
    has_more: bool | None = None


def to_complete_result(value: Completion | Sequence[str] | None) -> dict[str, Any]:
    if value is None:
        value = Completion(())
    elif not isinstance(value, Completion):
        if isinstance(value, str):
            raise TypeError("a completion handler must return a list of strings, not one string")
        value = Completion(value)
    values = list(value.values)
    completion: dict[str, Any] = {"values": values[:MAX_COMPLETION_VALUES]}
    total = value.total
    has_more = value.has_more
    if len(values) > MAX_COMPLETION_VALUES:
        has_more = True
        total = total if total is not None else len(values)
    if total is not None:
        completion["total"] = total
    if has_more is not None:
        completion["hasMore"] = has_more
    return {"completion": completion}


CompletionHandler: TypeAlias = Callable[
    [CompletionRequest, Context], Awaitable["Completion | Sequence[str] | None"]
]


def completion_handler(fn: Callable[..., Any]) -> CompletionHandler:
    """Wrap ``fn(request: CompletionRequest[, ctx: Context])`` (sync or async) as the server calls it."""
    parameters = list(inspect.signature(fn).parameters.values())
    hints = _resolved_hints(fn)
    context_names = [p.name for p in parameters if is_context(hints.get(p.name))]
    others = [p for p in parameters if p.name not in context_names]
    if len(others) != 1:
        raise TypeError("a completion handler takes one CompletionRequest (and optionally a Context)")
    context_name = context_names[0] if context_names else None
    is_async = inspect.iscoroutinefunction(fn)

    async def handler(request: CompletionRequest, context: Context) -> Completion | Sequence[str] | None:
        kwargs: dict[str, Any] = {}
        if context_name is not None:
            kwargs[context_name] = context
        if is_async:
            return await fn(request, **kwargs)  # type: ignore[no-any-return]
        return await trio.to_thread.run_sync(functools.partial(fn, request, **kwargs))

    return handler


def _resolved_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except (NameError, TypeError):
        return dict(getattr(fn, "__annotations__", {}))
