"""Counters an operator reads: sessions, messages, rejections, in Prometheus text format."""

from __future__ import annotations

from collections import Counter

__all__ = ["Metrics"]


class Metrics:
    """Plain integer counters, bumped on the hot path and rendered on demand.

    Nothing here is per-message allocation: an increment is the whole cost.
    """

    def __init__(self) -> None:
        self.sessions_opened = 0
        self.sessions_closed: Counter[str] = Counter()
        self.messages_in = 0
        self.messages_out = 0
        self.rejections: Counter[str] = Counter()

    def render(self, *, sessions_open: int, draining: bool) -> bytes:
        lines = [
            "# HELP mcp_sessions_open Sessions currently open in this process.",
            "# TYPE mcp_sessions_open gauge",
            f"mcp_sessions_open {sessions_open}",
            "# HELP mcp_draining 1 while the server drains before shutting down.",
            "# TYPE mcp_draining gauge",
            f"mcp_draining {int(draining)}",
            "# HELP mcp_sessions_opened_total Sessions opened.",
            "# TYPE mcp_sessions_opened_total counter",
            f"mcp_sessions_opened_total {self.sessions_opened}",
            "# HELP mcp_sessions_closed_total Sessions closed, by reason.",
            "# TYPE mcp_sessions_closed_total counter",
        ]
        lines += [f'mcp_sessions_closed_total{{reason="{r}"}} {n}' for r, n in sorted(self.sessions_closed.items())]
        lines += [
            "# HELP mcp_messages_received_total JSON-RPC messages accepted from clients.",
            "# TYPE mcp_messages_received_total counter",
            f"mcp_messages_received_total {self.messages_in}",
            "# HELP mcp_messages_sent_total JSON-RPC messages queued for clients.",
            "# TYPE mcp_messages_sent_total counter",
            f"mcp_messages_sent_total {self.messages_out}",
            "# HELP mcp_rejections_total Requests refused, by reason.",
            "# TYPE mcp_rejections_total counter",
        ]
        lines += [f'mcp_rejections_total{{reason="{r}"}} {n}' for r, n in sorted(self.rejections.items())]
        return ("\n".join(lines) + "\n").encode("ascii")
