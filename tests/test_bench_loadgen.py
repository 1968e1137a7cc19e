"""The benchmark's Streamable HTTP client against a scripted server on loopback.

The load generator's numbers are only worth something if it reads every answer
form a server may choose, and keeps a keep-alive connection in step with the
responses on it (an event stream's last chunk can arrive in pieces).
"""

from __future__ import annotations

import functools

import orjson
import trio

from benchmarks.loadgen import Errors, StreamableSession, check_echo

SESSION_ID = b"3f0c9a7e5b1d4c2a8e6f0b9d7c5a3e1f"


async def read_request(stream: trio.SocketStream, buf: bytearray) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """One HTTP/1.1 request with a Content-Length body: request line, headers, body."""
    while (end := buf.find(b"\r\n\r\n")) < 0:
        buf += await stream.receive_some()
    line, *lines = bytes(buf[:end]).split(b"\r\n")
    del buf[: end + 4]
    headers = {}
    for header in lines:
        name, _, value = header.partition(b":")
        headers[name.strip().lower()] = value.strip()
    size = int(headers.get(b"content-length", b"0"))
    while len(buf) < size:
        buf += await stream.receive_some()
    body = bytes(buf[:size])
    del buf[:size]
    return line, headers, body


def json_answer(message: dict[str, object], *extra: bytes) -> bytes:
    body = orjson.dumps(message)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    return head + b"".join(extra) + b"\r\n" + body


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def scripted_server(stream: trio.SocketStream, seen: list[tuple[bytes, dict[bytes, bytes], bytes]]) -> None:
    """Answer initialize as JSON, the first call as an event stream, the second as JSON."""
    buf = bytearray()
    while True:
        try:
            line, headers, body = await read_request(stream, buf)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        seen.append((line, headers, body))
        if line.startswith(b"DELETE "):
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            return
        message = orjson.loads(body)
        if "id" not in message:
            await stream.send_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
        elif message["method"] == "initialize":
            result = {"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "s", "version": "1"}}
            answer = {"jsonrpc": "2.0", "id": message["id"], "result": result}
            await stream.send_all(json_answer(answer, b"Mcp-Session-Id: " + SESSION_ID + b"\r\n"))
        else:
            text = message["params"]["arguments"]["text"]
            answer = {"jsonrpc": "2.0", "id": message["id"], "result": {"content": [{"type": "text", "text": text}]}}
            if text != "as a stream":
                await stream.send_all(json_answer(answer))
                continue
            # A priming event (an id, empty data), a notification, then the response;
            # the last chunk's size line and its final CRLF in separate writes.
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                + chunk(b"id: 0\r\ndata: \r\n\r\n")
                + chunk(b'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{}}\r\n\r\n')
            )
            await stream.send_all(chunk(b"event: message\r\ndata: " + orjson.dumps(answer) + b"\r\n\r\n") + b"0\r\n")
            await trio.sleep(0.05)
            await stream.send_all(b"\r\n")


async def test_streamable_session_reads_json_and_event_stream_answers_on_one_connection() -> None:
    seen: list[tuple[bytes, dict[bytes, bytes], bytes]] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, host="127.0.0.1"), lambda s: scripted_server(s, seen), 0
            )
            port = listeners[0].socket.getsockname()[1]
            errors = Errors()
            session = StreamableSession(port, errors, short_posts=False, timeout=5, path=b"/mcp")
            await session.open(nursery)
            for text in ("as a stream", "as json"):
                result = await session.request("tools/call", {"name": "echo", "arguments": {"text": text}})
                check_echo(result, text)
            await session.end()
            nursery.cancel_scope.cancel()

    assert errors.total == 0
    assert (session.json_responses, session.stream_responses) == (2, 1)
    assert session.posts.requests == 5
    assert session.posts.reconnects == 0
    assert [line for line, _, _ in seen] == [b"POST /mcp HTTP/1.1"] * 4 + [b"DELETE /mcp HTTP/1.1"]
    assert all(headers[b"accept"] == b"application/json, text/event-stream" for _, headers, _ in seen)
    # initialize carries neither header; everything after it carries both, with the negotiated version.
    assert b"mcp-session-id" not in seen[0][1]
    assert b"mcp-protocol-version" not in seen[0][1]
    for _, headers, _ in seen[1:]:
        assert headers[b"mcp-session-id"] == SESSION_ID
        assert headers[b"mcp-protocol-version"] == b"2025-06-18"
    assert orjson.loads(seen[1][2]) == {"jsonrpc": "2.0", "method": "notifications/initialized"}
