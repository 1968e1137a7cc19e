"""The tasks extension (SEP-2663) end to end in memory, on the mock clock: our server, our client.

What a user relies on: a tool declared ``task=True`` becomes a task only for a
2026-07-28 client that declares the extension (a plain call otherwise, a
-32021 refusal for ``task="required"``); ``call_tool`` hides the task and
returns the final result; the lifecycle methods show it as it is (status,
message, questions, result, error); a task outlives its request, belongs to
its principal, ends at its TTL, is bounded, and is cancelled cleanly -- its
own cancel scope, by ``tasks/cancel``, by the caller giving up, by the app
stopping.  Each test has an absolute ``fail_after`` (mock clock, in memory).
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import mcp_types
import pytest
import trio

from tests.client_helpers import BASE_URL, asgi_http_client
from trio_mcp_sse import AuthSettings, MCPError, StaticTokens
from trio_mcp_sse.client import ClientSession, TaskInfo, open_session
from trio_mcp_sse.server import TASKS_EXTENSION, Context, MCPServer, TaskSettings, ToolError

URL = f"{BASE_URL}/mcp"
MODERN = "2026-07-28"
NAME_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


class Events:
    """What the tools saw happen to them, for the tests to check."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.finished: list[str] = []


def make_server(events: Events, **options: Any) -> MCPServer:
    server = MCPServer("tasks", "1.0.0", **options)

    @server.tool(task=True)
    async def slow(seconds: float, label: str) -> str:
        """Sleep, then say so."""
        events.started.append(label)
        try:
            await trio.sleep(seconds)
        except trio.Cancelled:
            events.cancelled.append(label)
            raise
        events.finished.append(label)
        return f"{label} done after {seconds:g} s"

    @server.tool(task="required")
    async def only_task() -> str:
        """Runs only as a task."""
        return "ran as a task"

    @server.tool
    async def plain(text: str) -> str:
        """Never a task."""
        return text

    @server.tool(task=True)
    async def tool_failure() -> str:
        raise ToolError("no such file")

    @server.tool(task=True)
    async def protocol_failure() -> str:
        raise MCPError(-32603, "the backend is down", {"retry": False})

    @server.tool(task=True)
    async def ask_name(ctx: Context) -> str:
        answer = await ctx.elicit("Your name?", NAME_SCHEMA)
        return f"Hello, {(answer.content or {}).get('name')}!"

    @server.tool(task=True)
    async def two_questions(ctx: Context) -> str:
        schema = {"message": "?", "requestedSchema": NAME_SCHEMA}
        answers = await ctx.request_input(
            {"first": {"method": "elicitation/create", "params": schema},
             "second": {"method": "elicitation/create", "params": schema}}
        )
        return " and ".join(str(answers[key]["content"]["name"]) for key in ("first", "second"))

    @server.tool(task=True)
    async def reports(ctx: Context) -> str:
        await ctx.report_progress(1, 2, "halfway there")
        await trio.sleep(10)
        await ctx.info("not sent anywhere: a task has no log messages")
        return "reported"

    @server.tool(task=True)
    async def big() -> str:
        return "x" * 5000

    @server.tool(task="required", task_start="explicit")
    async def ask_then_work(ctx: Context, quick: bool = False) -> str:
        answer = await ctx.elicit("Your name?", NAME_SCHEMA, key="who")
        name = (answer.content or {}).get("name")
        if quick:
            return f"{name}, at once"
        events.started.append(f"explicit {name}")
        assert await ctx.start_task("working on it")
        await trio.sleep(5)
        return f"{name}, from the task {ctx.task_id is not None}"

    return server


async def answer_name(params: Any) -> mcp_types.ElicitResult:
    return mcp_types.ElicitResult(action="accept", content={"name": "Ada"})


@asynccontextmanager
async def connected(server: MCPServer, **options: Any) -> AsyncIterator[ClientSession]:
    app = server.http_app()
    options.setdefault("protocol", MODERN)
    async with asgi_http_client(app) as http, open_session(URL, http_client=http, **options) as session:
        yield session


