"""Run the MCP conformance suite's client scenarios against this project's client.

    python -m conformance.run_client [--scenario NAME ...]     (make conformance-client)

The suite (pinned in ``conformance/package.json``, run with the pinned Node 22
like ``conformance.run``) starts a mock server per scenario and runs
``python conformance/client.py URL`` against it; the client connects with
``open_session``, initializes, lists the tools, calls the first one and
closes.  The scenarios it is meant for are :data:`CLIENT_SCENARIOS`; every check
must pass (there is no expected-failures list for the client).

Exit status: 0 when every scenario ran and no check failed, 1 when a check
failed or a scenario wrote no results, 2 when the run itself could not happen.
Outputs go to ``conformance/results/client-TIMESTAMP/``: one
``suite-output-SCENARIO.log`` per scenario, ``checks/`` and ``verdict.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from conformance.run import (
    DEFAULT_RESULTS,
    HERE,
    HarnessError,
    check_installation,
    collect_results,
    judge,
    report,
    run_suite,
    suite_command,
)

CLIENT_SCENARIOS = ("initialize", "tools_call", "sse-retry")
"""The suite's client scenarios this client passes: the handshake, a tool call, and
resuming a request's stream after the server closed it (``retry`` + ``Last-Event-ID``)."""
CLIENT_PROGRAM = HERE / "client.py"


def client_command() -> str:
    """The command the suite runs (it appends the server's URL); this interpreter runs it."""
    return f"{sys.executable} {CLIENT_PROGRAM}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m conformance.run_client", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", default=[],
                        help=f"run only this client scenario (repeatable; default: {', '.join(CLIENT_SCENARIOS)})")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS, help="where each run's folder goes")
    parser.add_argument("--suite-timeout", type=float, default=300.0, help="seconds for each scenario's run")
    parser.add_argument("--scenario-timeout-ms", type=int, default=30000, help="the suite's per-scenario bound")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    scenarios: list[str] = options.scenario or list(CLIENT_SCENARIOS)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir: Path = options.results_dir / f"client-{stamp}"
    checks_dir = run_dir / "checks"
    try:
        check_installation()
        checks_dir.mkdir(parents=True)
        print(f"Results: {run_dir}")
        for scenario in scenarios:  # the suite's --scenario takes one at a time
            run_suite(
                suite_command(
                    "client", "--command", client_command(), "--scenario", scenario,
                    "--output-dir", str(checks_dir), "--timeout", str(options.scenario_timeout_ms),
                ),
                run_dir / f"suite-output-{scenario}.log",
                options.suite_timeout,
            )
        results = collect_results(checks_dir, scenarios)
    except HarnessError as error:
        print(f"conformance: {error}", file=sys.stderr)
        return 2
    verdict = judge(results, [])  # nothing is expected to fail; a scenario with no results fails
    report(results, verdict, Path("(none: every client check must pass)"))
    (run_dir / "verdict.json").write_text(json.dumps({
        "ok": verdict.ok,
        "unexpected": [str(f) for f in verdict.unexpected],
        "scenarios": {r.scenario: {"ran": r.ran, "passed": r.count("SUCCESS"), "failed": r.count("FAILURE")}
                      for r in results},
    }, indent=2))
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
