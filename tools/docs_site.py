"""MkDocs hooks for the documentation site (``mkdocs.yml`` names this module).

The API reference is generated, never written by hand: one page per public namespace,
listing exactly that namespace's ``__all__``.  A name is rendered in full (signature,
types, docstring) on the page of its *home* namespace, the rule ``trio_mcp_sse._public``
applies to ``__module__`` (``home_namespace`` there, for names without one such as type
aliases); every other namespace that re-exports it links there.  So a new export appears
on the site without an edit here, and nothing is documented twice.

Docstrings in the package are written with reST roles (``:class:`Foo```); Markdown has
none, so :class:`RestRoles` turns each into a code span when griffe loads the package.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from typing import Any

import griffe
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

from trio_mcp_sse._public import home_namespace

PACKAGE = "trio_mcp_sse"
API_DIR = "api"
# Pages that get a nav entry in a fixed place once they exist.
OPTIONAL_PAGES = {"protocol-eras.md": ("Protocol eras", "transports.md")}

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|mod|obj|exc|const):`~?([^`]+)`")


class RestRoles(griffe.Extension):
    """Render reST cross-reference roles as Markdown code spans (``:meth:`x.y``` -> `` `x.y` ``)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(lambda match: f"`{match[1]}`", obj.docstring.value)


def public_namespaces() -> list[str]:
    """The package and each subpackage not named ``_private``, top level first."""
    package = importlib.import_module(PACKAGE)
    children = [
        f"{PACKAGE}.{info.name}"
        for info in pkgutil.iter_modules(package.__path__)
        if not info.name.startswith("_")
    ]
    return [PACKAGE, *sorted(children)]


def page_path(namespace: str) -> str:
    return f"{API_DIR}/{namespace}.md"


def defining_module(namespace: str, name: str, package: griffe.Module) -> str:
    """Where ``namespace.name`` is defined: ``__module__`` for code, griffe's alias chain otherwise."""
    obj = getattr(importlib.import_module(namespace), name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return str(obj.__module__)
    member: griffe.Object | griffe.Alias = package[namespace.removeprefix(PACKAGE).lstrip(".")] \
        if namespace != PACKAGE else package
    target = member.members[name]
    path = target.final_target.path if isinstance(target, griffe.Alias) else target.path
    return path.rpartition(".")[0]


def namespace_page(namespace: str, package: griffe.Module) -> str:
    module = importlib.import_module(namespace)
    summary = (inspect.getdoc(module) or "").split("\n\n")[0].replace("\n", " ")
    summary = _ROLE.sub(lambda match: f"`{match[1]}`", summary)
    rendered: list[str] = []
    elsewhere: list[str] = []
    foreign: list[str] = []
    for name in module.__all__:
        where = defining_module(namespace, name, package)
        if where.partition(".")[0] != PACKAGE:
            foreign.append(f"- `{name}`: `{where}.{name}`, re-exported as it is.")
        elif (home := home_namespace(where, name)) == namespace:
            rendered.append(f"::: {namespace}.{name}\n")
        else:
            elsewhere.append(f"- [`{name}`][{home}.{name}]: documented in `{home}`.")
    lines = [
        f"# `{namespace}`",
        "",
        summary,
        "",
        f"This page lists exactly `{namespace}.__all__` "
        f"({len(module.__all__)} names), generated from the package.",
        "",
    ]
    if elsewhere:
        lines += ["## Re-exported from another namespace", "", *elsewhere, ""]
    if foreign:
        lines += ["## Official wire types", "", *foreign, ""]
    lines += rendered
    return "\n".join(lines)


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Name the API pages and any optional page that exists in the nav."""
    docs = Path(config.docs_dir)
    nav = config.nav or []
    for section in nav:
        if isinstance(section, dict) and "API reference" in section:
            section["API reference"] = [{f"{ns}": page_path(ns)} for ns in public_namespaces()]
    for page, (title, after) in OPTIONAL_PAGES.items():
        if not (docs / page).exists():
            continue
        for index, entry in enumerate(nav):
            if isinstance(entry, dict) and after in entry.values():
                nav.insert(index + 1, {title: page})
                break
        else:
            nav.append({title: page})
    # A page added without a nav entry still gets one, at the end, rather than none.
    named = set(_pages_named(nav))
    unlisted = sorted(path.name for path in docs.glob("*.md") if path.name not in named)
    if unlisted:
        nav.append({"More": unlisted})
    return config


def _pages_named(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _pages_named(value)]
    if isinstance(nav, list):
        return [page for entry in nav for page in _pages_named(entry)]
    return []


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add one generated reference page per public namespace."""
    package = griffe.load(PACKAGE, resolve_aliases=True, resolve_external=False)
    if not isinstance(package, griffe.Module):
        raise TypeError(f"{PACKAGE} did not load as a module")
    for namespace in public_namespaces():
        files.append(File.generated(config, page_path(namespace), content=namespace_page(namespace, package)))
    return files