def text(result: mcp_types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


# -- which calls become tasks ----------------------------------------------------------------------
async def test_the_extension_is_announced_and_a_declaring_client_gets_a_task(autojump_clock: Any) -> None:
    events = Events()
    with trio.fail_after(60):
        async with connected(make_server(events), tasks=True) as session:
            discovered = await session.send_request("server/discover")
            assert discovered["capabilities"]["extensions"] == {TASKS_EXTENSION: {}}
            started = await session.start_tool("slow", {"seconds": 3, "label": "a"})
            assert isinstance(started, TaskInfo)
            assert started.status == "working"
            assert started.ttl_ms == 3_600_000 and started.poll_interval_ms == 500
            assert started.result is None and started.error is None
            for stamp in (started.created_at, started.last_updated_at):
                assert datetime.datetime.fromisoformat(stamp).tzinfo is not None
            # Strongly consistent: found at once.
            assert (await session.get_task(started.task_id)).status == "working"
            finished = await session.wait_task(started.task_id)
            assert finished.status == "completed"
            assert finished.result is not None and text(finished.result) == "a done after 3 s"
            assert events.finished == ["a"]


async def test_call_tool_hides_the_task_and_reports_each_state(autojump_clock: Any) -> None:
    seen: list[str] = []

    async def on_status(task: TaskInfo) -> None:
        seen.append(task.status)

    with trio.fail_after(60):
        async with connected(make_server(Events()), tasks=True) as session:
            result = await session.call_tool("slow", {"seconds": 2, "label": "b"}, on_task_status=on_status)
            assert text(result) == "b done after 2 s" and not result.is_error
            assert seen == ["working", "completed"]


async def test_without_the_extension_a_call_is_plain_and_a_required_task_is_refused(autojump_clock: Any) -> None:
    with trio.fail_after(60):
        async with connected(make_server(Events())) as session:
            result = await session.start_tool("slow", {"seconds": 1, "label": "c"})
            assert isinstance(result, mcp_types.CallToolResult) and text(result) == "c done after 1 s"
            with pytest.raises(MCPError) as refused:
                await session.call_tool("only_task")
            assert refused.value.code == -32021
            assert refused.value.data == {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}}
            # The task methods need the extension too.
            with pytest.raises(MCPError) as gated:
                await session.send_request("tasks/get", {"taskId": "whatever"})
            assert gated.value.code == -32021


async def test_in_the_handshake_era_every_call_is_plain(autojump_clock: Any) -> None:
    with trio.fail_after(60):
        async with connected(make_server(Events()), protocol="handshake", tasks=True) as session:
            result = await session.start_tool("slow", {"seconds": 1, "label": "d"})
            assert isinstance(result, mcp_types.CallToolResult) and text(result) == "d done after 1 s"
            with pytest.raises(MCPError) as refused:
                await session.call_tool("only_task")
            assert refused.value.code == -32021
            with pytest.raises(MCPError) as missing:
                await session.send_request("tasks/get", {"taskId": "whatever"})
            assert missing.value.code == -32601


async def test_a_plain_tool_stays_plain_and_the_removed_methods_are_unknown(autojump_clock: Any) -> None:
    with trio.fail_after(60):
        async with connected(make_server(Events()), tasks=True) as session:
            result = await session.start_tool("plain", {"text": "hi"})
            assert isinstance(result, mcp_types.CallToolResult) and text(result) == "hi"
            for method in ("tasks/result", "tasks/list"):
                with pytest.raises(MCPError) as unknown:
                    await session.send_request(method, {"taskId": "x"})
                assert unknown.value.code == -32601


# -- how tasks end -----------------------------------------------------------------------------------
async def test_a_tool_error_completes_and_a_protocol_error_fails(autojump_clock: Any) -> None:
    with trio.fail_after(60):
        async with connected(make_server(Events()), tasks=True) as session:
            result = await session.call_tool("tool_failure")
            assert result.is_error and text(result) == "no such file"
            started = await session.start_tool("protocol_failure")
            assert isinstance(started, TaskInfo)
            failed = await session.wait_task(started.task_id)
            assert failed.status == "failed"
            assert failed.error == {"code": -32603, "message": "the backend is down", "data": {"retry": False}}
            assert failed.result is None and failed.status_message == "the backend is down"
            with pytest.raises(MCPError) as raised:
                await session.call_tool("protocol_failure")
            assert (raised.value.code, raised.value.message) == (-32603, "the backend is down")


