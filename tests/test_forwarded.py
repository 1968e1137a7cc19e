"""X-Forwarded-Host / -Proto / -Prefix: believed from trusted proxies only, ignored by default."""

from __future__ import annotations

from trio_mcp_sse import MCPServer, SecuritySettings
from trio_mcp_sse._forwarded import ForwardedHeaders
from trio_mcp_sse.testing import run_asgi_app
from trio_mcp_sse.testing._asgi import make_scope

BEHIND_PROXY = (("host", "backend.internal:8000"), ("x-forwarded-host", "localhost:9443"), ("x-forwarded-prefix", "/tools"))


def transport(trusted: tuple[str, ...]) -> object:
    return MCPServer("p").sse_transport(security=SecuritySettings(trusted_proxies=trusted))


async def test_forwarded_headers_are_ignored_by_default_and_from_untrusted_peers() -> None:
    for trusted in ((), ("10.0.0.0/8",)):  # (the test client's peer is 127.0.0.1)
        async with run_asgi_app(transport(trusted)) as h:
            assert (await h.request("GET", "/sse", headers=BEHIND_PROXY)).status == 421


async def test_a_trusted_proxy_sets_the_host_checked_and_the_prefix_advertised() -> None:
    async with run_asgi_app(transport(("127.0.0.1",))) as h, h.stream(headers=BEHIND_PROXY) as stream:
        assert (await stream.endpoint()).startswith("/tools/messages/?session_id=")


def test_the_last_value_wins_and_bad_prefixes_are_ignored() -> None:
    forwarded = ForwardedHeaders(["127.0.0.0/8"])
    scope = make_scope(
        "GET", "/sse", headers=(("host", "b:1"), ("x-forwarded-host", "evil.example, localhost:1"), ("x-forwarded-proto", "https"))
    )
    applied = forwarded.apply(scope)
    assert (b"host", b"localhost:1") in applied["headers"] and (b"host", b"b:1") not in applied["headers"]
    assert applied["scheme"] == "https"
    for bad in ("tools", "/a?b", "/a\\b"):
        bad_scope = make_scope("GET", "/sse", headers=(("x-forwarded-prefix", bad),))
        assert forwarded.apply(bad_scope)["root_path"] == ""
    assert scope["headers"] == [(b"host", b"b:1"), (b"x-forwarded-host", b"evil.example, localhost:1"), (b"x-forwarded-proto", b"https")]
