"""The documentation build is strict: a broken link fails it.

Builds a copy of the site (``mkdocs.yml``, ``docs/``, ``tools/``) with one page given a
link to a page that does not exist, and expects the build to stop and name the link.
Needs the ``docs`` extra: ``make docs`` installs it and runs this file (marked
``docs_site``, so ``make test``, which has no docs tooling, deselects it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docs_site

ROOT = Path(__file__).resolve().parent.parent


def build(tree: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tree / "site")],
        cwd=tree, env=environment, capture_output=True, text=True, timeout=240, check=False,
    )


def copy_site_sources(tree: Path) -> None:
    shutil.copy(ROOT / "mkdocs.yml", tree / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tree / "docs")
    shutil.copytree(ROOT / "tools", tree / "tools", ignore=shutil.ignore_patterns("__pycache__"))


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    copy_site_sources(tmp_path)
    page = tmp_path / "docs" / "quickstart.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md).\n")
    result = build(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert (
        "WARNING -  Doc file 'quickstart.md' contains a link 'no-such-page.md', "
        "but the target is not found among documentation files."
    ) in output
    assert "Aborted with 1 warnings in strict mode!" in output


def test_the_unbroken_copy_builds(tmp_path: Path) -> None:
    """The failure above is the link's doing: the same copy without it builds."""
    copy_site_sources(tmp_path)
    result = build(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "api" / "trio_mcp_sse.server.html").exists()


def test_each_reference_page_lists_exactly_its_namespace_all() -> None:
    """Every exported name is on its namespace's page once: rendered, linked or listed."""
    import importlib

    import griffe

    from tools import docs_site

    package = griffe.load("trio_mcp_sse", resolve_aliases=True, resolve_external=False)
    assert isinstance(package, griffe.Module)
    rendered_somewhere: set[str] = set()
    for namespace in docs_site.public_namespaces():
        page = docs_site.namespace_page(namespace, package)
        entries = [
            line for line in page.splitlines() if line.startswith(("::: ", "- [`", "- `"))
        ]
        names = [entry.split("`")[1] if "`" in entry else entry.rpartition(".")[2]
                 for entry in entries]
        assert sorted(names) == sorted(importlib.import_module(namespace).__all__), namespace
        rendered_somewhere |= {line[4:] for line in entries if line.startswith("::: ")}
    # A re-export links to the page that renders the name in full.
    assert "trio_mcp_sse.server.MCPServer" in rendered_somewhere
    assert "trio_mcp_sse.MCPServer" not in rendered_somewhere
    assert "- [`MCPServer`][trio_mcp_sse.server.MCPServer]: documented in `trio_mcp_sse.server`." \
        in docs_site.namespace_page("trio_mcp_sse", package)
