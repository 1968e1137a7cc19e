"""A debug route for end-to-end tests: live sessions, Trio tasks, resident memory."""

from __future__ import annotations

from typing import Any

import trio


def _count_tasks(task: Any) -> int:
    return 1 + sum(_count_tasks(child) for nursery in task.child_nurseries for child in nursery.child_tasks)


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")  # pragma: no cover


def install_debug_route(app: Any, transport: Any) -> None:
    @app.route("/debug/state")
    async def state() -> dict[str, int]:
        return {
            "sessions": len(transport.sessions),
            "tasks": _count_tasks(trio.lowlevel.current_root_task()),
            "rss": rss_bytes(),
        }
