"""Every Python example on the documentation site runs as written.

Each fenced ``python`` block of a page in ``docs/`` is a standalone script: it runs on its
own, in a fresh ``__main__`` module, compiled the way ``python block.py`` compiles it, so a
top-level ``await`` or ``async with`` is the ``SyntaxError`` a reader would get, and a block
may not use a name it does not define or import.  A block that is not a script says so with a
marker on the line(s) right before its fence::

    <!-- fragment: shows one call, not a program -->   not run, only compiled (``not-run:`` too)
    <!-- continues -->                                 runs in the namespace of the page's blocks so far
    <!-- pytest -->                                    a test file: run under pytest
    <!-- runs-against: examples.echo_server:app -->    a client example, with that app served

A page whose blocks build one program step by step (a guide growing one server) says so once,
on a line of its own before its first block: ``<!-- examples: continued -->``; every block
after the first then continues the ones above.

A block whose first line is a file name comment (``# weather.py``, ``# pyproject.toml``, in
any fence) is that file: the runner writes it into the page's working directory, which is
also on ``sys.path``, so a later block can ``from weather import server`` or serve
``weather:app``, as a reader who saved the files would.  A ``pytest`` block is run by
``python -m pytest`` in that directory (with the page's other files, e.g. its
``pyproject.toml``), and must pass with every test it defines.

``runs-against`` names an ASGI app as ``module:attribute`` (or, on a continued page, a bare
name: an ``MCPServer`` the page defined, served as its ``http_app()``).  The runner serves
that app in memory (no sockets) around the block's ``trio.run(main)``: every
``httpx.AsyncClient`` made without a transport of its own is answered by it, whatever host
its URL names, so ``open_session("http://127.0.0.1:8000/mcp")`` works as written.
``runs-on-hypercorn`` serves it with a real ``hypercorn --worker-class trio`` on a free port
instead (for what the in-memory client cannot carry, a WebSocket); the block's
``127.0.0.1:8000`` is read as that port.

Each ``trio.run`` of a block is bounded.  Each ``MCPServer`` a block defines gets its ASGI app
built (``http_app()``), never served, so a server example whose decorators or options are
wrong fails here.  Examples that read their settings from the environment find
``EXAMPLE_ENVIRONMENT`` there.  A fence of four or more backticks is shown Markdown (e.g. how
to write a marker), not an example: nothing inside it runs.  ``test_example_counts`` prints
how many blocks ran and lists the fragments.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import gc
import importlib
import re
import socket
import subprocess
import sys
import types
from collections.abc import Awaitable, Callable, Iterator
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
MARKER = re.compile(
    r"^\s*<!--\s*(?P<kind>fragment|not-run|continues|pytest|runs-against|runs-on-hypercorn)"
    r"(?:\s*:\s*(?P<argument>.*?))?\s*-->\s*$"
)
PAGE_MARKER = re.compile(r"^\s*<!--\s*examples:\s*continued\s*-->\s*$")
# The first line of a block that is a file of its own: ``# weather.py``, ``# pyproject.toml``.
FILE_NAME = re.compile(r"^#\s*(?P<name>[\w-]+\.(?:py|toml|ini|cfg))\s*$")
EXAMPLE_ADDRESS = "127.0.0.1:8000"
# Settings the pages' examples read from the environment, as a deployment would provide them.
EXAMPLE_ENVIRONMENT = {"MCP_REQUEST_STATE_KEY": "an example key of at least 16 bytes"}
PYTHON = {"python", "py", "python3"}
# A block that waits on something that never comes is a failure, not a stuck run.
BLOCK_TIMEOUT_SECONDS = 20
PYTEST_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    source: str
    not_run: str | None  # the fragment marker's reason, when marked
    served_by: str | None = None  # "module:attr" of the app a runs-against block talks to
    on_hypercorn: bool = False  # served by a real hypercorn rather than in memory
    continues: bool = False  # runs in the namespace of the page's blocks so far
    pytest: bool = False  # a test file, run under pytest
    file_name: str | None = None  # "weather.py" when the block's first line names its file

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


@dataclass(frozen=True)
class NamedFile:
    """A block of any language whose first line names the file it is (``# pyproject.toml``)."""

    page: str
    line: int
    name: str
    text: str


def _fences(lines: list[str]) -> Iterator[tuple[int, int, re.Match[str]]]:
    """(opening line index, closing line index, fence match) of each fenced block."""
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        end = index + 1
        closing = re.compile(rf"^\s*{fence['ticks']}\s*$")
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        yield index, end, fence
        index = end + 1


def _markers_above(lines: list[str], index: int) -> list[re.Match[str]]:
    """The marker lines directly above line ``index``, nearest last."""
    found = []
    above = index - 1
    while above >= 0 and (marker := MARKER.match(lines[above])):
        found.insert(0, marker)
        above -= 1
    return found


def _body(lines: list[str], index: int, end: int, indent: int) -> str:
    return "\n".join(line[indent:] for line in lines[index + 1 : end]) + "\n"


def blocks_of(path: Path) -> list[Block]:
    """The Python blocks of one page, with the markers (if any) right above each."""
    lines = path.read_text().splitlines()
    continued = any(PAGE_MARKER.match(line) for line in lines)
    found: list[Block] = []
    for index, end, fence in _fences(lines):
        if fence["lang"] not in PYTHON or len(fence["ticks"]) != 3:
            continue
        markers = {marker["kind"]: (marker["argument"] or "") for marker in _markers_above(lines, index)}
        not_run = markers.get("fragment", markers.get("not-run"))
        served = markers.get("runs-against", markers.get("runs-on-hypercorn"))
        body = _body(lines, index, end, len(fence["indent"]))
        named = FILE_NAME.match(body.partition("\n")[0])
        found.append(
            Block(
                path.name,
                index + 1,
                body,
                not_run,
                served or None,
                "runs-on-hypercorn" in markers,
                "continues" in markers or (continued and bool(found)),
                "pytest" in markers,
                named["name"] if named else None,
            )
        )
    return found


def named_files_of(path: Path) -> list[NamedFile]:
    """The blocks of one page, of any language, that name their file on their first line."""
    lines = path.read_text().splitlines()
    found = []
    for index, end, fence in _fences(lines):
        if len(fence["ticks"]) != 3:
            continue
        body = _body(lines, index, end, len(fence["indent"]))
        named = FILE_NAME.match(body.partition("\n")[0])
        if named:
            found.append(NamedFile(path.name, index + 1, named["name"], body))
    return found


def marker_problems(path: Path) -> list[str]:
    """Markers that would hide nothing or say nothing: not right above a Python fence, a
    fragment without a reason, a served block without an app, a test file without a name."""
    lines = path.read_text().splitlines()
    problems = []
    for number, line in enumerate(lines):
        marker = MARKER.match(line)
        if marker is None:
            continue
        where = f"docs/{path.name}:{number + 1}"
        following = number + 1
        while following < len(lines) and MARKER.match(lines[following]):
            following += 1
        fence = FENCE.match(lines[following]) if following < len(lines) else None
        if fence is None or fence["lang"] not in PYTHON or len(fence["ticks"]) > 3:
            problems.append(f"{where}: not right above a python fence")
        elif marker["kind"] in ("fragment", "not-run") and not marker["argument"]:
            problems.append(f"{where}: a fragment marker needs a reason")
        elif marker["kind"] in ("runs-against", "runs-on-hypercorn") and not marker["argument"]:
            problems.append(f"{where}: {marker['kind']} needs the app, module:attribute")
    for block in blocks_of(path):
        if block.pytest and (block.file_name is None or not block.file_name.startswith("test_")):
            problems.append(f"{block.where}: a pytest block starts with its file name, '# test_*.py'")
        if block.not_run is not None and (block.served_by or block.pytest):
            problems.append(f"{block.where}: a fragment is not run, so it is neither served nor a test")
    return problems


PAGES = sorted(DOCS.glob("*.md"))
ALL_BLOCKS = [block for page in PAGES for block in blocks_of(page)]
PAGES_WITH_CODE = sorted({block.page for block in ALL_BLOCKS})


async def _bounded(awaitable: Awaitable[Any]) -> Any:
    with trio.fail_after(BLOCK_TIMEOUT_SECONDS):
        return await awaitable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def as_main(module: types.ModuleType) -> Iterator[None]:
    """``module`` is ``__main__`` while a block runs, as ``python block.py`` makes it."""
    previous = sys.modules.get("__main__")
    sys.modules["__main__"] = module
    try:
        yield
    finally:
        if previous is not None:
            sys.modules["__main__"] = previous


def run_block(block: Block, module: types.ModuleType, workdir: Path) -> None:
    """Run one block as written, in ``module``'s namespace (a fresh ``__main__``, or the page's)."""
    if block.pytest:
        run_pytest_block(block, workdir)
        return
    source = block.source
    real_run = trio.run
    wrap: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]
    if block.on_hypercorn:
        assert block.served_by is not None
        port = free_port()
        source = source.replace(EXAMPLE_ADDRESS, f"127.0.0.1:{port}")
        wrap = functools.partial(_on_hypercorn, block.served_by, port)
    elif block.served_by is not None:
        wrap = functools.partial(_served, load_app(block.served_by, module.__dict__))
    else:
        wrap = _bounded_main
    # Compiled as a script is: no top-level ``await``.
    code = compile(source, block.where, "exec", dont_inherit=True)

    def bounded_run(main: Callable[..., Awaitable[Any]], *args: Any, **options: Any) -> Any:
        return real_run(wrap, functools.partial(main, *args), **options)

    with as_main(module), mock.patch.object(trio, "run", bounded_run):
        exec(code, module.__dict__)


