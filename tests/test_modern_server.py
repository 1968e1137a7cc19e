"""Protocol 2026-07-28 on the Streamable HTTP endpoint, in memory: exact answers of the modern era.

Every request here is what a 2026-07-28 client sends: a POST with
``MCP-Protocol-Version``, ``Mcp-Method`` (and ``Mcp-Name``) headers and the
``_meta`` envelope; no ``initialize``, no session.  Results are also checked
against the official 2026-07-28 wire types (``mcp_types.methods``).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import mcp_types
import pydantic
import pytest
import trio
from mcp_types import methods as wire

from trio_mcp_sse import MCPServer
from trio_mcp_sse.server import CachePolicy, Context, RequestStateKey
from trio_mcp_sse.testing import open_http_client, run_asgi_app

MODERN = "2026-07-28"
SERVER_INFO = {"name": "modern", "version": "2.0.0"}
CAPABILITIES = {"elicitation": {}, "sampling": {}, "roots": {}}
NAME_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


class Name(pydantic.BaseModel):
    name: str


def make_server(**options: Any) -> MCPServer:
    server = MCPServer("modern", "2.0.0", **options)

    @server.tool
    async def echo(text: str) -> str:
        """Return the text."""
        return text

    @server.tool
    async def greet(ctx: Context) -> str:
        """Ask for a name, then greet."""
        answer = await ctx.elicit("What is your name?", Name)
        if answer.action != "accept" or answer.content is None:
            return "No name given."
        return f"Hello, {answer.content['name']}!"

    @server.tool
    async def two_steps(ctx: Context) -> str:
        """Two questions, one after the other."""
        first = await ctx.elicit("Step 1", Name, key="step1")
        second = await ctx.elicit("Step 2", Name, key="step2")
        assert first.content is not None and second.content is not None
        return f"{first.content['name']} then {second.content['name']}"

    @server.tool
    async def all_at_once(ctx: Context) -> str:
        """Three questions in one round."""
        answers = await ctx.request_input(
            {
                "who": {"method": "elicitation/create", "params": {"message": "Who?", "requestedSchema": {"type": "object", "properties": {}}}},
                "roots": {"method": "roots/list", "params": {}},
            }
        )
        return f"{answers['who']['action']} with {len(answers['roots']['roots'])} roots"

    @server.tool
    async def summarize(ctx: Context) -> str:
        """Needs sampling."""
        result = await ctx.sample("Summarize", max_tokens=10)
        assert isinstance(result.content, mcp_types.TextContent)
        return result.content.text

    @server.tool
    async def chatty(ctx: Context) -> str:
        """Logs, then answers."""
        await ctx.info("working")
        await ctx.debug("details")
        return "done"

    @server.tool
    async def with_progress(ctx: Context) -> str:
        """Reports progress, then answers."""
        await ctx.report_progress(1, 2)
        await ctx.report_progress(2, 2)
        return "finished"

    @server.tool(
        input_schema={
            "type": "object",
            "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
            "required": ["region"],
        }
    )
    async def routed(region: str) -> str:
        """Arguments mirrored in headers."""
        return region

    @server.resource("test://static", mime_type="text/plain", cache=CachePolicy(ttl_ms=60_000, scope="public"))
    async def static() -> str:
        return "static text"

    @server.resource("test://item/{id}", mime_type="text/plain")
    async def item(id: str) -> str:
        return f"item {id}"

    @server.prompt
    async def plain_prompt() -> str:
        """A prompt."""
        return "Say hello"

    @server.prompt
    async def asking_prompt(ctx: Context) -> str:
        """A prompt that asks first."""
        answer = await ctx.elicit("Context?", {"type": "object", "properties": {"context": {"type": "string"}}}, key="ctx")
        assert answer.content is not None
        return f"Use {answer.content['context']}"

    return server


def envelope(capabilities: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": CAPABILITIES if capabilities is None else capabilities,
        "io.modelcontextprotocol/clientInfo": {"name": "test-client", "version": "1.0"},
        **extra,
    }


def standard_headers(method: str, params: dict[str, Any], version: str = MODERN) -> dict[str, str]:
    headers = {
        "host": "127.0.0.1:8000",
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": version,
        "mcp-method": method,
    }
    name_key = NAME_PARAM.get(method)
    if name_key is not None and name_key in params:
        headers["mcp-name"] = params[name_key]
    return headers


class Modern:
    """Raw 2026-07-28 requests against an app served in memory."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def post(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        meta: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        request_id: int = 1,
        with_meta: bool = True,
    ) -> tuple[int, str, dict[str, Any]]:
        """(status, content type, the JSON-RPC response) for one request."""
        params = dict(params or {})
        if with_meta:
            params["_meta"] = meta if meta is not None else envelope()
        all_headers = standard_headers(method, params)
        all_headers.update(headers or {})
        body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}).encode()
        response = await self.client.request("POST", "/mcp", headers=tuple(all_headers.items()), body=body)
        content_type = response.headers.get("content-type", "")
        if content_type == "text/event-stream":
            events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
            return response.status, content_type, {"events": events[:-1], **events[-1]}
        return response.status, content_type, json.loads(response.body)

    async def result(self, method: str, params: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
        status, _, answer = await self.post(method, params, **options)
        assert status == 200, answer
        assert "result" in answer, answer
        wire.validate_server_result(method, MODERN, answer["result"])
        result: dict[str, Any] = answer["result"]
        return result


async def open_modern(server: MCPServer | None = None, **app_options: Any) -> Any:
    return run_asgi_app((server or make_server()).http_app(**app_options))


STAMP = {"io.modelcontextprotocol/serverInfo": SERVER_INFO}


# -- discovery and the envelope ----------------------------------------------------------------------------
async def test_discover_names_the_modern_revisions_and_capabilities() -> None:
    async with await open_modern() as client:
        result = await Modern(client).result("server/discover")
    assert result == {
        "supportedVersions": [MODERN],
        "capabilities": {
            "tools": {"listChanged": True},
            "resources": {"subscribe": True, "listChanged": True},
            "prompts": {"listChanged": True},
            "logging": {},
        },
        "resultType": "complete",
        "ttlMs": 0,
        "cacheScope": "private",
        "_meta": STAMP,
    }


async def test_discover_is_unknown_to_the_handshake_era() -> None:
    async with await open_modern() as client:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "server/discover"}).encode()
        headers = (("host", "127.0.0.1:8000"), ("content-type", "application/json"), ("accept", "application/json"))
        response = await client.request("POST", "/mcp", headers=headers, body=body)
    assert response.status == 400  # no session, not initialize: the handshake era's refusal
    assert "mcp-session-id" not in response.headers


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (None, "params._meta must be an object"),
        ({"io.modelcontextprotocol/clientCapabilities": {}}, "params._meta lacks io.modelcontextprotocol/protocolVersion"),
        ({"io.modelcontextprotocol/protocolVersion": MODERN}, "params._meta lacks io.modelcontextprotocol/clientCapabilities"),
    ],
)
async def test_a_missing_envelope_is_invalid_params_with_400(meta: dict[str, Any] | None, message: str) -> None:
    async with await open_modern() as client:
        status, content_type, answer = await Modern(client).post(
            "server/discover", meta=meta, with_meta=meta is not None, request_id=101
        )
    assert (status, content_type) == (400, "application/json")
    assert answer["id"] == 101
    assert answer["error"]["code"] == -32602
    assert answer["error"]["message"].startswith(message)


