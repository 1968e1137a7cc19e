"""Run the MCP conformance suite's client requirement sets against this project's client.

    python -m conformance.run_client [--requirements REV ...] [--scenario NAME ...]   (make conformance-client)

The suite (pinned in ``conformance/package.json``, run with the pinned Node 22
like ``conformance.run``) starts a mock server (and, for the ``auth/*``
scenarios, mock authorization servers) per scenario and runs
``python conformance/client.py URL`` against it.  By default this runs, one
suite run each:

* every client scenario of the requirement sets :data:`REQUIREMENT_SETS`
  (``--requirements REV``: the scored ones and those the set runs without
  scoring, such as the ``client_credentials`` extension);
* the extension scenarios no set lists (``conformance.run.EXTENSION_SCENARIOS``: the
  skills extension's, at 2026-07-28), judged against that set's list;
* the 2025-03-26 back-compatibility scenarios :data:`BACKCOMPAT_SCENARIOS`
  (a server without Protected Resource Metadata), which no set includes.

Judgement, per set, against ``conformance/expected-failures-client-REV.txt``
(the server driver's grammar): a check whose status is ``FAILURE`` *or*
``WARNING`` (a SHOULD the client missed: the suite's own summary marks such a
scenario failed) must be listed; a listed entry that passes again is stale and
fails the run; a scenario with no results fails.  The back-compatibility
scenarios have no list: every check must pass.  A scenario that fails unexpectedly in a
set's parallel run is run once more alone (:func:`retry_alone`), and both runs are reported.

Exit status: 0 when the failures are exactly the expected ones, 1 otherwise,
2 when the run itself could not happen.  Outputs go to
``conformance/results/client-REV-TIMESTAMP/``: ``suite-output.log``,
``checks/`` and ``verdict.json``.
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
    Entry,
    HarnessError,
    ScenarioResult,
    Verdict,
    check_installation,
    extension_scenarios,
    judge,
    read_expected_failures,
    report,
    required_scenarios,
    run_suite,
    suite_command,
    write_verdict,
)

REQUIREMENT_SETS = ("2025-11-25", "2026-07-28")
BACKCOMPAT_SCENARIOS = ("auth/2025-03-26-oauth-metadata-backcompat", "auth/2025-03-26-oauth-endpoint-fallback")
"""Servers of the 2025-03-26 revision: no Protected Resource Metadata; the authorization server
at the MCP server's origin, found by its RFC 8414 document or at the default endpoints."""
CLIENT_PROGRAM = HERE / "client.py"
FAILING_STATUSES = ("FAILURE", "WARNING")
_TIMESTAMP = len("-2026-11-26T12-55-07-123Z")


def client_command() -> str:
    """The command the suite runs (it appends the server's URL); this interpreter runs it."""
    return f"{sys.executable} {CLIENT_PROGRAM}"


def expected_failures_path(revision: str) -> Path:
    return HERE / f"expected-failures-client-{revision}.txt"


def collect(checks_dir: Path, scenarios: Sequence[str]) -> list[ScenarioResult]:
    """The suite's ``checks.json`` files (``auth/`` scenarios write theirs one folder down),
    with warnings counted as failures."""
    found: dict[str, ScenarioResult] = {}
    for checks_file in sorted(checks_dir.glob("**/checks.json")):
        scenario = checks_file.parent.relative_to(checks_dir).as_posix()[:-_TIMESTAMP]
        checks = json.loads(checks_file.read_text())
        for check in checks:
            if check.get("status") in FAILING_STATUSES:
                check["status"] = "FAILURE"  # a SHOULD missed fails too
        found[scenario] = ScenarioResult(scenario, checks)
    results = [found.pop(s, ScenarioResult(s, ran=False)) for s in scenarios]
    return results + list(found.values())