def run_pytest_block(block: Block, workdir: Path) -> None:
    """Run a test file under pytest, in the page's directory (its other files beside it)."""
    assert block.file_name is not None, f"{block.where}: a pytest block starts with '# test_*.py'"
    tests = [
        node.name
        for node in ast.parse(block.source).body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    ]
    assert tests, f"{block.where}: a pytest block defines no test"
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", block.file_name],
        cwd=workdir, capture_output=True, text=True, timeout=PYTEST_TIMEOUT_SECONDS, check=False,
    )
    summary = finished.stdout.strip().splitlines()[-1:] or [""]
    assert finished.returncode == 0 and re.search(rf"\b{len(tests)} passed\b", summary[0]) and not re.search(
        r"skipped|xfail|warning", summary[0]
    ), f"{block.where}: pytest {block.file_name}: {summary[0]}\n{finished.stdout}{finished.stderr}"


def load_app(target: str, namespace: dict[str, Any]) -> Any:
    """The app a ``runs-against`` marker names: ``module:attribute``, or a server of the page."""
    if ":" not in target:
        server = namespace[target]
        assert isinstance(server, MCPServer), f"{target} is not an MCPServer"
        return server.http_app()
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


async def _bounded_main(main: Callable[[], Awaitable[Any]]) -> Any:
    return await _bounded(main())