async def test_client_info_is_optional() -> None:
    async with await open_modern() as client:
        meta = envelope()
        del meta["io.modelcontextprotocol/clientInfo"]
        result = await Modern(client).result("server/discover", meta=meta)
    assert result["supportedVersions"] == [MODERN]


async def test_an_unsupported_revision_names_the_supported_ones() -> None:
    async with await open_modern() as client:
        status, _, answer = await Modern(client).post(
            "server/discover",
            meta=envelope(**{"io.modelcontextprotocol/protocolVersion": "v999.0.0"}),
            headers={"mcp-protocol-version": "v999.0.0"},
            request_id=301,
        )
    assert status == 400
    assert answer == {
        "jsonrpc": "2.0",
        "id": 301,
        "error": {
            "code": -32022,
            "message": "Unsupported protocol version",
            "data": {"supported": [MODERN], "requested": "v999.0.0"},
        },
    }


@pytest.mark.parametrize(
    ("method", "params", "headers", "what"),
    [
        ("server/discover", {}, {"mcp-method": "tools/list"}, "Mcp-Method"),
        ("tools/call", {"name": "echo", "arguments": {"text": "a"}}, {"mcp-name": "other"}, "Mcp-Name"),
        ("resources/read", {"uri": "test://static"}, {"mcp-name": "test://other"}, "Mcp-Name"),
        ("tools/call", {"name": "routed", "arguments": {"region": "eu"}}, {"mcp-param-region": "us"}, "Mcp-Param-Region"),
        ("tools/call", {"name": "routed", "arguments": {"region": "eu"}}, {}, "Mcp-Param-Region"),
    ],
)
async def test_headers_that_disagree_with_the_body_are_a_header_mismatch(
    method: str, params: dict[str, Any], headers: dict[str, str], what: str
) -> None:
    async with await open_modern() as client:
        status, _, answer = await Modern(client).post(method, params, headers=headers, request_id=7)
    assert status == 400
    assert answer["id"] == 7
    assert answer["error"]["code"] == -32020
    assert what in answer["error"]["message"]


