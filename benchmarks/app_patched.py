"""Our servers under plain hypercorn with ``serve``'s hypercorn patches in force, some or all.

Measures each patch of ``trio_mcp_sse._hypercorn_patches`` on its own, against
the same server without it, in one interleaved run (docs/contrib/hypercorn-patches.md):

    hypercorn --worker-class trio 'benchmarks.app_patched:make_ours()'
    hypercorn --worker-class trio "benchmarks.app_patched:make_ours(patches='keep-alive-deadline')"

The patches are applied when the worker imports the app, before hypercorn
creates its first connection, and stay in force for the life of the process
(``serve`` applies them the same way, for as long as it serves).  No garbage
collector policy is applied, so the rows compare with ``ours``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from trio_mcp_sse._hypercorn_patches import PATCHES, hypercorn_patches

_in_force = contextlib.ExitStack()


def _patched(app: Any, patches: str | None) -> Any:
    names = set(patches.split(",")) if patches else {patch.name for patch in PATCHES}
    chosen = tuple(patch for patch in PATCHES if patch.name in names)
    if len(chosen) != len(names):
        raise SystemExit(f"unknown patch in {patches!r}; choose from {', '.join(p.name for p in PATCHES)}")
    applied = _in_force.enter_context(hypercorn_patches(patches=chosen))
    if len(applied) != len(chosen):
        raise SystemExit(f"not every patch applies to this hypercorn: {applied} of {names}")
    return app


def make_ours(patches: str | None = None) -> Any:
    from .app_ours import app

    return _patched(app, patches)


def make_streamable_json(patches: str | None = None) -> Any:
    from .app_ours import streamable_app

    return _patched(streamable_app(response_mode="json"), patches)
