"""Run the official MCP conformance suite against a server started from an ASGI app.

    python -m conformance.run [--requirements 2025-11-25] [--app examples.everything_server:app]
                              [--workers N --broker redis://HOST:PORT/DB]

What it does, in order:

1. checks that ``conformance/node_modules`` holds the pinned suite and Node 22
   (``make conformance`` installs them with ``npm ci``);
2. starts ``hypercorn --worker-class trio APP`` on a free port of 127.0.0.1
   (with ``--workers N --broker URL``: ``python -m trio_mcp_sse serve APP
   --workers N --broker URL``, sessions shared through the broker) and waits,
   with a bound, until every worker serves;
3. runs ``conformance server --url http://localhost:PORT/mcp --requirements REV``
   (``localhost``, not the IP: the DNS-rebinding scenario needs a name);
4. reads the ``checks.json`` the suite wrote for each scenario and compares
   every failing check with ``conformance/expected-failures-REV.txt``;
5. stops the server (its whole process group) whatever happened.

Exit status: 0 when the failures are exactly the expected ones, 1 when a check
failed unexpectedly or an expected failure now passes (the list must shrink as
the server improves), 2 when the run itself could not happen (nothing
installed, the server did not start, the suite produced no results).

Every scenario the suite runs is judged, including the ones its requirement
set runs "without scoring" (pending or added after the revision): those cover
session lifecycle and SSE resumption, which this project means to pass.  So are
the extension scenarios no set lists (:data:`EXTENSION_SCENARIOS`, the skills
extension's), run one at a time after the set's run.

Outputs go to ``conformance/results/REV-TIMESTAMP/``: ``suite-output.log`` (the
suite's own report), ``server.log``, ``checks/`` (the suite's per-scenario
``checks.json``) and ``verdict.json`` (this script's judgement).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NODE_MODULES = HERE / "node_modules"
NODE = NODE_MODULES / ".bin" / "node"
SUITE_PACKAGE = NODE_MODULES / "@modelcontextprotocol" / "conformance"
SUITE_ENTRY = SUITE_PACKAGE / "dist" / "index.js"
DEFAULT_RESULTS = HERE / "results"

REQUIRED_NODE_MAJOR = 22
# Bounds on every wait: a wedged server or suite fails the run, never hangs it.
STOP_GRACE_SECONDS = 10.0


class HarnessError(Exception):
    """The run could not happen (as opposed to: the server failed checks)."""


# -- the expected-failures list ----------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """``scenario`` (the whole scenario may fail) or ``scenario:check-id`` (only that check).

    The same grammar as the suite's own ``--expected-failures`` YAML entries.
    """

    scenario: str
    check: str | None = None

    @classmethod
    def parse(cls, text: str) -> Entry:
        scenario, _, check = text.partition(":")
        if not scenario or (":" in text and not check):
            raise ValueError(f"not '<scenario>' or '<scenario>:<check-id>': {text!r}")
        return cls(scenario, check or None)

    def __str__(self) -> str:
        return f"{self.scenario}:{self.check}" if self.check else self.scenario


def read_expected_failures(path: Path) -> list[Entry]:
    """One entry a line; ``#`` starts a comment; blank lines are ignored."""
    if not path.exists():
        raise HarnessError(f"{path} does not exist: create it (empty means every check must pass)")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if text:
            try:
                entries.append(Entry.parse(text))
            except ValueError as error:
                raise HarnessError(f"{path}:{number}: {error}") from None
    return entries


# -- what the suite reported -------------------------------------------------------------------------
@dataclass
class Failure:
    scenario: str
    check: str
    description: str
    message: str

    def __str__(self) -> str:
        # Error messages may carry a whole HTML page: one line, bounded.
        message = " ".join(self.message.split())
        detail = f" -- {message[:300]}" if message else ""
        return f"{self.scenario}:{self.check}  ({self.description}){detail}"


@dataclass
class ScenarioResult:
    scenario: str
    checks: list[dict[str, Any]] = field(default_factory=list)
    ran: bool = True

    @property
    def failures(self) -> list[Failure]:
        if not self.ran:
            return [Failure(self.scenario, "(no results)", "the suite wrote no checks.json", "")]
        return [
            Failure(self.scenario, str(c.get("id")), str(c.get("description", "")), str(c.get("errorMessage") or ""))
            for c in self.checks
            if c.get("status") == "FAILURE"
        ]

    def count(self, status: str) -> int:
        return sum(1 for c in self.checks if c.get("status") == status)


