"""The public API: every namespace's ``__all__`` resolves, star imports work, each class and
function has one home whose name its ``__module__`` shows, and docs/index.md lists exactly
what ``__all__`` exports.

Names are discovered from the package, never listed here, so names added later are checked
by the same rules.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import trio_mcp_sse
from trio_mcp_sse._public import home_of

INDEX = Path(__file__).resolve().parent.parent / "docs" / "index.md"


def public_namespaces() -> list[str]:
    """``trio_mcp_sse`` and each of its subpackages and modules not named ``_private``."""
    children = [
        f"trio_mcp_sse.{info.name}"
        for info in pkgutil.iter_modules(trio_mcp_sse.__path__)
        if not info.name.startswith("_")
    ]
    return ["trio_mcp_sse", *sorted(children)]


NAMESPACES = public_namespaces()


def module(name: str) -> ModuleType:
    return importlib.import_module(name)


def exported() -> list[tuple[str, str, Any]]:
    return [
        (namespace, name, getattr(module(namespace), name))
        for namespace in NAMESPACES
        for name in module(namespace).__all__
    ]


def ours(obj: Any) -> bool:
    """A class or function this package defines (not a re-exported ``mcp_types`` model)."""
    return (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__.partition(".")[
        0
    ] == "trio_mcp_sse"


def test_the_public_namespaces_are_the_documented_ones() -> None:
    assert NAMESPACES == [
        "trio_mcp_sse",
        "trio_mcp_sse.client",
        "trio_mcp_sse.contrib",
        "trio_mcp_sse.server",
        "trio_mcp_sse.testing",
    ]


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_every_name_in_all_resolves(namespace: str) -> None:
    mod = module(namespace)
    assert mod.__all__, namespace
    assert len(mod.__all__) == len(set(mod.__all__)), "duplicates in __all__"
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert missing == []


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_star_import_gives_exactly_all(namespace: str) -> None:
    scope: dict[str, Any] = {}
    exec(f"from {namespace} import *", scope)
    scope.pop("__builtins__")
    assert sorted(scope) == sorted(module(namespace).__all__)


def test_each_class_and_function_shows_its_public_home() -> None:
    """``__module__`` names a public namespace that exports the object under the same name."""
    wrong = []
    for namespace, name, obj in exported():
        if not ours(obj):
            continue
        home = obj.__module__
        if home not in NAMESPACES or getattr(module(home), name, None) is not obj:
            wrong.append(f"{namespace}.{name}: __module__ = {home}")
        elif name not in module(home).__all__:
            wrong.append(f"{namespace}.{name}: its home {home} does not export it")
    assert wrong == []


def test_a_name_exported_twice_is_the_same_thing() -> None:
    """Re-exports are the object itself; shared constants are equal."""
    seen: dict[str, tuple[str, Any]] = {}
    different = []
    for namespace, name, obj in exported():
        if name in seen:
            first_namespace, first = seen[name]
            same = obj is first if (inspect.isclass(obj) or inspect.isfunction(obj)) else obj == first
            if not same:
                different.append(f"{first_namespace}.{name} vs {namespace}.{name}")
        else:
            seen[name] = (namespace, obj)
    assert different == []


def test_a_public_object_has_one_public_name() -> None:
    """No object is exported under two different names."""
    names: dict[int, set[str]] = {}
    for _, name, obj in exported():
        if ours(obj):
            names.setdefault(id(obj), set()).add(name)
    assert [sorted(n) for n in names.values() if len(n) > 1] == []


def test_home_of_cuts_at_the_first_private_part() -> None:
    assert home_of("trio_mcp_sse._errors") == "trio_mcp_sse"
    assert home_of("trio_mcp_sse.server._server") == "trio_mcp_sse.server"
    assert home_of("trio_mcp_sse.testing._asgi") == "trio_mcp_sse.testing"
    assert home_of("trio_mcp_sse.client") == "trio_mcp_sse.client"


def documented_names() -> dict[str, list[str]]:
    """Names in the first column of each ``### `namespace` `` table of docs/index.md."""
    section = INDEX.read_text().split("## The public API", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, list[str]] = {}
    current = None
    for line in section.splitlines():
        heading = re.fullmatch(r"### `([\w.]+)`", line)
        if heading:
            current = heading.group(1)
            tables[current] = []
        elif current and line.startswith("| `"):
            tables[current] += re.findall(r"`([\w.]+)`", line.split("|")[1])
    return tables


def test_the_api_tables_in_the_docs_match_all_exactly() -> None:
    tables = documented_names()
    assert sorted(tables) == sorted(NAMESPACES)
    for namespace, names in tables.items():
        assert len(names) == len(set(names)), f"{namespace}: a name listed twice"
        assert sorted(names) == sorted(module(namespace).__all__), namespace


def test_public_classes_and_functions_are_found_again_by_their_public_name() -> None:
    """What ``pickle`` (and so multiprocessing) does with ``__module__`` and ``__qualname__``."""
    import pickle

    for _, _, obj in exported():
        if ours(obj):
            assert pickle.loads(pickle.dumps(obj)) is obj
