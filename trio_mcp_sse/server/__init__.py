"""The Trio-native MCP server layer."""

from ._connection import SUPPORTED_PROTOCOL_VERSIONS, ServerConnection
from ._context import Context
from ._server import MCPServer
from ._tools import Tool

__all__ = ["SUPPORTED_PROTOCOL_VERSIONS", "Context", "MCPServer", "ServerConnection", "Tool"]
