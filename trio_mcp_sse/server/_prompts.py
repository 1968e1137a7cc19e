"""Prompts: message templates the user picks, filled in by a function.

The function's parameters are the prompt's arguments.  Clients send argument
values as strings; they are validated and converted to the parameters' types
(``"3"`` becomes ``3`` for an ``int``), so a bad value gets a clear -32602.

What a prompt function may return:

* ``str`` -> one user message with that text;
* a message (:func:`user_message`, :func:`assistant_message`, a dict with
  ``role`` and ``content``, or an ``mcp_types.PromptMessage``);
* a list of strings and messages (strings are user messages).

A :class:`Prompt` is a frozen value: change one by replacing it
(``dataclasses.replace`` + :meth:`MCPServer.replace`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, Unpack

import pydantic

from ._content import to_content_block
from ._functions import Signature, derive_name, list_entry

__all__ = ["Prompt", "PromptOptions", "assistant_message", "to_prompt_messages", "user_message"]


class PromptOptions(TypedDict, total=False):
    """What may be said about a prompt besides its function (all optional)."""

    name: str | None
    """Listed name; default the function's ``__name__`` (required for a lambda)."""
    title: str | None
    description: str | None
    """Default: the function's docstring."""
    meta: Mapping[str, Any] | None

Role = Literal["user", "assistant"]


def _message(role: Role, content: str | Mapping[str, Any] | pydantic.BaseModel) -> dict[str, Any]:
    return {"role": role, "content": to_content_block(content if not isinstance(content, Mapping) else dict(content))}


def user_message(content: str | Mapping[str, Any] | pydantic.BaseModel) -> dict[str, Any]:
    """A prompt message from the user; ``content`` is text or one content block."""
    return _message("user", content)


def assistant_message(content: str | Mapping[str, Any] | pydantic.BaseModel) -> dict[str, Any]:
    """A prompt message from the assistant; ``content`` is text or one content block."""
    return _message("assistant", content)


def _one_message(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"role": "user", "content": {"type": "text", "text": value}}
    if isinstance(value, dict) and "role" in value and "content" in value:
        return value
    if isinstance(value, pydantic.BaseModel):
        dumped: dict[str, Any] = value.model_dump(mode="json", by_alias=True, exclude_none=True)
        if "role" in dumped and "content" in dumped:
            return dumped
    raise TypeError(
        f"a prompt must return text, a message or a list of them, not {type(value).__name__}"
    )


def to_prompt_messages(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list | tuple):
        return [_one_message(item) for item in value]
    return [_one_message(value)]


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt definition, frozen.  Built by :meth:`MCPServer.prompt` / :meth:`MCPServer.add_prompt`."""

    name: str
    signature: Signature
    title: str | None = None
    description: str | None = None
    meta: dict[str, Any] | None = None
    definition: dict[str, Any] = field(init=False, compare=False, repr=False)
    """The entry of ``prompts/list``, built with the prompt."""

    def __post_init__(self) -> None:
        arguments: list[dict[str, Any]] = []
        for name, info in self.signature.arguments_model.model_fields.items():
            argument: dict[str, Any] = {"name": name, "required": info.is_required()}
            if info.description:
                argument["description"] = info.description
            arguments.append(argument)
        entry = list_entry(
            {"name": self.name, "arguments": arguments},
            {"title": self.title, "description": self.description, "_meta": self.meta},
        )
        object.__setattr__(self, "definition", entry)

    @property
    def fn(self) -> Callable[..., Any]:
        return self.signature.fn

    @classmethod
    def from_function(cls, fn: Callable[..., Any], **options: Unpack[PromptOptions]) -> Prompt:
        """Derive the prompt from ``fn``'s signature and docstring (options: :class:`PromptOptions`)."""
        prompt_name = derive_name(fn, options.get("name"), "prompt")
        description = options.get("description")
        meta = options.get("meta")
        return cls(
            name=prompt_name,
            signature=Signature.of(fn, what=f"prompt {prompt_name!r}"),
            title=options.get("title"),
            description=description if description is not None else inspect.getdoc(fn),
            meta=dict(meta) if meta else None,
        )
