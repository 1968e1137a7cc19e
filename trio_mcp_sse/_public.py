"""Give each public object its public name.

Classes and functions live in private ``_modules``; users meet them through a
public namespace (``trio_mcp_sse``, ``trio_mcp_sse.server``, ...).  Tracebacks,
``repr()``, pickling and documentation tools read ``__module__``, so it should
name the public path, not ``trio_mcp_sse.server._server``.

The rule, one place for every namespace: an object's *home* is the public
package that contains the private module defining it (``trio_mcp_sse._errors``
-> ``trio_mcp_sse``; ``trio_mcp_sse.server._server`` -> ``trio_mcp_sse.server``),
unless a public *module* of that package exports it: then that module is its
home (``trio_mcp_sse._broker.Bus`` -> ``trio_mcp_sse.broker``; the package may
re-export it, as the top level offers ``RedisBroker``).  Each public namespace
calls :func:`publish` after building ``__all__``; it rewrites ``__module__`` only
for the names whose home it is, so a re-export (the top level offering
``MCPServer``) never moves an object, the result does not depend on which
namespace is imported first, and names added to ``__all__`` later are covered
without further edits.  :func:`home_namespace` applies the same rule to objects
without a ``__module__`` of their own (type aliases), for the documentation.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys

__all__ = ["home_namespace", "home_of", "publish"]

_PACKAGE = __name__.partition(".")[0]


def home_of(module_name: str) -> str:
    """The public package containing ``module_name``: its path up to the first private part."""
    public: list[str] = []
    for part in module_name.split("."):
        if part.startswith("_"):
            break
        public.append(part)
    return ".".join(public)


def public_modules(package: str) -> list[str]:
    """The public modules (not subpackages) of ``package``: ``trio_mcp_sse.broker``, ..."""
    path = getattr(importlib.import_module(package), "__path__", None)
    if path is None:
        return []
    return [
        f"{package}.{info.name}"
        for info in pkgutil.iter_modules(path)
        if not info.ispkg and not info.name.startswith("_")
    ]


def home_namespace(module_name: str, name: str) -> str:
    """The home of ``name`` defined in ``module_name``: a public module exporting it, else the package."""
    package = home_of(module_name)
    if package != module_name:
        for candidate in public_modules(package):
            if name in getattr(importlib.import_module(candidate), "__all__", ()):
                return candidate
    return package


def publish(namespace: str) -> None:
    """Set ``__module__`` to ``namespace`` on each class and function of its ``__all__`` it is home to.

    A package is home to what its private modules define; a public module of a
    package (``trio_mcp_sse.broker``) to what the package's private modules
    define and it exports, including a name the package published first.
    """
    module = sys.modules[namespace]
    adopts = not hasattr(module, "__path__")  # a module, not a package
    package = namespace.rpartition(".")[0] if adopts else namespace
    for name in module.__all__:
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        defined_in = obj.__module__
        if defined_in.partition(".")[0] != _PACKAGE or defined_in == namespace:
            continue
        private = home_of(defined_in) != defined_in
        if (private or (adopts and defined_in == package)) and home_of(defined_in) == package:
            obj.__module__ = namespace
