"""The conformance fixture server gives the exact answers the suite's scenarios document.

Several of the suite's checks pass on any text (``tools-call-simple-text``
only wants *a* text block), so these tests pin the exact texts and payloads,
driven over HTTP+SSE in memory: GET /sse, POST each message to the endpoint,
read the answers off the event stream.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio

from examples import everything_server
from trio_mcp_sse.testing import ASGITestClient, EventStream, run_asgi_app

HEADERS = (("host", "127.0.0.1:8000"), ("content-type", "application/json"))
CLIENT_CAPABILITIES = {"sampling": {}, "elicitation": {}}


class SseClient:
    """One MCP session over the in-memory SSE transport, speaking raw JSON-RPC."""

    def __init__(self, harness: ASGITestClient, stream: EventStream, session_id: str) -> None:
        self.harness = harness
        self.stream = stream
        self.session_id = session_id
        self.ids = itertools.count(1)
        self.seen: list[dict[str, Any]] = []

    async def send(self, message: Mapping[str, Any]) -> None:
        response = await self.harness.request(
            "POST", "/messages/", query=f"session_id={self.session_id}", headers=HEADERS,
            body=json.dumps(message).encode(),
        )
        assert response.status == 202, response.text

    async def next_matching(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        with trio.fail_after(10):
            while True:
                message = await self.stream.next_message()
                self.seen.append(message)
                if predicate(message):
                    return message

    async def request(self, method: str, params: Mapping[str, Any] | None = None) -> int:
        request_id = next(self.ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = dict(params)
        await self.send(message)
        return request_id

    async def response(self, request_id: int) -> dict[str, Any]:
        return await self.next_matching(lambda m: m.get("id") == request_id and "method" not in m)

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        response = await self.response(await self.request(method, params))
        assert "result" in response, response
        result: dict[str, Any] = response["result"]
        return result

    async def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self.call("tools/call", {"name": name, "arguments": dict(arguments or {})})

    def notifications(self, method: str) -> list[dict[str, Any]]:
        return [m["params"] for m in self.seen if m.get("method") == method and "id" not in m]


@asynccontextmanager
async def session(capabilities: Mapping[str, Any] = CLIENT_CAPABILITIES) -> AsyncIterator[SseClient]:
    async with run_asgi_app(everything_server.app) as harness, harness.stream("/sse") as stream:
        endpoint = await stream.endpoint()
        session_id = parse_qs(urlsplit(endpoint).query)["session_id"][0]
        client = SseClient(harness, stream, session_id)
        result = await client.call(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": dict(capabilities),
                "clientInfo": {"name": "conformance-test-client", "version": "1.0.0"},
            },
        )
        assert result["protocolVersion"] == "2025-11-25"
        await client.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        yield client


def png_bytes() -> bytes:
    return base64.b64decode(everything_server.PNG_BASE64)


# -- lifecycle and utilities -------------------------------------------------------------------------
async def test_initialize_announces_every_capability_the_scenarios_use() -> None:
    async with run_asgi_app(everything_server.app) as harness, harness.stream("/sse") as stream:
        endpoint = await stream.endpoint()
        client = SseClient(harness, stream, parse_qs(urlsplit(endpoint).query)["session_id"][0])
        result = await client.call(
            "initialize",
            {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        )
    assert result["serverInfo"] == {"name": "mcp-conformance-test-server", "version": "1.0.0"}
    capabilities = result["capabilities"]
    assert capabilities["resources"]["subscribe"] is True
    assert {"tools", "prompts", "logging", "completions"} <= capabilities.keys()


async def test_ping_and_set_level_answer_empty_objects() -> None:
    async with session() as client:
        assert await client.call("ping") == {}
        assert await client.call("logging/setLevel", {"level": "info"}) == {}


async def test_completion_answers_an_empty_list() -> None:
    async with session() as client:
        result = await client.call(
            "completion/complete",
            {"ref": {"type": "ref/prompt", "name": "test_prompt_with_arguments"},
             "argument": {"name": "arg1", "value": "test"}},
        )
    assert result["completion"]["values"] == []


# -- tools -------------------------------------------------------------------------------------------
async def test_tools_list_names_every_fixture_tool_with_a_description() -> None:
    async with session() as client:
        tools = (await client.call("tools/list"))["tools"]
    names = {tool["name"] for tool in tools}
    assert names == {
        "test_simple_text", "test_image_content", "test_audio_content", "test_embedded_resource",
        "test_multiple_content_types", "test_tool_with_logging", "test_tool_with_progress",
        "test_error_handling", "test_sampling", "test_elicitation",
        "test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums", "test_reconnection",
        "json_schema_2020_12_tool",
        # protocol 2026-07-28 fixtures (written once, callable in both eras)
        "test_input_required_result_elicitation", "test_input_required_result_sampling",
        "test_input_required_result_list_roots", "test_input_required_result_request_state",
        "test_input_required_result_multiple_inputs", "test_input_required_result_multi_round",
        "test_input_required_result_tampered_state", "test_input_required_result_capabilities",
        "test_missing_capability", "test_streaming_elicitation", "test_logging_tool",
        "test_trigger_tool_change", "test_trigger_prompt_change", "test_custom_header",
        # the tasks extension (SEP-2663)
        "greet", "slow_compute", "failing_job", "protocol_error_job", "confirm_delete", "multi_input",
        "test_tool_with_task",
    }
    assert all(tool["description"] and tool["inputSchema"]["type"] == "object" for tool in tools)


async def test_json_schema_2020_12_tool_advertises_its_schema_verbatim() -> None:
    async with session() as client:
        tools = (await client.call("tools/list"))["tools"]
        (tool,) = [t for t in tools if t["name"] == "json_schema_2020_12_tool"]
        assert tool["inputSchema"] == everything_server.JSON_SCHEMA_2020_12
        assert tool["inputSchema"]["$defs"]["address"]["$anchor"] == "addressDef"
        result = await client.call_tool("json_schema_2020_12_tool", {"name": "Ann", "contactMethod": "email", "email": "a@b.c"})
    assert result["content"] == [{"type": "text", "text": '{"name":"Ann","contactMethod":"email"}'}]


async def test_simple_text() -> None:
    async with session() as client:
        result = await client.call_tool("test_simple_text")
    assert result["content"] == [{"type": "text", "text": "This is a simple text response for testing."}]
    assert "isError" not in result or result["isError"] is False


async def test_simple_text_without_arguments_field() -> None:
    # tools-call-simple-text omits "arguments" altogether.
    async with session() as client:
        result = await client.call("tools/call", {"name": "test_simple_text"})
    assert result["content"][0]["text"] == "This is a simple text response for testing."


async def test_image_content_is_a_real_png() -> None:
    async with session() as client:
        result = await client.call_tool("test_image_content")
    assert result["content"] == [{"type": "image", "data": everything_server.PNG_BASE64, "mimeType": "image/png"}]
    assert png_bytes().startswith(b"\x89PNG\r\n\x1a\n")


async def test_audio_content_is_a_wav() -> None:
    async with session() as client:
        result = await client.call_tool("test_audio_content")
    assert result["content"] == [{"type": "audio", "data": everything_server.WAV_BASE64, "mimeType": "audio/wav"}]
    assert base64.b64decode(everything_server.WAV_BASE64).startswith(b"RIFF")


async def test_embedded_resource() -> None:
    async with session() as client:
        result = await client.call_tool("test_embedded_resource")
    assert result["content"] == [
        {"type": "resource", "resource": {"uri": "test://embedded-resource", "mimeType": "text/plain",
                                          "text": "This is an embedded resource content."}}
    ]


async def test_multiple_content_types() -> None:
    async with session() as client:
        result = await client.call_tool("test_multiple_content_types")
    assert result["content"] == [
        {"type": "text", "text": "Multiple content types test:"},
        {"type": "image", "data": everything_server.PNG_BASE64, "mimeType": "image/png"},
        {"type": "resource", "resource": {"uri": "test://mixed-content-resource", "mimeType": "application/json",
                                          "text": '{"test":"data","value":123}'}},
    ]


async def test_tool_with_logging_sends_three_info_messages_before_its_result() -> None:
    async with session() as client:
        assert await client.call("logging/setLevel", {"level": "debug"}) == {}
        result = await client.call_tool("test_tool_with_logging")
        logs = client.notifications("notifications/message")
    assert result["content"] == [{"type": "text", "text": "Tool with logging executed successfully"}]
    assert [(log["level"], log["data"]) for log in logs] == [
        ("info", "Tool execution started"),
        ("info", "Tool processing data"),
        ("info", "Tool execution completed"),
    ]


async def test_tool_with_progress_reports_three_increasing_steps_to_the_token() -> None:
    async with session() as client:
        result = await client.call(
            "tools/call",
            {"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "progress-test-1"}},
        )
        progress = client.notifications("notifications/progress")
    assert result["content"] == [{"type": "text", "text": "progress-test-1"}]
    assert progress == [
        {"progressToken": "progress-test-1", "progress": step, "total": 100, "message": f"Completed step {step} of 100"}
        for step in (0, 50, 100)
    ]


async def test_error_handling_is_an_error_result_with_the_message() -> None:
    async with session() as client:
        result = await client.call_tool("test_error_handling")
    assert result["isError"] is True
    assert result["content"] == [{"type": "text", "text": "This tool intentionally returns an error for testing"}]


async def test_reconnection_answers_after_its_pause() -> None:
    async with session() as client:
        result = await client.call_tool("test_reconnection")
    assert result["content"] == [{"type": "text", "text":
        "Reconnection test completed successfully. If you received this, "
        "the client properly reconnected after stream closure."}]


async def test_sampling_asks_the_client_and_quotes_its_answer() -> None:
    async with session() as client:
        call_id = await client.request(
            "tools/call", {"name": "test_sampling", "arguments": {"prompt": "Test prompt for sampling"}}
        )
        ask = await client.next_matching(lambda m: m.get("method") == "sampling/createMessage")
        assert ask["params"]["messages"] == [
            {"role": "user", "content": {"type": "text", "text": "Test prompt for sampling"}}
        ]
        assert ask["params"]["maxTokens"] == 100
        await client.send({"jsonrpc": "2.0", "id": ask["id"], "result": {
            "role": "assistant", "content": {"type": "text", "text": "This is a test response from the client"},
            "model": "test-model", "stopReason": "endTurn"}})
        result = (await client.response(call_id))["result"]
    assert result["content"] == [{"type": "text", "text": "LLM response: This is a test response from the client"}]


async def answer_elicitation(client: SseClient, tool: str, arguments: Mapping[str, Any],
                             content: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    call_id = await client.request("tools/call", {"name": tool, "arguments": dict(arguments)})
    ask = await client.next_matching(lambda m: m.get("method") == "elicitation/create")
    await client.send({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept", "content": dict(content)}})
    result = (await client.response(call_id))["result"]
    return ask["params"], result


async def test_elicitation_asks_for_a_response_and_reports_the_answer() -> None:
    async with session() as client:
        params, result = await answer_elicitation(
            client, "test_elicitation", {"message": "Please provide your information"},
            {"username": "testuser", "email": "test@example.com"},
        )
    assert params == {
        "message": "Please provide your information",
        "requestedSchema": {
            "type": "object",
            "properties": {"response": {"type": "string", "description": "User's response"}},
            "required": ["response"],
        },
    }
    assert result["content"] == [{"type": "text", "text":
        'User response: action=accept, content={"username":"testuser","email":"test@example.com"}'}]


async def test_elicitation_defaults_cover_every_primitive_type() -> None:
    async with session() as client:
        params, result = await answer_elicitation(client, "test_elicitation_sep1034_defaults", {}, {"name": "Ann"})
    assert params["message"] == "Please review and update the form fields with defaults"
    properties = params["requestedSchema"]["properties"]
    assert {name: (p["type"], p["default"]) for name, p in properties.items()} == {
        "name": ("string", "John Doe"),
        "age": ("integer", 30),
        "score": ("number", 95.5),
        "status": ("string", "active"),
        "verified": ("boolean", True),
    }
    assert properties["status"]["enum"] == ["active", "inactive", "pending"]
    assert result["content"] == [{"type": "text", "text": 'Elicitation completed: action=accept, content={"name":"Ann"}'}]


async def test_elicitation_enums_carry_the_five_enum_forms() -> None:
    async with session() as client:
        # The answer the scenario's client gives, multi-selects included.
        params, result = await answer_elicitation(client, "test_elicitation_sep1330_enums", {}, {
            "untitledSingle": "option1", "titledSingle": "value1", "legacyEnum": "opt1",
            "untitledMulti": ["option1", "option2"], "titledMulti": ["value1", "value2"]})
    assert params["message"] == "Please select options from the enum fields"
    properties = params["requestedSchema"]["properties"]
    assert properties["untitledSingle"] == {
        "type": "string", "description": "Select one option", "enum": ["option1", "option2", "option3"]}
    assert [o["const"] for o in properties["titledSingle"]["oneOf"]] == ["value1", "value2", "value3"]
    assert [o["title"] for o in properties["titledSingle"]["oneOf"]] == ["First Option", "Second Option", "Third Option"]
    assert properties["legacyEnum"]["enumNames"] == ["Option One", "Option Two", "Option Three"]
    assert properties["untitledMulti"]["items"] == {"type": "string", "enum": ["option1", "option2", "option3"]}
    assert (properties["untitledMulti"]["minItems"], properties["untitledMulti"]["maxItems"]) == (1, 3)
    assert [o["title"] for o in properties["titledMulti"]["items"]["anyOf"]] == [
        "First Choice", "Second Choice", "Third Choice"]
    assert result["content"][0]["text"] == (
        'Elicitation completed: action=accept, content={"untitledSingle":"option1","titledSingle":"value1",'
        '"legacyEnum":"opt1","untitledMulti":["option1","option2"],"titledMulti":["value1","value2"]}')


# -- resources ---------------------------------------------------------------------------------------
async def test_resources_and_templates_are_listed() -> None:
    async with session() as client:
        resources = (await client.call("resources/list"))["resources"]
        templates = (await client.call("resources/templates/list"))["resourceTemplates"]
    assert {(r["uri"], r["name"], r["mimeType"]) for r in resources} == {
        ("test://static-text", "static-text", "text/plain"),
        ("test://static-binary", "static-binary", "image/png"),
        ("test://watched-resource", "watched-resource", "text/plain"),
        # The skill of examples/skills/ (the sep-2640-skills-* scenarios; tests/test_skills_server.py).
        ("skill://release-notes/SKILL.md", "release-notes", "text/markdown"),
        ("skill://release-notes/references/STYLE.md", "references/STYLE.md", "text/markdown"),
        ("skill://release-notes/templates/release.md", "templates/release.md", "text/markdown"),
    }
    assert [(t["uriTemplate"], t["name"]) for t in templates] == [("test://template/{id}/data", "template")]


async def test_read_static_text() -> None:
    async with session() as client:
        result = await client.call("resources/read", {"uri": "test://static-text"})
    assert result["contents"] == [{"uri": "test://static-text", "mimeType": "text/plain",
                                   "text": "This is the content of the static text resource."}]


async def test_read_static_binary() -> None:
    async with session() as client:
        result = await client.call("resources/read", {"uri": "test://static-binary"})
    assert result["contents"] == [{"uri": "test://static-binary", "mimeType": "image/png",
                                   "blob": everything_server.PNG_BASE64}]


async def test_read_template_substitutes_the_id() -> None:
    async with session() as client:
        result = await client.call("resources/read", {"uri": "test://template/123/data"})
    assert result["contents"] == [{"uri": "test://template/123/data", "mimeType": "application/json",
                                   "text": '{"id":"123","templateTest":true,"data":"Data for ID: 123"}'}]


async def test_subscribe_and_unsubscribe_answer_empty_objects() -> None:
    async with session() as client:
        assert await client.call("resources/subscribe", {"uri": "test://watched-resource"}) == {}
        assert await client.call("resources/unsubscribe", {"uri": "test://watched-resource"}) == {}


# -- prompts -----------------------------------------------------------------------------------------
async def test_prompts_list() -> None:
    async with session() as client:
        prompts = {p["name"]: p for p in (await client.call("prompts/list"))["prompts"]}
    assert set(prompts) == {"test_simple_prompt", "test_prompt_with_arguments",
                            "test_prompt_with_embedded_resource", "test_prompt_with_image",
                            "test_input_required_result_prompt"}
    assert all(p["description"] for p in prompts.values())
    assert [(a["name"], a["required"]) for a in prompts["test_prompt_with_arguments"]["arguments"]] == [
        ("arg1", True), ("arg2", True)]
    assert [(a["name"], a["required"]) for a in prompts["test_prompt_with_embedded_resource"]["arguments"]] == [
        ("resourceUri", True)]


async def test_simple_prompt() -> None:
    async with session() as client:
        result = await client.call("prompts/get", {"name": "test_simple_prompt"})
    assert result["messages"] == [{"role": "user", "content": {"type": "text", "text": "This is a simple prompt for testing."}}]


async def test_prompt_with_arguments() -> None:
    async with session() as client:
        result = await client.call("prompts/get", {"name": "test_prompt_with_arguments",
                                                   "arguments": {"arg1": "testValue1", "arg2": "testValue2"}})
    assert result["messages"] == [{"role": "user", "content": {
        "type": "text", "text": "Prompt with arguments: arg1='testValue1', arg2='testValue2'"}}]


async def test_prompt_with_embedded_resource() -> None:
    async with session() as client:
        result = await client.call("prompts/get", {"name": "test_prompt_with_embedded_resource",
                                                   "arguments": {"resourceUri": "test://example-resource"}})
    assert result["messages"] == [
        {"role": "user", "content": {"type": "resource", "resource": {
            "uri": "test://example-resource", "mimeType": "text/plain", "text": "Embedded resource content for testing."}}},
        {"role": "user", "content": {"type": "text", "text": "Please process the embedded resource above."}},
    ]


async def test_prompt_with_image() -> None:
    async with session() as client:
        result = await client.call("prompts/get", {"name": "test_prompt_with_image"})
    assert result["messages"] == [
        {"role": "user", "content": {"type": "image", "data": everything_server.PNG_BASE64, "mimeType": "image/png"}},
        {"role": "user", "content": {"type": "text", "text": "Please analyze the image above."}},
    ]



async def test_a_2026_fixture_asks_a_handshake_era_client_with_a_request() -> None:
    """The tool that answers a 2026-07-28 client with an InputRequiredResult elicits directly here."""
    async with session() as client:
        params, result = await answer_elicitation(
            client, "test_input_required_result_elicitation", {}, {"name": "Ann"}
        )
    assert params == {"message": "What is your name?", "requestedSchema": everything_server.NAME_SCHEMA}
    assert result["content"] == [{"type": "text", "text": "Hello, Ann!"}]


async def test_questions_asked_together_reach_a_handshake_era_client_concurrently() -> None:
    async with session({**CLIENT_CAPABILITIES, "roots": {}}) as client:
        call_id = await client.request("tools/call", {"name": "test_input_required_result_multiple_inputs", "arguments": {}})
        asks = [await client.next_matching(lambda m: "method" in m and "id" in m) for _ in range(3)]
        # All three are out before any is answered: they were sent concurrently.
        assert sorted(ask["method"] for ask in asks) == ["elicitation/create", "roots/list", "sampling/createMessage"]
        answers = {
            "elicitation/create": {"action": "accept", "content": {"name": "Ann"}},
            "sampling/createMessage": {"role": "assistant", "content": {"type": "text", "text": "Hi"}, "model": "m"},
            "roots/list": {"roots": [{"uri": "file:///a"}, {"uri": "file:///b"}]},
        }
        for ask in asks:
            await client.send({"jsonrpc": "2.0", "id": ask["id"], "result": answers[ask["method"]]})
        result = (await client.response(call_id))["result"]
    assert result["content"] == [{"type": "text", "text": "Hi Ann (2 roots)"}]


async def test_one_refused_question_of_several_is_the_tools_refusal() -> None:
    async with session({**CLIENT_CAPABILITIES, "roots": {}}) as client:
        call_id = await client.request("tools/call", {"name": "test_input_required_result_multiple_inputs", "arguments": {}})
        ask = await client.next_matching(lambda m: m.get("method") == "elicitation/create")
        await client.send({"jsonrpc": "2.0", "id": ask["id"], "error": {"code": -1, "message": "User said no"}})
        result = (await client.response(call_id))["result"]
    assert result == {"content": [{"type": "text", "text": "The client refused the request: User said no"}], "isError": True}
