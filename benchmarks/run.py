"""Run the benchmark suite and print one table (``make bench``; ``make bench-quick``).

Every server under test is started here as a subprocess on a free 127.0.0.1
port and driven by :mod:`benchmarks.loadgen` in another process: one scenario
per load-generator process, the same client for every server, all servers in
the same run.  A full run (and ``--design``) writes ``benchmarks/results/``
(JSON, the printed table, the chart) and ``docs/performance.png``; quick and
customised runs write ``benchmarks/results/<profile>.tmp/``, which git ignores.

    python -m benchmarks.run              # full run (about 15 minutes on 2 cores)
    python -m benchmarks.run --quick      # shorter windows, 1,000 idle sessions only
    python -m benchmarks.run --transport streamable   # only the Streamable HTTP servers
    python -m benchmarks.run --design     # the design comparison in docs/performance.md

One table per transport (HTTP+SSE, Streamable HTTP); each puts our servers next
to the SDK's serving the same tool the same way, with the ratios from the run.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .servers import ROOT, SERVERS, VARIANTS, ServerSpec, running

RESULTS = Path(__file__).resolve().parent / "results"
OURS, SDK_UV, SDK_HC = "ours", "sdk-uvicorn", "sdk-hypercorn"
TRANSPORTS = ("sse", "streamable")


@dataclass(frozen=True)
class Table:
    """One transport's table: its columns in order, and the like-for-like ratio pairs."""

    title: str
    transport: str
    columns: tuple[str, ...]
    ratios: tuple[tuple[str, str], ...]


TABLES = (
    Table(
        "HTTP+SSE",
        "sse",
        (OURS, "ours-def", "ours-serve", "ours-def-serve", SDK_UV, "sdk-uvicorn-def", SDK_HC),
        (
            (OURS, SDK_UV), (OURS, SDK_HC), ("ours-def", "sdk-uvicorn-def"),
            ("ours-serve", SDK_UV), ("ours-def-serve", "sdk-uvicorn-def"),
        ),
    ),
    Table(
        "Streamable HTTP",
        "streamable",
        ("ours-streamable-json", "ours-streamable-sse", "ours-streamable-json-serve", "sdk-streamable-json", "sdk-streamable-sse"),
        (
            ("ours-streamable-json", "sdk-streamable-json"), ("ours-streamable-sse", "sdk-streamable-sse"),
            ("ours-streamable-json-serve", "sdk-streamable-json"),
        ),
    ),
)

PROFILES: dict[str, dict[str, Any]] = {
    "full": {
        "levels": [1, 20, 100],
        "warmup": 2.0,
        "duration": 8.0,
        "idle": [1000, 10000],
        "payload_rounds": 5,
    },
    "quick": {
        "levels": [1, 20, 100],
        "warmup": 1.0,
        "duration": 3.0,
        "idle": [1000],
        "payload_rounds": 2,
    },
}

SCENARIOS = "throughput,payload,idle"

TARGETS = {
    "cpu_async_20": 0.55,
    "cpu_def_20": 0.8,
    "p99_100_async": 0.3,
    "rss_per_session_kb_10k": 25.0,
    "rss_per_streamable_session_kb_10k": 15.0,
    "cpu_streamable_json_20": 0.55,
}
"""Like for like: the same tool on both sides, ours as deployed (``serve``), the SDK on uvicorn."""


