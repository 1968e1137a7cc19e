"""The OAuth client's decisions without I/O (``trio_mcp_sse.client._oauth_wire``), rule by rule."""

from __future__ import annotations

import base64
import hashlib

import pytest

from trio_mcp_sse.client import AuthorizationError, OAuthDiscoveryError, TokenError
from trio_mcp_sse.client._oauth_wire import (
    AuthorizationServer,
    BearerChallenge,
    ClientRegistration,
    TokenSet,
    authorization_server_metadata_urls,
    authorization_url,
    bearer_challenge,
    canonical_resource,
    check_authorization_response,
    choose_scopes,
    client_authentication,
    parse_authorization_server,
    parse_challenges,
    parse_token_response,
    pkce_pair,
    protected_resource_urls,
    require_secure,
    resource_covers,
    token_error,
)

AS = "https://auth.example.com"
SERVER = AuthorizationServer(issuer=AS, authorization_endpoint=f"{AS}/authorize", token_endpoint=f"{AS}/token")


# -- WWW-Authenticate --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('Bearer realm="mcp"', [("bearer", {"realm": "mcp"})]),
        ("Bearer", [("bearer", {})]),
        ("bearer error=invalid_token", [("bearer", {"error": "invalid_token"})]),
        ('Bearer error="a\\"b\\\\c"', [("bearer", {"error": 'a"b\\c'})]),
        ("Basic dXNlcg==", [("basic", {"": "dXNlcg=="})]),
        (
            'Basic realm="x", Bearer scope="a b", resource_metadata="https://h/.well-known/oauth-protected-resource/mcp"',
            [("basic", {"realm": "x"}), ("bearer", {"scope": "a b", "resource_metadata": "https://h/.well-known/oauth-protected-resource/mcp"})],
        ),
        ('Bearer  SCOPE = "x" ,, Error="y"', [("bearer", {"scope": "x", "error": "y"})]),
        ("", []),
        ('"unterminated', [("unterminated", {})]),  # the stray quote is skipped
        (",,,=,=", []),
    ],
)
def test_challenges_parse_as_rfc_7235_says(value: str, expected: list[tuple[str, dict[str, str]]]) -> None:
    assert parse_challenges(value) == expected


def test_the_bearer_challenge_is_found_among_several_headers() -> None:
    found = bearer_challenge(
        ['Basic realm="x"', 'Bearer error="insufficient_scope", scope="files:read files:write files:read"']
    )
    assert found == BearerChallenge(error="insufficient_scope", scopes=("files:read", "files:write"))
    assert found.insufficient_scope
    assert bearer_challenge(['Basic realm="x"']) == BearerChallenge()
    assert bearer_challenge(['Bearer scope=""']).scopes == ()


# -- where to look ---------------------------------------------------------------------------------------
def test_protected_resource_metadata_is_looked_for_path_first_then_at_the_root() -> None:
    assert protected_resource_urls("https://h.example:8443/public/mcp?x=1") == [
        "https://h.example:8443/.well-known/oauth-protected-resource/public/mcp",
        "https://h.example:8443/.well-known/oauth-protected-resource",
    ]
    assert protected_resource_urls("https://h.example/") == ["https://h.example/.well-known/oauth-protected-resource"]


def test_authorization_server_metadata_urls_follow_the_specifications_order() -> None:
    assert authorization_server_metadata_urls("https://auth.example.com/tenant1") == [
        "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
        "https://auth.example.com/.well-known/openid-configuration/tenant1",
        "https://auth.example.com/tenant1/.well-known/openid-configuration",
    ]
    assert authorization_server_metadata_urls("https://auth.example.com") == [
        "https://auth.example.com/.well-known/oauth-authorization-server",
        "https://auth.example.com/.well-known/openid-configuration",
    ]


@pytest.mark.parametrize(
    ("resource", "url", "covers"),
    [
        ("https://h.example/mcp", "https://h.example/mcp", True),
        ("https://h.example/mcp", "https://H.EXAMPLE:443/mcp/", True),
        ("https://h.example", "https://h.example/sse", True),
        ("https://h.example/", "https://h.example/messages/?session_id=1", True),
        ("https://h.example/mcp", "https://h.example/mcpx", False),
        ("https://h.example/mcp", "https://h.example/other", False),
        ("https://h.example/mcp", "http://h.example/mcp", False),
        ("https://h.example/mcp", "https://h.example:8443/mcp", False),
        ("https://evil.example.com/mcp", "http://localhost:3000/mcp", False),
    ],
)
def test_a_resource_covers_its_own_path_and_below_on_its_own_origin(resource: str, url: str, covers: bool) -> None:
    assert resource_covers(resource, url) is covers


def test_the_canonical_resource_has_no_default_port_query_fragment_or_trailing_slash() -> None:
    assert canonical_resource("HTTPS://MCP.Example.com:443/Server/mcp/?a=1#f") == "https://mcp.example.com/Server/mcp"
    assert canonical_resource("http://localhost:8000/") == "http://localhost:8000"
    assert canonical_resource("http://[::1]:80/mcp") == "http://[::1]/mcp"


