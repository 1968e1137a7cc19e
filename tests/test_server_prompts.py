"""Prompts (list, get with arguments) and argument completion."""

from __future__ import annotations

from typing import Annotated

import mcp_types
import pydantic
import pytest

from trio_mcp_sse.server import (
    Completion,
    CompletionRequest,
    Context,
    MCPServer,
    assistant_message,
    embedded_resource,
    user_message,
)
from trio_mcp_sse.testing import connected_client, serve_sessions

from .conformance import conforms

LANGUAGES = ["python", "pascal", "perl", "rust", "ruby"]


def make_server() -> MCPServer:
    server = MCPServer("prompts")

    @server.prompt(title="Review code")
    async def review(
        code: Annotated[str, pydantic.Field(description="the code to review")],
        language: str = "python",
    ) -> list[object]:
        """Ask for a code review."""
        return [
            f"Review this {language} code:",
            user_message(embedded_resource("file:///snippet", text=code, mime_type="text/plain")),
            assistant_message("Sure, let me look."),
        ]

    @server.prompt
    def simple() -> str:
        return "Say hello."

    @server.prompt(name="repeat")
    async def repeat_prompt(text: str, times: int, ctx: Context) -> object:
        return {"role": "user", "content": {"type": "text", "text": " ".join([text] * times) + f" ({ctx.method})"}}

    @server.prompt
    async def typed_message() -> mcp_types.PromptMessage:
        return mcp_types.PromptMessage(role="assistant", content=mcp_types.TextContent(type="text", text="model"))

    return server


def with_completion(server: MCPServer) -> MCPServer:
    @server.completion
    async def complete(request: CompletionRequest, ctx: Context) -> list[str] | Completion:
        if request.ref_type == "prompt" and request.ref == "review" and request.argument == "language":
            return [name for name in LANGUAGES if name.startswith(request.value)]
        if request.ref_type == "resource" and request.argument == "name":
            return Completion([f"{request.value}{i}" for i in range(150)])
        if request.argument == "echo-context":
            return [f"{key}={value}" for key, value in request.context.items()]
        return []

    return server


async def test_prompts_list() -> None:
    async with connected_client(make_server()) as client:
        result = await client.call("prompts/list")
        conforms("prompts/list", result)
        prompts = {p["name"]: p for p in result["prompts"]}
        assert prompts["review"] == {
            "name": "review",
            "title": "Review code",
            "description": "Ask for a code review.",
            "arguments": [
                {"name": "code", "required": True, "description": "the code to review"},
                {"name": "language", "required": False},
            ],
        }
        assert prompts["simple"]["arguments"] == []
        assert [a["name"] for a in prompts["repeat"]["arguments"]] == ["text", "times"]


async def test_prompts_get_fills_in_arguments() -> None:
    async with connected_client(make_server()) as client:
        result = await client.call("prompts/get", {"name": "review", "arguments": {"code": "x = 1", "language": "rust"}})
        conforms("prompts/get", result)
        assert result["description"] == "Ask for a code review."
        assert result["messages"] == [
            {"role": "user", "content": {"type": "text", "text": "Review this rust code:"}},
            {
                "role": "user",
                "content": {
                    "type": "resource",
                    "resource": {"uri": "file:///snippet", "mimeType": "text/plain", "text": "x = 1"},
                },
            },
            {"role": "assistant", "content": {"type": "text", "text": "Sure, let me look."}},
        ]
        result = await client.call("prompts/get", {"name": "simple"})
        assert result["messages"] == [{"role": "user", "content": {"type": "text", "text": "Say hello."}}]
        # Arguments arrive as strings and are converted to the parameter types.
        result = await client.call("prompts/get", {"name": "repeat", "arguments": {"text": "hi", "times": "3"}})
        assert result["messages"][0]["content"]["text"] == "hi hi hi (prompts/get)"
        result = await client.call("prompts/get", {"name": "typed_message"})
        conforms("prompts/get", result)
        assert result["messages"] == [{"role": "assistant", "content": {"type": "text", "text": "model"}}]