async def _on_hypercorn(target: str, port: int, main: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``main`` with ``target`` served by a real hypercorn on ``port`` (real clock, bounded)."""
    from tests.server_helpers_e2e import hypercorn_server

    with trio.fail_after(BLOCK_TIMEOUT_SECONDS + 30):
        async with hypercorn_server(target, port=port):
            return await _bounded(main())


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


def run_page(path: Path, workdir: Path) -> list[MCPServer]:
    """Run every block of a page as written, in ``workdir``; the servers its blocks defined.

    Raises ``AssertionError`` naming the first block that fails.
    """
    for named in named_files_of(path):
        (workdir / named.name).write_text(named.text)
    written = [named.name.removesuffix(".py") for named in named_files_of(path) if named.name.endswith(".py")]
    stem = re.sub(r"\W", "_", path.stem)
    module = types.ModuleType("__main__")
    servers: list[MCPServer] = []
    sys.path.insert(0, str(workdir))
    importlib.invalidate_caches()
    try:
        for block in blocks_of(path):
            if block.not_run is not None:
                try:  # a fragment is not run, but it is Python
                    compile(block.source, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
                except SyntaxError as error:
                    raise AssertionError(f"{block.where} (a fragment) is not Python: {error}") from None
                continue
            if not block.continues:
                module = types.ModuleType("__main__")
                module.__dict__["__file__"] = str(workdir / (block.file_name or f"docs_{stem}_{block.line}.py"))
            try:
                run_block(block, module, workdir)
            except BaseException as error:
                raise AssertionError(f"{block.where} failed: {type(error).__name__}: {error}\n{block.source}") from error
            servers.extend(value for value in module.__dict__.values() if isinstance(value, MCPServer))
    finally:
        sys.path.remove(str(workdir))
        for name in written:
            sys.modules.pop(name, None)
    return servers


@pytest.mark.parametrize("page", PAGES_WITH_CODE)
def test_page_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    for name, value in EXAMPLE_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    threshold = gc.get_threshold()
    failure = None
    try:
        servers = run_page(DOCS / page, tmp_path)
    except AssertionError as error:
        failure = str(error)
    finally:
        # The performance page's examples tune the collector: the tests after them get it back as it was.
        gc.set_threshold(*threshold)
        gc.unfreeze()
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    for server in servers:
        app = server.http_app()
        assert callable(app), f"docs/{page}: {server!r}.http_app() is not an ASGI app"


def test_markers_are_well_formed() -> None:
    assert [problem for page in PAGES for problem in marker_problems(page)] == []


def test_example_counts(capsys: pytest.CaptureFixture[str]) -> None:
    marked = [block for block in ALL_BLOCKS if block.not_run is not None]
    ran = len(ALL_BLOCKS) - len(marked)
    served = sum(1 for block in ALL_BLOCKS if block.served_by is not None)
    continuing = sum(1 for block in ALL_BLOCKS if block.continues and block.not_run is None)
    tests = sum(1 for block in ALL_BLOCKS if block.pytest)
    with capsys.disabled():
        print(
            f"\ndocs examples: {ran} run ({served} against a served app, {continuing} continuing the "
            f"blocks above them, {tests} under pytest), {len(marked)} fragments"
        )
        for block in marked:
            print(f"  fragment {block.where}: {block.not_run}")
    assert ran > 0
    assert all(block.not_run for block in marked), "a fragment marker needs a reason"


# -- the runner itself ------------------------------------------------------------------------------


def page_of(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "docs" / "sample.md"
    page.parent.mkdir(exist_ok=True)
    page.write_text(text)
    return page


def run_sample(tmp_path: Path, text: str) -> list[MCPServer]:
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    return run_page(page_of(tmp_path, text), workdir)


def test_the_extractor_reads_markers_and_indented_fences(tmp_path: Path) -> None:
    page = page_of(
        tmp_path,
        "text\n\n```python\nx = 1\n```\n\n<!-- fragment: needs a running server -->\n"
        "```python\nawait session.ping()\n```\n\n- item\n\n  <!-- continues -->\n  ```python\n  y = x + 1\n  ```\n"
        "\n```sh\nmake docs\n```\n\n<!-- not-run: the older spelling -->\n```python\nz = 2\n```\n",
    )
    assert blocks_of(page) == [
        Block("sample.md", 3, "x = 1\n", None),
        Block("sample.md", 8, "await session.ping()\n", "needs a running server"),
        Block("sample.md", 15, "y = x + 1\n", None, continues=True),
        Block("sample.md", 24, "z = 2\n", "the older spelling"),
    ]
    assert marker_problems(page) == []
    page.write_text("<!-- fragment: orphan -->\n\n```python\nx = 1\n```\n<!-- fragment -->\n```python\ny = 1\n```\n")
    assert marker_problems(page) == [
        "docs/sample.md:1: not right above a python fence",
        "docs/sample.md:6: a fragment marker needs a reason",
    ]


def test_the_extractor_reads_served_pytest_and_named_blocks(tmp_path: Path) -> None:
    page = page_of(
        tmp_path,
        "<!-- runs-against: examples.echo_server:app -->\n```python\nx = 1\n```\n\n"
        "```toml\n# pyproject.toml\n[tool.pytest.ini_options]\n```\n\n"
        "<!-- pytest -->\n```python\n# test_sample.py\ndef test_it(): pass\n```\n\n"
        "<!-- pytest -->\n```python\ndef test_it(): pass\n```\n",
    )
    assert blocks_of(page) == [
        Block("sample.md", 2, "x = 1\n", None, "examples.echo_server:app"),
        Block("sample.md", 12, "# test_sample.py\ndef test_it(): pass\n", None, pytest=True, file_name="test_sample.py"),
        Block("sample.md", 18, "def test_it(): pass\n", None, pytest=True),
    ]
    assert [named.name for named in named_files_of(page)] == ["pyproject.toml", "test_sample.py"]
    assert marker_problems(page) == ["docs/sample.md:18: a pytest block starts with its file name, '# test_*.py'"]


def test_a_page_marked_continued_runs_as_one_program(tmp_path: Path) -> None:
    text = "```python\nx = 1\n```\n\n```python\nassert x == 1\n```\n"
    with pytest.raises(AssertionError, match=r"sample.md:5 failed: NameError"):
        run_sample(tmp_path, text)
    run_sample(tmp_path, "<!-- examples: continued -->\n\n" + text)


def test_top_level_await_fails_as_it_would_in_a_script(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"sample.md:1 failed: SyntaxError: 'await' outside function"):
        run_sample(tmp_path, "```python\nimport trio\nawait trio.sleep(0)\n```\n")
    with pytest.raises(AssertionError, match=r"SyntaxError: 'async with' outside async function"):
        run_sample(tmp_path, "```python\nimport trio\nasync with trio.open_nursery():\n    pass\n```\n")
    # the same, written as a script, runs; and a fragment is only compiled
    run_sample(
        tmp_path,
        "```python\nimport trio\n\nasync def main():\n    await trio.sleep(0)\n\ntrio.run(main)\n```\n\n"
        "<!-- fragment: one call -->\n```python\nawait session.ping()\n```\n",
    )
    with pytest.raises(AssertionError, match=r"a fragment\) is not Python"):
        run_sample(tmp_path, "<!-- fragment: one call -->\n```python\nawait (\n```\n")


def test_a_named_block_is_a_module_of_the_page(tmp_path: Path) -> None:
    servers = run_sample(
        tmp_path,
        "```python\n# sample_server.py\nfrom trio_mcp_sse import MCPServer\n\nserver = MCPServer('sample')\n"
        "app = server.http_app()\n```\n\n"
        "<!-- runs-against: sample_server:app -->\n```python\nimport trio\n"
        "from trio_mcp_sse.client import open_session\nfrom sample_server import server\n\n"
        "async def main():\n    async with open_session('http://127.0.0.1:8000/mcp') as session:\n"
        "        assert session.server_info.name == server.name\n\ntrio.run(main)\n```\n",
    )
    assert len(servers) == 2 and "sample_server" not in sys.modules


def test_a_pytest_block_runs_under_pytest_with_the_pages_config(tmp_path: Path) -> None:
    test_file = (
        "<!-- pytest -->\n```python\n# test_sample.py\nimport trio\n\n\n"
        "async def test_sleeps():\n    await trio.sleep(0)\n```\n"
    )
    # without ``trio_mode`` pytest-trio does not run an ``async def`` test: not a pass
    with pytest.raises(AssertionError, match=r"pytest test_sample.py"):
        run_sample(tmp_path, test_file)
    config = "```toml\n# pyproject.toml\n[tool.pytest.ini_options]\ntrio_mode = true\n```\n\n"
    run_sample(tmp_path, config + test_file)
    with pytest.raises(AssertionError, match=r"pytest test_sample.py"):
        run_sample(tmp_path, config + test_file.replace("await trio.sleep(0)", "assert False"))


def test_markdown_shown_in_a_longer_fence_is_not_an_example(tmp_path: Path) -> None:
    page = page_of(
        tmp_path,
        "````markdown\n<!-- fragment: needs a running server -->\n```python\nawait x()\n```\n"
        "````\n\n```python\ny = 1\n```\n",
    )
    assert blocks_of(page) == [Block("sample.md", 8, "y = 1\n", None)]
    assert marker_problems(page) == []
