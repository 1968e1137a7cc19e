"""Counters an operator reads: sessions, messages, rejections, in Prometheus text format."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Protocol

__all__ = ["Metrics"]


class BrokerGauges(Protocol):
    """What the metrics read of a worker's link to a session broker."""

    @property
    def up(self) -> bool: ...

    @property
    def cluster_sessions(self) -> int: ...


class EventStoreGauges(Protocol):
    """What the metrics read of a Streamable HTTP event store (the in-memory one)."""

    def stored_bytes_total(self) -> int: ...

    @property
    def evicted_bytes_total(self) -> Mapping[str, int]: ...


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
        self.forwarded_out = 0
        self.forwarded_in = 0
        self.forward_failures: Counter[str] = Counter()
        self.broker: BrokerGauges | None = None
        """Set while the worker is joined to a session broker (several workers)."""
        self.event_store: EventStoreGauges | None = None
        """Set by a Streamable HTTP transport whose event store is the in-memory one."""

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
        if self.event_store is not None:
            evicted = self.event_store.evicted_bytes_total
            lines += [
                "# HELP mcp_event_store_bytes Bytes of events kept for Last-Event-ID resumption, all sessions together.",
                "# TYPE mcp_event_store_bytes gauge",
                f"mcp_event_store_bytes {self.event_store.stored_bytes_total()}",
                "# HELP mcp_event_store_evicted_bytes_total Bytes of kept events dropped to stay within a bound, by bound.",
                "# TYPE mcp_event_store_evicted_bytes_total counter",
            ]
            lines += [f'mcp_event_store_evicted_bytes_total{{bound="{b}"}} {evicted.get(b, 0)}' for b in ("session", "total")]
        if self.broker is not None:
            lines += [
                "# HELP mcp_broker_up 1 while the last operation on the session broker succeeded.",
                "# TYPE mcp_broker_up gauge",
                f"mcp_broker_up {int(self.broker.up)}",
                "# HELP mcp_cluster_sessions Sessions open across every worker of the broker (as of the last refresh).",
                "# TYPE mcp_cluster_sessions gauge",
                f"mcp_cluster_sessions {self.broker.cluster_sessions}",
                "# HELP mcp_forwarded_total Requests forwarded to the worker holding their session or task, by direction.",
                "# TYPE mcp_forwarded_total counter",
                f'mcp_forwarded_total{{direction="out"}} {self.forwarded_out}',
                f'mcp_forwarded_total{{direction="in"}} {self.forwarded_in}',
                "# HELP mcp_forward_failures_total Forwarded requests that got no answer from the owner, by reason.",
                "# TYPE mcp_forward_failures_total counter",
            ]
            lines += [f'mcp_forward_failures_total{{reason="{r}"}} {n}' for r, n in sorted(self.forward_failures.items())]
        return ("\n".join(lines) + "\n").encode("ascii")
