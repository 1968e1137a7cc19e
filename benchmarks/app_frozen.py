"""The servers under test with ``gc.freeze()`` applied once the app is imported.

Measures what moving the import-time objects out of the garbage collector's
way does for each server (docs/performance.md, "Garbage collection"):

    hypercorn --worker-class trio 'benchmarks.app_frozen:make_ours()'
    uvicorn --factory benchmarks.app_frozen:make_sdk

and, with ``threshold``, what a raised generation-0 threshold adds on top
(``gc.set_threshold(threshold)``, what ``python -m trio_mcp_sse serve --gc-threshold``
applies):

    hypercorn --worker-class trio 'benchmarks.app_frozen:make_ours(threshold=50_000)'
"""

from __future__ import annotations

import gc
from typing import Any


def _frozen(app: Any, threshold: int | None = None) -> Any:
    gc.collect()
    gc.freeze()
    if threshold is not None:
        gc.set_threshold(threshold, *gc.get_threshold()[1:])
    return app


def make_ours(threshold: int | None = None) -> Any:
    from .app_ours import app

    return _frozen(app, threshold)


def make_sdk() -> Any:
    from .app_sdk import app

    return _frozen(app)
