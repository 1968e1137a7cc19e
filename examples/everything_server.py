"""The fixture server the official MCP conformance suite expects.

Run it:  hypercorn --worker-class trio examples.everything_server:app
Judge it: make conformance   (docs/conformance.md)

The suite's server scenarios call tools, resources and prompts by fixed names
and, for several of them, only check the shape of the answer (any text passes).
This server gives the exact answers the scenarios document, so a wrong answer
is caught by ``tests/test_everything_server.py`` even where the suite would
let it through.  Names, texts and payloads follow the suite's scenario
descriptions (``src/scenarios/server/*.ts`` in modelcontextprotocol/conformance).

What a scenario needs and this module cannot express with the server API is
listed in ``docs/conformance.md``.
"""

from __future__ import annotations

import base64
import pathlib
from typing import Annotated, Any

import orjson
import pydantic
import trio

from trio_mcp_sse.server import (
    CompletionRequest,
    Context,
    MCPError,
    MCPServer,
    ToolError,
    audio_content,
    embedded_resource,
    image_content,
    resource_contents,
    text_content,
    user_message,
)

# A 1x1 PNG and a tiny WAV file: the suite only checks type and mimeType, but
# real bytes keep the answers honest for clients that decode them.
PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
WAV_BASE64 = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
PNG_BYTES = base64.b64decode(PNG_BASE64)

# Pause between the notifications of the logging and progress tools: the
# scenarios check that several notifications arrive during one call.
STEP_DELAY = 0.05
# How long test_reconnection waits for the client to reconnect.
RECONNECTION_DELAY = 0.1

server = MCPServer("mcp-conformance-test-server", "1.0.0")


def compact_json(value: Any) -> str:
    """JSON without spaces, as the scenarios spell their expected texts."""
    return orjson.dumps(value).decode()


# -- tools -------------------------------------------------------------------------------------------
@server.tool(description="Tests simple text content response")
async def test_simple_text() -> str:
    return "This is a simple text response for testing."


@server.tool(description="Tests image content response")
async def test_image_content() -> list[dict[str, Any]]:
    return [image_content(PNG_BASE64, "image/png")]


@server.tool(description="Tests audio content response")
async def test_audio_content() -> list[dict[str, Any]]:
    return [audio_content(WAV_BASE64, "audio/wav")]


@server.tool(description="Tests embedded resource content response")
async def test_embedded_resource() -> list[dict[str, Any]]:
    return [
        embedded_resource(
            "test://embedded-resource",
            text="This is an embedded resource content.",
            mime_type="text/plain",
        )
    ]


@server.tool(description="Tests response with multiple content types (text, image, resource)")
async def test_multiple_content_types() -> list[dict[str, Any]]:
    return [
        text_content("Multiple content types test:"),
        image_content(PNG_BASE64, "image/png"),
        embedded_resource(
            "test://mixed-content-resource",
            text=compact_json({"test": "data", "value": 123}),
            mime_type="application/json",
        ),
    ]


@server.tool(description="Tests tool that emits log messages during execution")
async def test_tool_with_logging(ctx: Context) -> str:
    await ctx.info("Tool execution started")
    await trio.sleep(STEP_DELAY)
    await ctx.info("Tool processing data")
    await trio.sleep(STEP_DELAY)
    await ctx.info("Tool execution completed")
    return "Tool with logging executed successfully"


@server.tool(description="Tests tool that reports progress notifications")
async def test_tool_with_progress(ctx: Context) -> str:
    for step in (0, 50, 100):
        if step:
            await trio.sleep(STEP_DELAY)
        await ctx.report_progress(step, 100, f"Completed step {step} of 100")
    # The answer names the token the progress went to (0 when none was asked for).
    token = ctx.progress_token
    return str(token if token is not None else 0)


@server.tool(description="Tests error response handling")
async def test_error_handling() -> str:
    raise ToolError("This tool intentionally returns an error for testing")


