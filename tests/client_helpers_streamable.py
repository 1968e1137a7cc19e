"""A Streamable HTTP server whose every answer a test scripts (in memory, no sockets).

Real servers do not drop a stream, forget a session or answer 500 on demand;
this one does.  ``answers[method]`` decides how a POSTed request is answered
(a function of the message, returning an :class:`Answer`); ``get_answers`` is
the queue of answers to GETs (empty: ``405``).  Every HTTP request is recorded
in ``seen`` with the mock-clock time it arrived.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio

from trio_mcp_sse._sse import encode_event

ENDPOINT = "http://testserver/mcp"
SESSION_ID = "session-1"


@dataclass
class Answer:
    """``status`` with ``json`` (a body) or ``frames`` (an event stream).

    A stream sends ``frames`` in order, then the frames ``then()`` returns
    (it may wait for the client); then it ends when ``end`` is true, else
    stays open forever.
    """

    status: int = 200
    json: Any = None
    frames: list[bytes] = field(default_factory=list)
    end: bool = True
    then: Callable[[], Awaitable[list[bytes]]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class Seen:
    method: str
    headers: dict[str, str]
    message: Any
    time: float


def message_event(message: dict[str, Any], *, id: str | None = None) -> bytes:
    return encode_event(orjson.dumps(message), event="message", id=id)


def priming_event(id: str, *, retry: int | None = None) -> bytes:
    return encode_event("", id=id, retry=retry)


def result(request: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request["id"], "result": value}


class FakeStreamableServer:
    def __init__(self, *, protocol_version: str = "2025-11-25", session_id: str | None = SESSION_ID) -> None:
        self.protocol_version = protocol_version
        self.session_id = session_id
        self.seen: list[Seen] = []
        self.changed = trio.Event()
        self.get_answers: list[Answer] = []
        self.delete_status = 200
        self.answers: dict[str, Callable[[dict[str, Any]], Answer]] = {
            "initialize": self._initialize,
            "tools/list": lambda message: Answer(json=result(message, {"tools": []})),
            "ping": lambda message: Answer(json=result(message, {})),
        }

    def _initialize(self, message: dict[str, Any]) -> Answer:
        headers = {"mcp-session-id": self.session_id} if self.session_id else {}
        value = {
            "protocolVersion": self.protocol_version,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "fake", "version": "0"},
        }
        return Answer(json=result(message, value), headers=headers)

    def posted(self, method: str) -> list[Seen]:
        return [
            seen
            for seen in self.seen
            if seen.method == "POST" and isinstance(seen.message, dict) and seen.message.get("method") == method
        ]

    def requests(self, http_method: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.method == http_method]

    async def wait_for(self, predicate: Callable[[], Any]) -> Any:
        while not (value := predicate()):
            self.changed = trio.Event()
            await self.changed.wait()
        return value

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        message = orjson.loads(body) if body else None
        self.seen.append(Seen(scope["method"], headers, message, trio.current_time()))
        self.changed.set()
        if scope["method"] == "POST":
            answer = self._answer_post(message)
        elif scope["method"] == "GET":
            answer = self.get_answers.pop(0) if self.get_answers else Answer(status=405)
        elif scope["method"] == "DELETE":
            answer = Answer(status=self.delete_status)
        else:
            answer = Answer(status=405)
        await self._respond(answer, receive, send)

    def _answer_post(self, message: Any) -> Answer:
        method = message.get("method") if isinstance(message, dict) else None
        if method is None or "id" not in message:
            return Answer(status=202)
        handler = self.answers.get(method)
        if handler is None:
            return Answer(
                json={"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32601, "message": "nope"}}
            )
        return handler(message)

    async def _respond(self, answer: Answer, receive: Any, send: Any) -> None:
        headers = [(key.encode(), value.encode()) for key, value in answer.headers.items()]
        if answer.json is not None:
            content_type, body = b"application/json", orjson.dumps(answer.json)
        elif answer.frames or not answer.end or answer.then is not None:
            content_type, body = b"text/event-stream", None
        else:
            content_type, body = b"text/plain", answer.body
        headers.append((b"content-type", content_type))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        if body is not None:
            await send({"type": "http.response.body", "body": body})
            return
        for frame in answer.frames:
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        if answer.then is not None:
            for frame in await answer.then():
                await send({"type": "http.response.body", "body": frame, "more_body": True})
        if not answer.end:
            await trio.sleep(math.inf)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
