"""Worker bodies for ``WorkerPool`` tests: tiny, so a spawned process imports little."""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from trio_mcp_sse._workers import report_fatal


def exit_at_once(fatal: Connection, status: int) -> None:
    sys.exit(status)


def cannot_start(fatal: Connection, message: str) -> None:
    report_fatal(fatal, message)
    sys.exit(2)
