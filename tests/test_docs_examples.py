"""Every Python example on the documentation site runs.

The fenced ``python`` blocks of each page in ``docs/`` run in order, in one namespace per
page, the way a reader would paste them one after another: a later block may use a name an
earlier one defined.  A block that cannot run on its own (a fragment, or one that needs a
live server) carries a visible marker on the line right before its fence::

    <!-- not-run: needs a running server -->

A client example that needs a server to talk to names one with a marker instead::

    <!-- runs-against: examples.echo_server:app -->

(``module:attribute`` names an ASGI app; a bare name is an ``MCPServer`` the page defined
earlier, served as its ``http_app()``.)  The runner then serves that ASGI app in memory (no sockets) for the duration of the block:
every ``httpx.AsyncClient`` the block creates without a transport of its own is answered by
that app, whatever host its URL names, and ``url`` is bound to ``http://127.0.0.1:8000/mcp``
(the app's Streamable HTTP endpoint) so the block reads as it would against ``make serve``.
The block's own ``trio.run(main)`` gets the app served around ``main``.

Top-level ``await`` is allowed (the block runs under ``trio.run``).  Each ``MCPServer`` a
page defines gets its ASGI app built (``http_app()``), never served, so a server example
whose decorators or options are wrong fails here.  Examples that read their settings from the
environment find ``EXAMPLE_ENVIRONMENT`` there.  A fence of four or more backticks is shown
Markdown (e.g. how to write a marker), not an example: nothing inside it runs.  ``test_example_counts`` prints how many
blocks ran and how many are marked.
"""

from __future__ import annotations

import ast
import functools
import gc
import importlib
import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
import trio

from trio_mcp_sse import MCPServer
from trio_mcp_sse.testing import open_http_transport

DOCS = Path(__file__).resolve().parent.parent / "docs"
FENCE = re.compile(r"^(?P<indent>\s*)(?P<ticks>`{3,})(?P<lang>[\w+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*not-run:\s*(?P<reason>.+?)\s*-->\s*$")
SERVED_BY = re.compile(r"^\s*<!--\s*runs-(?P<how>against|on-hypercorn):\s*(?P<app>[\w.]+(:\w+)?)\s*-->\s*$")
# ``runs-on-hypercorn``: for what the in-memory client cannot carry (a WebSocket), the app is
# served by a real ``hypercorn --worker-class trio`` on a free port, and the block's
# ``127.0.0.1:8000`` is read as that port.
EXAMPLE_ADDRESS = "127.0.0.1:8000"
# What ``url`` is in a ``runs-against`` block: where ``make serve`` puts the Streamable HTTP endpoint.
SERVED_URL = "http://127.0.0.1:8000/mcp"
# Settings the pages' examples read from the environment, as a deployment would provide them.
EXAMPLE_ENVIRONMENT = {"MCP_REQUEST_STATE_KEY": "an example key of at least 16 bytes"}
PYTHON = {"python", "py", "python3"}
# A block that waits on something that never comes is a failure, not a stuck run.
BLOCK_TIMEOUT_SECONDS = 20


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    source: str
    not_run: str | None  # the marker's reason, when marked
    served_by: str | None = None  # "module:attr" of the app a runs-against block talks to
    on_hypercorn: bool = False  # served by a real hypercorn rather than in memory

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    """The Python blocks of one page, with the marker (if any) on the line before each."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        indent = len(fence["indent"])
        end = index + 1
        closing = re.compile(rf"^\s*{fence['ticks']}\s*$")
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        if fence["lang"] in PYTHON and len(fence["ticks"]) == 3:
            before = lines[index - 1] if index > 0 else ""
            marker = MARKER.match(before)
            served = SERVED_BY.match(before)
            body = "\n".join(line[indent:] for line in lines[index + 1 : end])
            found.append(
                Block(
                    path.name,
                    index + 1,
                    body + "\n",
                    marker and marker["reason"],
                    served and served["app"],
                    bool(served and served["how"] == "on-hypercorn"),
                )
            )
        index = end + 1
    return found


def stray_markers(path: Path) -> list[str]:
    """Markers not directly above a Python fence (they would hide nothing, silently)."""
    lines = path.read_text().splitlines()
    stray = []
    for number, line in enumerate(lines):
        if MARKER.match(line) or SERVED_BY.match(line):
            following = FENCE.match(lines[number + 1]) if number + 1 < len(lines) else None
            if following is None or following["lang"] not in PYTHON or len(following["ticks"]) > 3:
                stray.append(f"docs/{path.name}:{number + 1}")
    return stray


PAGES = sorted(DOCS.glob("*.md"))
ALL_BLOCKS = [block for page in PAGES for block in blocks_of(page)]
PAGES_WITH_CODE = sorted({block.page for block in ALL_BLOCKS})


async def _bounded(awaitable: Awaitable[Any]) -> Any:
    with trio.fail_after(BLOCK_TIMEOUT_SECONDS):
        return await awaitable


def run_block(block: Block, namespace: dict[str, Any]) -> None:
    if block.on_hypercorn:
        assert block.served_by is not None
        trio.run(_on_hypercorn, block, block.served_by, namespace)
        return
    code = compile(block.source, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if block.served_by is None:
        outcome = eval(code, namespace)
        if inspect.isawaitable(outcome):
            trio.run(_bounded, outcome)
        return
    app = load_app(block.served_by, namespace)
    namespace["url"] = SERVED_URL
    real_run = trio.run

    def run_served(main: Callable[..., Awaitable[Any]], *args: Any, **options: Any) -> Any:
        return real_run(_served, app, functools.partial(main, *args), **options)

    with mock.patch.object(trio, "run", run_served):
        outcome = eval(code, namespace)
    if inspect.isawaitable(outcome):
        real_run(_served, app, lambda: outcome)


def load_app(target: str, namespace: dict[str, Any]) -> Any:
    """The app a ``runs-against`` marker names: ``module:attribute``, or a server of the page."""
    if ":" not in target:
        server = namespace[target]
        assert isinstance(server, MCPServer), f"{target} is not an MCPServer"
        return server.http_app()
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


async def _on_hypercorn(block: Block, target: str, namespace: dict[str, Any]) -> None:
    """Run a block against ``target`` served by a real hypercorn (real clock, bounded)."""
    from tests.server_helpers_e2e import hypercorn_server

    with trio.fail_after(BLOCK_TIMEOUT_SECONDS + 30):
        async with hypercorn_server(target) as server:
            address = server.base_url.partition("://")[2]
            source = block.source.replace(EXAMPLE_ADDRESS, address)
            code = compile(source, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            outcome = eval(code, namespace)
            if inspect.isawaitable(outcome):
                await _bounded(outcome)


async def _served(app: Any, main: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``main`` with ``app`` answering every ``httpx.AsyncClient`` made without a transport."""
    async with open_http_transport(app) as transport:
        original_init = httpx.AsyncClient.__init__

        def init(client: httpx.AsyncClient, *args: Any, **options: Any) -> None:
            if options.get("transport") is None and options.get("mounts") is None:
                options["transport"] = transport
            original_init(client, *args, **options)

        with mock.patch.object(httpx.AsyncClient, "__init__", init):
            return await _bounded(main())


