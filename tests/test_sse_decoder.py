"""The incremental SSE decoder against the WHATWG event-stream rules.

The property tests build a stream from random events and comments with the
project's own encoder, rewrite its line ends (LF, CR or CRLF, chosen per line),
cut the bytes at random points -- including inside multi-byte characters and
between the CR and LF of one line end -- and check the decoder gives back
exactly the events that went in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_mcp_sse._sse import (
    ServerSentEvent,
    SSEDecoder,
    SSELimitExceeded,
    encode_comment,
    encode_event,
)

# Any text that can be UTF-8 encoded (no lone surrogates), weighted towards the
# characters that matter to the format.
_chars = st.characters(blacklist_categories=("Cs",))
_tricky = st.sampled_from(
    ["\r", "\n", "\r\n", ":", " ", "\ufeff", "\0", "é", "€", "𝄞", "data:", "event"]
)
_text = st.lists(st.one_of(_chars, _tricky), max_size=12).map("".join)
_field = _text.map(lambda text: re.sub(r"[\r\n]", "", text))
_event_id = _field.map(lambda text: text.replace("\0", ""))


@dataclass(frozen=True)
class _Event:
    data: str
    event: str | None
    id: str | None
    retry: int | None


@dataclass(frozen=True)
class _Comment:
    text: str


_events = st.builds(
    _Event,
    data=_text,
    event=st.none() | _field,
    id=st.none() | _event_id,
    retry=st.none() | st.integers(min_value=0, max_value=10**12),
)
_items = st.lists(st.one_of(_events, st.builds(_Comment, _text)), max_size=8)
_line_ends = st.sampled_from([b"\n", b"\r", b"\r\n"])


def _encode(item: _Event | _Comment) -> bytes:
    if isinstance(item, _Comment):
        return encode_comment(item.text)
    return encode_event(item.data, event=item.event, id=item.id, retry=item.retry)


def _expected(items: list[_Event | _Comment]) -> list[ServerSentEvent]:
    """What a conforming reader dispatches: last id and retry persist across events."""
    events = []
    last_id: str | None = None
    retry: int | None = None
    for item in items:
        if isinstance(item, _Comment):
            continue
        if item.id is not None:
            last_id = item.id
        if item.retry is not None:
            retry = item.retry
        data = re.sub(r"\r\n|\r", "\n", item.data)
        events.append(
            ServerSentEvent(data=data, event=item.event or "message", id=last_id, retry=retry)
        )
    return events


def _decode(stream: bytes, cuts: list[int]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    previous = 0
    for cut in [*sorted(cuts), len(stream)]:  # repeated cuts feed empty chunks
        events.extend(decoder.feed(stream[previous:cut]))
        previous = cut
    return events


@st.composite
def _streams(draw: st.DrawFn) -> tuple[list[_Event | _Comment], bytes, list[int]]:
    items = draw(_items)
    # The encoder ends every line with LF, and no field value contains a line
    # break, so every LF is a line end that may be rewritten.
    lines = b"".join(_encode(item) for item in items).split(b"\n")
    stream = lines[0]
    previous_end = b""
    for line in lines[1:]:
        end = draw(_line_ends)
        if previous_end == b"\r" and stream.endswith(b"\r") and end == b"\n":
            end = b"\r\n"  # CR, empty line, LF would read as one CRLF: keep two line ends
        stream += end + line
        previous_end = end
    if draw(st.booleans()):
        stream = "\ufeff".encode() + stream
    cuts = draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=20))
    return items, stream, cuts


@settings(max_examples=300, deadline=None)
@given(_streams())
def test_random_streams_decode_to_the_events_encoded(
    case: tuple[list[_Event | _Comment], bytes, list[int]],
) -> None:
    items, stream, cuts = case
    assert _decode(stream, cuts) == _expected(items)


@settings(max_examples=100, deadline=None)
@given(_streams())
def test_byte_at_a_time_equals_all_at_once(
    case: tuple[list[_Event | _Comment], bytes, list[int]],
) -> None:
    _, stream, _ = case
    assert _decode(stream, list(range(len(stream)))) == _decode(stream, [])


@settings(max_examples=100, deadline=None)
@given(st.lists(_events, min_size=1, max_size=5), st.data())
def test_json_message_frames_survive_any_split(events: list[_Event], data: st.DataObject) -> None:
    from trio_mcp_sse._sse import encode_message_event

    payloads = [f'{{"text":{e.data!r}}}'.encode() for e in events]
    stream = b"".join(encode_message_event(payload) for payload in payloads)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=10))
    decoded = _decode(stream, cuts)
    assert [event.event for event in decoded] == ["message"] * len(payloads)
    assert [event.data for event in decoded] == [
        re.sub(r"\r\n|\r", "\n", payload.decode()) for payload in payloads
    ]


# -- the rules one by one ----------------------------------------------------------------------


def _all(stream: bytes) -> list[ServerSentEvent]:
    return SSEDecoder().feed(stream)


def test_bom_is_dropped_only_at_the_start_even_when_split() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"\xef") == []
    assert decoder.feed(b"\xbb") == []
    assert decoder.feed(b"\xbfdata: x\n\n") == [ServerSentEvent(data="x")]
    # A second BOM is not a BOM: it makes the field name unknown, so the line is ignored.
    assert decoder.feed("\ufeffdata: y\n\ndata: z\n\n".encode()) == [ServerSentEvent(data="z")]


def test_cr_then_lf_in_the_next_chunk_is_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [ServerSentEvent(data="a\nb")]


def test_pending_cr_survives_a_chunk_that_decodes_to_nothing() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\ndata: \xc3") == []  # half of 'é'
    assert decoder.feed(b"\xa9\r") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n\r\n") == [ServerSentEvent(data="a\né")]


def test_lone_cr_line_ends() -> None:
    assert _all(b"event: e\rdata: 1\rdata: 2\r\r") == [ServerSentEvent(data="1\n2", event="e")]


def test_field_without_colon_has_an_empty_value() -> None:
    assert _all(b"data\n\n") == [ServerSentEvent(data="")]
    assert _all(b"data\ndata\n\n") == [ServerSentEvent(data="\n")]
    # "event" alone resets the type to the default.
    assert _all(b"event\ndata: x\n\n") == [ServerSentEvent(data="x", event="message")]


def test_only_one_space_after_the_colon_is_removed() -> None:
    assert _all(b"data:x\n\n") == [ServerSentEvent(data="x")]
    assert _all(b"data:  x \n\n") == [ServerSentEvent(data=" x ")]


def test_comments_are_ignored_but_noticed() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b": ping\n\n") == []
    assert decoder.saw_comment
    assert decoder.feed(b":\ndata: x\n: in the middle\n\n") == [ServerSentEvent(data="x")]


def test_event_without_data_is_not_dispatched_and_its_type_does_not_leak() -> None:
    assert _all(b"event: endpoint\n\ndata: x\n\n") == [ServerSentEvent(data="x")]


def test_unknown_fields_and_bad_retry_values_are_ignored() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"foo: bar\nretry: 12a\nretry: -1\nretry:\ndata: x\n\n")
    assert events == [ServerSentEvent(data="x")]
    assert decoder.retry is None
    assert decoder.feed(b"retry: 2500\n\n") == []
    assert decoder.retry == 2500


def test_id_persists_and_ids_containing_nul_are_ignored() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"id: 1\ndata: a\n\ndata: b\n\nid: x\x00y\ndata: c\n\nid\ndata: d\n\n")
    assert [(event.data, event.id) for event in events] == [
        ("a", "1"),
        ("b", "1"),
        ("c", "1"),
        ("d", ""),
    ]
    assert decoder.last_event_id == ""


def test_unfinished_event_at_end_of_stream_is_not_dispatched() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: complete\n\ndata: cut off\n") == [ServerSentEvent(data="complete")]


def test_invalid_utf8_is_replaced() -> None:
    assert _all(b"data: a\xffb\n\n") == [ServerSentEvent(data="a\ufffdb")]


def test_long_line_in_tiny_chunks() -> None:
    decoder = SSEDecoder()
    payload = b"x" * 20_000
    for index in range(0, len(payload), 7):
        assert decoder.feed((b"data: " if index == 0 else b"") + payload[index : index + 7]) == []
    assert decoder.feed(b"\n\n") == [ServerSentEvent(data="x" * 20_000)]


# -- bounds ----------------------------------------------------------------------------------------
def test_default_bounds_carry_a_16_mib_event() -> None:
    from trio_mcp_sse._sse import DEFAULT_MAX_EVENT_SIZE, DEFAULT_MAX_LINE_SIZE

    assert DEFAULT_MAX_EVENT_SIZE == DEFAULT_MAX_LINE_SIZE == 16 * 1024 * 1024
    decoder = SSEDecoder()
    data = "x" * (DEFAULT_MAX_EVENT_SIZE - len("data: "))
    assert decoder.feed(f"event: message\ndata: {data}\n\n".encode()) == [
        ServerSentEvent(data=data)
    ]


def test_an_endless_line_fails_once_it_passes_max_line_size() -> None:
    decoder = SSEDecoder(max_line_size=100, max_event_size=1000)
    assert decoder.feed(b"event: message\ndata: " + b"x" * 94) == []  # 100 characters: at the bound
    with pytest.raises(SSELimitExceeded) as caught:
        decoder.feed(b"x")
    assert caught.value.limit_name == "max_line_size"
    assert caught.value.limit == 100
    assert str(caught.value) == "a line of the event stream exceeded max_line_size (100 characters)"


def test_a_complete_line_over_the_bound_fails_too() -> None:
    decoder = SSEDecoder(max_line_size=10)
    with pytest.raises(SSELimitExceeded, match="max_line_size"):
        decoder.feed(b": a comment that is too long\n")


def test_an_event_that_never_ends_fails_at_max_event_size() -> None:
    decoder = SSEDecoder(max_line_size=100, max_event_size=250)
    line = b"data: " + b"y" * 74 + b"\n"  # 80 characters as received
    assert decoder.feed(line * 3) == []  # 240
    with pytest.raises(SSELimitExceeded) as caught:
        decoder.feed(b"data: 12345")  # 240 + 11 characters still being received
    assert caught.value.limit_name == "max_event_size"
    assert caught.value.limit == 250


def test_the_event_bound_counts_one_event_at_a_time() -> None:
    decoder = SSEDecoder(max_event_size=30)
    events = decoder.feed(b"data: 0123456789012345678\n\n" * 100)
    assert len(events) == 100
    assert decoder._data_size == 0


def test_comments_and_other_fields_are_not_kept_so_only_the_line_bound_applies() -> None:
    decoder = SSEDecoder(max_line_size=20, max_event_size=20)
    assert decoder.feed(b": keepalive\n" * 1000 + b"event: x\nid: 7\n" * 100 + b"data: ok\n\n") == [
        ServerSentEvent(data="ok", event="x", id="7")
    ]


def test_a_decoder_over_its_bound_refuses_further_input() -> None:
    decoder = SSEDecoder(max_line_size=8)
    with pytest.raises(SSELimitExceeded):
        decoder.feed(b"data: 123456789")
    assert decoder._partial == []  # the buffer is released
    with pytest.raises(SSELimitExceeded):
        decoder.feed(b"\n\ndata: ok\n\n")


def test_none_lifts_a_bound_and_nonsense_bounds_are_refused() -> None:
    decoder = SSEDecoder(max_line_size=None, max_event_size=None)
    assert decoder.feed(b"data: " + b"z" * 100_000 + b"\n\n")[0].data == "z" * 100_000
    with pytest.raises(ValueError, match="max_event_size must be >= 1"):
        SSEDecoder(max_event_size=0)
