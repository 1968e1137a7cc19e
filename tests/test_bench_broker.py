"""The broker benchmark's pure helpers: the Redis reply codec and how rounds are combined.

The figures in docs/performance.md and docs/scaling.md come out of these: a
misread ``INFO`` field or a wrong median would go straight into the docs.
"""

from __future__ import annotations

import math

import pytest

from benchmarks.broker import median_result, ratio, throughput_plan
from benchmarks.loadgen import PostConnection, calls_connection
from benchmarks.redis_probe import RedisReplyError, encode_command, parse_info, parse_reply


def test_commands_are_arrays_of_bulk_strings() -> None:
    assert encode_command("INFO", "memory") == b"*2\r\n$4\r\nINFO\r\n$6\r\nmemory\r\n"


def test_replies_of_every_kind_and_what_they_take() -> None:
    assert parse_reply(b"+PONG\r\nrest") == (b"PONG", 7)
    assert parse_reply(b":10000\r\n") == (10000, 8)
    assert parse_reply(b"$5\r\nhello\r\n") == (b"hello", 11)
    assert parse_reply(b"$-1\r\n") == (None, 5)
    assert parse_reply(b"$0\r\n\r\n") == (b"", 6)


@pytest.mark.parametrize("partial", [b"", b"+PON", b"$5\r\nhel", b"$5\r\nhello", b"$5\r\nhello\r"])
def test_an_incomplete_reply_asks_for_more(partial: bytes) -> None:
    assert parse_reply(partial) is None


def test_an_error_reply_raises_with_its_text() -> None:
    with pytest.raises(RedisReplyError, match="ERR unknown command"):
        parse_reply(b"-ERR unknown command 'FOO'\r\n")


def test_info_fields_skip_section_headers_and_keep_colons_in_values() -> None:
    text = b"# Memory\r\nused_memory:1011832\r\nused_memory_human:988.12K\r\n\r\n# Server\r\nexecutable:/usr/bin/redis-server\r\nconfig_file:\r\nrun_id:a:b\r\n"
    assert parse_info(text) == {
        "used_memory": "1011832",
        "used_memory_human": "988.12K",
        "executable": "/usr/bin/redis-server",
        "config_file": "",
        "run_id": "a:b",
    }


def test_rounds_combine_into_medians_and_summed_errors() -> None:
    rounds = [
        {"calls_per_s": 900.0, "p99_ms": 9.0, "errors": 0, "sessions": 20, "server_cpu_per_call_us_each": [300.0, 500.0], "error_kinds": {}},
        {"calls_per_s": 1000.0, "p99_ms": 30.0, "errors": 2, "sessions": 20, "server_cpu_per_call_us_each": [320.0, 400.0], "error_kinds": {"x": [2, ""]}},
        {"calls_per_s": 1100.0, "p99_ms": 10.0, "errors": 1, "sessions": 20, "server_cpu_per_call_us_each": [310.0, 450.0], "error_kinds": {}},
    ]
    merged = median_result(rounds)
    assert merged["calls_per_s"] == 1000.0
    assert merged["p99_ms"] == 10.0
    assert merged["errors"] == 3
    assert merged["sessions"] == 20
    assert merged["server_cpu_per_call_us_each"] == [310.0, 450.0]
    assert merged["rounds"] == 3


def test_ratio_of_missing_figures_is_a_dash() -> None:
    assert ratio(150.0, 100.0) == "1.50x"
    assert ratio(math.nan, 100.0) == "-"
    assert ratio(1.0, 0.0) == "-"


def test_the_reference_is_measured_at_every_session_count_the_others_are() -> None:
    profile = {"overhead_levels": [1, 20], "scale_levels": [20, 100]}
    plan = throughput_plan(profile, {"overhead", "throughput"})
    assert [(setup.key, levels) for setup, levels in plan] == [
        ("direct", [1, 20, 100]),
        ("broker-direct", [1, 20]),
        ("forwarded", [1, 20]),
        ("workers2", [20, 100]),
    ]
    assert [setup.key for setup, _ in throughput_plan(profile, {"throughput"})] == ["direct", "workers2"]
    assert throughput_plan(profile, {"memory"}) == []


def test_calls_go_to_the_call_port_once_the_session_is_open() -> None:
    opening = PostConnection(8001, short=True)
    assert calls_connection(opening, None) is opening
    assert calls_connection(opening, 8001) is opening
    moved = calls_connection(opening, 8002)
    assert (moved.port, moved.short, moved.requests) == (8002, True, 0)