@server.tool(description="Tests server-initiated sampling (LLM completion request)")
async def test_sampling(
    prompt: Annotated[str, pydantic.Field(description="The prompt to send to the LLM")],
    ctx: Context,
) -> str:
    result = await ctx.sample(prompt, max_tokens=100)
    content = result.content
    text = getattr(content, "text", None)
    return f"LLM response: {text if isinstance(text, str) else 'No response'}"


ELICITATION_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"response": {"type": "string", "description": "User's response"}},
    "required": ["response"],
}


@server.tool(description="Tests server-initiated elicitation (user input request)")
async def test_elicitation(
    message: Annotated[str, pydantic.Field(description="The message to show the user")],
    ctx: Context,
) -> str:
    result = await ctx.elicit(message, ELICITATION_RESPONSE_SCHEMA)
    return f"User response: action={result.action}, content={compact_json(result.content or {})}"


# SEP-1034: a default for every primitive type.
ELICITATION_DEFAULTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    },
    "required": [],
}


@server.tool(description="Tests elicitation with default values per SEP-1034")
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    result = await ctx.elicit(
        "Please review and update the form fields with defaults", ELICITATION_DEFAULTS_SCHEMA
    )
    return f"Elicitation completed: action={result.action}, content={compact_json(result.content or {})}"


# SEP-1330: the five enum forms (untitled / titled / legacy single-select, two multi-selects).
ELICITATION_ENUMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "untitledSingle": {
            "type": "string",
            "description": "Select one option",
            "enum": ["option1", "option2", "option3"],
        },
        "titledSingle": {
            "type": "string",
            "description": "Select one option with titles",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "description": "Select one option (legacy)",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "description": "Select multiple options",
            "minItems": 1,
            "maxItems": 3,
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        "titledMulti": {
            "type": "array",
            "description": "Select multiple options with titles",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
    "required": [],
}


@server.tool(description="Tests elicitation with enum schema improvements per SEP-1330")
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    result = await ctx.elicit("Please select options from the enum fields", ELICITATION_ENUMS_SCHEMA)
    return f"Elicitation completed: action={result.action}, content={compact_json(result.content or {})}"


@server.tool(
    description=(
        "Tests SSE stream disconnection and client reconnection (SEP-1699). The server closes "
        "the stream mid-call and sends the result after the client reconnects."
    )
)
async def test_reconnection(ctx: Context) -> str:
    # server-sse-polling: end this request's HTTP response mid-call; the client
    # resumes with Last-Event-ID after the retry interval and gets the result.
    await ctx.close_sse_stream()
    await trio.sleep(RECONNECTION_DELAY)
    return (
        "Reconnection test completed successfully. If you received this, "
        "the client properly reconnected after stream closure."
    )


JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


@server.tool(description="Tool with JSON Schema 2020-12 features", input_schema=JSON_SCHEMA_2020_12)
def json_schema_2020_12_tool(
    name: str | None = None,
    address: dict[str, str] | None = None,
    contactMethod: str | None = None,  # the schema's property name
    phone: str | None = None,
    email: str | None = None,
) -> str:
    return compact_json({"name": name, "contactMethod": contactMethod})


# -- resources ---------------------------------------------------------------------------------------
@server.resource(
    "test://static-text",
    name="static-text",
    title="Static Text Resource",
    description="A static text resource for testing",
    mime_type="text/plain",
)
async def static_text() -> str:
    return "This is the content of the static text resource."


@server.resource(
    "test://static-binary",
    name="static-binary",
    title="Static Binary Resource",
    description="A static binary resource (image) for testing",
    mime_type="image/png",
)
async def static_binary() -> bytes:
    return PNG_BYTES


@server.resource(
    "test://template/{id}/data",
    name="template",
    title="Resource Template",
    description="A resource template with parameter substitution",
    mime_type="application/json",
)
async def template_data(id: str) -> list[dict[str, Any]]:
    # Returned as text with an explicit mimeType so the JSON keeps the key order
    # the scenario documents: {"id":...,"templateTest":true,"data":...}.
    payload = {"id": id, "templateTest": True, "data": f"Data for ID: {id}"}
    return [
        resource_contents(
            f"test://template/{id}/data", text=compact_json(payload), mime_type="application/json"
        )
    ]


@server.resource(
    "test://watched-resource",
    name="watched-resource",
    title="Watched Resource",
    description="A resource clients subscribe to (resources/subscribe)",
    mime_type="text/plain",
)
async def watched_resource() -> str:
    return "Watched resource content"


# -- prompts -----------------------------------------------------------------------------------------
@server.prompt(title="Simple Test Prompt", description="A simple prompt without arguments")
async def test_simple_prompt() -> str:
    return "This is a simple prompt for testing."


@server.prompt(title="Prompt With Arguments", description="A prompt with required arguments")
async def test_prompt_with_arguments(
    arg1: Annotated[str, pydantic.Field(description="First test argument")],
    arg2: Annotated[str, pydantic.Field(description="Second test argument")],
) -> str:
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@server.prompt(
    title="Prompt With Embedded Resource", description="A prompt that includes an embedded resource"
)
async def test_prompt_with_embedded_resource(
    resourceUri: Annotated[str, pydantic.Field(description="URI of the resource to embed")],
) -> list[dict[str, Any]]:
    return [
        user_message(
            embedded_resource(
                resourceUri, text="Embedded resource content for testing.", mime_type="text/plain"
            )
        ),
        user_message("Please process the embedded resource above."),
    ]


@server.prompt(title="Prompt With Image", description="A prompt that includes image content")
async def test_prompt_with_image() -> list[dict[str, Any]]:
    return [
        user_message(image_content(PNG_BASE64, "image/png")),
        user_message("Please analyze the image above."),
    ]


# -- protocol 2026-07-28: multi round-trip requests (input-required-result-*) ------------------------
# Each tool is written once: to a handshake-era client its questions are requests
# sent while it waits; to a 2026-07-28 client they become an InputRequiredResult and
# the tool runs again when the client retries with the answers.  The keys are the
# ones the scenarios expect.
NAME_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
CONFIRM_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
COLOR_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}
CONTEXT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"context": {"type": "string"}},
    "required": ["context"],
}


