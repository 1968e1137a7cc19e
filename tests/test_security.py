"""Host/Origin allow-lists (DNS-rebinding protection), no sockets."""

from __future__ import annotations

import pytest

from trio_mcp_sse import SecuritySettings

LOOPBACK = "127.0.0.1"
PUBLIC = "10.1.2.3"


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:1", "LOCALHOST:8000", "[::1]:8000", "localhost", "127.0.0.1"])
def test_loopback_server_accepts_loopback_names(host: str) -> None:
    assert SecuritySettings().host_allowed(host, LOOPBACK)


@pytest.mark.parametrize("host", [None, "evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost:80x", "localhostx:80"])
def test_loopback_server_refuses_other_names(host: str | None) -> None:
    assert not SecuritySettings().host_allowed(host, LOOPBACK)


def test_ipv6_and_localhost_binds_count_as_loopback() -> None:
    assert not SecuritySettings().host_allowed("evil.example", "::1")
    assert not SecuritySettings().host_allowed("evil.example", "localhost")


def test_routable_server_does_not_guess_its_names() -> None:
    assert SecuritySettings().host_allowed("mcp.example.com", PUBLIC)
    assert SecuritySettings().host_allowed(None, None)


def test_explicit_hosts_apply_everywhere() -> None:
    settings = SecuritySettings(allowed_hosts=["mcp.example.com", "internal:*"])
    assert settings.host_allowed("mcp.example.com", PUBLIC)
    assert not settings.host_allowed("mcp.example.com:8443", PUBLIC)
    assert settings.host_allowed("internal:9000", LOOPBACK)
    assert settings.host_allowed("internal", LOOPBACK)
    assert not settings.host_allowed("127.0.0.1:8000", LOOPBACK)
    assert SecuritySettings(allowed_hosts=["*"]).host_allowed("anything", LOOPBACK)


def test_missing_origin_is_never_refused() -> None:
    assert SecuritySettings().origin_allowed(None, "evil.example", LOOPBACK)


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:6274", True),
        ("http://127.0.0.1:3000", True),
        ("https://localhost", True),
        ("http://[::1]:80", True),
        ("http://evil.example", False),
        ("http://localhost.evil.example", False),
        ("null", False),
    ],
)
def test_loopback_server_origins(origin: str, allowed: bool) -> None:
    assert SecuritySettings().origin_allowed(origin, "localhost:8000", LOOPBACK) is allowed


def test_routable_server_accepts_same_origin_only() -> None:
    settings = SecuritySettings()
    assert settings.origin_allowed("https://mcp.example.com", "mcp.example.com", PUBLIC)
    assert not settings.origin_allowed("https://evil.example", "mcp.example.com", PUBLIC)
    assert not settings.origin_allowed("null", "mcp.example.com", PUBLIC)


def test_explicit_origins() -> None:
    settings = SecuritySettings(allowed_origins=["https://app.example.com", "http://dev.example.com:*"])
    assert settings.origin_allowed("https://app.example.com", "x", PUBLIC)
    assert settings.origin_allowed("http://dev.example.com:5173", "x", PUBLIC)
    assert not settings.origin_allowed("https://app.example.com:8443", "x", PUBLIC)
    assert not settings.origin_allowed("http://localhost:3000", "localhost", LOOPBACK)


def test_settings_validation() -> None:
    with pytest.raises(TypeError, match="sequence"):
        SecuritySettings(allowed_hosts="localhost")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_body_size"):
        SecuritySettings(max_body_size=0)
