"""SSE framing, byte for byte (no sockets)."""

from __future__ import annotations

import pytest

from trio_mcp_sse._sse import SSEDecoder, encode_comment, encode_event, encode_message_event


def test_data_only_event() -> None:
    assert encode_event("hello") == b"data: hello\n\n"


def test_all_fields_in_order() -> None:
    assert (
        encode_event("x", event="message", id="42", retry=1500)
        == b"event: message\nid: 42\nretry: 1500\ndata: x\n\n"
    )


@pytest.mark.parametrize("text", ["a\nb", "a\r\nb", "a\rb"])
def test_multiline_data_becomes_one_data_line_per_line(text: str) -> None:
    assert encode_event(text) == b"data: a\ndata: b\n\n"


def test_trailing_and_empty_lines_are_kept() -> None:
    assert encode_event("a\n\nb\n") == b"data: a\ndata: \ndata: b\ndata: \n\n"
    assert encode_event("") == b"data: \n\n"


def test_leading_space_of_data_survives_a_round_trip() -> None:
    frame = encode_event("  indented")
    assert frame == b"data:   indented\n\n"
    assert SSEDecoder().feed(frame)[0].data == "  indented"


def test_non_ascii_is_utf8() -> None:
    assert encode_event("héllo ✓", event="message") == "event: message\ndata: héllo ✓\n\n".encode()


def test_bytes_data_is_utf8_text() -> None:
    assert encode_event(b'{"a":1}', event="message") == b'event: message\ndata: {"a":1}\n\n'


@pytest.mark.parametrize("bad", ["a\nb", "a\rb"])
def test_event_name_cannot_inject_fields(bad: str) -> None:
    with pytest.raises(ValueError, match="event"):
        encode_event("x", event=bad)


@pytest.mark.parametrize("bad", ["1\n2", "1\0"])
def test_id_cannot_contain_line_breaks_or_nul(bad: str) -> None:
    with pytest.raises(ValueError, match="id"):
        encode_event("x", id=bad)


def test_negative_retry_is_rejected() -> None:
    with pytest.raises(ValueError, match="retry"):
        encode_event("x", retry=-1)


def test_comments() -> None:
    assert encode_comment("ping") == b": ping\n"
    assert encode_comment() == b":\n"
    assert encode_comment("a\nb") == b": a\n: b\n"


def test_message_event_fast_path_matches_general_encoder() -> None:
    payload = b'{"jsonrpc":"2.0","id":1,"result":{"text":"\\u00e9"}}'
    assert encode_message_event(payload) == encode_event(payload, event="message")


def test_message_event_with_raw_newline_still_splits() -> None:
    assert encode_message_event(b'{"a":\n1}') == b'event: message\ndata: {"a":\ndata: 1}\n\n'
