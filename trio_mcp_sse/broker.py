"""Sessions shared by several workers or hosts: the broker, and what a broker of your own implements.

``MCPServer.http_app(broker=RedisBroker(url))`` is all most deployments need
(``RedisBroker`` and ``BrokerSettings`` are re-exported by :mod:`trio_mcp_sse`).
The rest is for writing a broker: anything with ``settings`` (a
:class:`BrokerSettings`) and ``connect(worker_id)``, an async context manager
giving one worker's :class:`Bus` (``docs/scaling.md``, "Writing a broker").
"""

from ._broker import Broker, BrokerSettings, BrokerUnavailable, Bus, MemoryBroker, RouteResult
from ._public import publish
from ._redis_broker import RedisBroker

__all__ = [
    "Broker",
    "BrokerSettings",
    "BrokerUnavailable",
    "Bus",
    "MemoryBroker",
    "RedisBroker",
    "RouteResult",
]

publish(__name__)
