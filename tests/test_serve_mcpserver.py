"""Serving an ``MCPServer`` object: ``serve module:server`` is its ``http_app()``; an ASGI server given it says what to serve.

Also what a first hour relies on around it: the ``make serve`` banner names the URLs the
example answers, and ``pip install -e .`` builds without a deprecated license form.
"""

from __future__ import annotations

import re
import sys
import tomllib
from typing import Any

import httpx
import pytest
import trio
from packaging.requirements import Requirement
from packaging.version import Version

from tests.e2e_support import ROOT, open_sse, running_server
from trio_mcp_sse import MCPServer

SERVER = MCPServer("guarded", "1.0.0")
"""Found by the refusal's message as ``tests.test_serve_mcpserver:SERVER``."""

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}},
}
HINT = (
    "examples.echo_server:server is an MCPServer, not an ASGI application: serve its app, "
    "'examples.echo_server:server.http_app()' (Streamable HTTP at /mcp, HTTP+SSE at /sse), "
    "or run python -m trio_mcp_sse serve examples.echo_server:server"
)


def serve_argv(app: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "trio_mcp_sse", "serve", app, "--bind", "127.0.0.1:0", *extra]


# -- serve module:server -------------------------------------------------------------------------
async def test_serve_of_an_mcp_server_answers_streamable_http_at_mcp_and_http_sse_at_sse() -> None:
    async with running_server(serve_argv("examples.echo_server:server")) as server:
        with trio.fail_after(20):
            async with httpx.AsyncClient() as client:
                response = await client.post(
                    f"{server.url}/mcp",
                    json=INITIALIZE,
                    headers={"Accept": "application/json, text/event-stream"},
                )
            assert response.status_code == 200, (response.status_code, response.text)
            assert response.headers.get("mcp-session-id")
            assert '"serverInfo"' in response.text and '"echo"' in response.text
            _stream, _, endpoint = await open_sse(server.port)
            assert endpoint.startswith("/messages/?session_id=")


async def test_serve_help_says_an_mcp_server_is_served_as_its_http_app() -> None:
    with trio.fail_after(30):
        result = await trio.run_process(
            [sys.executable, "-m", "trio_mcp_sse", "serve", "--help"], cwd=str(ROOT), capture_stdout=True
        )
    help_text = " ".join(result.stdout.decode().split())  # argparse wraps lines
    assert "An MCPServer is served as its http_app(): Streamable HTTP at /mcp, HTTP+SSE at /sse" in help_text
    assert "/mcp (Streamable HTTP) and /sse (HTTP+SSE)" in help_text


# -- an MCPServer handed to an ASGI server -----------------------------------------------------------
async def test_hypercorn_given_an_mcp_server_says_in_one_line_to_serve_its_app() -> None:
    argv = [sys.executable, "-m", "hypercorn", "--worker-class", "trio", "--bind", "127.0.0.1:0", "examples.echo_server:server"]
    with trio.fail_after(30):
        result = await trio.run_process(argv, cwd=str(ROOT), capture_stdout=True, capture_stderr=True, check=False)
    output = (result.stdout + result.stderr).decode()
    lines = output.strip().splitlines()
    assert len(lines) == 1, output  # it used to be a 27-line ExceptionGroup ending in ClosedResourceError
    assert "[ERROR]" in lines[0] and lines[0].endswith(HINT), output
    assert "Traceback" not in output and "ExceptionGroup" not in output
    assert "Running on" not in output  # the worker stopped at start-up, serving nothing


async def test_the_command_the_refusal_suggests_serves_the_app() -> None:
    argv = [sys.executable, "-m", "hypercorn", "--worker-class", "trio", "--bind", "127.0.0.1:0", "examples.echo_server:server.http_app()"]
    async with running_server(argv) as server:
        with trio.fail_after(20):
            async with httpx.AsyncClient() as client:
                response = await client.post(
                    f"{server.url}/mcp", json=INITIALIZE, headers={"Accept": "application/json, text/event-stream"}
                )
            assert response.status_code == 200, response.text
            _stream, _, endpoint = await open_sse(server.port)
            assert endpoint.startswith("/messages/?session_id=")


