"""Resources: static and templated, text and binary reads, subscriptions, pagination."""

from __future__ import annotations

import base64

import pydantic
import pytest
import trio

from trio_mcp_sse.server import Context, MCPServer, ResourceNotFound, resource_contents
from trio_mcp_sse.testing import connected_client, serve_sessions

from .conformance import conforms

NOTES = {"alpha": "first note", "beta": "second note"}


class Stats(pydantic.BaseModel):
    count: int


def make_server(**options: object) -> MCPServer:
    server = MCPServer("resources", **options)  # type: ignore[arg-type]

    @server.resource("config://app", title="App config", description="Settings.", mime_type="application/toml")
    async def config() -> str:
        return "debug = true"

    @server.resource("file:///logo.png", mime_type="image/png", annotations={"audience": ["user"], "priority": 1.0})
    def logo() -> bytes:
        return b"\x89PNG\r\n"

    @server.resource("stats://notes")
    async def stats() -> Stats:
        return Stats(count=len(NOTES))

    @server.resource("notes://{name}", name="note", mime_type="text/markdown")
    async def note(name: str) -> str:
        """A note by name."""
        if name not in NOTES:
            raise ResourceNotFound(f"notes://{name}")
        return NOTES[name]

    @server.resource("items://{item_id}/parts/{part}")
    async def part(item_id: int, part: str, ctx: Context) -> str:
        return f"{item_id + 1}:{part}:{ctx.method}"

    @server.resource("files://{+path}")
    async def file(path: str) -> list[dict[str, object]]:
        return [
            resource_contents(f"files://{path}", text=f"text of {path}"),
            resource_contents(f"files://{path}.sig", blob=b"\x01\x02", mime_type="application/octet-stream"),
        ]

    server.add_resource("text://fixed", "fixed text")
    return server


async def test_resources_list() -> None:
    async with connected_client(make_server()) as client:
        result = await client.call("resources/list")
        conforms("resources/list", result)
        resources = {r["uri"]: r for r in result["resources"]}
        assert set(resources) == {"config://app", "file:///logo.png", "stats://notes", "text://fixed"}
        assert resources["config://app"] == {
            "uri": "config://app",
            "name": "config",
            "title": "App config",
            "description": "Settings.",
            "mimeType": "application/toml",
        }
        assert resources["file:///logo.png"]["annotations"] == {"audience": ["user"], "priority": 1.0}
        assert resources["text://fixed"]["size"] == len("fixed text")


async def test_resource_templates_list() -> None:
    async with connected_client(make_server()) as client:
        result = await client.call("resources/templates/list")
        conforms("resources/templates/list", result)
        templates = {t["uriTemplate"]: t for t in result["resourceTemplates"]}
        assert set(templates) == {"notes://{name}", "items://{item_id}/parts/{part}", "files://{+path}"}
        assert templates["notes://{name}"] == {
            "uriTemplate": "notes://{name}",
            "name": "note",
            "description": "A note by name.",
            "mimeType": "text/markdown",
        }


async def test_read_text_binary_and_json() -> None:
    async with connected_client(make_server()) as client:
        result = await client.call("resources/read", {"uri": "config://app"})
        conforms("resources/read", result)
        assert result == {"contents": [{"uri": "config://app", "mimeType": "application/toml", "text": "debug = true"}]}

        result = await client.call("resources/read", {"uri": "file:///logo.png"})
        conforms("resources/read", result)
        (entry,) = result["contents"]
        assert entry["mimeType"] == "image/png"
        assert base64.b64decode(entry["blob"]) == b"\x89PNG\r\n"

        result = await client.call("resources/read", {"uri": "stats://notes"})
        assert result["contents"][0]["mimeType"] == "application/json"
        assert Stats.model_validate_json(result["contents"][0]["text"]) == Stats(count=2)

        result = await client.call("resources/read", {"uri": "text://fixed"})
        assert result["contents"][0]["text"] == "fixed text"


async def test_read_through_templates() -> None:
    async with connected_client(make_server()) as client:
        result = await client.call("resources/read", {"uri": "notes://alpha"})
        assert result["contents"] == [{"uri": "notes://alpha", "mimeType": "text/markdown", "text": "first note"}]
        # Variables are percent-decoded and converted to the parameter's type.
        result = await client.call("resources/read", {"uri": "items://41/parts/a%20b"})
        assert result["contents"][0]["text"] == "42:a b:resources/read"
        # {+path} spans slashes; a list of entries is sent as it is.
        result = await client.call("resources/read", {"uri": "files://docs/readme.md"})
        conforms("resources/read", result)
        assert [c["uri"] for c in result["contents"]] == ["files://docs/readme.md", "files://docs/readme.md.sig"]
        assert base64.b64decode(result["contents"][1]["blob"]) == b"\x01\x02"


async def test_read_errors() -> None:
    async with connected_client(make_server()) as client:
        error = await client.call_error("resources/read", {"uri": "nothing://here"})
        assert error == {"code": -32002, "message": "Resource not found: nothing://here", "data": {"uri": "nothing://here"}}
        # Matches the template, but the function says there is no such note.
        error = await client.call_error("resources/read", {"uri": "notes://gamma"})
        assert error["code"] == -32002
        # A {name} variable never spans a slash.
        assert (await client.call_error("resources/read", {"uri": "notes://a/b"}))["code"] == -32002
        error = await client.call_error("resources/read", {"uri": "items://forty/parts/x"})
        assert error["code"] == -32602
        assert "item_id" in error["message"]
        assert (await client.call_error("resources/read", {}))["code"] == -32602