def test_endpoints_must_be_https_except_on_loopback() -> None:
    require_secure("https://auth.example.com/token", "x")
    require_secure("http://127.0.0.1:9000/token", "x")
    require_secure("http://localhost/token", "x")
    for bad in ("http://auth.example.com/token", "ftp://auth.example.com", "https://a.example/t#frag", "/token"):
        with pytest.raises(OAuthDiscoveryError):
            require_secure(bad, "x")


# -- authorization server metadata -------------------------------------------------------------------
def metadata(**changes: object) -> dict[str, object]:
    document: dict[str, object] = {
        "issuer": AS,
        "authorization_endpoint": f"{AS}/authorize",
        "token_endpoint": f"{AS}/token",
        "registration_endpoint": f"{AS}/register",
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["a", "offline_access"],
        "authorization_response_iss_parameter_supported": True,
    }
    document.update(changes)
    return {k: v for k, v in document.items() if v is not None}


def test_metadata_is_used_only_when_its_issuer_is_the_one_asked_for() -> None:
    server = parse_authorization_server(metadata(), AS)
    assert server.iss_parameter_supported and server.registration_endpoint == f"{AS}/register"
    assert server.scopes_supported == ("a", "offline_access")
    for issuer in ("https://attacker.example.com", f"{AS}/", AS.upper(), None):
        with pytest.raises(OAuthDiscoveryError, match="not used"):
            parse_authorization_server(metadata(issuer=issuer), AS)


def test_metadata_with_a_plain_http_endpoint_or_no_token_endpoint_is_refused() -> None:
    with pytest.raises(OAuthDiscoveryError, match="https"):
        parse_authorization_server(metadata(token_endpoint="http://auth.example.com/token"), AS)
    with pytest.raises(OAuthDiscoveryError, match="token_endpoint"):
        parse_authorization_server(metadata(token_endpoint=None), AS)
    with pytest.raises(OAuthDiscoveryError):
        parse_authorization_server(["not", "an", "object"], AS)


# -- scopes --------------------------------------------------------------------------------------------
def test_scopes_come_from_the_challenge_then_scopes_supported_then_nowhere() -> None:
    assert choose_scopes(challenged=("files:read",), supported=("a", "b")) == ("files:read",)
    assert choose_scopes(challenged=None, supported=("a", "b")) == ("a", "b")
    assert choose_scopes(challenged=(), supported=None) == ()


def test_a_step_up_keeps_what_was_asked_before() -> None:
    assert choose_scopes(challenged=("mcp:write",), supported=("mcp:profile",), previous=("mcp:basic",)) == (
        "mcp:basic",
        "mcp:write",
    )


def test_offline_access_only_where_the_authorization_server_offers_it() -> None:
    offering = parse_authorization_server(metadata(), AS)
    silent = parse_authorization_server(metadata(scopes_supported=["a"]), AS)
    assert choose_scopes(challenged=("a",), supported=None, offline_access=True, server=offering) == ("a", "offline_access")
    assert choose_scopes(challenged=("a",), supported=None, offline_access=True, server=silent) == ("a",)
    assert choose_scopes(challenged=("a",), supported=None, offline_access=False, server=offering) == ("a",)
    assert choose_scopes(challenged=None, supported=None, offline_access=True, server=offering) == ()


# -- the authorization request and response ------------------------------------------------------------
def test_pkce_s256_challenge_is_the_hash_of_the_verifier() -> None:
    verifier, challenge = pkce_pair()
    assert 43 <= len(verifier) <= 128
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == digest
    assert pkce_pair()[0] != verifier


def test_the_authorization_url_keeps_the_endpoints_own_query() -> None:
    url = authorization_url("https://a.example/authorize?tenant=x", {"scope": "a b", "resource": "https://h/mcp"})
    assert url == "https://a.example/authorize?tenant=x&scope=a%20b&resource=https%3A%2F%2Fh%2Fmcp"


def with_iss(supported: bool) -> AuthorizationServer:
    return AuthorizationServer(AS, f"{AS}/authorize", f"{AS}/token", iss_parameter_supported=supported)


@pytest.mark.parametrize("supported", [True, False])
def test_a_matching_iss_is_accepted(supported: bool) -> None:
    assert check_authorization_response({"code": "c", "state": "s", "iss": AS}, state="s", server=with_iss(supported)) == "c"


def test_iss_absent_is_fine_only_where_not_advertised() -> None:
    assert check_authorization_response({"code": "c", "state": "s"}, state="s", server=with_iss(False)) == "c"
    with pytest.raises(AuthorizationError, match="no iss"):
        check_authorization_response({"code": "c", "state": "s"}, state="s", server=with_iss(True))