def accepted(result: Any, field: str) -> str:
    """The accepted answer's ``field``, or what the user did instead."""
    content = result.content or {}
    return str(content.get(field)) if result.action == "accept" else f"({result.action})"


@server.tool(description="Asks the user's name (InputRequiredResult with one elicitation)")
async def test_input_required_result_elicitation(ctx: Context) -> str:
    result = await ctx.elicit("What is your name?", NAME_SCHEMA, key="user_name")
    return f"Hello, {accepted(result, 'name')}!"


@server.tool(description="Asks the client's model a question (InputRequiredResult with one sampling request)")
async def test_input_required_result_sampling(ctx: Context) -> str:
    result = await ctx.sample("What is the capital of France?", max_tokens=100, key="capital_question")
    return f"The model said: {getattr(result.content, 'text', None)}"


@server.tool(description="Asks for the client's roots (InputRequiredResult with one roots/list request)")
async def test_input_required_result_list_roots(ctx: Context) -> str:
    roots = await ctx.list_roots(key="client_roots")
    return "Roots: " + ", ".join(str(root.uri) for root in roots)


@server.tool(description="Asks for a confirmation; the retry's requestState is verified")
async def test_input_required_result_request_state(ctx: Context) -> str:
    result = await ctx.elicit("Please confirm", CONFIRM_SCHEMA, key="confirm")
    # Reaching this line means the requestState passed its integrity check.
    return f"state-ok: confirmed={accepted(result, 'ok')}"


