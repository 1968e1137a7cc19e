"""Exceptions that carry protocol meaning."""

from __future__ import annotations

from typing import Any

__all__ = ["MCPError", "ToolError"]


class MCPError(Exception):
    """A JSON-RPC error: raised by handlers to answer with it, raised by clients on receiving one."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data


class ToolError(Exception):
    """Raise from a tool to report a failure *to the model* (``isError: true``).

    The message is the whole story: it is sent as the result's text and no
    traceback is logged, unlike an unexpected exception.
    """
