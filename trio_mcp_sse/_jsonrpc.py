"""JSON-RPC 2.0 intake and output, without I/O.

Every message a client POSTs passes :func:`parse_message` exactly once: bytes in,
one of the official MCP wire envelopes (``mcp_types`` pydantic models) out, or a
:class:`InvalidMessage` that already knows the JSON-RPC error to answer with.
Classification is by member presence (``method`` + ``id`` is a request, ``method``
alone a notification, ``result`` / ``error`` a response), so a malformed message
gets an error that names what is wrong with *its* kind rather than a union of
every kind's complaints.

Output goes the other way in one step: :func:`encode_message` returns compact
UTF-8 JSON bytes, ready to frame as an SSE event.  The hot path (responses the
server layer builds as plain dicts) never touches a model.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
import pydantic
from mcp_types.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
)

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "InvalidMessage",
    "JSONRPCError",
    "JSONRPCMessage",
    "JSONRPCNotification",
    "JSONRPCRequest",
    "JSONRPCResponse",
    "RequestId",
    "encode_message",
    "error_response",
    "parse_message",
    "result_response",
]

_MAX_DETAIL: Final = 200


class InvalidMessage(Exception):
    """A POST body that is not one JSON-RPC message.

    Carries the JSON-RPC error the peer should receive (``code`` is -32700 for
    bytes that are not JSON, -32600 for JSON that is not a message) and the
    request id when one could be recovered, so the error can be correlated.
    """

    def __init__(self, code: int, message: str, request_id: RequestId | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id

    def to_json(self) -> bytes:
        return error_response(self.request_id, self.code, self.message)


def _short(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def _recover_id(obj: dict[str, Any]) -> RequestId | None:
    candidate = obj.get("id")
    if isinstance(candidate, str) or (
        isinstance(candidate, int) and not isinstance(candidate, bool)
    ):
        return candidate
    return None


def _describe(error: pydantic.ValidationError) -> str:
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "message"
    return _short(f"{where}: {first['msg']}")


def parse_message(body: bytes) -> JSONRPCMessage:
    """Parse one POST body into a JSON-RPC envelope, or raise :class:`InvalidMessage`.

    Batches (top-level arrays) are refused: the HTTP+SSE transport's revision
    (2024-11-05) has none, 2025-06-18 removed them again, and official clients
    never send them.  The error says so instead of a generic "invalid request".
    """
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(PARSE_ERROR, _short(f"Parse error: {exc}")) from None
    if isinstance(obj, list):
        raise InvalidMessage(
            INVALID_REQUEST, "Invalid request: JSON-RPC batches are not supported; send one message per POST"
        )
    if not isinstance(obj, dict):
        raise InvalidMessage(INVALID_REQUEST, "Invalid request: a JSON-RPC message must be a JSON object")
    model: type[JSONRPCRequest | JSONRPCNotification | JSONRPCResponse | JSONRPCError]
    if "method" in obj:
        model = JSONRPCRequest if "id" in obj else JSONRPCNotification
    elif "result" in obj and "error" not in obj:
        model = JSONRPCResponse
    elif "error" in obj and "result" not in obj:
        model = JSONRPCError
    else:
        raise InvalidMessage(
            INVALID_REQUEST,
            "Invalid request: expected a request, notification or response "
            "(a 'method', or exactly one of 'result' and 'error')",
            _recover_id(obj),
        )
    try:
        return model.model_validate(obj)
    except pydantic.ValidationError as exc:
        kind = model.__name__.removeprefix("JSONRPC").lower()
        raise InvalidMessage(
            INVALID_REQUEST, f"Invalid request: not a valid JSON-RPC {kind}: {_describe(exc)}", _recover_id(obj)
        ) from None


def encode_message(message: JSONRPCMessage | dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON for one outgoing message (plain dicts take the fast path)."""
    if isinstance(message, dict):
        return orjson.dumps(message)
    payload = message.model_dump(by_alias=True, mode="json", exclude_unset=True)
    if isinstance(message, JSONRPCError):
        payload["id"] = message.id  # null is meaningful here and must survive
    return orjson.dumps(payload)


def result_response(request_id: RequestId, result: dict[str, Any]) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "result": result})


def error_response(
    request_id: RequestId | None, code: int, message: str, data: Any = None
) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": error})
