"""The public API: every namespace's ``__all__`` resolves, star imports work, each class and
function has one home whose name its ``__module__`` shows, and docs/index.md lists exactly
what ``__all__`` exports.

Names are discovered from the package, never listed here, so names added later are checked
by the same rules.  Two lists are deliberate: what the top level offers a server author, and
what it exported before the broker and the low-level pieces moved to ``trio_mcp_sse.broker``
and ``trio_mcp_sse.lowlevel`` (those names must keep importing from the top level).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pickle
import pkgutil
import re
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import trio_mcp_sse
from trio_mcp_sse._public import home_namespace, home_of, public_modules

ROOT = Path(__file__).resolve().parent.parent
INDEX = ROOT / "docs" / "index.md"


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
        "trio_mcp_sse.broker",
        "trio_mcp_sse.client",
        "trio_mcp_sse.contrib",
        "trio_mcp_sse.lowlevel",
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


def test_a_public_module_beside_a_private_one_is_the_home_of_what_it_exports() -> None:
    """``trio_mcp_sse._broker.Bus`` lives in ``trio_mcp_sse.broker``, whatever is imported first;
    a name the top level re-exports (``RedisBroker``) keeps the module as its home."""
    assert public_modules("trio_mcp_sse") == ["trio_mcp_sse.broker", "trio_mcp_sse.lowlevel"]
    assert public_modules("trio_mcp_sse.broker") == []
    for namespace in public_modules("trio_mcp_sse"):
        for name in module(namespace).__all__:
            obj = getattr(module(namespace), name)
            if ours(obj):
                assert obj.__module__ == namespace, f"{namespace}.{name}"
    assert trio_mcp_sse.RedisBroker.__module__ == "trio_mcp_sse.broker"
    assert trio_mcp_sse.BrokerSettings.__module__ == "trio_mcp_sse.broker"
    assert trio_mcp_sse.SessionLimits.__module__ == "trio_mcp_sse"
    # Objects without a __module__ of their own (type aliases) follow the same rule.
    assert home_namespace("trio_mcp_sse._streamable", "ResponseMode") == "trio_mcp_sse.lowlevel"
    assert home_namespace("trio_mcp_sse._session", "SessionHandler") == "trio_mcp_sse.lowlevel"
    assert home_namespace("trio_mcp_sse._auth", "TokenVerifier") == "trio_mcp_sse"
    assert home_namespace("trio_mcp_sse.server._server", "MCPServer") == "trio_mcp_sse.server"
    assert home_namespace("trio_mcp_sse.broker", "Bus") == "trio_mcp_sse.broker"


TOP_LEVEL = {
    "MCPServer", "Context",
    "MCPError", "ToolError", "ResourceNotFound",
    "ClientCapabilityError", "ClientRequestError", "ClientRequestTimeout",
    "SecuritySettings", "SessionLimits", "CorsSettings", "WebSocketSettings",
    "AuthSettings", "ProtectedResource", "StaticTokens", "TokenVerifier",
    "JWTVerifier", "IntrospectionVerifier", "AccessToken", "VerificationUnavailable",
    "RedisBroker", "BrokerSettings", "MemoryEventStore", "EventStore", "DrainGroup",
    "__version__",
}
"""What a server author uses: the server, the errors, the settings ``http_app(...)`` takes."""

EXPORTED_BEFORE = TOP_LEVEL | {
    "Broker", "BrokerUnavailable", "Bus", "MemoryBroker", "RouteResult",
    "Delivery", "Incoming", "LocalSessionRegistry", "Outgoing", "Session", "SessionClosed",
    "SessionHandler", "SessionManager", "SessionRefused", "SessionRegistry", "SessionState",
    "InvalidMessage", "JSONRPCError", "JSONRPCNotification", "JSONRPCRequest", "JSONRPCResponse",
    "encode_message", "error_response", "parse_message", "result_response",
    "SSEDecoder", "SSELimitExceeded", "ServerSentEvent", "encode_comment", "encode_event",
    "Replay", "StoredEvent",
    "ResponseMode", "SseServerTransport", "StreamableHTTPTransport", "WebSocketServerTransport",
}
"""The top level's ``__all__`` before the broker and low-level names moved out."""

