"""The servers under test with ``gc.freeze()`` applied once the app is imported.

Measures what moving the import-time objects out of the garbage collector's
way does for each server (docs/performance.md, "Garbage collection"):

    hypercorn --worker-class trio 'benchmarks.app_frozen:make_ours()'
    uvicorn --factory benchmarks.app_frozen:make_sdk
"""

from __future__ import annotations

import gc
from typing import Any


def _frozen(app: Any) -> Any:
    gc.collect()
    gc.freeze()
    return app


def make_ours() -> Any:
    from .app_ours import app

    return _frozen(app)


def make_sdk() -> Any:
    from .app_sdk import app

    return _frozen(app)