async def test_tasks_cancel_stops_the_work_through_its_cancel_scope(autojump_clock: Any) -> None:
    events = Events()
    with trio.fail_after(60):
        async with connected(make_server(events), tasks=True) as session:
            started = await session.start_tool("slow", {"seconds": 600, "label": "long"})
            assert isinstance(started, TaskInfo)
            await trio.sleep(1)
            await session.cancel_task(started.task_id)
            ended = await session.wait_task(started.task_id)
            assert ended.status == "cancelled" and ended.result is None
            assert events.cancelled == ["long"] and events.finished == []
            # Cancelling an ended task is acknowledged all the same.
            await session.cancel_task(started.task_id)
            with pytest.raises(MCPError) as raised:
                ended.raise_for_status()
            assert raised.value.code == -32800


async def test_a_caller_that_stops_waiting_cancels_the_task(autojump_clock: Any) -> None:
    events = Events()
    with trio.fail_after(60):
        async with connected(make_server(events), tasks=True) as session:
            with trio.move_on_after(5):
                await session.call_tool("slow", {"seconds": 600, "label": "abandoned"})
            await trio.sleep(1)
            assert events.started == ["abandoned"] and events.cancelled == ["abandoned"]


async def test_stopping_the_app_cancels_running_tasks(autojump_clock: Any) -> None:
    events = Events()
    with trio.fail_after(60):
        async with connected(make_server(events), tasks=True) as session:
            started = await session.start_tool("slow", {"seconds": 600, "label": "running"})
            assert isinstance(started, TaskInfo)
            await trio.sleep(1)
        assert events.cancelled == ["running"]


async def test_a_task_is_kept_for_its_ttl_then_forgotten_and_its_work_cancelled(autojump_clock: Any) -> None:
    events = Events()
    server = make_server(events, tasks=TaskSettings(ttl=30, poll_interval=2))
    with trio.fail_after(120):
        async with connected(server, tasks=True) as session:
            done = await session.start_tool("slow", {"seconds": 1, "label": "short"})
            running = await session.start_tool("slow", {"seconds": 600, "label": "forever"})
            assert isinstance(done, TaskInfo) and isinstance(running, TaskInfo)
            assert done.ttl_ms == 30_000 and done.poll_interval_ms == 2000
            await trio.sleep(29)
            assert (await session.get_task(done.task_id)).status == "completed"
            assert (await session.get_task(running.task_id)).status == "working"
            await trio.sleep(2)
            for task in (done, running):
                with pytest.raises(MCPError) as gone:
                    await session.get_task(task.task_id)
                assert gone.value.code == -32602
                assert gone.value.message == f"Task not found: {task.task_id}"
            assert events.cancelled == ["forever"]


# -- questions -----------------------------------------------------------------------------------------
async def test_a_task_asks_through_tasks_get_and_wait_task_answers_with_the_handlers(autojump_clock: Any) -> None:
    asked: list[str] = []

    async def elicit(params: Any) -> mcp_types.ElicitResult:
        asked.append(params.message)
        return mcp_types.ElicitResult(action="accept", content={"name": "Grace"})

    with trio.fail_after(60):
        async with connected(make_server(Events()), tasks=True, elicitation_handler=elicit) as session:
            result = await session.call_tool("ask_name")
            assert text(result) == "Hello, Grace!"
            assert asked == ["Your name?"]  # once, though the task was polled while it waited


async def test_answers_may_come_one_at_a_time(autojump_clock: Any) -> None:
    with trio.fail_after(60):
        async with connected(make_server(Events()), tasks=True, elicitation_handler=answer_name) as session:
            started = await session.start_tool("two_questions")
            assert isinstance(started, TaskInfo)
            waiting = await session.wait_task(started.task_id, answer_inputs=False)
            assert waiting.status == "input_required"
            assert set(waiting.input_requests) == {"first", "second"}
            assert waiting.input_requests["first"] == {
                "method": "elicitation/create", "params": {"message": "?", "requestedSchema": NAME_SCHEMA},
            }
            await session.update_task(started.task_id, {"first": {"action": "accept", "content": {"name": "Ada"}},
                                                         "never-asked": {"action": "accept"}})
            partial = await session.get_task(started.task_id)
            assert partial.status == "input_required" and list(partial.input_requests) == ["second"]
            with pytest.raises(MCPError) as unusable:
                await session.update_task(started.task_id, {"second": "Bob"})
            assert (unusable.value.code, unusable.value.message) == (
                -32602, "tasks/update: inputResponses['second'] must be an object"
            )
            await session.update_task(started.task_id, {"second": {"action": "accept", "content": {"name": "Bob"}}})
            finished = await session.wait_task(started.task_id)
            assert finished.result is not None and text(finished.result) == "Ada and Bob"


