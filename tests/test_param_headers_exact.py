"""``Mcp-Param-*`` headers must stand for exactly the argument the server acts on (2026-07-28).

Numbers compare by exact decimal value, never as doubles: two integers that are the same double,
or a decimal that rounds to the argument, are a mismatch (-32020), while another spelling of the
same value (``1e2`` for ``100``) is not.  Unit tests of the comparison, then through the transport.
"""

from __future__ import annotations

from typing import Any

import pytest

from trio_mcp_sse import MCPError, MCPServer
from trio_mcp_sse.server._modern import check_param_headers

from .test_modern_server import Modern

SCHEMA = {
    "type": "object",
    "properties": {
        "count": {"type": "integer", "x-mcp-header": "Count"},
        "ratio": {"type": "number", "x-mcp-header": "Ratio"},
        "dry_run": {"type": "boolean", "x-mcp-header": "Dry-Run"},
        "region": {"type": "string", "x-mcp-header": "Region"},
    },
}


def mirrors(argument: str, value: Any, header: str) -> bool:
    refused: MCPError | None = None
    try:
        check_param_headers(SCHEMA, {argument: value}, {f"mcp-param-{SCHEMA_TOKENS[argument]}": header})
    except MCPError as mismatch:
        refused = mismatch
    if refused is None:
        return True
    assert refused.code == -32020
    assert "does not match" in refused.message
    return False


SCHEMA_TOKENS = {"count": "count", "ratio": "ratio", "dry_run": "dry-run", "region": "region"}


@pytest.mark.parametrize(
    ("argument", "value", "header", "same"),
    [
        # The cases: the same double, not the same number.
        ("count", 9007199254740993, "9007199254740992", False),
        ("count", 9007199254740993, "9007199254740993", True),
        ("ratio", 1, "1.0000000000000001", False),
        ("ratio", 1.0, "1.0000000000000001", False),  # the body's 1.0000000000000001 is the double 1.0: that is what runs
        # Other spellings of the same value.
        ("count", 100, "1e2", True),
        ("count", 100, "100.0", True),
        ("ratio", 0.1, "0.1", True),
        ("ratio", 0.1, "0.10000000000000001", False),
        ("ratio", -0.0, "0", True),
        ("ratio", 1e300, "1e300", True),
        ("count", -5, "-5", True),
        ("count", 2**62, str(2**62 + 1), False),
        # Not JSON numbers.
        ("count", 100, "+100", False),
        ("count", 100, "0x64", False),
        ("ratio", 1.0, "1.", False),
        ("ratio", 1.0, "NaN", False),
        ("count", 1, "true", False),
        # Booleans and strings as text.
        ("dry_run", True, "true", True),
        ("dry_run", True, "1", False),
        ("dry_run", False, "False", False),
        ("region", "eu", "eu", True),
        ("region", "10", "10.0", False),
        ("region", "Zürich", "=?base64?WsO8cmljaA==?=", True),
    ],
)
def test_a_header_mirrors_exactly_the_argument(argument: str, value: Any, header: str, same: bool) -> None:
    assert mirrors(argument, value, header) is same


def make_server() -> MCPServer:
    server = MCPServer("params", "1.0.0")

    @server.tool(input_schema=SCHEMA)
    async def tally(count: int = 0, ratio: float = 0.0, dry_run: bool = False, region: str = "") -> str:
        """Arguments mirrored in headers."""
        return f"{count} {ratio!r} {dry_run} {region}"

    return server


async def test_through_the_transport_a_mismatched_number_is_a_400_with_minus_32020() -> None:
    from trio_mcp_sse.testing import run_asgi_app

    async with run_asgi_app(make_server().http_app()) as client:
        modern = Modern(client)
        status, _, answer = await modern.post(
            "tools/call", {"name": "tally", "arguments": {"count": 9007199254740993}},
            headers={"mcp-param-count": "9007199254740992"}, request_id=3,
        )
        same = await modern.result(
            "tools/call", {"name": "tally", "arguments": {"count": 9007199254740993}},
            headers={"mcp-param-count": "9007199254740993"},
        )
    assert (status, answer["id"], answer["error"]["code"]) == (400, 3, -32020)
    assert "Mcp-Param-Count" in answer["error"]["message"]
    assert same["content"][0]["text"] == "9007199254740993 0.0 False "
