"""The conformance driver's judgement: which failures are expected, which entries went stale.

The suite itself runs only under ``make conformance`` (it needs Node 22 and a
running server); what is tested here is how its ``checks.json`` files are read
and compared with the expected-failures list.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.run import (
    Entry,
    HarnessError,
    ScenarioResult,
    collect_results,
    judge,
    parse_args,
    read_expected_failures,
    server_command,
    workers_serving,
)


def check(check_id: str, status: str) -> dict[str, str]:
    return {"id": check_id, "description": f"{check_id} works", "status": status, "errorMessage": "no\n  luck"}


def test_entries_parse_like_the_suites_baseline_grammar(tmp_path: Path) -> None:
    path = tmp_path / "expected.txt"
    path.write_text("# comment\n\nping\nserver-sse-polling:incoming-sse-event   # why\n")
    assert read_expected_failures(path) == [Entry("ping"), Entry("server-sse-polling", "incoming-sse-event")]
    path.write_text("ping:\n")
    with pytest.raises(HarnessError, match=r"expected\.txt:1"):
        read_expected_failures(path)
    with pytest.raises(HarnessError, match="does not exist"):
        read_expected_failures(tmp_path / "missing.txt")


def test_results_are_read_per_scenario_and_a_missing_one_counts_as_failed(tmp_path: Path) -> None:
    for scenario, checks in {"ping": [check("ping", "SUCCESS")],
                             "tools-call-audio": [check("tools-call-audio", "FAILURE")]}.items():
        folder = tmp_path / f"server-{scenario}-2026-11-26T12-56-51-408Z"
        folder.mkdir()
        (folder / "checks.json").write_text(json.dumps(checks))
    results = collect_results(tmp_path, ["ping", "tools-call-audio", "server-sse-polling"])
    assert [(r.scenario, r.ran, len(r.failures)) for r in results] == [
        ("ping", True, 0), ("tools-call-audio", True, 1), ("server-sse-polling", False, 1)]
    assert str(results[1].failures[0]) == "tools-call-audio:tools-call-audio  (tools-call-audio works) -- no luck"


def test_judge_splits_expected_unexpected_and_stale() -> None:
    results = [
        ScenarioResult("ping", [check("ping", "SUCCESS")]),
        ScenarioResult("sse", [check("a", "FAILURE"), check("b", "FAILURE"), check("c", "WARNING")]),
        ScenarioResult("audio", [check("audio", "FAILURE"), check("later", "SKIPPED")]),
    ]
    entries = [Entry("sse", "a"), Entry("audio"), Entry("ping"), Entry("not-run"),
               Entry("ping", "ping"), Entry("ping", "absent"), Entry("audio", "later")]
    verdict = judge(results, entries)
    assert [f"{f.scenario}:{f.check}" for f in verdict.unexpected] == ["sse:b"]
    assert [f"{f.scenario}:{f.check}" for f in verdict.expected] == ["sse:a", "audio:audio"]
    # Not stale: a scenario that did not run, a check that is absent or skipped.
    assert verdict.stale == [Entry("ping"), Entry("ping", "ping")]
    assert not verdict.ok
    assert judge(results, [Entry("sse"), Entry("audio")]).ok


def test_one_worker_is_plain_hypercorn_and_several_are_serve_with_the_broker() -> None:
    assert server_command("a:app", "127.0.0.1", 8123)[1:] == ["-m", "hypercorn", "--worker-class", "trio", "--bind", "127.0.0.1:8123", "a:app"]
    assert server_command("a:app", "127.0.0.1", 8123, workers=4, broker="redis://h:1/0")[1:] == [
        "-m", "trio_mcp_sse", "serve", "a:app", "--bind", "127.0.0.1:8123", "--workers", "4", "--broker", "redis://h:1/0",
    ]
    log = "[1] [INFO] Running on http://127.0.0.1:8123 (CTRL + C to quit)\n[2] [INFO] Running on http://127.0.0.1:8123\n"
    assert workers_serving(log) == 2
    assert workers_serving("[1] [INFO] worker 2 started\n") == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "4"], "--workers N needs --broker URL"),
        (["--workers", "0", "--broker", "redis://h/0"], "--workers must be >= 1"),
        (["--url", "http://localhost:1/mcp", "--workers", "2", "--broker", "redis://h/0"], "--url judges a server that already runs"),
    ],
)
def test_workers_options_that_cannot_work_are_refused(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_client_results_are_read_below_auth_and_warnings_fail(tmp_path: Path) -> None:
    from conformance.run_client import collect

    layout = {
        "tools_call-2026-12-07T07-07-44-502Z": [check("tool-call", "SUCCESS"), check("info", "INFO")],
        "auth/scope-step-up-2026-12-07T07-07-44-503Z": [check("scope-step-up-escalation", "WARNING")],
        "auth/dpop-2026-12-07T07-07-44-503Z": [check("sep-1932-client-dpop-auth-scheme", "FAILURE")],
    }
    for folder, checks in layout.items():
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "checks.json").write_text(json.dumps(checks))
    results = collect(tmp_path, ["tools_call", "auth/scope-step-up", "auth/dpop", "auth/pre-registration"])
    assert [(r.scenario, r.ran, [f.check for f in r.failures]) for r in results] == [
        ("tools_call", True, []),
        ("auth/scope-step-up", True, ["scope-step-up-escalation"]),  # a SHOULD missed fails too
        ("auth/dpop", True, ["sep-1932-client-dpop-auth-scheme"]),
        ("auth/pre-registration", False, ["(no results)"]),
    ]
    verdict = judge(results, [Entry("auth/dpop")])
    assert [f.scenario for f in verdict.unexpected] == ["auth/scope-step-up", "auth/pre-registration"]