@pytest.mark.parametrize("supported", [True, False])
@pytest.mark.parametrize("iss", ["https://evil.example.com", f"{AS}/", "HTTPS://auth.example.com", "https://auth.example.com:443"])
def test_a_different_iss_is_rejected_by_simple_string_comparison(supported: bool, iss: str) -> None:
    with pytest.raises(AuthorizationError, match="mix-up"):
        check_authorization_response({"code": "c", "state": "s", "iss": iss}, state="s", server=with_iss(supported))


def test_a_mismatched_iss_wins_over_the_error_it_carries() -> None:
    """The error text of a response from the wrong issuer is never acted on."""
    with pytest.raises(AuthorizationError, match="mix-up") as refused:
        check_authorization_response(
            {"error": "access_denied", "state": "s", "iss": "https://evil.example.com"}, state="s", server=with_iss(True)
        )
    assert refused.value.error is None


def test_state_then_error_then_code() -> None:
    server = with_iss(False)
    with pytest.raises(AuthorizationError, match="state"):
        check_authorization_response({"code": "c", "state": "other"}, state="s", server=server)
    with pytest.raises(AuthorizationError, match="access_denied") as denied:
        check_authorization_response({"error": "access_denied", "state": "s"}, state="s", server=server)
    assert denied.value.error == "access_denied"
    with pytest.raises(AuthorizationError, match="neither"):
        check_authorization_response({"state": "s"}, state="s", server=server)


# -- the token endpoint --------------------------------------------------------------------------------
def test_client_authentication_methods() -> None:
    basic = ClientRegistration(AS, "id:1", "s&cret", "client_secret_basic")
    headers, form = client_authentication(basic)
    assert form == {}
    assert base64.b64decode(headers["authorization"].removeprefix("Basic ")) == b"id%3A1:s%26cret"
    assert client_authentication(ClientRegistration(AS, "id", "sec", "client_secret_post")) == (
        {}, {"client_id": "id", "client_secret": "sec"}
    )
    assert client_authentication(ClientRegistration(AS, "id")) == ({}, {"client_id": "id"})
    with pytest.raises(TokenError):
        client_authentication(ClientRegistration(AS, "id", None, "client_secret_basic"))


def test_a_token_response_becomes_a_token_set() -> None:
    tokens = parse_token_response(
        {"access_token": "AT-SECRET", "token_type": "bearer", "expires_in": 60, "refresh_token": "RT-SECRET", "scope": "a b"},
        resource="https://h/mcp", server=SERVER, requested=("a",), now=1000.0,
    )
    assert (tokens.access_token, tokens.expires_at, tokens.refresh_token, tokens.scopes) == (
        "AT-SECRET", 1060.0, "RT-SECRET", ("a", "b")
    )
    assert tokens.issuer == AS and tokens.token_endpoint == f"{AS}/token"
    assert "SECRET" not in repr(tokens)
    assert tokens.expiring(margin=30, now=1031.0) and not tokens.expiring(margin=30, now=1029.0)


def test_a_refresh_without_a_new_refresh_token_keeps_the_old_one_and_scopes_default_to_the_request() -> None:
    tokens = parse_token_response(
        {"access_token": "at2", "token_type": "Bearer"}, resource="r", server=SERVER, requested=("a",),
        previous_refresh_token="rt",
    )
    assert (tokens.refresh_token, tokens.scopes, tokens.expires_at) == ("rt", ("a",), None)


@pytest.mark.parametrize(
    "body",
    [{"token_type": "Bearer"}, {"access_token": "", "token_type": "Bearer"}, {"access_token": "x", "token_type": "DPoP"},
     {"access_token": "x"}, "text", None],
)
def test_unusable_token_responses_are_refused(body: object) -> None:
    with pytest.raises(TokenError):
        parse_token_response(body, resource="r", server=SERVER, requested=())


def test_token_errors_say_what_the_server_said_and_nothing_it_did_not() -> None:
    error = token_error(400, {"error": "invalid_grant", "error_description": "expired"}, f"{AS}/token")
    assert (error.error, error.status_code) == ("invalid_grant", 400)
    assert "invalid_grant (expired)" in str(error)
    assert token_error(500, None, f"{AS}/token").error is None


def test_stored_records_round_trip_and_hide_secrets() -> None:
    registration = ClientRegistration(AS, "id", "secret", "client_secret_post", ("http://127.0.0.1:1/cb",), None, "dynamic")
    assert ClientRegistration.from_json(registration.to_json()) == registration
    assert "secret'" not in repr(registration)
    assert registration.usable("http://127.0.0.1:1/cb") and not registration.usable("http://127.0.0.1:2/cb")
    assert not ClientRegistration(AS, "id", "s", secret_expires_at=10.0).usable(None, now=11.0)
    tokens = TokenSet("at", "https://h/mcp", AS, f"{AS}/token", 5.0, "rt", ("a",), 1.0)
    assert TokenSet.from_json(tokens.to_json()) == tokens