async def test_subscriptions_deliver_updates_to_subscribers_only() -> None:
    server = make_server()
    async with serve_sessions(server) as host:
        subscriber = await host.initialized_client()
        bystander = await host.initialized_client()
        assert await subscriber.call("resources/subscribe", {"uri": "notes://alpha"}) == {}
        server.notify_resource_updated("notes://alpha")
        server.notify_resource_updated("notes://beta")  # nobody subscribed
        update = await subscriber.notification("notifications/resources/updated")
        assert update["params"] == {"uri": "notes://alpha"}
        assert await subscriber.drain() == []
        assert await bystander.drain() == []

        assert await subscriber.call("resources/unsubscribe", {"uri": "notes://alpha"}) == {}
        server.notify_resource_updated("notes://alpha")
        assert await subscriber.drain() == []
        assert (await subscriber.call_error("resources/subscribe", {"uri": 3}))["code"] == -32602


async def test_list_changed_is_announced_to_initialized_sessions() -> None:
    server = make_server()
    async with serve_sessions(server) as host:
        first = await host.initialized_client()
        second = await host.initialized_client()
        not_initialized = await host.connect()

        server.add_resource("text://new", "new")
        for client in (first, second):
            await client.notification("notifications/resources/list_changed")
        assert "text://new" in {r["uri"] for r in (await first.call("resources/list"))["resources"]}

        server.remove_resource("text://new")
        server.remove_resource("notes://{name}")
        for client in (first, second):
            # Two changes, two announcements (in order, nothing lost).
            await client.notification("notifications/resources/list_changed")
            await client.notification("notifications/resources/list_changed")
        templates = (await first.call("resources/templates/list"))["resourceTemplates"]
        assert "notes://{name}" not in {t["uriTemplate"] for t in templates}
        assert await not_initialized.drain() == []
        with pytest.raises(KeyError):
            server.remove_resource("text://new")


async def test_announcements_wait_for_room_instead_of_being_dropped(autojump_clock: trio.abc.Clock) -> None:
    from trio_mcp_sse import SessionLimits

    server = make_server()
    async with serve_sessions(server, limits=SessionLimits(outbound_buffer=1)) as host:
        client = await host.initialized_client()
        await client.call("resources/subscribe", {"uri": "notes://alpha"})
        for _ in range(3):
            server.notify_resource_updated("notes://alpha")
        server.add_resource("text://later", "x")
        # The outbound buffer holds one message; the rest wait (identical
        # queued updates coalesce) and arrive in order once there is room.
        methods = [(await client.receive())["method"] for _ in range(3)]
        assert methods == [
            "notifications/resources/updated",
            "notifications/resources/updated",
            "notifications/resources/list_changed",
        ]
        assert await client.drain() == []


@pytest.mark.parametrize("page_size", [1, 2, 10])
async def test_pagination_visits_every_resource_once(page_size: int) -> None:
    async with connected_client(make_server(page_size=page_size)) as client:
        seen: list[str] = []
        params: dict[str, str] = {}
        for _ in range(10):
            result = await client.call("resources/list", params)
            conforms("resources/list", result)
            seen.extend(r["uri"] for r in result["resources"])
            if "nextCursor" not in result:
                break
            params = {"cursor": result["nextCursor"]}
        assert sorted(seen) == sorted(["config://app", "file:///logo.png", "stats://notes", "text://fixed"])


async def test_a_cursor_never_issued_is_invalid_params() -> None:
    async with connected_client(make_server()) as client:
        for method in ("tools/list", "resources/list", "resources/templates/list", "prompts/list"):
            error = await client.call_error(method, {"cursor": "bogus"})
            assert error["code"] == -32602


def test_template_registration_errors() -> None:
    server = MCPServer("bad")
    with pytest.raises(TypeError, match="do not match"):
        server.add_resource("a://{x}", lambda y: y)
    with pytest.raises(TypeError, match="no template variables"):
        server.add_resource("a://fixed", lambda y: y)
    with pytest.raises(ValueError, match="unsupported expression"):
        server.add_resource("a://{?x}", lambda x: x)
    with pytest.raises(ValueError, match="unbalanced"):
        server.add_resource("a://{x}}", lambda x: x)
    server.add_resource("a://{x}", lambda x: x)
    with pytest.raises(ValueError, match="already registered"):
        server.add_resource("a://{x}", lambda x: x)


async def test_sync_code_in_a_worker_thread_can_announce_changes() -> None:
    server = make_server()

    @server.tool
    def touch(uri: str) -> str:
        # Runs in a worker thread: the server hops to the Trio thread to announce.
        server.notify_resource_updated(uri)
        server.add_resource(f"{uri}/copy", "copy")
        return "touched"

    async with connected_client(server) as client:
        await client.call("resources/subscribe", {"uri": "config://app"})
        result = await client.call("tools/call", {"name": "touch", "arguments": {"uri": "config://app"}})
        assert result["content"][0]["text"] == "touched"
        update = await client.notification("notifications/resources/updated")
        assert update["params"]["uri"] == "config://app"
        await client.notification("notifications/resources/list_changed")


async def test_subscriptions_per_session_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from trio_mcp_sse.server import _handlers

    monkeypatch.setattr(_handlers, "MAX_SUBSCRIPTIONS", 8)
    async with connected_client(make_server()) as client:
        for index in range(8):
            assert await client.call("resources/subscribe", {"uri": f"notes://n{index}"}) == {}
        error = await client.call_error("resources/subscribe", {"uri": "notes://one-too-many"})
        assert error["code"] == -32000
        # Subscribing again to a URI already held is fine.
        assert await client.call("resources/subscribe", {"uri": "notes://n0"}) == {}
