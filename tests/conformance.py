"""Check results against the official MCP wire types (test-only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def conforms(method: str, result: Mapping[str, Any], version: str = "2025-11-25") -> None:
    """Fail unless ``result`` is a valid result of ``method`` at ``version`` per the official wire types."""
    from mcp_types.methods import parse_server_result

    parse_server_result(method, version, result)