async def test_a_version_header_that_disagrees_with_the_envelope_is_a_header_mismatch() -> None:
    async with await open_modern() as client:
        status, _, answer = await Modern(client).post(
            "server/discover", meta=envelope(**{"io.modelcontextprotocol/protocolVersion": "v999.0.0"})
        )
    assert (status, answer["error"]["code"]) == (400, -32020)


async def test_param_headers_that_match_are_accepted_base64_included() -> None:
    async with await open_modern() as client:
        modern = Modern(client)
        plain = await modern.result("tools/call", {"name": "routed", "arguments": {"region": "eu"}}, headers={"mcp-param-region": "eu"})
        encoded = await modern.result(
            "tools/call", {"name": "routed", "arguments": {"region": "Zürich"}}, headers={"mcp-param-region": "=?base64?WsO8cmljaA==?="}
        )
    assert plain["content"] == [{"type": "text", "text": "eu"}]
    assert encoded["content"] == [{"type": "text", "text": "Zürich"}]


@pytest.mark.parametrize("method", ["initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe", "unknown/method"])
async def test_removed_and_unknown_methods_are_404_method_not_found(method: str) -> None:
    async with await open_modern() as client:
        status, _, answer = await Modern(client).post(method, {}, request_id=500)
    assert status == 404
    assert answer["id"] == 500
    assert answer["error"]["code"] == -32601


async def test_notifications_are_accepted_and_dropped() -> None:
    async with await open_modern() as client:
        body = json.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}).encode()
        headers = standard_headers("notifications/cancelled", {})
        response = await client.request("POST", "/mcp", headers=tuple(headers.items()), body=body)
    assert (response.status, response.body) == (202, b"")


# -- results ------------------------------------------------------------------------------------------------
async def test_lists_are_typed_stamped_and_cacheable_in_a_stable_order() -> None:
    server = make_server(cache=CachePolicy(ttl_ms=5000, scope="public"))
    async with await open_modern(server) as client:
        modern = Modern(client)
        tools = await modern.result("tools/list")
        prompts = await modern.result("prompts/list")
        resources = await modern.result("resources/list")
        templates = await modern.result("resources/templates/list")
    names = [tool["name"] for tool in tools["tools"]]
    assert names == ["echo", "greet", "two_steps", "all_at_once", "summarize", "chatty", "with_progress", "routed"]
    for result in (tools, prompts, resources, templates):
        assert (result["resultType"], result["ttlMs"], result["cacheScope"], result["_meta"]) == ("complete", 5000, "public", STAMP)
    assert [resource["uri"] for resource in resources["resources"]] == ["test://static"]
    assert [template["uriTemplate"] for template in templates["resourceTemplates"]] == ["test://item/{id}"]


