"""A/B comparison of servers or server settings on a noisy machine.

``python -m benchmarks.ab [--sessions 20] [--rounds 3] [--duration 5] SERVER ...``

Runs the throughput scenario for every SERVER in turn, ``--rounds`` times
(A B C A B C ...), each round on a fresh server process, and prints the
median and spread of server CPU per call, calls/s and p99.  Interleaving
spreads the machine's background load over all candidates, and the median
of several rounds is what a code change's commit message should quote.

SERVER is a key of :data:`benchmarks.servers.SERVERS` or ``VARIANTS``,
optionally followed by ``+OPTION`` items passed to the server's command line,
e.g. ``ours+--config+hypercorn.toml``, and by ``@DIR`` to import the package
from another source tree (e.g. ``git worktree add DIR REV``): the way to
measure a change against its parent in one run.  (For that it writes a
``sitecustomize.py`` into DIR that keeps an editable install of the package
from taking precedence.)
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

from .run import loadgen, log
from .servers import ROOT, SERVERS, VARIANTS, ServerSpec, running

_SITECUSTOMIZE = """\
# Written by benchmarks.ab: import this tree's package, not the editable install's.
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")
                    and "editable" not in getattr(f, "__name__", "")]
"""


def parse_server(text: str) -> tuple[ServerSpec, Path]:
    text, _, directory = text.partition("@")
    root = Path(directory).resolve() if directory else ROOT
    if directory:
        if not (root / "trio_mcp_sse").is_dir():
            raise SystemExit(f"{root} has no trio_mcp_sse package")
        (root / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    spec = _parse_spec(text)
    if directory:
        spec = dataclasses.replace(spec, key=f"{spec.key}@{directory}", label=f"{spec.label} ({directory})")
    return spec, root


def _parse_spec(text: str) -> ServerSpec:
    key, *options = text.split("+")
    catalogue = {**SERVERS, **VARIANTS}
    if key not in catalogue:
        raise SystemExit(f"unknown server {key!r}; choose from {', '.join(catalogue)}")
    spec = catalogue[key]
    if options:
        spec = dataclasses.replace(spec, key=text, label=f"{spec.label} {' '.join(options)}", options=(*spec.options, *options))
    return spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n")[0])
    parser.add_argument("servers", nargs="+")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    specs = [parse_server(text) for text in args.servers]
    samples: dict[str, list[dict[str, float]]] = {spec.key: [] for spec, _root in specs}
    errors = 0
    for round_number in range(args.rounds):
        for spec, root in specs:
            with running(spec, root=root) as (port, pid, _log):
                result = loadgen(
                    "throughput", port, pid, *spec.loadgen_options, "--sessions", str(args.sessions),
                    "--warmup", str(args.warmup), "--duration", str(args.duration),
                )  # fmt: skip
            errors += result["errors"]
            samples[spec.key].append(result)
            log(
                f"round {round_number + 1} {spec.key}: {result['server_cpu_per_call_us']:.0f} us/call, "
                f"{result['calls_per_s']:.0f} calls/s, p99 {result['p99_ms']:.1f} ms, errors {result['errors']}"
            )
    sys.stdout.write(f"\n{args.sessions} sessions, {args.rounds} rounds of {args.duration:g} s, medians (min-max):\n")
    baseline = None
    for spec, _root in specs:
        runs = samples[spec.key]
        cpu = [run["server_cpu_per_call_us"] for run in runs]
        rate = [run["calls_per_s"] for run in runs]
        p99 = [run["p99_ms"] for run in runs]
        median_cpu = statistics.median(cpu)
        baseline = baseline or median_cpu
        sys.stdout.write(
            f"  {spec.key:40} CPU {median_cpu:5.0f} us/call ({min(cpu):.0f}-{max(cpu):.0f}) "
            f"= {median_cpu / baseline:.2f}x first | {statistics.median(rate):5.0f} calls/s | "
            f"p99 {statistics.median(p99):6.1f} ms\n"
        )
    sys.stdout.write(f"errors: {errors}\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
