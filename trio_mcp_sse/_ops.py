"""The operational endpoints every transport serves: liveness, readiness and metrics.

They answer the operator, not an MCP client, so they skip admission: a load
balancer probing ``/readyz`` sends no Origin or token.  Readiness turns ``503``
while the server drains, so a balancer stops sending new streams before they
would be refused, and while a worker with a session broker cannot reach it
(it can open no session then: ``Metrics.broker.up``).
"""

from __future__ import annotations

import enum
from typing import Final

from ._http import Outcome, Scope, Send, send_outcome
from ._metrics import Metrics

__all__ = ["OperationalEndpoints"]

_METRICS_HEADERS: Final = (
    (b"content-type", b"text/plain; version=0.0.4; charset=utf-8"),
    (b"cache-control", b"no-store"),
)


class _Probe(enum.Enum):
    HEALTH = "health_path"
    READY = "ready_path"
    METRICS = "metrics_path"


_BROKER_DOWN: Final = "session broker unreachable"


def _broker_reachable(metrics: Metrics) -> bool:
    """No broker, or the last operation of this worker on its broker succeeded."""
    return metrics.broker is None or metrics.broker.up


class OperationalEndpoints:
    """``health_path`` (200 while the process serves), ``ready_path`` (503 while draining, or while
    the worker cannot reach its session broker) and ``metrics_path`` (Prometheus text); ``None``
    disables one."""

    __slots__ = ("_paths",)

    def __init__(self, *, health_path: str | None, ready_path: str | None, metrics_path: str | None) -> None:
        paths = {_Probe.HEALTH: health_path, _Probe.READY: ready_path, _Probe.METRICS: metrics_path}
        self._paths = {path: probe for probe, path in paths.items() if path is not None}

    @property
    def paths(self) -> dict[str, str]:
        """Option name per configured path (for the transport's path validation)."""
        return {probe.value: path for path, probe in self._paths.items()}

    def serves(self, path: str) -> bool:
        return path in self._paths

    def is_ready_path(self, path: str) -> bool:
        return self._paths.get(path) is _Probe.READY

    async def serve(self, path: str, scope: Scope, send: Send, *, metrics: Metrics, sessions_open: int, draining: bool) -> None:
        probe = self._paths[path]
        if scope["method"] not in ("GET", "HEAD"):
            await send_outcome(send, Outcome.METHOD_NOT_ALLOWED, allow=b"GET, HEAD")
        elif probe is _Probe.HEALTH:
            await send_outcome(send, Outcome.OK)
        elif probe is _Probe.READY:
            if draining:
                await send_outcome(send, Outcome.SHUTTING_DOWN)
            elif not _broker_reachable(metrics):
                await send_outcome(send, Outcome.NOT_READY, detail=_BROKER_DOWN)
            else:
                await send_outcome(send, Outcome.OK)
        else:
            body = metrics.render(sessions_open=sessions_open, draining=draining)
            headers = [*_METRICS_HEADERS, (b"content-length", str(len(body)).encode("ascii"))]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