def log(text: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


def loadgen_argv(scenario: str, port: int, pid: int, *options: str) -> list[str]:
    """The command line of one load-generator process (``options``: more of its options)."""
    return [sys.executable, "-m", "benchmarks.loadgen", scenario, "--port", str(port), "--server-pid", str(pid), *options]


def loadgen(scenario: str, port: int, pid: int, *options: str, timeout: float = 600) -> dict[str, Any]:
    """One load-generator process for one scenario; its JSON result."""
    done = subprocess.run(
        loadgen_argv(scenario, port, pid, *options), cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_server(spec: ServerSpec, profile: dict[str, Any], scenarios: set[str]) -> dict[str, Any]:
    """All scenarios for one server; idle-session scenarios each get a fresh process."""
    out: dict[str, Any] = {
        "label": spec.label, "transport": spec.transport, "tool": spec.tool, "gc": spec.gc,
        "throughput": {}, "idle": {}, "payload": None,
    }  # fmt: skip
    if spec.scenarios is not None:
        scenarios = scenarios & spec.scenarios
    transport = spec.loadgen_options
    if scenarios & {"throughput", "payload"}:
        with running(spec) as (port, pid, _log):
            if "throughput" in scenarios:
                for level in profile["levels"]:
                    result = loadgen(
                        "throughput", port, pid, *transport, "--sessions", str(level),
                        "--warmup", str(profile["warmup"]), "--duration", str(profile["duration"]),
                    )  # fmt: skip
                    out["throughput"][str(level)] = result
                    log(
                        f"  {spec.key:20} {level:4} sessions: {result['calls_per_s']:7.0f} calls/s "
                        f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
                        f"server {result['server_cpu_per_call_us']:5.0f} us/call  "
                        f"client {result['client_cpu_per_call_us']:4.0f} us/call  errors {result['errors']}"
                        + (f"  stream end +{result['stream_tail_mean_ms']:.2f} ms" if result.get("stream_responses") else "")
                    )
            if "payload" in scenarios:
                result = loadgen("payload", port, pid, *transport, "--rounds", str(profile["payload_rounds"]))
                out["payload"] = result
                log(
                    f"  {spec.key:20} 4 MiB echo: median {result['median_ms']:.0f} ms, "
                    f"server {result['server_cpu_per_call_ms']:.0f} ms CPU/call, errors {result['errors']}"
                )
    if "idle" in scenarios:
        for count in profile["idle"]:
            with running(spec) as (port, pid, _log):
                result = loadgen("idle", port, pid, *transport, "--sessions", str(count), timeout=900)
            out["idle"][str(count)] = result
            log(
                f"  {spec.key:20} {count:6} idle sessions: opened {result['sessions']} in "
                f"{result['setup_s']:.1f} s (server CPU {result['setup_server_cpu_utilisation']:.0%}, "
                f"client CPU {result['setup_client_cpu_utilisation']:.0%}), "
                f"{result['rss_per_session_kb']:.1f} KB/session, "
                f"{result['answered']} answered, errors {result['errors']}"
            )
    return out


# -- the table ------------------------------------------------------------------------------------
def _get(results: dict[str, Any], key: str, *path: str) -> float:
    node: Any = results.get(key)
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return math.nan
        node = node[part]
    return float(node) if isinstance(node, int | float) else math.nan


def _fmt(value: float, digits: int) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def cpu_per_call(results: dict[str, Any], key: str) -> float:
    """Server CPU per call over every throughput level together (CPU seconds / calls)."""
    levels = results.get(key, {}).get("throughput", {})
    cpu = sum(level["server_cpu_s"] for level in levels.values())
    calls = sum(level["calls"] for level in levels.values())
    return cpu / calls * 1e6 if calls else math.nan


def _sessions(level: int) -> str:
    return f"{level} session" if level == 1 else f"{level} sessions"


def table_columns(results: dict[str, Any], table: Table) -> list[str]:
    """The servers of ``table``'s transport in this run: its own order first, then any others."""
    mine = [key for key, server in results.items() if server.get("transport", "sse") == table.transport]
    return [key for key in table.columns if key in mine] + [key for key in mine if key not in table.columns]


def table_rows(
    results: dict[str, Any], profile: dict[str, Any], keys: list[str]
) -> list[tuple[str, int, list[float]]]:
    """(metric, digits, value per server) in display order."""
    rows: list[tuple[str, int, list[float]]] = []

    def per_level(label: str, field: str, digits: int) -> None:
        for level in profile["levels"]:
            rows.append((
                f"{label}, {_sessions(level)}", digits,
                [_get(results, k, "throughput", str(level), field) for k in keys],
            ))  # fmt: skip

    per_level("calls/s", "calls_per_s", 0)
    per_level("p50 ms", "p50_ms", 2)
    per_level("p99 ms", "p99_ms", 2)
    if any(result.get("stream_responses") for k in keys for result in results[k]["throughput"].values()):
        # Streamable HTTP: the connection carries the next call only once the answer's stream has ended.
        per_level("event stream end after the response, mean ms", "stream_tail_mean_ms", 2)
    per_level("server CPU us/call", "server_cpu_per_call_us", 0)
    rows.append(("server CPU us/call, all levels", 0, [cpu_per_call(results, k) for k in keys]))
    per_level("load generator CPU us/call", "client_cpu_per_call_us", 0)
    for count in profile["idle"]:
        rows.append((f"RSS KB per idle session, {count:,}", 1, [_get(results, k, "idle", str(count), "rss_per_session_kb") for k in keys]))
        rows.append((f"sessions open + answering, {count:,}", 0, [_get(results, k, "idle", str(count), "answered") for k in keys]))
        rows.append((f"setup s for {count:,} sessions", 1, [_get(results, k, "idle", str(count), "setup_s") for k in keys]))
        rows.append((
            f"server CPU us per session setup, {count:,}", 0,
            [_get(results, k, "idle", str(count), "setup_server_cpu_per_session_us") for k in keys],
        ))  # fmt: skip
    rows.append(("4 MiB echo round trip ms (median)", 0, [_get(results, k, "payload", "median_ms") for k in keys]))
    rows.append(("4 MiB echo server CPU ms/call", 0, [_get(results, k, "payload", "server_cpu_per_call_ms") for k in keys]))
    rows.append(("errors", 0, [float(total_errors(results.get(k, {}))) for k in keys]))
    return rows


def total_errors(server_results: dict[str, Any]) -> int:
    total = 0
    for level in server_results.get("throughput", {}).values():
        total += level["errors"]
    for count in server_results.get("idle", {}).values():
        # Every session that did not answer has an error counted already (its setup
        # or its call failed); max() guards against one going missing silently.
        total += max(count["errors"], count["sessions_requested"] - count["answered"])
    if server_results.get("payload"):
        total += server_results["payload"]["errors"]
    return total


def render_table(results: dict[str, Any], profile: dict[str, Any], skipped: dict[str, str] | None = None) -> str:
    """One table per transport that has results; then the servers that were not measured."""
    parts = []
    for table in TABLES:
        keys = table_columns(results, table)
        if keys:
            parts.append(f"{table.title}:\n\n" + render_one_table(results, profile, keys, table))
    if skipped:
        parts.append("Not measured:\n\n" + "\n".join(f"* {key}: {why}" for key, why in skipped.items()))
    return "\n\n".join(parts)


def render_one_table(results: dict[str, Any], profile: dict[str, Any], keys: list[str], table: Table) -> str:
    head = ["metric", *(results[key]["label"] for key in keys)]
    pairs = [(ours, sdk) for ours, sdk in table.ratios if ours in keys and sdk in keys]
    head += [f"{ours} / {sdk}" for ours, sdk in pairs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    blank = [""] * len(pairs)
    # What each server runs, so that a reader can see which columns compare like for like.
    for name, field in (("echo tool", "tool"), ("garbage collector", "gc")):
        lines.append("| " + " | ".join([name, *(str(results[key].get(field, "-")) for key in keys), *blank]) + " |")
    for name, digits, values in table_rows(results, profile, keys):
        cells = [name, *(_fmt(value, digits) for value in values)]
        informational = name.startswith(("load generator", "sessions open", "errors"))
        cells += ["" if informational else _ratio(values[keys.index(a)], values[keys.index(b)]) for a, b in pairs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_targets(results: dict[str, Any], profile: dict[str, Any]) -> str:
    if OURS not in results:
        return ""
    lines = ["| target | measured | holds |", "|---|---|---|"]

    def add(name: str, value: float, limit: float, unit: str = "x") -> None:
        holds = "yes" if not math.isnan(value) and value <= limit else "no"
        shown = "-" if math.isnan(value) else (f"{value:.2f}{unit}" if unit == "x" else f"{value:.1f} {unit}")
        limit_shown = f"{limit}{unit}" if unit == "x" else f"{limit:g} {unit}"
        lines.append(f"| {name} <= {limit_shown} | {shown} | {holds} |")

    def level_cpu(key: str, level: str) -> float:
        node = results.get(key, {}).get("throughput", {}).get(level)
        return float(node["server_cpu_s"]) / float(node["calls"]) if node and node.get("calls") else math.nan

    def ratio(ours: str, sdk: str, value: Callable[[str], float]) -> float:
        return value(ours) / value(sdk) if ours in results and sdk in results else math.nan

    top = str(max(profile["levels"]))
    for name, ours, sdk, value, target in (
        ("CPU per call, async tool, 20 sessions, serve vs SDK on uvicorn", "ours-serve", SDK_UV,
         lambda key: level_cpu(key, "20"), "cpu_async_20"),
        ("CPU per call, def tool, 20 sessions, serve vs SDK on uvicorn", "ours-def-serve", "sdk-uvicorn-def",
         lambda key: level_cpu(key, "20"), "cpu_def_20"),
        (f"p99 at {top} sessions, async tool, serve vs SDK on uvicorn", "ours-serve", SDK_UV,
         lambda key: _get(results, key, "throughput", top, "p99_ms"), "p99_100_async"),
        ("CPU per call, Streamable HTTP JSON answers, 20 sessions, serve vs SDK", "ours-streamable-json-serve",
         "sdk-streamable-json", lambda key: level_cpu(key, "20"), "cpu_streamable_json_20"),
    ):  # fmt: skip
        add(name, ratio(ours, sdk, value), TARGETS[target])
    biggest = str(max(profile["idle"])) if profile["idle"] else ""
    if biggest:
        for transport, key, target in (
            ("HTTP+SSE", "ours-serve", "rss_per_session_kb_10k"),
            ("Streamable HTTP, JSON answers", "ours-streamable-json-serve", "rss_per_streamable_session_kb_10k"),
        ):
            add(
                f"RSS per idle session at {int(biggest):,} sessions ({transport}, serve)",
                _get(results, key, "idle", biggest, "rss_per_session_kb") if key in results else math.nan,
                TARGETS[target],
                "KB",
            )
    our_keys = [key for key in results if key.startswith("ours")]
    errors = sum(total_errors(results[key]) for key in our_keys)
    lines.append(f"| zero errors (our servers, every scenario) | {errors} | {'yes' if errors == 0 else 'no'} |")
    references = {key: total_errors(results[key]) for key in results if key not in our_keys}
    if any(references.values()):  # the reference servers' own failures: reported, not a target of ours
        failed = ", ".join(f"{key} {count}" for key, count in references.items() if count)
        lines.append(f"| (errors of the reference servers: {failed}) | {sum(references.values())} | - |")
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = "-"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "packages": {
            name: version(name)
            for name in ("trio-mcp-sse", "trio", "hypercorn", "quart-trio", "quart", "h11", "mcp", "uvicorn", "starlette", "anyio")
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows and 1,000 idle sessions (about 3 min)")
    parser.add_argument("--design", action="store_true", help="compare design variants at 20 sessions")
    parser.add_argument("--servers", help=f"comma-separated, from {', '.join([*SERVERS, *VARIANTS])}")
    parser.add_argument(
        "--transport", choices=(*TRANSPORTS, "all"), default="all", help="which transport's servers to run"
    )
    parser.add_argument("--scenarios", default=SCENARIOS)
    parser.add_argument("--levels", help="comma-separated session counts for the throughput scenario")
    parser.add_argument("--idle", help="comma-separated session counts for the idle scenario")
    parser.add_argument("--duration", type=float, help="measured seconds per throughput level")
    parser.add_argument("--output", help="results name in benchmarks/results/ (default: the profile's)")
    parser.add_argument("--chart", help="PNG path for the chart (default: docs/performance.png on full runs)")
    parser.add_argument("--render", metavar="JSON", help="print the table of a saved run and exit")
    args = parser.parse_args(argv)
    if args.render:
        sys.stdout.write(render(Path(args.render)) + "\n")
        return 0

    name = "quick" if args.quick else "full"
    profile = dict(PROFILES[name])
    servers = list(SERVERS)
    scenarios = set(args.scenarios.split(","))
    if args.design:
        name = "design"
        servers = [OURS, "ours-no-quart", "quart-routes", "bare-asgi", SDK_UV]
        scenarios = {"throughput", "idle"}
        profile.update(levels=[20, 100], idle=[1000])
    if args.servers:
        servers = args.servers.split(",")
    if args.levels:
        profile["levels"] = [int(x) for x in args.levels.split(",")]
    if args.idle is not None:
        profile["idle"] = [int(x) for x in args.idle.split(",") if x]
    if args.duration:
        profile["duration"] = args.duration
    catalogue = {**SERVERS, **VARIANTS}
    unknown = [key for key in servers if key not in catalogue]
    if unknown:
        parser.error(f"unknown server(s): {', '.join(unknown)}")
    if args.transport != "all":
        servers = [key for key in servers if catalogue[key].transport == args.transport]
    skipped = {key: catalogue[key].needs for key in servers if catalogue[key].needs}
    for key, why in skipped.items():
        log(f"skipping {key}: {why}")
    servers = [key for key in servers if key not in skipped]
    if not servers:
        parser.error("no server left to measure")

    env = environment()
    log(f"benchmark profile {name!r}: {json.dumps(profile)}; load average {env['loadavg_at_start']}")
    started = time.monotonic()
    results: dict[str, Any] = {}
    for key in servers:
        log(f"{catalogue[key].label}")
        results[key] = run_server(catalogue[key], profile, scenarios)
    elapsed = time.monotonic() - started

    # Only the reference runs (full, design) replace the committed results; quick
    # and customised runs go to an ignored *.tmp directory unless --output is given.
    customised = any(
        (args.servers, args.levels, args.idle is not None, args.duration, args.scenarios != SCENARIOS)
    ) or args.transport != "all"
    reference = name in ("full", "design") and not customised
    output = args.output or (name if reference else f"{name}.tmp/{name}")
    (RESULTS / output).parent.mkdir(parents=True, exist_ok=True)
    document = {
        "profile": name, "settings": profile, "environment": env, "elapsed_s": elapsed,
        "results": results, "skipped": skipped,
    }  # fmt: skip
    (RESULTS / f"{output}.json").write_text(json.dumps(document, indent=1) + "\n")
    if args.design:
        text = render_design(results, profile)
    else:
        text = with_targets(render_table(results, profile, skipped), results, profile)
    header = (
        f"Run: {env['date']}, commit {env['commit']}, Python {env['python']}, {env['cpus']} CPUs, "
        f"profile {name}, {elapsed / 60:.1f} min\n\n"
    )
    (RESULTS / f"{output}.md").write_text(header + text + "\n")
    sys.stdout.write("\n" + header + text + "\n")
    chart = args.chart or (str(ROOT / "docs" / "performance.png") if reference and name == "full" else None)
    if chart and not args.design and "throughput" in scenarios:
        from .chart import draw

        sse = {key: server for key, server in results.items() if server.get("transport", "sse") == "sse"}
        draw(sse, profile, Path(chart))
        if reference:
            draw(sse, profile, RESULTS / "performance.png")
        log(f"chart written to {chart}")
    errors = {key: total_errors(server) for key, server in results.items()}
    sys.stdout.write(f"\nerrors: {errors}\n")
    # A failing server under test is a finding; a failing trio-mcp-sse fails the run.
    return 1 if any(count for key, count in errors.items() if key.startswith(OURS)) else 0


def render_design(results: dict[str, Any], profile: dict[str, Any]) -> str:
    levels = [str(level) for level in profile["levels"]]
    idle = str(profile["idle"][0]) if profile["idle"] else ""
    reference = cpu_per_call(results, SDK_UV) if SDK_UV in results else math.nan
    head = [
        "design",
        *(f"calls/s, {level} sessions" for level in levels),
        *(f"p99 ms, {level} sessions" for level in levels),
        "server CPU us/call",
        "vs SDK on uvicorn",
        f"RSS KB per idle session ({idle})",
        "errors",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, server in results.items():
        cpu = cpu_per_call(results, key)
        cells = [
            server["label"],
            *(_fmt(_get(results, key, "throughput", level, "calls_per_s"), 0) for level in levels),
            *(_fmt(_get(results, key, "throughput", level, "p99_ms"), 1) for level in levels),
            _fmt(cpu, 0),
            _ratio(cpu, reference),
            _fmt(_get(results, key, "idle", idle, "rss_per_session_kb"), 1),
            str(total_errors(server)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(path: Path) -> str:
    """The table of a saved run (``--render benchmarks/results/full.json``)."""
    document = json.loads(path.read_text())
    results, profile = document["results"], document["settings"]
    if document["profile"] == "design":
        return render_design(results, profile)
    return with_targets(render_table(results, profile, document.get("skipped")), results, profile)


def with_targets(text: str, results: dict[str, Any], profile: dict[str, Any]) -> str:
    targets = render_targets(results, profile)
    return text + "\n\nTargets:\n\n" + targets if targets else text


if __name__ == "__main__":
    sys.exit(main())
