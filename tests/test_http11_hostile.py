"""Hostile HTTP/1.1 input, on both of ``serve``'s HTTP/1.1 paths: llhttp (the default) and hypercorn's h11.

Each case is sent on a fresh connection to a real ``serve`` (127.0.0.1:0, real
clock, absolute bounds).  What must hold on both paths: a request smuggled
behind a malformed one is never answered, a refused request gets its one
error answer and the connection closes, a head trickled or grown past the
limits is cut, and the server goes on answering other connections.  Where
the two parsers differ (llhttp refuses what h11 tolerates), the expected
answer of each is written next to the case; docs/performance.md lists the
differences.
"""

from __future__ import annotations

import logging
import re

import pytest
import trio

from trio_mcp_sse import _serve
from trio_mcp_sse._serve import ServeOptions, _parse, _use_llhttp

from .test_hypercorn_patches import SMALL, Connection, get, served

PATHS = ["llhttp", "stock"]
"""``stock``: hypercorn's own h11 connection class (``serve --http-parser h11 --no-hypercorn-patches``)."""

SMUGGLED = "GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def error_answer(status: int) -> bytes:
    """hypercorn's answer to bytes that are not a request (h11 leaves its headers as given), on both paths."""
    return b"HTTP/1.1 %d \r\ncontent-length: 0\r\nconnection: close\r\ndate: <date>\r\nserver: hypercorn-h11\r\n\r\n" % status