def run_one(name: str, arguments: list[str], scenarios: list[str], entries: list[Entry], expected: Path,
            options: argparse.Namespace, *, revision: str | None = None) -> bool:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir: Path = options.results_dir / f"client-{name}-{stamp}"
    checks_dir = run_dir / "checks"
    checks_dir.mkdir(parents=True)
    print(f"== conformance, client: {name} ({len(scenarios)} scenarios); results: {run_dir}")
    run_suite(
        suite_command(
            "client", "--command", client_command(), *arguments,
            "--output-dir", str(checks_dir), "--timeout", str(options.scenario_timeout_ms),
        ),
        run_dir / "suite-output.log",
        options.suite_timeout,
    )
    results = collect(checks_dir, scenarios)
    verdict = judge(results, entries)
    if revision is not None and verdict.unexpected:
        results, verdict = retry_alone(results, verdict, entries, revision, run_dir, options)
    report(results, verdict, expected)
    write_verdict(run_dir / "verdict.json", results, verdict)
    return verdict.ok


def retry_alone(
    results: list[ScenarioResult], verdict: Verdict, entries: list[Entry], revision: str, run_dir: Path,
    options: argparse.Namespace,
) -> tuple[list[ScenarioResult], Verdict]:
    """Run each scenario that failed unexpectedly once more, alone, at the same wire.

    A requirement set runs its ~30 scenarios at once, each with its own mock servers on one
    machine; under load a mock server has been seen resetting a kept-alive connection. A
    scenario that then passes alone counts as passed, and is reported as such: the first
    run's checks stay in ``checks/`` and the rerun's in ``rerun-SCENARIO/``.
    """
    failed = sorted({failure.scenario for failure in verdict.unexpected})
    rerun: dict[str, ScenarioResult] = {}
    for scenario in failed:
        folder = run_dir / f"rerun-{scenario.replace('/', '_')}"
        folder.mkdir()
        run_suite(
            suite_command(
                "client", "--command", client_command(), "--scenario", scenario, "--spec-version", revision,
                "--force", "--output-dir", str(folder), "--timeout", str(options.scenario_timeout_ms),
            ),
            folder / "suite-output.log",
            options.suite_timeout,
        )
        (again,) = collect(folder, [scenario])[:1]
        outcome = "passed alone" if not again.failures else "failed again alone"
        print(f"== {scenario}: failed in the parallel run, {outcome} ({folder})")
        rerun[scenario] = again
    results = [rerun.get(result.scenario, result) for result in results]
    return results, judge(results, entries)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m conformance.run_client", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requirements", action="append", default=[],
                        help=f"run this requirement set's client scenarios (repeatable; default: {', '.join(REQUIREMENT_SETS)} "
                        "and the 2025-03-26 back-compatibility scenarios)")
    parser.add_argument("--scenario", action="append", default=[],
                        help="run only this client scenario, at the latest revision's wire (repeatable; judged "
                        "against the latest set's expected failures)")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS, help="where each run's folder goes")
    parser.add_argument("--suite-timeout", type=float, default=900.0, help="seconds for each suite run")
    parser.add_argument("--scenario-timeout-ms", type=int, default=30000, help="the suite's per-scenario bound")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    ok = True
    try:
        check_installation()
        if options.scenario:
            expected = expected_failures_path(REQUIREMENT_SETS[-1])
            for scenario in options.scenario:  # the suite's --scenario takes one at a time
                ok &= run_one(scenario.replace("/", "_"), ["--scenario", scenario], [scenario],
                              read_expected_failures(expected), expected, options)
            return 0 if ok else 1
        for revision in options.requirements or REQUIREMENT_SETS:
            expected = expected_failures_path(revision)
            ok &= run_one(revision, ["--requirements", revision], required_scenarios(revision, "client"),
                          read_expected_failures(expected), expected, options, revision=revision)
            for scenario in extension_scenarios(revision, "client"):  # no set lists them: one run each
                ok &= run_one(scenario, ["--scenario", scenario, "--spec-version", revision, "--force"], [scenario],
                              read_expected_failures(expected), expected, options)
        if not options.requirements:
            for scenario in BACKCOMPAT_SCENARIOS:
                ok &= run_one(scenario.replace("/", "_"), ["--scenario", scenario], [scenario], [],
                              Path("(none: every check must pass)"), options)
    except HarnessError as error:
        print(f"conformance: {error}", file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