async def test_a_read_carries_its_resource_cache_policy_or_the_servers() -> None:
    async with await open_modern() as client:
        modern = Modern(client)
        static = await modern.result("resources/read", {"uri": "test://static"})
        item = await modern.result("resources/read", {"uri": "test://item/7"})
    assert static == {
        "contents": [{"uri": "test://static", "mimeType": "text/plain", "text": "static text"}],
        "resultType": "complete",
        "ttlMs": 60_000,
        "cacheScope": "public",
        "_meta": STAMP,
    }
    assert (item["contents"][0]["text"], item["ttlMs"], item["cacheScope"]) == ("item 7", 0, "private")


async def test_an_unknown_resource_is_invalid_params_naming_the_uri() -> None:
    async with await open_modern() as client:
        status, _, answer = await Modern(client).post("resources/read", {"uri": "test://nope"})
    assert status == 400
    assert answer["error"] == {"code": -32602, "message": "Resource not found: test://nope", "data": {"uri": "test://nope"}}


async def test_a_tool_result_is_complete_and_not_cacheable() -> None:
    async with await open_modern() as client:
        result = await Modern(client).result("tools/call", {"name": "echo", "arguments": {"text": "hi"}})
    assert result == {"content": [{"type": "text", "text": "hi"}], "resultType": "complete", "_meta": STAMP}


async def test_logs_reach_only_a_request_that_asked_for_them() -> None:
    async with await open_modern() as client:
        modern = Modern(client)
        _, quiet_type, quiet = await modern.post("tools/call", {"name": "chatty", "arguments": {}})
        _, loud_type, loud = await modern.post(
            "tools/call", {"name": "chatty", "arguments": {}}, meta=envelope(**{"io.modelcontextprotocol/logLevel": "info"})
        )
    assert quiet_type == "application/json"
    assert quiet["result"]["content"] == [{"type": "text", "text": "done"}]
    assert loud_type == "text/event-stream"
    assert loud["events"] == [
        {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "working"}}
    ]
    assert loud["result"]["content"] == [{"type": "text", "text": "done"}]


async def test_progress_precedes_the_result_on_the_requests_stream() -> None:
    async with await open_modern() as client:
        params = {"name": "with_progress", "arguments": {}}
        meta = envelope(progressToken="p1")
        status, content_type, answer = await Modern(client).post("tools/call", params, meta=meta)
    assert (status, content_type) == (200, "text/event-stream")
    assert [event["params"]["progress"] for event in answer["events"]] == [1, 2]
    assert answer["result"]["content"] == [{"type": "text", "text": "finished"}]


# -- multi round-trip requests ------------------------------------------------------------------------------
async def test_a_question_becomes_an_input_required_result_and_the_retry_completes() -> None:
    async with await open_modern() as client:
        modern = Modern(client)
        first = await modern.result("tools/call", {"name": "greet", "arguments": {}})
        assert first["resultType"] == "input_required"
        assert first["inputRequests"] == {
            "elicitation-1": {
                "method": "elicitation/create",
                "params": {"message": "What is your name?", "requestedSchema": Name.model_json_schema()},
            }
        }
        retry = {
            "name": "greet",
            "arguments": {},
            "inputResponses": {"elicitation-1": {"action": "accept", "content": {"name": "Alice"}}},
            "requestState": first["requestState"],
        }
        second = await modern.result("tools/call", retry)
    assert second["content"] == [{"type": "text", "text": "Hello, Alice!"}]
    assert second["resultType"] == "complete"


