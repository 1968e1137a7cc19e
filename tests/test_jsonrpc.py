"""JSON-RPC classification of POST bodies (no sockets)."""

from __future__ import annotations

import json

import pytest

from trio_mcp_sse._jsonrpc import (
    INVALID_REQUEST,
    PARSE_ERROR,
    InvalidMessage,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    encode_message,
    error_response,
    parse_message,
)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b'{"jsonrpc":"2.0","id":1,"method":"ping"}', JSONRPCRequest),
        (b'{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"x"}}', JSONRPCRequest),
        (b'{"jsonrpc":"2.0","method":"notifications/initialized"}', JSONRPCNotification),
        (b'{"jsonrpc":"2.0","id":7,"result":{}}', JSONRPCResponse),
        (b'{"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"no"}}', JSONRPCError),
        (b'{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"no"}}', JSONRPCError),
    ],
)
def test_valid_messages_are_classified(body: bytes, kind: type) -> None:
    assert isinstance(parse_message(body), kind)


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        (b"", PARSE_ERROR, "Parse error"),
        (b"{not json", PARSE_ERROR, "Parse error"),
        (b'"\xff"', PARSE_ERROR, "Parse error"),
        (b"[" * 5000 + b"]" * 5000, PARSE_ERROR, "Parse error"),
        (b"[]", INVALID_REQUEST, "batches are not supported"),
        (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', INVALID_REQUEST, "batches are not supported"),
        (b"42", INVALID_REQUEST, "must be a JSON object"),
        (b'"ping"', INVALID_REQUEST, "must be a JSON object"),
        (b"{}", INVALID_REQUEST, "expected a request"),
        (b'{"jsonrpc":"2.0","id":1}', INVALID_REQUEST, "expected a request"),
        (b'{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}', INVALID_REQUEST, "exactly one"),
        (b'{"jsonrpc":"1.0","id":1,"method":"ping"}', INVALID_REQUEST, "jsonrpc"),
        (b'{"id":1,"method":"ping"}', INVALID_REQUEST, "jsonrpc"),
        (b'{"jsonrpc":"2.0","id":1,"method":7}', INVALID_REQUEST, "method"),
        (b'{"jsonrpc":"2.0","id":true,"method":"ping"}', INVALID_REQUEST, "id"),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', INVALID_REQUEST, "id"),
        (b'{"jsonrpc":"2.0","id":null,"method":"ping"}', INVALID_REQUEST, "id"),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":[1,2]}', INVALID_REQUEST, "params"),
        (b'{"jsonrpc":"2.0","id":1,"result":[]}', INVALID_REQUEST, "result"),
        (b'{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}', INVALID_REQUEST, "error"),
    ],
)
def test_invalid_bodies_name_their_problem(body: bytes, code: int, fragment: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_message(body)
    assert caught.value.code == code
    assert fragment in caught.value.message


def test_error_echoes_a_recoverable_id() -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_message(b'{"jsonrpc":"1.0","id":"abc","method":"ping"}')
    assert json.loads(caught.value.to_json()) == {
        "jsonrpc": "2.0",
        "id": "abc",
        "error": {"code": INVALID_REQUEST, "message": caught.value.message},
    }


def test_parse_error_has_null_id_and_never_echoes_the_body() -> None:
    secret = b"{secret-token-1234"
    with pytest.raises(InvalidMessage) as caught:
        parse_message(secret)
    payload = json.loads(caught.value.to_json())
    assert payload["id"] is None
    assert b"secret" not in caught.value.to_json()


def test_encode_is_compact_and_round_trips() -> None:
    body = b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"h\\u00e9\\nx"}}}'
    message = parse_message(body)
    encoded = encode_message(message)
    assert b" " not in encoded and b"\n" not in encoded
    assert json.loads(encoded) == json.loads(body)


def test_error_with_null_id_keeps_the_null() -> None:
    message = parse_message(b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}')
    assert json.loads(encode_message(message))["id"] is None


def test_error_response_shape() -> None:
    assert json.loads(error_response(5, -32601, "Method not found: x", {"k": 1})) == {
        "jsonrpc": "2.0",
        "id": 5,
        "error": {"code": -32601, "message": "Method not found: x", "data": {"k": 1}},
    }
