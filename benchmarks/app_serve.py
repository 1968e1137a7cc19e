"""The servers of :mod:`benchmarks.app_ours` by plain attribute, as ``serve module:attribute`` loads them.

``python -m trio_mcp_sse serve`` takes ``module:attribute`` (no call syntax),
so the broker benchmark serves ``benchmarks.app_serve:sse`` (the example's
``async def`` echo over HTTP+SSE) and ``benchmarks.app_serve:streamable``
(the same server over Streamable HTTP with its default event-stream answers).
Each is built on first access, so a process builds only the one it serves
(beyond the HTTP+SSE app that importing ``app_ours`` always builds).  The
broker comes from the environment ``serve --broker`` sets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import app_ours

_BUILDERS: dict[str, Callable[[], Any]] = {
    "sse": lambda: app_ours.app,
    "streamable": lambda: app_ours.streamable_app(response_mode="sse"),
}
_BUILT: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """``sse`` or ``streamable``, built once on first access (PEP 562)."""
    if name not in _BUILDERS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _BUILT:
        _BUILT[name] = _BUILDERS[name]()
    return _BUILT[name]