def scenario_of(result_dir: Path) -> str:
    """``server-<scenario>-<ISO timestamp with - for : and .>`` -> ``<scenario>``."""
    name = result_dir.name.removeprefix("server-")
    # The timestamp is the last 24 characters: 2026-11-26T12-55-07-123Z, plus the dash before it.
    return name[: -len("-2026-11-26T12-55-07-123Z")]


def collect_results(checks_dir: Path, scenarios: Sequence[str]) -> list[ScenarioResult]:
    found: dict[str, ScenarioResult] = {}
    for checks_file in sorted(checks_dir.glob("*/checks.json")):
        scenario = scenario_of(checks_file.parent)
        found[scenario] = ScenarioResult(scenario, json.loads(checks_file.read_text()))
    results = [found.pop(s, ScenarioResult(s, ran=False)) for s in scenarios]
    return results + list(found.values())


@dataclass
class Verdict:
    unexpected: list[Failure]
    expected: list[Failure]
    stale: list[Entry]

    @property
    def ok(self) -> bool:
        return not self.unexpected and not self.stale


def judge(results: Sequence[ScenarioResult], entries: Sequence[Entry]) -> Verdict:
    """Split the failures into expected and unexpected; find entries that no longer fail.

    An entry for a scenario that did not run this time (``--scenario`` picked
    others) is neither used nor stale; nor is a check entry whose check is
    absent or skipped (a scenario that stops at a failed prerequisite never
    reaches its later checks), as in the suite's own baseline rules.
    """
    ran = {r.scenario for r in results}
    present = {(r.scenario, str(c.get("id"))) for r in results for c in r.checks if c.get("status") != "SKIPPED"}
    failures = [f for r in results for f in r.failures]
    used: set[Entry] = set()
    unexpected, expected = [], []
    for failure in failures:
        match = next(
            (e for e in entries if e.scenario == failure.scenario and e.check in (None, failure.check)), None
        )
        if match is None:
            unexpected.append(failure)
        else:
            used.add(match)
            expected.append(failure)
    stale = [
        e for e in entries
        if e.scenario in ran and e not in used and (e.check is None or (e.scenario, e.check) in present)
    ]
    return Verdict(unexpected, expected, stale)