async def test_two_rounds_carry_the_first_answer_in_the_request_state() -> None:
    async with await open_modern() as client:
        modern = Modern(client)
        call = {"name": "two_steps", "arguments": {}}
        first = await modern.result("tools/call", call)
        assert list(first["inputRequests"]) == ["step1"]
        second = await modern.result(
            "tools/call",
            {**call, "inputResponses": {"step1": {"action": "accept", "content": {"name": "A"}}}, "requestState": first["requestState"]},
        )
        assert list(second["inputRequests"]) == ["step2"]
        assert second["requestState"] != first["requestState"]
        third = await modern.result(
            "tools/call",
            {**call, "inputResponses": {"step2": {"action": "accept", "content": {"name": "B"}}}, "requestState": second["requestState"]},
        )
    assert third["content"] == [{"type": "text", "text": "A then B"}]


async def test_questions_asked_together_come_in_one_round() -> None:
    async with await open_modern() as client:
        modern = Modern(client)
        first = await modern.result("tools/call", {"name": "all_at_once", "arguments": {}})
        assert sorted(first["inputRequests"]) == ["roots", "who"]
        done = await modern.result(
            "tools/call",
            {
                "name": "all_at_once",
                "arguments": {},
                "inputResponses": {"who": {"action": "decline"}, "roots": {"roots": [{"uri": "file:///a"}]}, "extra": {"x": 1}},
                "requestState": first["requestState"],
            },
        )
    assert done["content"] == [{"type": "text", "text": "decline with 1 roots"}]


async def test_a_prompt_may_ask_too() -> None:
    async with await open_modern() as client:
        modern = Modern(client)
        first = await modern.result("prompts/get", {"name": "asking_prompt"})
        assert list(first["inputRequests"]) == ["ctx"]
        done = await modern.result(
            "prompts/get",
            {"name": "asking_prompt", "inputResponses": {"ctx": {"action": "accept", "content": {"context": "tests"}}}},
        )
    assert done["messages"] == [{"role": "user", "content": {"type": "text", "text": "Use tests"}}]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda state: state + "-TAMPERED",
        lambda state: state[:10] + ("A" if state[10] != "A" else "B") + state[11:],
        lambda state: "garbage",
    ],
)
async def test_a_tampered_request_state_is_refused(tamper: Any) -> None:
    async with await open_modern() as client:
        modern = Modern(client)
        first = await modern.result("tools/call", {"name": "two_steps", "arguments": {}})
        state = tamper(first["requestState"])
        status, _, answer = await modern.post(
            "tools/call",
            {"name": "two_steps", "arguments": {}, "inputResponses": {"step1": {"action": "accept", "content": {"name": "A"}}}, "requestState": state},
        )
    assert status == 400
    assert answer["error"]["code"] == -32602
    assert answer["error"]["message"] == "requestState failed its integrity check"


async def test_a_request_state_is_bound_to_its_call() -> None:
    async with await open_modern() as client:
        modern = Modern(client)
        first = await modern.result("tools/call", {"name": "greet", "arguments": {}})
        status, _, answer = await modern.post(
            "tools/call", {"name": "two_steps", "arguments": {}, "inputResponses": {}, "requestState": first["requestState"]}
        )
    assert (status, answer["error"]["message"]) == (400, "requestState belongs to another request")


async def test_another_worker_with_the_same_key_resumes_the_request() -> None:
    secret = b"a shared secret of many bytes!!"
    async with await open_modern(make_server(request_state_key=secret)) as one:
        first = await Modern(one).result("tools/call", {"name": "two_steps", "arguments": {}})
    retry = {
        "name": "two_steps",
        "arguments": {},
        "inputResponses": {"step1": {"action": "accept", "content": {"name": "A"}}},
        "requestState": first["requestState"],
    }
    async with await open_modern(make_server(request_state_key=RequestStateKey(secret))) as other:
        second = await Modern(other).result("tools/call", retry)
    async with await open_modern(make_server()) as stranger:
        status, _, refused = await Modern(stranger).post("tools/call", retry)
    assert list(second["inputRequests"]) == ["step2"]
    assert (status, refused["error"]["code"]) == (400, -32602)