class Recorder:
    def __init__(self, *, fail_on_send: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail_on_send = fail_on_send

    async def receive(self) -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if self.fail_on_send:
            raise RuntimeError(f"refused {message['type']}")


async def test_the_lifespan_start_up_of_an_mcp_server_fails_naming_where_it_is_and_what_to_serve() -> None:
    recorder = Recorder()
    await SERVER({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, recorder.receive, recorder.send)
    [failed] = recorder.sent
    assert failed["type"] == "lifespan.startup.failed"
    assert failed["message"].startswith("tests.test_serve_mcpserver:SERVER is an MCPServer, not an ASGI application")
    assert "'tests.test_serve_mcpserver:SERVER.http_app()'" in failed["message"]
    assert failed["message"].endswith("python -m trio_mcp_sse serve tests.test_serve_mcpserver:SERVER")


async def test_in_the_callers_own_process_a_failing_send_is_raised_not_exited() -> None:
    recorder = Recorder(fail_on_send=True)
    with pytest.raises(RuntimeError, match=r"refused lifespan\.startup\.failed"):
        await SERVER({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, recorder.receive, recorder.send)


async def test_a_request_without_a_lifespan_gets_the_line_as_a_500() -> None:
    recorder = Recorder()
    scope = {"type": "http", "method": "GET", "path": "/mcp", "headers": [], "query_string": b"", "root_path": ""}
    await SERVER(scope, recorder.receive, recorder.send)
    start, body = recorder.sent
    assert start["status"] == 500
    assert body["body"].decode().startswith("tests.test_serve_mcpserver:SERVER is an MCPServer, not an ASGI application")


# -- make serve ----------------------------------------------------------------------------------
def test_the_make_serve_banner_names_the_urls_the_example_serves() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nserve:", 1)[1].split("\n\n", 1)[0]
    [banner] = [line for line in recipe.splitlines() if line.strip().startswith("@echo")]
    served = re.search(r"trio_mcp_sse serve (\S+):(\w+)", recipe)
    assert served is not None and served.groups() == ("examples.echo_server", "app")
    from examples.echo_server import app

    mcp_path = app.extensions["trio_mcp_sse"].path
    sse_path = app.extensions["trio_mcp_sse.sse"].sse_path
    assert (mcp_path, sse_path) == ("/mcp", "/sse")
    assert f"http://$(HOST):$(PORT){mcp_path} (Streamable HTTP)" in banner
    assert f"http://$(HOST):$(PORT){sse_path} (HTTP+SSE)" in banner


# -- the package metadata ------------------------------------------------------------------------
def test_the_license_is_an_spdx_expression_that_setuptools_does_not_warn_about() -> None:
    from packaging.licenses import canonicalize_license_expression

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    license_ = pyproject["project"]["license"]
    # A table ({ text = ... } / { file = ... }) is deprecated by setuptools (a warning on every install).
    assert isinstance(license_, str), license_
    assert canonicalize_license_expression(license_) == license_ == "MIT"
    assert not [c for c in pyproject["project"].get("classifiers", []) if c.startswith("License ::")]
    for pattern in pyproject["project"].get("license-files", []):
        assert list(ROOT.glob(pattern)), f"license-files pattern {pattern!r} matches nothing"
    # The SPDX string needs setuptools>=77; an older backend would refuse the metadata.
    [setuptools] = [Requirement(r) for r in pyproject["build-system"]["requires"] if Requirement(r).name == "setuptools"]
    lowest = min((Version(spec.version) for spec in setuptools.specifier if spec.operator in (">=", "==", "~=")), default=None)
    assert lowest is not None and lowest >= Version("77"), str(setuptools)