async def test_a_task_question_needs_the_capability_declared(autojump_clock: Any) -> None:
    with trio.fail_after(60):
        async with connected(make_server(Events()), tasks=True) as session:  # no elicitation handler
            started = await session.start_tool("ask_name")
            assert isinstance(started, TaskInfo)
            failed = await session.wait_task(started.task_id)
            assert failed.status == "failed" and failed.error is not None
            assert failed.error["code"] == -32021


async def test_progress_becomes_the_status_message(autojump_clock: Any) -> None:
    with trio.fail_after(60):
        async with connected(make_server(Events()), tasks=True) as session:
            started = await session.start_tool("reports")
            assert isinstance(started, TaskInfo)
            await trio.sleep(1)
            assert (await session.get_task(started.task_id)).status_message == "halfway there"
            assert text((await session.wait_task(started.task_id)).raise_for_status()) == "reported"


async def test_explicit_start_asks_first_then_becomes_a_task(autojump_clock: Any) -> None:
    events = Events()
    with trio.fail_after(60):
        async with connected(make_server(events), tasks=True, elicitation_handler=answer_name) as session:
            # The question is a multi round-trip one (answered by send_request's loop); then a task.
            started = await session.start_tool("ask_then_work")
            assert isinstance(started, TaskInfo)
            assert started.status_message == "working on it"
            assert events.started == ["explicit Ada"]
            finished = await session.wait_task(started.task_id)
            assert finished.result is not None and text(finished.result) == "Ada, from the task True"
            # Returning before start_task() answers at once, no task.
            quick = await session.start_tool("ask_then_work", {"quick": True})
            assert isinstance(quick, mcp_types.CallToolResult) and text(quick) == "Ada, at once"


# -- ownership and bounds ------------------------------------------------------------------------------
async def test_a_task_belongs_to_its_principal(autojump_clock: Any) -> None:
    server = make_server(Events())
    app = server.http_app(auth=AuthSettings(verify_token=StaticTokens({"alice-token": "alice", "bob-token": "bob"})))

    def as_(token: str) -> Any:
        return open_session(URL, http_client=http, protocol=MODERN, tasks=True,
                            headers={"Authorization": f"Bearer {token}"})

    with trio.fail_after(60):
        async with asgi_http_client(app) as http, as_("alice-token") as alice, as_("bob-token") as bob:
            started = await alice.start_tool("slow", {"seconds": 100, "label": "hers"})
            assert isinstance(started, TaskInfo)
            for method, params in (
                ("tasks/get", {"taskId": started.task_id}),
                ("tasks/update", {"taskId": started.task_id, "inputResponses": {}}),
                ("tasks/cancel", {"taskId": started.task_id}),
            ):
                with pytest.raises(MCPError) as hidden:
                    await bob.send_request(method, params)
                assert (hidden.value.code, hidden.value.message) == (-32602, f"Task not found: {started.task_id}")
            with pytest.raises(MCPError) as unknown:
                await bob.get_task("no-such-task")
            assert (unknown.value.code, unknown.value.message) == (-32602, "Task not found: no-such-task")
            assert (await alice.get_task(started.task_id)).status == "working"


async def test_tasks_per_principal_are_bounded_and_free_again_at_ttl(autojump_clock: Any) -> None:
    server = make_server(Events(), tasks=TaskSettings(ttl=20, max_tasks_per_principal=2))
    with trio.fail_after(60):
        async with connected(server, tasks=True) as session:
            for label in ("one", "two"):
                assert isinstance(await session.start_tool("slow", {"seconds": 1, "label": label}), TaskInfo)
            with pytest.raises(MCPError) as busy:
                await session.start_tool("slow", {"seconds": 1, "label": "three"})
            assert busy.value.code == -32000
            assert busy.value.message == (
                "Too many tasks: this caller holds its limit of 2 tasks (each is kept for 20 s from its creation)"
            )
            await trio.sleep(21)
            assert isinstance(await session.start_tool("slow", {"seconds": 1, "label": "four"}), TaskInfo)