async def test_an_expired_request_state_is_refused() -> None:
    key = RequestStateKey(b"0123456789abcdef0123", max_age=60)
    state = key.seal("tools/call|x|y", {"a": {}}, now=1000.0)
    assert key.open(state, "tools/call|x|y", now=1059.0) == {"a": {}}
    with pytest.raises(Exception, match="expired"):
        key.open(state, "tools/call|x|y", now=1061.0)


async def test_missing_answers_are_asked_again_and_bad_ones_refused() -> None:
    async with await open_modern() as client:
        modern = Modern(client)
        wrong_key = await modern.result(
            "tools/call", {"name": "greet", "arguments": {}, "inputResponses": {"other": {"action": "accept", "content": {}}}}
        )
        not_an_object = await modern.post("tools/call", {"name": "greet", "arguments": {}, "inputResponses": {"elicitation-1": 12345}})
        null = await modern.post("tools/call", {"name": "greet", "arguments": {}, "inputResponses": None})
        invalid = await modern.post(
            "tools/call", {"name": "greet", "arguments": {}, "inputResponses": {"elicitation-1": {"action": "maybe"}}}
        )
    assert list(wrong_key["inputRequests"]) == ["elicitation-1"]
    assert not_an_object[0] == 400 and not_an_object[2]["error"]["code"] == -32602
    assert null[0] == 400 and null[2]["error"]["code"] == -32602
    assert invalid[0] == 400 and invalid[2]["error"]["message"] == "the client's answer to elicitation/create is not a valid result"


async def test_a_question_the_client_cannot_answer_is_missing_capability() -> None:
    async with await open_modern() as client:
        status, _, answer = await Modern(client).post(
            "tools/call", {"name": "summarize", "arguments": {}}, meta=envelope(capabilities={"elicitation": {}}), request_id=401
        )
    assert status == 400
    assert answer["id"] == 401
    assert answer["error"]["code"] == -32021
    assert answer["error"]["data"] == {"requiredCapabilities": {"sampling": {}}}


# -- subscriptions/listen ------------------------------------------------------------------------------------
async def test_listen_acknowledges_then_sends_only_what_was_asked_tagged() -> None:
    server = make_server()

    async def listen(client: httpx.AsyncClient, wanted: dict[str, Any], frames: list[dict[str, Any]], count: int, ready: trio.Event) -> None:
        params = {"notifications": wanted, "_meta": envelope()}
        body = {"jsonrpc": "2.0", "id": 42, "method": "subscriptions/listen", "params": params}
        headers = standard_headers("subscriptions/listen", params)
        async with client.stream("POST", "/mcp", json=body, headers=headers) as response:
            assert response.headers["content-type"] == "text/event-stream"
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    frames.append(json.loads(line[6:]))
                    ready.set()
                    if len(frames) == count:
                        return

    with trio.fail_after(10):
        async with open_http_client(server.http_app(), base_url="http://127.0.0.1:8000") as client:
            tools_frames: list[dict[str, Any]] = []
            prompts_frames: list[dict[str, Any]] = []
            async with trio.open_nursery() as nursery:
                tools_ready, prompts_ready = trio.Event(), trio.Event()
                nursery.start_soon(listen, client, {"toolsListChanged": True, "resourceSubscriptions": ["test://static"]}, tools_frames, 3, tools_ready)
                nursery.start_soon(listen, client, {"promptsListChanged": True}, prompts_frames, 2, prompts_ready)
                await tools_ready.wait()
                await prompts_ready.wait()
                server.add_tool(lambda: "new", name="added")
                server.notify_resource_updated("test://other")
                server.notify_resource_updated("test://static")
                server.add_prompt(lambda: "p", name="added_prompt")
    tag = {"io.modelcontextprotocol/subscriptionId": 42}
    assert tools_frames == [
        {
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": {"toolsListChanged": True, "resourceSubscriptions": ["test://static"]}, "_meta": tag},
        },
        {"jsonrpc": "2.0", "method": "notifications/tools/list_changed", "params": {"_meta": tag}},
        {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "test://static", "_meta": tag}},
    ]
    assert prompts_frames == [
        {
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": {"promptsListChanged": True}, "_meta": tag},
        },
        {"jsonrpc": "2.0", "method": "notifications/prompts/list_changed", "params": {"_meta": tag}},
    ]



