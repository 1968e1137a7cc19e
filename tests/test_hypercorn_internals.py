"""``serve`` relies on hypercorn internals; the start-up check must pass on the installed
hypercorn and stop the command with one line naming what is missing on a changed one."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import hypercorn.config
import hypercorn.events
import hypercorn.trio.run
import hypercorn.trio.tcp_server
import pytest

from trio_mcp_sse import _serve
from trio_mcp_sse._hypercorn_internals import (
    SUPPORTED_HYPERCORN,
    HypercornInternalsError,
    check_hypercorn_internals,
    missing_internals,
)

ROOT = Path(__file__).resolve().parent.parent
VERSION = importlib.metadata.version("hypercorn")


def test_the_installed_hypercorn_has_everything() -> None:
    assert missing_internals() == []
    check_hypercorn_internals()


def test_the_supported_range_is_the_pin_in_pyproject() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"hypercorn{SUPPORTED_HYPERCORN}" in dependencies


def _renamed_protocol_send(monkeypatch: pytest.MonkeyPatch) -> None:
    server = hypercorn.trio.tcp_server.TCPServer
    monkeypatch.setattr(server, "send_event", server.protocol_send, raising=False)
    monkeypatch.delattr(server, "protocol_send")


def _worker_serve_importing_its_own_class(monkeypatch: pytest.MonkeyPatch) -> None:
    async def worker_serve(app: Any, config: Any, *, sockets: Any = None, shutdown_trigger: Any = None, task_status: Any = None) -> None:
        from hypercorn.trio.tcp_server import TCPServer as Server  # not the module global

        del Server

    monkeypatch.setattr(hypercorn.trio.run, "worker_serve", worker_serve)


def _lock_renamed(monkeypatch: pytest.MonkeyPatch) -> None:
    class TCPServer:
        def __init__(self, stream: Any) -> None:
            self.stream = stream
            self.write_lock = None
            self.protocol = None

        async def protocol_send(self, event: Any) -> None:
            del event

    monkeypatch.setattr(hypercorn.trio.tcp_server, "TCPServer", TCPServer)


def _raw_data_reshaped(monkeypatch: pytest.MonkeyPatch) -> None:
    class RawData:
        payload = b""

    monkeypatch.setattr(hypercorn.events, "RawData", RawData)


@pytest.mark.parametrize(
    ("alter", "missing"),
    [
        (_renamed_protocol_send, "async TCPServer.protocol_send(self, event)"),
        (_worker_serve_importing_its_own_class, "hypercorn.trio.run.worker_serve creating connections from its global TCPServer"),
        (_lock_renamed, "TCPServer.send_lock"),
        (_raw_data_reshaped, "hypercorn.events.RawData.data"),
    ],
)
def test_an_altered_hypercorn_is_reported_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], alter: Any, missing: str
) -> None:
    alter(monkeypatch)
    assert missing_internals() == [missing]
    with pytest.raises(HypercornInternalsError):
        check_hypercorn_internals()

    assert _serve.main(["examples.echo_server:app"]) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        f"error: python -m trio_mcp_sse serve cannot run on hypercorn {VERSION}: it lacks "
        f"{missing} (supported: hypercorn{SUPPORTED_HYPERCORN})\n"
    )
    assert captured.out == ""


def test_config_attributes_are_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(hypercorn.config.Config, "graceful_timeout")
    assert missing_internals() == ["Config.graceful_timeout"]


def test_the_command_exits_without_a_traceback(tmp_path: Path) -> None:
    """The whole process, with hypercorn altered before the command runs (a sitecustomize)."""
    (tmp_path / "sitecustomize.py").write_text(
        "import hypercorn.trio.tcp_server as t\ndel t.TCPServer.protocol_send\n"
    )
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "trio_mcp_sse", "serve", "examples.echo_server:app", "--bind", "127.0.0.1:0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert re.fullmatch(
        r"error: python -m trio_mcp_sse serve cannot run on hypercorn \S+: it lacks "
        r"async TCPServer\.protocol_send\(self, event\) \(supported: hypercorn\S+\)\n",
        done.stderr,
    )
