"""A raw session handler for shutdown and slow-client tests, tuned by environment variables.

Methods: ``flood`` (send ``count`` notifications of ``size`` bytes), ``sleep`` (answer after
``seconds``), anything else (answer at once).  Requests of a session run concurrently.
"""

from __future__ import annotations

import json
import os

import trio
from quart_trio import QuartTrio

from trio_mcp_sse import SecuritySettings, SessionLimits
from trio_mcp_sse._jsonrpc import JSONRPCRequest, result_response
from trio_mcp_sse.lowlevel import Session, SseServerTransport

from .debug import install_debug_route


async def handler(session: Session) -> None:
    async with trio.open_nursery() as nursery:
        async for incoming in session.incoming:
            message = incoming.message
            if not isinstance(message, JSONRPCRequest):
                continue

            async def serve(message: JSONRPCRequest = message) -> None:
                params = message.params or {}
                if message.method == "flood":
                    note = json.dumps({"jsonrpc": "2.0", "method": "flood", "params": {"pad": "x" * int(params["size"])}}).encode()
                    for _ in range(int(params["count"])):
                        await session.send(note)
                elif message.method == "sleep":
                    await trio.sleep(float(params["seconds"]))
                await session.send(result_response(message.id, {"done": message.method}))

            nursery.start_soon(serve)


def _optional_int(name: str, default: int | None) -> int | None:
    value = os.environ.get(name)
    return default if value is None else int(value)


_limits = SessionLimits()
_security = SecuritySettings()
transport = SseServerTransport(
    handler,
    keepalive_interval=float(os.environ.get("KEEPALIVE", "15")),
    limits=SessionLimits(
        send_timeout=float(os.environ.get("SEND_TIMEOUT", "30")),
        outbound_buffer=int(os.environ.get("OUTBOUND_BUFFER", "256")),
        outbound_bytes=_optional_int("OUTBOUND_BYTES", _limits.outbound_bytes),
        outbound_bytes_total=_optional_int("OUTBOUND_BYTES_TOTAL", _limits.outbound_bytes_total),
        write_timeout=float(os.environ.get("WRITE_TIMEOUT", _limits.write_timeout)),
        max_sessions=_optional_int("MAX_SESSIONS", _limits.max_sessions),
    ),
    security=SecuritySettings(
        max_body_size=int(os.environ.get("MAX_BODY", _security.max_body_size)),
        body_timeout=float(os.environ.get("BODY_TIMEOUT", _security.body_timeout)),
        body_budget=int(os.environ.get("BODY_BUDGET", _security.body_budget)),
    ),
    metrics_path="/metrics",
)
app = QuartTrio(__name__)
transport.init_app(app)
install_debug_route(app, transport)