@server.tool(description="Asks three questions in one round (elicitation, sampling, roots)")
async def test_input_required_result_multiple_inputs(ctx: Context) -> str:
    answers = await ctx.request_input(
        {
            "user_name": {
                "method": "elicitation/create",
                "params": {"message": "What is your name?", "requestedSchema": NAME_SCHEMA},
            },
            "greeting": {
                "method": "sampling/createMessage",
                "params": {
                    "messages": [{"role": "user", "content": {"type": "text", "text": "Generate a greeting"}}],
                    "maxTokens": 50,
                },
            },
            "client_roots": {"method": "roots/list", "params": {}},
        }
    )
    name = (answers["user_name"].get("content") or {}).get("name")
    greeting = (answers["greeting"].get("content") or {}).get("text")
    roots = len(answers["client_roots"].get("roots") or [])
    return f"{greeting} {name} ({roots} roots)"


@server.tool(description="Asks two questions in two rounds")
async def test_input_required_result_multi_round(ctx: Context) -> str:
    name = await ctx.elicit("Step 1: What is your name?", NAME_SCHEMA, key="step1")
    color = await ctx.elicit("Step 2: What is your favorite color?", COLOR_SCHEMA, key="step2")
    return f"{accepted(name, 'name')} likes {accepted(color, 'color')}"


@server.tool(description="Asks for a confirmation whose requestState is integrity-protected (HMAC)")
async def test_input_required_result_tampered_state(ctx: Context) -> str:
    result = await ctx.elicit("Please confirm", CONFIRM_SCHEMA, key="confirm")
    return f"confirmed={accepted(result, 'ok')}"


@server.tool(description="Asks only what the client declared it can answer")
async def test_input_required_result_capabilities(ctx: Context) -> str:
    questions: dict[str, dict[str, Any]] = {}
    if ctx.client_supports("sampling"):
        questions["model_answer"] = {
            "method": "sampling/createMessage",
            "params": {"messages": [{"role": "user", "content": {"type": "text", "text": "Say hi"}}], "maxTokens": 20},
        }
    if ctx.client_supports("elicitation"):
        questions["user_answer"] = {
            "method": "elicitation/create",
            "params": {"message": "Say hi", "requestedSchema": NAME_SCHEMA},
        }
    if not questions:
        return "The client can answer no questions."
    answers = await ctx.request_input(questions)
    return f"Answered: {', '.join(sorted(answers))}"


@server.prompt(
    title="Prompt That Asks",
    description="A prompt that asks the user for context first (InputRequiredResult on prompts/get)",
)
async def test_input_required_result_prompt(ctx: Context) -> str:
    result = await ctx.elicit("What context should the prompt use?", CONTEXT_SCHEMA, key="user_context")
    return f"Answer with this context in mind: {accepted(result, 'context')}"


# -- protocol 2026-07-28: the diagnostics of server-stateless and SEP-2243 -----------------------------
@server.tool(description="Needs the client's sampling capability (refused with -32021 without it)")
async def test_missing_capability(ctx: Context) -> str:
    result = await ctx.sample("Say something", max_tokens=20)
    return f"The model said: {getattr(result.content, 'text', None)}"


@server.tool(description="Elicits while streaming (a 2026-07-28 client gets an InputRequiredResult)")
async def test_streaming_elicitation(ctx: Context) -> str:
    result = await ctx.elicit("What is your name?", NAME_SCHEMA)
    return f"Hello, {accepted(result, 'name')}!"


@server.tool(description="Logs at info level (nothing reaches a request that named no log level)")
async def test_logging_tool(ctx: Context) -> str:
    await ctx.info("logging tool ran")
    return "Logged"


TRIGGERED_TOOL = "test_triggered_tool"
TRIGGERED_PROMPT = "test_triggered_prompt"


async def triggered() -> str:
    """Added and removed by test_trigger_tool_change / test_trigger_prompt_change."""
    return "triggered"


@server.tool(description="Adds or removes a tool, so listen streams hear tools/list_changed")
async def test_trigger_tool_change() -> str:
    if TRIGGERED_TOOL in server.tools:
        server.remove_tool(TRIGGERED_TOOL)
        return "removed"
    server.add_tool(triggered, name=TRIGGERED_TOOL)
    return "added"


