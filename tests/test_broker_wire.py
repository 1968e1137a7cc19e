"""The broker's wire format and configuration, without a broker (sans-io)."""

from __future__ import annotations

import pytest

from trio_mcp_sse import BrokerSettings, RedisBroker
from trio_mcp_sse._broker import decode_frame, encode_frame, scope_from_wire, scope_to_wire
from trio_mcp_sse._redis_broker import resolve_broker, split_broker_url


def test_a_frame_carries_any_body_bytes_untouched() -> None:
    body = b'{"jsonrpc":"2.0"}\n\x00\xff\n\n'
    meta, decoded = decode_frame(encode_frame({"k": "q", "x": "7"}, body))
    assert meta == {"k": "q", "x": "7"}
    assert decoded == body


@pytest.mark.parametrize("frame", [b"", b"no header line", b'"text"\n', b"[1]\n", b'{"x":1}\n', b"{not json\n"])
def test_anything_else_is_not_a_frame(frame: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 -- orjson's own message for bad JSON, ours otherwise
        decode_frame(frame)


def test_a_scope_survives_the_trip_to_the_owner() -> None:
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": "/messages/",
        "raw_path": b"/messages/",
        "root_path": "/mount",
        "query_string": b"session_id=abc&x=%C3%A9",
        "headers": [(b"host", b"example.com"), (b"x-bytes", b"\xe9\xff"), (b"authorization", b"Bearer t")],
        "client": ("203.0.113.9", 40000),
        "server": ("10.0.0.1", 8000),
    }
    back = scope_from_wire(scope_to_wire(scope))
    for key, value in scope.items():
        assert back[key] == value, key


def test_settings_ride_in_the_broker_url() -> None:
    url, settings = split_broker_url("redis://:pw@cache:6380/2?prefix=tenant-a&max_sessions=500&session_ttl=60&ssl_cert_reqs=none")
    assert url == "redis://:pw@cache:6380/2?ssl_cert_reqs=none"
    assert settings == {"prefix": "tenant-a", "max_sessions": 500, "session_ttl": 60.0}
    broker = RedisBroker("redis://cache:6380/2?prefix=tenant-a&max_sessions=500")
    assert broker.settings == BrokerSettings(prefix="tenant-a", max_sessions=500)
    assert "pw" not in repr(RedisBroker("redis://:pw@cache:6380/2"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://cache:6379", "expected redis://HOST"),
        ("cache:6379", "expected redis://HOST"),
        ("redis://cache?session_ttl=soon", "session_ttl='soon' is not a number"),
        ("redis://cache?worker_ttl=0.5", "worker_ttl must be longer than heartbeat_interval"),
        ("redis://cache?prefix=", "prefix must be a non-empty word"),
    ],
)
def test_a_bad_broker_url_says_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisBroker(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "redis://cache?max_session=1",
            "unknown setting 'max_session' (did you mean max_sessions?)",
        ),
        ("redis://cache/0?prefx=a", "unknown setting 'prefx' (did you mean prefix?)"),
        (
            "redis://cache/0?colour=blue",
            "unknown setting 'colour'; the broker's settings are prefix, ",
        ),
        ("redis://cache/0?decode_responses=yes", "decode_responses cannot be set"),
        ("redis://cache/0?noreply=1", "noreply cannot be set"),
        ("redis://cache/0?max_connections=many", "max_connections='many' is not a number"),
    ],
)
def test_an_unknown_key_in_the_broker_url_is_refused_naming_the_valid_ones(
    url: str, message: str
) -> None:
    """A misspelt setting used to be passed on to Redis, which ignored it: the deployment ran without it."""
    with pytest.raises(ValueError, match=r"setting|cannot be set|is not a number") as refused:
        RedisBroker(url)
    text = str(refused.value)
    assert message in text, text
    assert "\n" not in text
    if "unknown setting" in text:
        assert "max_sessions" in text and "client_name" in text  # ours and Redis's are both named


def test_redis_options_in_the_url_are_still_passed_on() -> None:
    url, settings = split_broker_url(
        "rediss://cache:6380/0?client_name=mcp&connect_timeout=1.5&ssl_cert_reqs=required&prefix=a"
    )
    assert url == "rediss://cache:6380/0?client_name=mcp&connect_timeout=1.5&ssl_cert_reqs=required"
    assert settings == {"prefix": "a"}


def test_a_password_in_the_query_is_not_shown() -> None:
    with pytest.raises(ValueError, match="unknown setting 'max_session'") as refused:
        RedisBroker("redis://cache/0?password=hunter2&max_session=1")
    assert "hunter2" not in str(refused.value)


def test_the_environment_names_the_broker_of_an_app_given_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TRIO_MCP_SSE_BROKER", raising=False)
    assert resolve_broker(None) is None
    monkeypatch.setenv("TRIO_MCP_SSE_BROKER", "redis://cache:6379/0?prefix=from-env")
    broker = resolve_broker(None)
    assert isinstance(broker, RedisBroker) and broker.settings.prefix == "from-env"
    explicit = RedisBroker("redis://other:6379/0")
    assert resolve_broker(explicit) is explicit
