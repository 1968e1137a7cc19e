"""Interop with the official TypeScript SDK client (Node.js), against a real hypercorn process."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from .e2e_support import hypercorn_argv, running_server

pytestmark = pytest.mark.e2e

CLIENT_DIR = Path(__file__).resolve().parent / "interop_ts"


@pytest.fixture(scope="module")
def node_client() -> Path:
    """The client script with its locked dependencies installed (``npm ci`` on first use)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed for the TypeScript interop test")
    marker = CLIENT_DIR / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"
    if not marker.exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=CLIENT_DIR, check=True, timeout=300, stdout=subprocess.DEVNULL,
        )
    return CLIENT_DIR / "client.mjs"


async def test_official_typescript_client(node_client: Path) -> None:
    async with running_server(hypercorn_argv("tests.apps.e2e_app:app")) as server:
        with trio.fail_after(60):
            result = await trio.run_process(
                ["node", str(node_client), f"{server.url}/sse"], capture_stdout=True, capture_stderr=True, check=False
            )
        assert result.returncode == 0, result.stderr.decode()
        seen = json.loads(result.stdout)
        assert seen["serverVersion"] == {"name": "echo", "version": "1.0.0"}
        assert seen["protocolVersion"] in ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
        assert seen["tools"] == ["add", "echo"]
        assert seen["echoed"] == [{"type": "text", "text": seen["sent"]}]
        assert seen["added"] == [{"type": "text", "text": "5.5"}]
        assert seen["invalid"]["code"] == -32602
        assert "Traceback" not in server.log
