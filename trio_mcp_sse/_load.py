"""``module:attribute`` paths of the command line (``serve app:app``, ``serve --stdio module:server``).

One reading for every command, so that each failure is the same one line
whichever command met it: a path without a module, a module that fails to
import (its error named), an attribute it lacks.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["LoadError", "import_attribute"]


class LoadError(Exception):
    """A ``module:attribute`` path could not be turned into what a command serves; the message is one line."""


def import_attribute(path: str, default: str) -> Any:
    """Import ``module:attribute`` (dotted attributes allowed; ``default`` when none is given)."""
    module_name, _, attribute = path.partition(":")
    if not module_name:
        raise LoadError(f"cannot load {path!r}: expected module:attribute")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any import failure is in the user's module: one line says which
        raise LoadError(f"cannot import module {module_name!r}: {type(error).__name__}: {error}") from None
    target: Any = module
    for part in (attribute or default).split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise LoadError(f"module {module_name!r} has no attribute {attribute or default!r}") from None
    return target
