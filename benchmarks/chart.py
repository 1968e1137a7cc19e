"""The chart in docs/performance.md: calls/s and p99 latency versus concurrent sessions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STYLE = {
    "ours": ("#1f77b4", "o"),
    "sdk-uvicorn": ("#d62728", "s"),
    "sdk-hypercorn": ("#ff7f0e", "^"),
    "ours-def": ("#17becf", "o"),
    "sdk-uvicorn-def": ("#e377c2", "s"),
}


def draw(results: dict[str, Any], profile: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = profile["levels"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for key, server in results.items():
        colour, marker = STYLE.get(key, (None, "x"))
        points = [server["throughput"].get(str(level)) for level in levels]
        xs = [level for level, point in zip(levels, points, strict=True) if point]
        left.plot(xs, [p["calls_per_s"] for p in points if p], marker=marker, color=colour, label=server["label"])
        right.plot(xs, [p["p99_ms"] for p in points if p], marker=marker, color=colour, label=server["label"])
    for axis, title, unit in ((left, "Tool calls per second", "calls/s"), (right, "p99 latency", "ms")):
        axis.set_xscale("log")
        axis.set_xticks(levels, [str(level) for level in levels])
        axis.set_xlabel("concurrent sessions (one call in flight each)")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
        axis.set_ylim(bottom=0)
    left.legend(loc="lower right", fontsize=8)
    fig.suptitle("MCP HTTP+SSE echo tool, one server worker, same client, same run", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
