"""Every Python example on the documentation site runs.

The fenced ``python`` blocks of each page in ``docs/`` run in order, in one namespace per
page, the way a reader would paste them one after another: a later block may use a name an
earlier one defined.  A block that cannot run on its own (a fragment, or one that needs a
live server) carries a visible marker on the line right before its fence::

    <!-- not-run: needs a running server -->

Top-level ``await`` is allowed (the block runs under ``trio.run``).  Each ``MCPServer`` a
page defines gets its ASGI app built (``http_app()``), never served, so a server example
whose decorators or options are wrong fails here.  ``test_example_counts`` prints how many
blocks ran and how many are marked.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_mcp_sse import MCPServer

DOCS = Path(__file__).resolve().parent.parent / "docs"
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*not-run:\s*(?P<reason>.+?)\s*-->\s*$")
PYTHON = {"python", "py", "python3"}
# A block that waits on something that never comes is a failure, not a stuck run.
BLOCK_TIMEOUT_SECONDS = 20


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    source: str
    not_run: str | None  # the marker's reason, when marked

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
        while end < len(lines) and not re.match(r"^\s*```\s*$", lines[end]):
            end += 1
        if fence["lang"] in PYTHON:
            marker = MARKER.match(lines[index - 1]) if index > 0 else None
            body = "\n".join(line[indent:] for line in lines[index + 1 : end])
            found.append(Block(path.name, index + 1, body + "\n", marker and marker["reason"]))
        index = end + 1
    return found


def stray_markers(path: Path) -> list[str]:
    """Markers not directly above a Python fence (they would hide nothing, silently)."""
    lines = path.read_text().splitlines()
    stray = []
    for number, line in enumerate(lines):
        if MARKER.match(line):
            following = FENCE.match(lines[number + 1]) if number + 1 < len(lines) else None
            if following is None or following["lang"] not in PYTHON:
                stray.append(f"docs/{path.name}:{number + 1}")
    return stray


PAGES = sorted(DOCS.glob("*.md"))
ALL_BLOCKS = [block for page in PAGES for block in blocks_of(page)]
PAGES_WITH_CODE = sorted({block.page for block in ALL_BLOCKS})


async def _bounded(awaitable: Awaitable[Any]) -> Any:
    with trio.fail_after(BLOCK_TIMEOUT_SECONDS):
        return await awaitable


def run_block(block: Block, namespace: dict[str, Any]) -> None:
    code = compile(block.source, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    outcome = eval(code, namespace)
    if inspect.isawaitable(outcome):
        trio.run(_bounded, outcome)


@pytest.mark.parametrize("page", PAGES_WITH_CODE)
def test_page_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    namespace: dict[str, Any] = {"__name__": f"docs_example_{Path(page).stem}"}
    for block in (b for b in ALL_BLOCKS if b.page == page and b.not_run is None):
        try:
            run_block(block, namespace)
        except BaseException as error:
            pytest.fail(f"{block.where} failed: {type(error).__name__}: {error}\n{block.source}")
    servers = [value for value in namespace.values() if isinstance(value, MCPServer)]
    for server in servers:
        app = server.http_app()
        assert callable(app), f"docs/{page}: {server!r}.http_app() is not an ASGI app"


def test_no_stray_markers() -> None:
    assert [where for page in PAGES for where in stray_markers(page)] == []


def test_example_counts(capsys: pytest.CaptureFixture[str]) -> None:
    marked = [block for block in ALL_BLOCKS if block.not_run is not None]
    ran = len(ALL_BLOCKS) - len(marked)
    with capsys.disabled():
        print(f"\ndocs examples: {ran} run, {len(marked)} marked not-run")
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