# (case, bytes sent, llhttp's answer, h11's answer): the status of the one error response.
CASES: list[tuple[str, bytes, int, int]] = [
    (
        "duplicate content-length",
        b"POST /accepted HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd" + SMUGGLED.encode(),
        400,
        400,
    ),
    ("negative content-length", b"POST /accepted HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n", 400, 400),
    ("signed content-length", b"POST /accepted HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: +5\r\n\r\nabcde", 400, 400),
    (
        "bad chunk size",
        b"POST /accepted HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + SMUGGLED.encode(),
        400,
        400,
    ),
    ("unknown transfer-encoding", b"POST /accepted HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400, 501),
    ("two hosts", b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil\r\n\r\n", 400, 400),
    ("no host", b"GET /small HTTP/1.1\r\n\r\n", 400, 400),
    ("space before colon", b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\nX : a\r\n\r\n", 400, 400),
    ("nul in a value", b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\nX: a\x00b\r\n\r\n", 400, 400),
    ("non-ascii target", b"GET /\xff HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400, 400),
    ("not http", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32) + b"\r\n\r\n", 400, 400),
]


async def exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, read until the server closes; the Date value replaced by ``<date>``."""
    connection = await Connection.open(port)
    await connection.stream.send_all(data)
    try:
        while True:
            await connection._fill()
    except (EOFError, trio.BrokenResourceError):
        pass
    return re.sub(rb"\r\ndate: [^\r]*", b"\r\ndate: <date>", bytes(connection.buffer))


@pytest.mark.parametrize("path", PATHS)
async def test_malformed_requests_get_one_error_and_nothing_smuggled_is_answered(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(30):
        async with served(path, monkeypatch) as server:
            for case, data, llhttp_answer, h11_answer in CASES:
                expected = llhttp_answer if path == "llhttp" else h11_answer
                answer = await exchange(server.port, data)
                assert answer == error_answer(expected), (case, answer)
                assert b"hello" not in answer, case  # the smuggled GET /small was not answered
            # ...and the server still answers a well-formed request.
            connection = await Connection.open(server.port)
            await connection.send(get("/small"))
            assert await connection.response() == SMALL


@pytest.mark.parametrize("path", PATHS)
async def test_content_length_with_transfer_encoding_never_serves_what_follows_on_llhttp(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 9112 6.3: such a message may be refused, or framed by Transfer-Encoding and the connection closed.

    llhttp refuses it (400).  h11 frames it by Transfer-Encoding and keeps the
    connection, so a request behind it is answered: a known h11 behaviour,
    one reason llhttp is ``serve``'s default (docs/performance.md).
    """
    data = (
        b"POST /accepted HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        + SMUGGLED.encode()
    )
    with trio.fail_after(30):
        async with served(path, monkeypatch) as server:
            connection = await Connection.open(server.port)
            await connection.stream.send_all(data)
            if path == "llhttp":
                assert await exchange(server.port, data) == error_answer(400)
            else:
                assert (await connection.response()).startswith(b"HTTP/1.1 202 ")
                assert await connection.response() == SMALL


@pytest.mark.parametrize("path", PATHS)
async def test_a_head_over_the_limit_gets_431(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sent in pieces (so neither parser ever holds a complete head), 20 KB of one header line."""
    with trio.fail_after(30):
        async with served(path, monkeypatch) as server:
            connection = await Connection.open(server.port)
            await connection.stream.send_all(b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
            answer = b""
            try:
                for _ in range(40):
                    await connection.stream.send_all(b"a" * 512)
                    await trio.sleep(0.005)
            except trio.BrokenResourceError:
                pass  # the server answered and closed while we were still sending
            try:
                while True:
                    await connection._fill()
            except (EOFError, trio.BrokenResourceError):
                answer = re.sub(rb"\r\ndate: [^\r]*", b"\r\ndate: <date>", bytes(connection.buffer))
            assert answer == error_answer(431)


@pytest.mark.parametrize("path", PATHS)
async def test_a_head_sent_whole_over_the_limit_is_refused_by_llhttp(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One write of a 20 KB head: h11 checks its limit only while a head is incomplete, llhttp counts every head."""
    data = b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    with trio.fail_after(30):
        async with served(path, monkeypatch) as server:
            answer = await exchange(server.port, data)
            if path == "llhttp":
                assert answer == error_answer(431)
            else:
                assert answer.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("path", PATHS)
async def test_a_trickled_head_is_cut_at_the_keep_alive_timeout(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slowloris: one byte every 50 ms never completes a head; the connection is closed, unanswered."""
    with trio.fail_after(30):
        async with served(path, monkeypatch, keep_alive_timeout=0.5) as server:
            connection = await Connection.open(server.port)
            started = trio.current_time()
            closed = False
            try:
                for byte in b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200:
                    await connection.stream.send_all(bytes([byte]))
                    await trio.sleep(0.05)
            except trio.BrokenResourceError:
                closed = True
            if not closed:
                assert await connection.closed_by_server()
            assert trio.current_time() - started < 5
            assert not connection.buffer  # no answer at all
            # the others are still served
            other = await Connection.open(server.port)
            await other.send(get("/small"))
            assert await other.response() == SMALL


@pytest.mark.parametrize("path", PATHS)
async def test_http_1_0_gets_a_close_delimited_answer(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with trio.fail_after(30):
        async with served(path, monkeypatch) as server:
            answer = await exchange(server.port, b"GET /chunked HTTP/1.0\r\n\r\n")
            assert answer == b"HTTP/1.1 200 \r\ndate: <date>\r\nserver: hypercorn-h11\r\nConnection: close\r\n\r\nabcd"
            answer = await exchange(server.port, b"GET /small HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            assert answer == SMALL.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")


@pytest.mark.parametrize("path", PATHS)
async def test_connection_close_from_the_client_is_honoured(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with trio.fail_after(30):
        async with served(path, monkeypatch) as server:
            answer = await exchange(
                server.port, b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" + SMUGGLED.encode()
            )
            if path == "llhttp":
                assert answer == SMALL.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
            else:
                # hypercorn's h11 path refuses the bytes after the close (h11: data after close) and its
                # 400 races the answer on the socket: either may be lost.  The pipelined one never runs.
                assert answer.count(b"hello") <= 1


# -- the option ------------------------------------------------------------------------------------
def test_llhttp_is_the_default_and_h11_the_alternative(capsys: pytest.CaptureFixture[str]) -> None:
    assert ServeOptions().http_parser == "llhttp"
    assert _parse(["m:app"]).http_parser == "llhttp"
    assert _parse(["m:app", "--http-parser", "h11"]).http_parser == "h11"
    with pytest.raises(SystemExit) as exit_info:
        _parse(["m:app", "--http-parser", "picohttp"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'picohttp'" in capsys.readouterr().err


def test_without_httptools_serve_falls_back_to_h11_with_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_mcp_sse")
    assert _use_llhttp(ServeOptions()) is True
    assert _use_llhttp(ServeOptions(http_parser="h11")) is False
    assert not caplog.records
    monkeypatch.setattr(_serve, "llhttp_available", lambda: False)
    assert _use_llhttp(ServeOptions()) is False
    [record] = caplog.records
    assert record.getMessage() == (
        "httptools is not installed: serving HTTP/1.1 with hypercorn's h11 connections (pip install httptools)"
    )


def test_the_backlog_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse(["m:app", "--backlog", "0"])
    assert exit_info.value.code == 2
    assert "--backlog must be >= 1" in capsys.readouterr().err
