from __future__ import annotations

import logging

import pytest


@pytest.fixture
def library_errors(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture the library's logs so a test can assert nothing was logged as an error."""
    caplog.set_level(logging.DEBUG, logger="trio_mcp_sse")
    return caplog


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("trio_mcp_sse") and r.levelno >= logging.ERROR]