@server.tool(description="Adds or removes a prompt, so listen streams hear prompts/list_changed")
async def test_trigger_prompt_change() -> str:
    if TRIGGERED_PROMPT in server.prompts:
        server.remove_prompt(TRIGGERED_PROMPT)
        return "removed"
    server.add_prompt(triggered, name=TRIGGERED_PROMPT)
    return "added"


@server.tool(
    description="Routes on a header: its region argument is mirrored as Mcp-Param-Region (SEP-2243)",
    input_schema={
        "type": "object",
        "properties": {"region": {"type": "string", "description": "Where to run", "x-mcp-header": "Region"}},
        "required": ["region"],
    },
)
async def test_custom_header(region: str) -> str:
    return f"Routed to {region}"


# -- the tasks extension (io.modelcontextprotocol/tasks, SEP-2663) -----------------------------------
# A client that declares the extension gets a task for these tools (a CreateTaskResult it polls with
# tasks/get); one that does not gets the plain result, except from the required-task tool.
DELETE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"confirm": {"type": "boolean"}},
    "required": ["confirm"],
}
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "confirm": {"type": "boolean"}},
}
USER_NAME_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


@server.tool(description="Says hello (never a task)")
async def greet(name: str) -> str:
    return f"Hello, {name}!"


@server.tool(description="Sleeps for `seconds`, then answers (a task for a client with the tasks extension)", task=True)
async def slow_compute(seconds: float, label: str = "") -> str:
    await trio.sleep(seconds)
    return f"Computed {label or 'result'} in {seconds:g} s"


@server.tool(description="Fails as a tool after about a second (runs only as a task)", task="required")
async def failing_job() -> str:
    await trio.sleep(1.0)
    raise ToolError("The job failed: the input could not be processed")


@server.tool(description="Fails with a JSON-RPC internal error (a failed task)", task=True)
async def protocol_error_job() -> str:
    await trio.sleep(0.1)
    raise MCPError(-32603, "The job hit an internal error")  # Internal error


@server.tool(description="Asks for a confirmation, as a task, before deleting", task=True)
async def confirm_delete(filename: str, ctx: Context) -> str:
    answer = await ctx.elicit(f"Delete {filename}?", DELETE_SCHEMA)
    if answer.action == "accept" and (answer.content or {}).get("confirm") is True:
        return f"Deleted {filename}"
    return f"Kept {filename}"


@server.tool(description="Asks two questions at once, as a task", task=True)
async def multi_input(ctx: Context) -> str:
    questions = {
        key: {"method": "elicitation/create", "params": {"message": f"Answer {key}", "requestedSchema": ANSWER_SCHEMA}}
        for key in ("first", "second")
    }
    answers = await ctx.request_input(questions)
    names = [str((answers[key].get("content") or {}).get("name")) for key in ("first", "second")]
    return f"Answered: {', '.join(names)}"


@server.tool(
    description="Asks the user's name (multi round-trip), then goes on as a task",
    task="required",
    task_start="explicit",
)
async def test_tool_with_task(ctx: Context) -> str:
    answer = await ctx.elicit("What is your name?", USER_NAME_SCHEMA, key="user_name")
    await ctx.start_task("Greeting")
    await trio.sleep(0.2)
    return f"Hello, {accepted(answer, 'name')}, from a task!"


# -- skills (the io.modelcontextprotocol/skills extension, SEP-2640) -------------------------------------
# The sep-2640-skills-* scenarios find a skill through skills/list and resources/list; its
# references/ and templates/ subdirectories give resources/directory/read a child directory.
server.add_skills_directory(pathlib.Path(__file__).parent / "skills")


# -- completion --------------------------------------------------------------------------------------
@server.completion
async def complete(request: CompletionRequest) -> list[str]:
    """No suggestions: the scenario only needs the capability and a well-formed answer."""
    return []


app = server.http_app()  # Streamable HTTP at /mcp, HTTP+SSE at /sse