async def test_a_result_over_the_size_limit_fails_the_task(autojump_clock: Any) -> None:
    server = make_server(Events(), tasks=TaskSettings(max_result_bytes=1000))
    with trio.fail_after(60):
        async with connected(server, tasks=True) as session:
            started = await session.start_tool("big")
            assert isinstance(started, TaskInfo)
            failed = await session.wait_task(started.task_id)
            assert failed.status == "failed" and failed.error is not None
            assert failed.error["code"] == -32603
            assert str(failed.error["message"]).startswith("The task's result is too large to keep (")


def test_task_settings_refuse_nonsense() -> None:
    for bad in ({"ttl": 0}, {"poll_interval": -1}, {"max_tasks_per_principal": 0},
                {"max_tasks": 5, "max_tasks_per_principal": 6}, {"max_result_bytes": 0}, {"ttl": float("inf")}):
        with pytest.raises(ValueError, match=r"must be|must be >= 1|<= max_tasks"):
            TaskSettings(**bad)
    server = MCPServer("x")
    with pytest.raises(ValueError, match="task must be"):
        server.add_tool(lambda: "x", name="bad", task="sometimes")  # type: ignore[typeddict-item]
    with pytest.raises(ValueError, match="task_start='explicit' needs"):
        server.add_tool(lambda: "x", name="bad", task_start="explicit")


# -- status notifications -----------------------------------------------------------------------------
async def test_listen_reports_each_state_of_the_callers_tasks(autojump_clock: Any) -> None:
    heard: list[dict[str, Any]] = []
    ended = trio.Event()

    async def on_task(notification: Any) -> None:
        heard.append(dict(notification.params or {}))
        if heard[-1]["status"] == "completed":
            ended.set()

    with trio.fail_after(60):
        async with connected(make_server(Events()), tasks=True, elicitation_handler=answer_name,
                             notification_handlers={"notifications/tasks": on_task}) as session:
            started = await session.start_tool("ask_name")
            assert isinstance(started, TaskInfo)
            async with session.listen(task_ids=[started.task_id, "not-a-task"]) as subscription:
                assert subscription.acknowledged == {"taskIds": [started.task_id]}
                await trio.sleep(1)
                assert [params["status"] for params in heard] == ["input_required"]
                assert heard[0]["inputRequests"]["elicitation-1"]["method"] == "elicitation/create"
                await session.update_task(started.task_id, {"elicitation-1": {"action": "accept", "content": {"name": "Lin"}}})
                await ended.wait()
            # States may come together (each notification is the whole state at that moment),
            # but the last is the end, with the result, and nothing follows it.
            assert heard[-1]["result"]["content"] == [{"type": "text", "text": "Hello, Lin!"}]
            assert {params["status"] for params in heard[1:-1]} <= {"working"}
            assert all(params["taskId"] == started.task_id for params in heard)


async def test_listening_for_tasks_needs_the_extension(autojump_clock: Any) -> None:
    with trio.fail_after(60):
        async with connected(make_server(Events())) as session:
            with pytest.raises(MCPError) as refused:
                async with session.listen(task_ids=["x"]):
                    pass  # pragma: no cover
            assert refused.value.code == -32021


async def test_a_mounted_servers_task_tools_run_as_tasks_of_the_parent(autojump_clock: Any) -> None:
    parent = MCPServer("parent")
    parent.mount(make_server(Events()), prefix="jobs")
    assert parent.extensions == {TASKS_EXTENSION: {}}
    with trio.fail_after(60):
        async with connected(parent, tasks=True) as session:
            started = await session.start_tool("jobs_slow", {"seconds": 2, "label": "mounted"})
            assert isinstance(started, TaskInfo)
            finished = await session.wait_task(started.task_id)
            assert finished.result is not None and text(finished.result) == "mounted done after 2 s"