async def test_a_draining_server_ends_a_listen_stream_with_its_result() -> None:
    server = make_server()
    app = server.http_app()
    transport = app.extensions["trio_mcp_sse"]
    frames: list[dict[str, Any]] = []
    params = {"notifications": {"toolsListChanged": True}, "_meta": envelope()}
    body = {"jsonrpc": "2.0", "id": "listen-1", "method": "subscriptions/listen", "params": params}
    with trio.fail_after(10):
        headers = standard_headers("subscriptions/listen", params)
        async with (
            open_http_client(app, base_url="http://127.0.0.1:8000") as client,
            client.stream("POST", "/mcp", json=body, headers=headers) as response,
        ):
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    frames.append(json.loads(line[6:]))
                    if len(frames) == 1:
                        await transport.drain(5.0)
    tag = {"io.modelcontextprotocol/subscriptionId": "listen-1"}
    assert [frame.get("method") for frame in frames] == ["notifications/subscriptions/acknowledged", None]
    assert frames[1] == {"jsonrpc": "2.0", "id": "listen-1", "result": {"_meta": {**tag, **STAMP}, "resultType": "complete"}}
    wire.validate_server_result("subscriptions/listen", MODERN, frames[1]["result"])


async def test_listen_needs_an_event_stream_and_a_filter() -> None:
    async with await open_modern() as client:
        modern = Modern(client)
        json_only = await modern.post("subscriptions/listen", {"notifications": {}}, headers={"accept": "application/json"})
        no_filter = await modern.post("subscriptions/listen", {})
    assert json_only[0] == 406
    assert (no_filter[0], no_filter[2]["error"]["code"]) == (400, -32602)


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_get_and_delete_are_not_part_of_the_modern_era(method: str) -> None:
    async with await open_modern() as client:
        headers = (("host", "127.0.0.1:8000"), ("accept", "text/event-stream"), ("mcp-protocol-version", MODERN), ("mcp-session-id", "x"))
        response = await client.request(method, "/mcp", headers=headers)
    assert (response.status, response.headers["allow"]) == (405, "POST")


async def test_the_http_sse_transport_stays_in_the_handshake_era() -> None:
    from tests.test_everything_server import session

    async with session() as client:
        request_id = await client.request("server/discover", {"_meta": envelope()})
        answer = await client.response(request_id)
    assert answer["error"]["code"] == -32601


async def test_only_the_three_questions_can_be_asked_of_a_modern_client() -> None:
    server = make_server()

    @server.tool
    async def pinger(ctx: Context) -> str:
        """Sends a request that has no InputRequiredResult form."""
        await ctx.send_request("ping")
        return "unreachable"

    @server.tool
    async def asks_and_fails(ctx: Context) -> str:
        """A question and a failure in one nursery."""

        async def fail() -> None:
            raise ValueError("boom")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fail)
            await ctx.elicit("Name?", Name)
        return "unreachable"

    async with await open_modern(server) as client:
        modern = Modern(client)
        pinged = await modern.result("tools/call", {"name": "pinger", "arguments": {}})
        failed = await modern.result("tools/call", {"name": "asks_and_fails", "arguments": {}})
    assert pinged["isError"] is True
    assert pinged["content"] == [
        {"type": "text", "text": "ping cannot be asked of a 2026-07-28 client: only elicitation/create, sampling/createMessage, roots/list can"}
    ]
    assert failed["isError"] is True
    assert failed["content"] == [{"type": "text", "text": "Tool 'asks_and_fails' failed with an internal error"}]
