"""Adapters for other MCP implementations (optional extras).

:mod:`trio_mcp_sse.contrib` serves servers written with the official ``mcp``
SDK (``pip install 'trio-mcp-sse[sdk]'``) over this package's HTTP+SSE
transport, under ``hypercorn --worker-class trio``.
"""

from .._public import publish
from ._sdk import SdkRequest, SdkSessionHandler, lowlevel_server, sdk_sse_app, sdk_sse_transport

__all__ = ["SdkRequest", "SdkSessionHandler", "lowlevel_server", "sdk_sse_app", "sdk_sse_transport"]

publish(__name__)