MOVED = sorted(EXPORTED_BEFORE - TOP_LEVEL)


def new_home(name: str) -> str:
    (home,) = [ns for ns in public_modules("trio_mcp_sse") if name in module(ns).__all__]
    return home


def test_the_top_level_offers_exactly_what_a_server_author_uses() -> None:
    assert sorted(trio_mcp_sse.__all__) == sorted(TOP_LEVEL)


def test_every_name_the_top_level_exported_before_is_still_there_or_moved() -> None:
    assert sorted(trio_mcp_sse._MOVED) == MOVED
    for name in MOVED:
        assert trio_mcp_sse._MOVED[name].__name__ == new_home(name), name


@pytest.mark.parametrize("name", MOVED)
def test_a_moved_name_still_imports_from_the_top_level_with_a_warning(name: str) -> None:
    home = new_home(name)
    scope: dict[str, Any] = {}
    with pytest.warns(DeprecationWarning, match=f"^trio_mcp_sse.{name} moved") as caught:
        exec(compile(f"from trio_mcp_sse import {name}", __file__, "exec"), scope)
    assert [str(warning.message) for warning in caught] == [
        f"trio_mcp_sse.{name} moved to {home}.{name}; import it from there"
    ]
    assert caught[0].filename == __file__, "the warning points at the importing line"
    assert scope[name] is getattr(module(home), name)
    with pytest.warns(DeprecationWarning, match=rf"moved to {re.escape(home)}\.{name}\b"):
        assert getattr(trio_mcp_sse, name) is getattr(module(home), name)


def test_moved_names_are_not_listed() -> None:
    listed = set(dir(trio_mcp_sse))
    assert [name for name in MOVED if name in listed] == []
    assert [name for name in MOVED if name in vars(trio_mcp_sse)] == []
    assert {"broker", "lowlevel"} <= listed


def test_an_unknown_name_is_an_attribute_error_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not hasattr(trio_mcp_sse, "NoSuchName")
        with pytest.raises(ImportError, match="NoSuchName"):
            exec("from trio_mcp_sse import NoSuchName", {})


def test_a_pickle_naming_the_old_place_still_loads() -> None:
    old = b"ctrio_mcp_sse\nBus\n."  # protocol 0: a global by module and name
    with pytest.warns(DeprecationWarning, match="trio_mcp_sse.broker.Bus"):
        assert pickle.loads(old) is trio_mcp_sse.broker.Bus


def python_sources() -> list[tuple[str, str]]:
    """Every Python source of the repository, and each ``python`` block of its Markdown."""
    sources = [
        (str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"))
        for folder in ("trio_mcp_sse", "tests", "examples", "benchmarks", "conformance", "tools")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if not {"node_modules", "__pycache__"} & set(path.parts)
    ]
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        for block in re.finditer(r"^( *)```python\n(.*?)^\1```", text, re.M | re.S):
            lines = [line.removeprefix(block.group(1)) for line in block.group(2).splitlines()]
            line = text[: block.start()].count("\n") + 1
            sources.append((f"{page.relative_to(ROOT)}:{line}", "\n".join(lines)))
    return sources


def test_the_repository_imports_moved_names_from_their_new_home() -> None:
    """No internal use goes through the deprecated top-level names."""
    old = []
    for where, source in python_sources():
        for node in ast.walk(ast.parse(source, where)):
            if isinstance(node, ast.ImportFrom) and node.module == "trio_mcp_sse" and not node.level:
                old += [f"{where}:{node.lineno}: {a.name}" for a in node.names if a.name in MOVED]
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "trio_mcp_sse"
                and node.attr in MOVED
            ):
                old.append(f"{where}:{node.lineno}: trio_mcp_sse.{node.attr}")
    assert old == []


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