@pytest.mark.parametrize("page", PAGES_WITH_CODE)
def test_page_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    for name, value in EXAMPLE_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    namespace: dict[str, Any] = {"__name__": f"docs_example_{Path(page).stem}"}
    threshold = gc.get_threshold()
    try:
        for block in (b for b in ALL_BLOCKS if b.page == page and b.not_run is None):
            try:
                run_block(block, namespace)
            except BaseException as error:
                pytest.fail(f"{block.where} failed: {type(error).__name__}: {error}\n{block.source}")
    finally:
        # The performance page's examples tune the collector: the tests after them get it back as it was.
        gc.set_threshold(*threshold)
        gc.unfreeze()
    servers = [value for value in namespace.values() if isinstance(value, MCPServer)]
    for server in servers:
        app = server.http_app()
        assert callable(app), f"docs/{page}: {server!r}.http_app() is not an ASGI app"


def test_no_stray_markers() -> None:
    assert [where for page in PAGES for where in stray_markers(page)] == []


def test_example_counts(capsys: pytest.CaptureFixture[str]) -> None:
    marked = [block for block in ALL_BLOCKS if block.not_run is not None]
    ran = len(ALL_BLOCKS) - len(marked)
    served = sum(1 for block in ALL_BLOCKS if block.served_by is not None)
    with capsys.disabled():
        print(
            f"\ndocs examples: {ran} run ({served} against a served app, in memory or on hypercorn), "
            f"{len(marked)} marked not-run"
        )
        for block in marked:
            print(f"  not-run {block.where}: {block.not_run}")
    assert ran > 0
    assert all(block.not_run for block in marked), "a not-run marker needs a reason"


def test_the_extractor_reads_markers_and_indented_fences(tmp_path: Path) -> None:
    page = tmp_path / "sample.md"
    page.write_text(
        "text\n\n```python\nx = 1\n```\n\n<!-- not-run: needs a running server -->\n"
        "```python\nawait session.ping()\n```\n\n- item\n\n  ```python\n  y = x + 1\n  ```\n"
        "\n```sh\nmake docs\n```\n"
    )
    assert blocks_of(page) == [
        Block("sample.md", 3, "x = 1\n", None),
        Block("sample.md", 8, "await session.ping()\n", "needs a running server"),
        Block("sample.md", 14, "y = x + 1\n", None),
    ]
    assert stray_markers(page) == []
    page.write_text("<!-- not-run: orphan -->\n\n```python\nx = 1\n```\n")
    assert stray_markers(page) == ["docs/sample.md:1"]


def test_the_extractor_reads_runs_against_markers(tmp_path: Path) -> None:
    page = tmp_path / "sample.md"
    page.write_text(
        "<!-- runs-against: examples.echo_server:app -->\n```python\nx = url\n```\n\n"
        "<!-- runs-against: server -->\n```python\ny = url\n```\n"
    )
    assert blocks_of(page) == [
        Block("sample.md", 2, "x = url\n", None, "examples.echo_server:app"),
        Block("sample.md", 7, "y = url\n", None, "server"),
    ]
    assert stray_markers(page) == []


def test_markdown_shown_in_a_longer_fence_is_not_an_example(tmp_path: Path) -> None:
    page = tmp_path / "sample.md"
    page.write_text(
        "````markdown\n<!-- not-run: needs a running server -->\n```python\nawait x()\n```\n"
        "````\n\n```python\ny = 1\n```\n"
    )
    assert blocks_of(page) == [Block("sample.md", 8, "y = 1\n", None)]
    assert stray_markers(page) == []