async def test_prompts_get_errors() -> None:
    async with connected_client(make_server()) as client:
        error = await client.call_error("prompts/get", {"name": "nope"})
        assert error == {"code": -32602, "message": "Unknown prompt: nope"}
        error = await client.call_error("prompts/get", {"name": "review", "arguments": {}})
        assert error["code"] == -32602
        assert "code" in error["message"]
        error = await client.call_error("prompts/get", {"name": "repeat", "arguments": {"text": "a", "times": "x"}})
        assert error["code"] == -32602
        assert "times" in error["message"]


async def test_prompt_returning_garbage_is_an_internal_error() -> None:
    server = MCPServer("bad-prompt")

    @server.prompt
    async def broken() -> object:
        return 42

    async with connected_client(server) as client:
        error = await client.call_error("prompts/get", {"name": "broken"})
        assert error["code"] == -32603


async def test_completion_for_prompt_arguments() -> None:
    async with connected_client(with_completion(make_server())) as client:
        result = await client.call(
            "completion/complete",
            {"ref": {"type": "ref/prompt", "name": "review"}, "argument": {"name": "language", "value": "p"}},
        )
        conforms("completion/complete", result)
        assert result == {"completion": {"values": ["python", "pascal", "perl"]}}


async def test_completion_for_resource_templates_is_capped_at_100() -> None:
    async with connected_client(with_completion(make_server())) as client:
        result = await client.call(
            "completion/complete",
            {"ref": {"type": "ref/resource", "uri": "notes://{name}"}, "argument": {"name": "name", "value": "n"}},
        )
        conforms("completion/complete", result)
        completion = result["completion"]
        assert len(completion["values"]) == 100
        assert completion["values"][0] == "n0"
        assert completion["total"] == 150
        assert completion["hasMore"] is True


async def test_completion_sees_the_other_arguments() -> None:
    async with connected_client(with_completion(make_server())) as client:
        result = await client.call(
            "completion/complete",
            {
                "ref": {"type": "ref/prompt", "name": "review"},
                "argument": {"name": "echo-context", "value": ""},
                "context": {"arguments": {"language": "rust"}},
            },
        )
        assert result["completion"]["values"] == ["language=rust"]


async def test_completion_capability_and_errors() -> None:
    async with serve_sessions(make_server()) as host:
        client = await host.connect()
        assert "completions" not in (await client.initialize())["capabilities"]
        error = await client.call_error(
            "completion/complete",
            {"ref": {"type": "ref/prompt", "name": "review"}, "argument": {"name": "language", "value": ""}},
        )
        assert error["code"] == -32601
    async with serve_sessions(with_completion(make_server())) as host:
        client = await host.connect()
        assert (await client.initialize())["capabilities"]["completions"] == {}
        for params in (
            {"ref": {"type": "ref/other"}, "argument": {"name": "a", "value": ""}},
            {"ref": {"type": "ref/prompt"}, "argument": {"name": "a", "value": ""}},
            {"ref": {"type": "ref/prompt", "name": "review"}, "argument": {"name": "a"}},
        ):
            assert (await client.call_error("completion/complete", params))["code"] == -32602


async def test_sync_completion_handler() -> None:
    server = make_server()

    @server.completion
    def complete(request: CompletionRequest) -> list[str]:
        return [request.value.upper()]

    async with connected_client(server) as client:
        result = await client.call(
            "completion/complete",
            {"ref": {"type": "ref/prompt", "name": "simple"}, "argument": {"name": "x", "value": "abc"}},
        )
        assert result["completion"]["values"] == ["ABC"]


def test_completion_handler_signature_is_checked() -> None:
    server = MCPServer("x")
    with pytest.raises(TypeError, match="CompletionRequest"):
        server.completion(lambda: [])


async def test_prompts_list_changed() -> None:
    server = make_server()
    async with connected_client(server) as client:
        server.remove_prompt("simple")
        await client.notification("notifications/prompts/list_changed")
        server.add_prompt(lambda: "hi", name="greeting")
        await client.notification("notifications/prompts/list_changed")
        names = [p["name"] for p in (await client.call("prompts/list"))["prompts"]]
        assert "simple" not in names
        assert "greeting" in names
