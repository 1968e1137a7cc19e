"""One server, both protocol eras on /mcp: the app of ``tests/test_protocol_eras_e2e.py``.

``book`` asks the user twice (an elicitation, then a confirmation), so a
2026-07-28 client goes through two InputRequiredResult rounds and a
handshake-era client answers two server->client requests; the tool is the
same function either way.
"""

from __future__ import annotations

from typing import Any

from trio_mcp_sse import MCPServer
from trio_mcp_sse.server import CachePolicy, Context

PARTY: dict[str, Any] = {"type": "object", "properties": {"size": {"type": "integer"}}, "required": ["size"]}
CONFIRM: dict[str, Any] = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}

server = MCPServer("eras", "3.1.0", cache=CachePolicy(ttl_ms=30_000, scope="public"))


@server.tool
async def book(restaurant: str, ctx: Context) -> str:
    """Book a table, asking for the party size and a confirmation."""
    party = await ctx.elicit(f"Booking at {restaurant}: for how many?", PARTY)
    if party.action != "accept" or party.content is None:
        return "Nothing booked."
    confirm = await ctx.elicit(f"Book {restaurant} for {party.content['size']}?", CONFIRM)
    if confirm.action != "accept" or confirm.content is None or not confirm.content.get("ok"):
        return "Nothing booked."
    return f"Booked {restaurant} for {party.content['size']} ({ctx.protocol_version})."


@server.tool
async def echo(text: str) -> str:
    """Return the text."""
    return text


@server.tool
async def add_special() -> str:
    """Register one more tool: listen streams that opted in hear of it."""
    if "special" not in server.tools:
        server.add_tool(echo, name="special")
    return "added"


app = server.http_app()
