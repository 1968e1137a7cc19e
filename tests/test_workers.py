"""The pieces of ``serve --workers`` that need no server: restart budget, broker URLs, refusals.

The supervision itself runs against real processes in tests/test_serve_workers.py;
here ``WorkerPool`` only meets workers that end at once.
"""

from __future__ import annotations

import signal

import pytest

from trio_mcp_sse._serve import _redacted, check_broker_url, main
from trio_mcp_sse._workers import PoolExit, RestartBudget, RestartPolicy, WorkerPool, describe_exit

from . import worker_targets


def test_the_budget_allows_max_restarts_in_a_window_then_refuses() -> None:
    budget = RestartBudget(RestartPolicy(max_restarts=3, window=10.0))
    assert [budget.spend(t) for t in (0.0, 1.0, 2.0)] == [True, True, True]
    assert budget.spend(3.0) is False  # a fourth exit within 10 s


def test_the_budget_forgets_exits_older_than_the_window() -> None:
    budget = RestartBudget(RestartPolicy(max_restarts=2, window=10.0))
    assert budget.spend(0.0) and budget.spend(5.0)
    assert budget.spend(10.5) is True  # the exit at 0.0 has left the window
    assert budget.spend(11.0) is False  # 5.0, 10.5, 11.0


def test_exits_are_described_as_a_status_or_a_signal() -> None:
    assert describe_exit(3) == "exit status 3"
    assert describe_exit(0) == "exit status 0"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(None) == "still running"


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://localhost",
        "redis://:secret@redis.internal:6380/2",
        "rediss://user:secret@cache.example.com:6379",
        "unix:///run/redis/redis.sock",
    ],
)
def test_broker_urls_that_serve_accepts(url: str) -> None:
    assert check_broker_url(url) == url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:6379", "'http://127.0.0.1:6379'"),
        ("127.0.0.1:6379", "'127.0.0.1:6379'"),
        ("redis://", "'redis://'"),
        ("redis://host/db0", "'redis://host/db0'"),
        ("redis://:hunter2@host/x", "'redis://:***@host/x'"),
        ("unix://host", "'unix://host'"),
        ("redis://host:99999/0", "not a URL"),
    ],
)
def test_broker_urls_that_serve_refuses_say_what_is_expected_without_the_password(url: str, shown: str) -> None:
    with pytest.raises(ValueError, match="expected redis://HOST") as refused:
        check_broker_url(url)
    assert str(refused.value).startswith(shown)
    assert "hunter2" not in str(refused.value)


def test_a_password_is_redacted_and_the_rest_kept() -> None:
    assert _redacted("redis://user:pw@host:6379/1") == "redis://user:***@host:6379/1"
    assert _redacted("redis://host:6379/1") == "redis://host:6379/1"


def test_main_refuses_workers_without_a_broker_before_anything_starts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRIO_MCP_SSE_BROKER", raising=False)
    assert main(["examples.echo_server:app", "--workers", "3"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --workers 3 needs a broker") and "404" in error
    assert "add --broker redis://HOST:6379/0 (or set TRIO_MCP_SSE_BROKER)" in error


def test_the_flag_wins_over_the_environment(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIO_MCP_SSE_BROKER", "redis://fine:6379/0")
    assert main(["examples.echo_server:app", "--workers", "2", "--broker", "ftp://bad"]) == 2
    assert capsys.readouterr().err.startswith("error: --broker 'ftp://bad'")


def test_a_pool_whose_workers_keep_exiting_gives_up_after_its_budget() -> None:
    policy = RestartPolicy(delay=0.01, max_restarts=2, window=60.0)
    pool = WorkerPool(worker_targets.exit_at_once, (0,), workers=1, stop_timeout=5, policy=policy)
    outcome = pool.run()
    assert outcome.status == 1
    assert outcome.error is not None
    assert outcome.error.startswith("workers exited 3 times within 60s (last: worker ")
    assert outcome.error.endswith(", exit status 0): stopping the service")


def test_a_fatal_report_stops_the_pool_with_status_2_and_the_message() -> None:
    pool = WorkerPool(worker_targets.cannot_start, ("cannot import module 'x'",), workers=2, stop_timeout=5)
    outcome = pool.run()
    assert outcome.status == 2
    assert outcome.error is not None
    assert outcome.error.endswith(" cannot start: cannot import module 'x'")
    assert outcome == PoolExit(2, outcome.error)


def test_a_worker_that_cannot_be_started_stops_the_pool_with_status_1() -> None:
    unpicklable = (lambda: None,)
    pool = WorkerPool(worker_targets.exit_at_once, unpicklable, workers=2, stop_timeout=5)
    outcome = pool.run()
    assert outcome.status == 1
    assert outcome.error is not None and outcome.error.startswith("cannot start a worker: ")