# -- the pieces that run -----------------------------------------------------------------------------
def check_installation() -> None:
    if not (NODE.exists() and SUITE_ENTRY.exists()):
        raise HarnessError(
            f"the conformance suite is not installed in {NODE_MODULES}: run `make conformance` "
            "(or `npm ci` in conformance/)"
        )
    version = subprocess.run([str(NODE), "--version"], capture_output=True, text=True, timeout=30, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    if major < REQUIRED_NODE_MAJOR:
        raise HarnessError(f"{NODE} is Node {version.stdout.strip()}; the suite needs {REQUIRED_NODE_MAJOR}+")


def suite_command(*args: str) -> list[str]:
    # The package's bin starts with `#!/usr/bin/env node`, which would pick the
    # system Node: run its entry point with the pinned Node instead.
    return [str(NODE), str(SUITE_ENTRY), *args]


EXTENSION_SCENARIOS: dict[tuple[str, str], tuple[str, ...]] = {
    # The skills extension (SEP-2640, io.modelcontextprotocol/skills), which the fixture server
    # and the client implement. The suite tags these scenarios [extension] and no requirement
    # set lists them, not even among those it runs without scoring, so `--requirements` never
    # runs them: they run one by one after the set's run, at its revision (they speak
    # server/discover: 2026-07-28), and are judged like the rest.
    ("2026-07-28", "server"): (
        "sep-2640-skills-directory", "sep-2640-skills-enumeration", "sep-2640-skills-manifest",
    ),
    ("2026-07-28", "client"): (
        "sep-2640-client-no-prefetch", "sep-2640-client-verify-digest", "sep-2640-client-verify-size",
        "sep-2640-client-verify-frontmatter",
    ),
}
"""(revision, leg) -> the scenarios run beside the requirement set's own."""


def extension_scenarios(requirements: str, leg: str = "server") -> list[str]:
    """The scenarios of :data:`EXTENSION_SCENARIOS` for one requirement set and leg."""
    return list(EXTENSION_SCENARIOS.get((requirements, leg), ()))


def required_scenarios(requirements: str, leg: str = "server") -> list[str]:
    """The scenarios of one leg (``server`` or ``client``) a requirement set runs, scored and not
    scored, in the suite's order."""
    path = SUITE_PACKAGE / "requirements" / f"{requirements}.yaml"
    if not path.exists():
        available = sorted(p.stem for p in (SUITE_PACKAGE / "requirements").glob("*.yaml"))
        raise HarnessError(f"the suite has no requirement set {requirements!r}; it has {', '.join(available)}")
    # The suite ships the `yaml` package; let the pinned Node read its own file.
    script = "console.log(JSON.stringify(require('yaml').parse(require('fs').readFileSync(process.argv[1], 'utf8'))))"
    output = subprocess.run(
        [str(NODE), "-e", script, str(path)], cwd=HERE, capture_output=True, text=True, timeout=60, check=True
    )
    document = json.loads(output.stdout)
    scored = list(document.get(leg) or [])
    unscored = [e["scenario"] for e in document.get("not_scored") or [] if e.get("leg") == leg]
    return scored + unscored


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM the process group we started, then SIGKILL it after a grace period.

    hypercorn's CLI supervises worker processes, so the group is what must go.
    """
    if process.poll() is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # workers the supervisor left behind
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_GRACE_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=STOP_GRACE_SECONDS)


def server_command(app: str, host: str, port: int, *, workers: int = 1, broker: str | None = None) -> list[str]:
    """How the server under judgement is started.

    One worker and no broker: ``hypercorn --worker-class trio``, the plain
    deployment.  Otherwise ``python -m trio_mcp_sse serve --workers N
    --broker URL``: N processes on one socket, each session held by one of
    them, every request that reaches another forwarded through the broker.
    """
    if workers == 1 and broker is None:
        return [sys.executable, "-m", "hypercorn", "--worker-class", "trio", "--bind", f"{host}:{port}", app]
    command = [sys.executable, "-m", "trio_mcp_sse", "serve", app, "--bind", f"{host}:{port}", "--workers", str(workers)]
    return command + (["--broker", broker] if broker is not None else [])


def workers_serving(log_text: str) -> int:
    """How many processes said they serve (hypercorn's ``Running on`` line, one per worker)."""
    return log_text.count("] Running on http")


@contextlib.contextmanager
def running_server(
    app: str, host: str, log_path: Path, startup_timeout: float, *, workers: int = 1, broker: str | None = None
) -> Iterator[int]:
    """Serve ``app`` (see :func:`server_command`); yield its port once every worker serves.

    The socket accepts connections as soon as it is bound, before any worker
    of ``serve --workers`` runs, so readiness is each worker's own line in the
    log, and a connection that succeeds.
    """
    port = free_port(host)
    command = server_command(app, host, port, workers=workers, broker=broker)
    with log_path.open("w") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                if process.poll() is not None:
                    raise HarnessError(f"the server exited with status {process.returncode} before it was ready")
                if workers_serving(log_path.read_text(errors="replace")) >= workers:
                    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
                        break
                if time.monotonic() > deadline:
                    raise HarnessError(f"the server did not serve with {workers} worker(s) within {startup_timeout:g} s")
                time.sleep(0.1)
            yield port
        finally:
            stop(process)


def run_suite(arguments: list[str], output: Path, timeout: float) -> int:
    """Run the suite, showing its report and saving it; its own exit status is informational."""
    env = {**os.environ, "PATH": f"{NODE.parent}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    with output.open("w") as log:
        log.write(f"$ {' '.join(arguments)}\n")
        log.flush()
        process = subprocess.Popen(
            arguments, cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )
        # The suite's output may stop without the suite ending: a timer stops it.
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            stop(process)

        watchdog = threading.Timer(timeout, expire)
        watchdog.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                # Quoted, so the suite's own tallies (which count the expected failures
                # too) are not read as this run's result: the verdict below is.
                sys.stdout.write("  | " + line)
                log.write(line)
            status = process.wait(timeout=STOP_GRACE_SECONDS)
            if expired.is_set():
                raise HarnessError(f"the suite did not finish within {timeout:g} s")
            return status
        finally:
            watchdog.cancel()
            if process.poll() is None:
                stop(process)


# -- the command -------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.run", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requirements", default="2025-11-25", help="the suite's requirement set (spec revision)")
    parser.add_argument("--app", default="examples.everything_server:app", help="ASGI app to serve (module:attribute)")
    parser.add_argument("--path", default="/mcp", help="the Streamable HTTP endpoint's path on that app")
    parser.add_argument("--url", help="judge a server that is already running at this URL (no --app)")
    parser.add_argument("--scenario", action="append", default=[], help="run only this scenario (repeatable)")
    parser.add_argument("--expected-failures", type=Path,
                        help="list of expected failures (default: conformance/expected-failures-REV.txt)")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS, help="where each run's folder goes")
    parser.add_argument("--workers", type=int, default=1,
                        help="serve with `python -m trio_mcp_sse serve --workers N` (needs --broker when N > 1)")
    parser.add_argument("--broker", help="the broker URL those workers share (redis://HOST:PORT/DB)")
    parser.add_argument("--startup-timeout", type=float, default=30.0, help="seconds for the server to listen")
    parser.add_argument("--suite-timeout", type=float, default=1200.0, help="seconds for the whole suite")
    parser.add_argument("--scenario-timeout-ms", type=int, default=30000, help="the suite's per-scenario bound")
    options = parser.parse_args(argv)
    if options.workers < 1:
        parser.error("--workers must be >= 1")
    if options.workers > 1 and not options.broker:
        parser.error("--workers N needs --broker URL: the workers share sessions through it")
    if options.url and (options.workers > 1 or options.broker):
        parser.error("--url judges a server that already runs: --workers and --broker start one")
    return options


def report(results: Sequence[ScenarioResult], verdict: Verdict, entries_path: Path) -> None:
    print("\n=== trio-mcp-sse conformance verdict ===")
    for result in results:
        mark = "FAIL" if result.failures else "ok  "
        detail = "did not run" if not result.ran else (
            f"{result.count('SUCCESS')} passed, {result.count('FAILURE')} failed, {result.count('WARNING')} warnings"
        )
        print(f"  {mark} {result.scenario}: {detail}")
    if verdict.expected:
        print(f"\nExpected failures ({len(verdict.expected)}), listed in {entries_path}:")
        for failure in verdict.expected:
            print(f"  - {failure}")
    if verdict.unexpected:
        print(f"\nUNEXPECTED failures ({len(verdict.unexpected)}):")
        for failure in verdict.unexpected:
            print(f"  - {failure}")
    if verdict.stale:
        print(f"\nListed as expected failures but PASSING now (remove them from {entries_path}):")
        for entry in verdict.stale:
            print(f"  - {entry}")
    print("\nRESULT:", "as expected" if verdict.ok else "FAILED")


def write_verdict(path: Path, results: Sequence[ScenarioResult], verdict: Verdict, **extra: Any) -> None:
    """The run's judgement as JSON, beside the suite's own outputs."""
    path.write_text(json.dumps({
        **extra,
        "ok": verdict.ok,
        "unexpected": [str(f) for f in verdict.unexpected],
        "expected": [str(f) for f in verdict.expected],
        "stale": [str(e) for e in verdict.stale],
        "scenarios": {r.scenario: {"ran": r.ran, "passed": r.count("SUCCESS"), "failed": r.count("FAILURE")}
                      for r in results},
    }, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    requirements: str = options.requirements
    entries_path: Path = options.expected_failures or HERE / f"expected-failures-{requirements}.txt"
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir: Path = options.results_dir / f"{requirements}-{stamp}"
    checks_dir = run_dir / "checks"
    try:
        entries = read_expected_failures(entries_path)
        check_installation()
        extensions = [] if options.scenario else extension_scenarios(requirements)
        scenarios = options.scenario or required_scenarios(requirements) + extensions
        checks_dir.mkdir(parents=True)
        print(f"Results: {run_dir}")

        def suite_arguments(url: str, one: bool = False) -> list[str]:
            selection = ["--requirements", requirements]
            if options.scenario or one:
                # One scenario per run is all the suite's --scenario takes; run each at this revision.
                selection = ["--spec-version", requirements, "--force"]
            return suite_command(
                "server", "--url", url, *selection, "--output-dir", str(checks_dir),
                "--timeout", str(options.scenario_timeout_ms),
            )

        def run_all(url: str) -> None:
            if options.scenario:
                for scenario in options.scenario:
                    run_suite([*suite_arguments(url), "--scenario", scenario],
                              run_dir / f"suite-output-{scenario}.log", options.suite_timeout)
            else:
                run_suite(suite_arguments(url), run_dir / "suite-output.log", options.suite_timeout)
                for scenario in extensions:
                    run_suite([*suite_arguments(url, one=True), "--scenario", scenario],
                              run_dir / f"suite-output-{scenario}.log", options.suite_timeout)

        if options.url:
            run_all(options.url)
        else:
            with running_server(
                options.app, "127.0.0.1", run_dir / "server.log", options.startup_timeout,
                workers=options.workers, broker=options.broker,
            ) as port:
                run_all(f"http://localhost:{port}{options.path}")
        results = collect_results(checks_dir, scenarios)
        if not any(r.ran for r in results):
            raise HarnessError(f"the suite wrote no results; see {run_dir}")
    except HarnessError as error:
        print(f"conformance: {error}", file=sys.stderr)
        return 2
    verdict = judge(results, entries)
    report(results, verdict, entries_path)
    write_verdict(run_dir / "verdict.json", results, verdict, requirements=requirements)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
