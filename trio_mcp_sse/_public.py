"""Give each public object its public name.

Classes and functions live in private ``_modules``; users meet them through a
public namespace (``trio_mcp_sse``, ``trio_mcp_sse.server``, ...).  Tracebacks,
``repr()``, pickling and documentation tools read ``__module__``, so it should
name the public path, not ``trio_mcp_sse.server._server``.

The rule, one place for every namespace: an object's *home* is the public
package that contains the private module defining it (``trio_mcp_sse._errors``
-> ``trio_mcp_sse``; ``trio_mcp_sse.server._server`` -> ``trio_mcp_sse.server``).
Each public ``__init__`` calls :func:`publish` after building ``__all__``; it
rewrites ``__module__`` only for the names whose home it is, so a re-export
(the top level offering ``MCPServer``) never moves an object, and names added
to ``__all__`` later are covered without further edits.
"""

from __future__ import annotations

import inspect
import sys

__all__ = ["home_of", "publish"]

_PACKAGE = __name__.partition(".")[0]


def home_of(module_name: str) -> str:
    """The public package containing ``module_name``: its path up to the first private part."""
    public: list[str] = []
    for part in module_name.split("."):
        if part.startswith("_"):
            break
        public.append(part)
    return ".".join(public)


def publish(namespace: str) -> None:
    """Set ``__module__`` to ``namespace`` on each class and function of its ``__all__`` it is home to."""
    module = sys.modules[namespace]
    for name in module.__all__:
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        defined_in = obj.__module__
        if defined_in.partition(".")[0] != _PACKAGE or defined_in == namespace:
            continue
        if home_of(defined_in) == namespace:
            obj.__module__ = namespace
