"""JWTVerifier and IntrospectionVerifier against in-memory authorization servers.

Real keys (``cryptography``: RSA 2048, EC P-256, Ed25519) sign real tokens
(PyJWT); the JWKS, metadata and introspection endpoints are
``httpx.MockTransport`` handlers, so every request a verifier makes is
recorded (and a hanging endpoint is an ``await trio.sleep_forever()``).
Anything timed runs on the ``autojump_clock``; the token's own wall clock
(``exp``/``nbf``/``iat``) is the verifier's ``_now``, pinned to ``NOW``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import logging
import secrets
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from trio_mcp_sse._auth import AUTH_UNAVAILABLE, AccessToken, AuthSettings, verify_bearer
from trio_mcp_sse._oauth_verifiers import (
    DEFAULT_ALGORITHMS,
    IntrospectionVerifier,
    JWTVerifier,
    VerificationUnavailable,
)

ISSUER = "https://auth.example.com"
TENANT = "https://auth.example.com/tenants/acme"
AUDIENCE = "https://mcp.example.com/mcp"
JWKS_URL = "https://auth.example.com/jwks"
INTROSPECT_URL = "https://auth.example.com/introspect"
NOW = 1_750_000_000
DROP: Any = object()
"""A claim value meaning "leave this claim out"."""

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_KEY_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


# -- tokens ----------------------------------------------------------------------------------------
def public_jwk(private: Any, kid: str | None, **members: Any) -> dict[str, Any]:
    public = private.public_key()
    if isinstance(private, rsa.RSAPrivateKey):
        jwk_dict = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        jwk_dict = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk_dict = OKPAlgorithm.to_jwk(public, as_dict=True)
    if kid is not None:
        jwk_dict["kid"] = kid
    jwk_dict.update(members)
    return jwk_dict


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "client_id": "client-1",
        "scope": "notes:read notes:write",
        "iat": NOW - 10,
        "exp": NOW + 600,
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not DROP}


def sign(
    private: Any = RSA_KEY, alg: str = "RS256", kid: str | None = "rsa-1", headers: dict[str, Any] | None = None, **changes: Any
) -> str:
    header: dict[str, Any] = {} if kid is None else {"kid": kid}
    header.update(headers or {})
    return jwt.encode(claims(**changes), private, algorithm=alg, headers=header)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def segment(document: Any) -> str:
    return b64(json.dumps(document).encode())


def forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"not-a-signature") -> str:
    return f"{segment(header)}.{segment(payload)}.{b64(signature)}"


def tamper(token: str, **changes: Any) -> str:
    """The token with claims changed and the original signature kept."""
    header, payload, signature = token.split(".")
    document = json.loads(unb64(payload))
    document.update(changes)
    return f"{header}.{segment(document)}.{signature}"


def flip_signature(token: str) -> str:
    header, payload, signature = token.split(".")
    middle = len(signature) // 2
    replacement = "A" if signature[middle] != "A" else "B"
    return f"{header}.{payload}.{signature[:middle]}{replacement}{signature[middle + 1 :]}"


def hs256_with_public_pem() -> str:
    """The classic confusion: an HS256 token whose HMAC secret is the issuer's public key PEM."""
    pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{segment({'alg': 'HS256', 'typ': 'JWT', 'kid': 'rsa-1'})}.{segment(claims())}"
    return f"{signing_input}.{b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"


def truncated_signature(token: str) -> str:
    header, payload, signature = token.split(".")
    return f"{header}.{payload}.{b64(unb64(signature)[:-10])}"


# -- the authorization server --------------------------------------------------------------------------
class FakeAuthorizationServer:
    """JWKS at JWKS_URL, metadata documents at whatever URLs a test puts in ``documents``; 404 elsewhere."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {
            "keys": [public_jwk(RSA_KEY, "rsa-1"), public_jwk(EC_KEY, "ec-1"), public_jwk(ED_KEY, "ed-1")]
        }
        self.jwks_mode = "ok"
        self.jwks_headers: dict[str, str] = {}
        self.documents: dict[str, Any] = {}
        self.requests: list[httpx.Request] = []
        self.clients: list[httpx.AsyncClient] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url)
        if url == JWKS_URL:
            return await self.answer_jwks()
        if url in self.documents:
            return httpx.Response(200, json=self.documents[url])
        return httpx.Response(404, text="not found")

    async def answer_jwks(self) -> httpx.Response:
        if self.jwks_mode == "hang":
            await trio.sleep_forever()
        if self.jwks_mode == "500":
            return httpx.Response(500, text="internal error")
        if self.jwks_mode == "html":
            return httpx.Response(200, text="<html>maintenance</html>", headers={"content-type": "text/html"})
        if self.jwks_mode == "huge":
            return httpx.Response(200, content=b'{"keys": []' + b" " * (1024 * 1024) + b"}")

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(20):
                yield b" " * 65536

        if self.jwks_mode == "huge-streamed":
            return httpx.Response(200, content=chunks())
        if self.jwks_mode == "list":
            return httpx.Response(200, json=[self.jwks])
        return httpx.Response(200, json=self.jwks, headers=self.jwks_headers)

    def client(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.MockTransport(self.handle))
        self.clients.append(client)
        return client

    def urls(self) -> list[str]:
        return [str(request.url) for request in self.requests]

    def fetches(self, url: str = JWKS_URL) -> int:
        return self.urls().count(url)


@pytest.fixture
async def server() -> AsyncIterator[FakeAuthorizationServer]:
    fake = FakeAuthorizationServer()
    yield fake
    for client in fake.clients:
        await client.aclose()


def jwt_verifier(server: FakeAuthorizationServer, **options: Any) -> JWTVerifier:
    options.setdefault("jwks_uri", JWKS_URL)
    options.setdefault("issuer", ISSUER)
    options.setdefault("audience", AUDIENCE)
    verifier = JWTVerifier(http_client=server.client(), **options)
    verifier._now = lambda: float(NOW)
    return verifier


def refusals(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str]]:
    return [
        (record.levelname, record.getMessage(), record.reason)  # type: ignore[attr-defined]
        for record in caplog.records
        if getattr(record, "event", None) == "token_refused"
    ]


def assert_not_logged(caplog: pytest.LogCaptureFixture, token: str) -> None:
    """Neither the token nor any sizeable part of it is in any log record or the captured text."""
    pieces = [token, *(part for part in token.split(".") if len(part) >= 8)]
    texts = [caplog.text]
    for record in caplog.records:
        texts.extend((record.getMessage(), str(record.args), str(record.__dict__)))
    for piece in pieces:
        assert not any(piece in text for text in texts)


def reachable_strings(value: Any, seen: set[int] | None = None) -> Iterator[str | bytes]:
    """Every str/bytes reachable from a verifier's state (not through its HTTP client)."""
    seen = set() if seen is None else seen
    if id(value) in seen or isinstance(value, httpx.AsyncClient):
        return
    seen.add(id(value))
    if isinstance(value, (str, bytes)):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from reachable_strings(key, seen)
            yield from reachable_strings(item, seen)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from reachable_strings(item, seen)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from reachable_strings(getattr(value, field.name), seen)
    elif hasattr(value, "__dict__") and type(value).__module__.startswith("trio_mcp_sse"):
        yield from reachable_strings(vars(value), seen)


def holds(verifier: Any, token: str) -> bool:
    """Whether the token (or its bytes) is anywhere in the verifier's state."""
    return any(
        (token.encode() in text) if isinstance(text, bytes) else (token in text) for text in reachable_strings(verifier)
    )


# -- valid tokens ----------------------------------------------------------------------------------------
async def test_a_valid_rs256_token_becomes_an_access_token(server: FakeAuthorizationServer) -> None:
    verifier = jwt_verifier(server)
    access = await verifier(sign())
    assert access == AccessToken(
        subject="alice",
        scopes=frozenset({"notes:read", "notes:write"}),
        client_id="client-1",
        issuer=ISSUER,
        audience=(AUDIENCE,),
        expires_at=float(NOW + 600),
    )
    assert access is not None and access.claims["sub"] == "alice" and access.claims["exp"] == NOW + 600
    assert server.urls() == [JWKS_URL]


async def test_a_valid_es256_token_with_an_scp_list_and_azp(server: FakeAuthorizationServer) -> None:
    token = sign(EC_KEY, "ES256", "ec-1", scope=DROP, client_id=DROP, azp="client-2", scp=["tools:call", "notes:read"])
    assert await jwt_verifier(server)(token) == AccessToken(
        subject="alice",
        scopes=frozenset({"tools:call", "notes:read"}),
        client_id="client-2",
        issuer=ISSUER,
        audience=(AUDIENCE,),
        expires_at=float(NOW + 600),
    )


async def test_a_valid_eddsa_token_without_sub_is_the_clients_own(server: FakeAuthorizationServer) -> None:
    token = sign(ED_KEY, "EdDSA", "ed-1", sub=DROP, scope=DROP, scp="tools:call tools:list")
    assert await jwt_verifier(server)(token) == AccessToken(
        subject="client-1",
        scopes=frozenset({"tools:call", "tools:list"}),
        client_id="client-1",
        issuer=ISSUER,
        audience=(AUDIENCE,),
        expires_at=float(NOW + 600),
    )


async def test_ps256_and_a_token_without_kid_verify_with_the_cached_keys(server: FakeAuthorizationServer) -> None:
    verifier = jwt_verifier(server)
    pss = await verifier(sign(alg="PS256"))
    kidless_rsa = await verifier(sign(kid=None))
    kidless_ec = await verifier(sign(EC_KEY, "ES256", kid=None))
    assert pss is not None and kidless_rsa is not None and kidless_ec is not None
    assert {pss.subject, kidless_rsa.subject, kidless_ec.subject} == {"alice"}
    assert server.fetches() == 1


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"exp": NOW - 20}, id="expired-within-leeway"),
        pytest.param({"nbf": NOW + 20}, id="nbf-within-leeway"),
        pytest.param({"iat": NOW + 20}, id="iat-within-leeway"),
        pytest.param({"aud": ["https://other.example.com", AUDIENCE]}, id="aud-list-containing-ours"),
        pytest.param({"aud": AUDIENCE + "/"}, id="aud-with-trailing-slash"),
    ],
)
async def test_tolerated_tokens_are_accepted(server: FakeAuthorizationServer, changes: dict[str, Any]) -> None:
    access = await jwt_verifier(server)(sign(**changes))
    assert access is not None and access.subject == "alice"
    expected_audience = changes["aud"] if isinstance(changes.get("aud"), list) else [changes.get("aud", AUDIENCE)]
    assert access.audience == tuple(expected_audience)
    assert access.expires_at == float(changes.get("exp", NOW + 600))


async def test_a_configured_audience_with_a_slash_accepts_one_without(server: FakeAuthorizationServer) -> None:
    verifier = jwt_verifier(server, audience=["https://mcp.example.com/"])
    access = await verifier(sign(aud="https://mcp.example.com"))
    assert access is not None and access.audience == ("https://mcp.example.com",)
    assert await verifier(sign(aud="https://mcp.example.com/other")) is None


async def test_token_types_are_checked_when_configured(server: FakeAuthorizationServer) -> None:
    verifier = jwt_verifier(server, token_types=["at+jwt"])
    assert await verifier(sign()) is None  # PyJWT's default typ is "JWT"
    assert await verifier(sign(headers={"typ": "at+jwt"})) is not None
    assert await verifier(sign(headers={"typ": "application/AT+JWT"})) is not None
    unconfigured = jwt_verifier(server)
    assert await unconfigured(sign(headers={"typ": "at+jwt"})) is not None
    assert await unconfigured(sign(headers={"typ": "whatever"})) is not None


# -- hostile tokens ---------------------------------------------------------------------------------------
def _encryption_key_token(server: FakeAuthorizationServer) -> str:
    server.jwks["keys"].append(public_jwk(RSA_KEY_2, "enc-1", use="enc"))
    return sign(RSA_KEY_2, kid="enc-1")


def _alg_bound_key_token(server: FakeAuthorizationServer) -> str:
    server.jwks["keys"].append(public_jwk(RSA_KEY_2, "rs512-only", alg="RS512"))
    return sign(RSA_KEY_2, kid="rs512-only")  # RS256 with a key published for RS512 only


def _weak_key_token(server: FakeAuthorizationServer) -> str:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    server.jwks["keys"].append(public_jwk(weak, "weak"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sign(weak, kid="weak")


Builder = Callable[[FakeAuthorizationServer], str]
HOSTILE: list[Any] = [
    pytest.param(lambda s: sign(exp=NOW - 31), "expired", id="expired-past-leeway"),
    pytest.param(lambda s: sign(nbf=NOW + 31), "not yet valid", id="nbf-in-the-future"),
    pytest.param(lambda s: sign(iat=NOW + 31), "issued in the future", id="iat-in-the-future"),
    pytest.param(lambda s: sign(iss="https://evil.example.com"), "wrong issuer", id="wrong-issuer"),
    pytest.param(lambda s: sign(iss=ISSUER + "/"), "wrong issuer", id="issuer-not-exact"),
    pytest.param(lambda s: sign(iss=DROP), "wrong issuer", id="no-issuer"),
    pytest.param(lambda s: sign(aud="https://other.example.com/mcp"), "wrong audience", id="aud-for-another-resource"),
    pytest.param(lambda s: sign(aud="https://mcp.example.com"), "wrong audience", id="aud-of-the-origin-only"),
    pytest.param(lambda s: sign(aud=["https://a.example", "https://b.example"]), "wrong audience", id="aud-list-without-ours"),
    pytest.param(lambda s: sign(aud=DROP), "wrong audience", id="no-aud"),
    pytest.param(lambda s: sign(aud=5), "malformed audience", id="aud-not-a-string"),
    pytest.param(lambda s: jwt.encode(claims(), None, algorithm="none"), "malformed", id="alg-none-unsigned"),
    pytest.param(lambda s: forge({"alg": "none", "kid": "rsa-1"}, claims()), "algorithm not allowed", id="alg-none-with-signature"),
    pytest.param(lambda s: hs256_with_public_pem(), "algorithm not allowed", id="hs256-with-the-public-key-pem"),
    pytest.param(lambda s: sign(RSA_KEY, "RS256", "ec-1"), "key does not fit the algorithm", id="rs256-header-ec-key"),
    pytest.param(lambda s: sign(EC_KEY, "ES256", "rsa-1"), "key does not fit the algorithm", id="es256-header-rsa-key"),
    pytest.param(lambda s: sign(EC_KEY, "ES256", "ed-1"), "key does not fit the algorithm", id="es256-header-okp-key"),
    pytest.param(_alg_bound_key_token, "key does not fit the algorithm", id="jwk-alg-differs-from-header"),
    pytest.param(lambda s: tamper(sign(), sub="mallory"), "bad signature", id="tampered-payload"),
    pytest.param(lambda s: tamper(sign(), exp=NOW + 10**6), "bad signature", id="tampered-expiry"),
    pytest.param(lambda s: flip_signature(sign()), "bad signature", id="tampered-signature"),
    pytest.param(lambda s: truncated_signature(sign()), "bad signature", id="truncated-signature"),
    pytest.param(lambda s: sign()[:120], "malformed", id="truncated-token"),
    pytest.param(lambda s: sign().rsplit(".", 1)[0], "malformed", id="two-parts"),
    pytest.param(lambda s: sign() + ".e30", "malformed", id="four-parts"),
    pytest.param(lambda s: "!!!!.????.****", "malformed", id="garbage-characters"),
    pytest.param(lambda s: "abcd.efgh.ijkl", "malformed", id="garbage-base64"),
    pytest.param(lambda s: f"{segment({'alg': 'RS256'})}.bm90IGpzb24.c2ln", "bad signature", id="payload-not-json"),
    pytest.param(lambda s: sign(padding="x" * 20_000), "too large", id="oversized"),
    pytest.param(
        lambda s: sign(headers={"crit": ["urn:example:must-understand"], "urn:example:must-understand": True}),
        "unsupported header",
        id="unknown-crit",
    ),
    pytest.param(lambda s: forge({"alg": "RS256", "kid": 5}, claims()), "unsupported header", id="kid-not-a-string"),
    pytest.param(lambda s: sign(exp=DROP), "no expiry", id="missing-exp"),
    pytest.param(lambda s: sign(exp="tomorrow"), "malformed expiry", id="exp-not-a-number"),
    pytest.param(lambda s: sign(sub=DROP, client_id=DROP), "no subject", id="missing-sub-and-client-id"),
    pytest.param(lambda s: sign(sub=5), "malformed claims", id="sub-not-a-string"),
    pytest.param(lambda s: sign(scope=5), "malformed scope", id="scope-not-a-string"),
    pytest.param(lambda s: sign(ATTACKER_KEY, kid="unknown"), "unknown signing key", id="unknown-kid"),
    pytest.param(lambda s: sign(ATTACKER_KEY, kid="rsa-1"), "bad signature", id="attacker-key-under-a-known-kid"),
    pytest.param(
        lambda s: sign(ATTACKER_KEY, kid="attacker", headers={"jku": "https://evil.example.com/jwks"}),
        "unknown signing key",
        id="jku-elsewhere",
    ),
    pytest.param(
        lambda s: sign(ATTACKER_KEY, kid="rsa-1", headers={"x5u": "https://evil.example.com/cert.pem"}),
        "bad signature",
        id="x5u-elsewhere",
    ),
    pytest.param(
        lambda s: sign(ATTACKER_KEY, kid=None, headers={"jwk": public_jwk(ATTACKER_KEY, None)}),
        "bad signature",
        id="embedded-jwk",
    ),
    pytest.param(_encryption_key_token, "unknown signing key", id="key-for-encryption-only"),
    pytest.param(_weak_key_token, "unknown signing key", id="rsa-1024-key"),
]


@pytest.mark.parametrize(("build", "reason"), HOSTILE)
async def test_a_hostile_token_is_refused_and_logged_without_the_token(
    server: FakeAuthorizationServer, caplog: pytest.LogCaptureFixture, build: Builder, reason: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_mcp_sse")
    verifier = jwt_verifier(server)
    token = build(server)
    assert await verifier(token) is None
    assert refusals(caplog) == [("INFO", f"access token refused: {reason}", reason)]
    assert_not_logged(caplog, token)
    assert all(url == JWKS_URL for url in server.urls())  # nothing named in a token is fetched
    assert not holds(verifier, token)


async def test_token_types_mismatch_is_refused(server: FakeAuthorizationServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trio_mcp_sse")
    verifier = jwt_verifier(server, token_types=["at+jwt"])
    token = sign(headers={"typ": "JWT"})
    untyped = forge({"alg": "RS256", "kid": "rsa-1"}, claims())
    assert await verifier(token) is None
    assert await verifier(untyped) is None
    assert [reason for _, _, reason in refusals(caplog)] == ["wrong token type", "wrong token type"]
    assert server.requests == []  # refused before any key is needed


async def test_all_hostile_tokens_in_one_verifier_leave_no_token_in_the_logs(
    server: FakeAuthorizationServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_mcp_sse")
    verifier = jwt_verifier(server, refresh_interval=0)
    tokens = [param.values[0](server) for param in HOSTILE]
    for token in tokens:
        assert await verifier(token) is None
    assert len(refusals(caplog)) == len(tokens)
    for token in tokens:
        assert_not_logged(caplog, token)
    assert not any("evil" in url for url in server.urls())


# -- key rotation and refetch limits ------------------------------------------------------------------
async def test_a_new_kid_triggers_exactly_one_refetch(
    server: FakeAuthorizationServer, autojump_clock: trio.testing.MockClock
) -> None:
    verifier = jwt_verifier(server)
    assert await verifier(sign()) is not None
    assert server.fetches() == 1
    await trio.sleep(31)
    server.jwks["keys"].append(public_jwk(RSA_KEY_2, "rsa-2"))
    rotated = sign(RSA_KEY_2, kid="rsa-2")
    access = await verifier(rotated)
    assert access is not None and access.subject == "alice"
    assert server.fetches() == 2
    assert await verifier(rotated) is not None
    assert await verifier(sign()) is not None
    assert server.fetches() == 2


async def test_a_new_kid_within_refresh_interval_of_a_fetch_is_refused_without_fetching(
    server: FakeAuthorizationServer, autojump_clock: trio.testing.MockClock
) -> None:
    verifier = jwt_verifier(server)
    assert await verifier(sign()) is not None
    server.jwks["keys"].append(public_jwk(RSA_KEY_2, "rsa-2"))
    await trio.sleep(29)
    assert await verifier(sign(RSA_KEY_2, kid="rsa-2")) is None
    assert server.fetches() == 1
    await trio.sleep(2)
    assert await verifier(sign(RSA_KEY_2, kid="rsa-2")) is not None
    assert server.fetches() == 2


async def test_a_flood_of_unknown_kids_costs_at_most_one_fetch_per_refresh_interval(
    server: FakeAuthorizationServer, autojump_clock: trio.testing.MockClock
) -> None:
    verifier = jwt_verifier(server)
    results: list[AccessToken | None] = []

    async def flood() -> None:
        tokens = [sign(ATTACKER_KEY, kid=secrets.token_hex(8)) for _ in range(50)]

        async def one(token: str) -> None:
            results.append(await verifier(token))

        async with trio.open_nursery() as nursery:
            for token in tokens:
                nursery.start_soon(one, token)

    await flood()  # cold: the first caller fetches, the 49 others wait for it and re-check
    assert results == [None] * 50
    assert server.fetches() == 1
    await flood()  # within refresh_interval of that fetch: no fetch at all
    assert server.fetches() == 1
    await trio.sleep(31)
    await flood()
    assert server.fetches() == 2
    assert results == [None] * 150
    await trio.sleep(31)
    assert await verifier(sign(ATTACKER_KEY, kid="yet-another")) is None
    assert server.fetches() == 3


async def test_cache_control_max_age_sets_the_freshness_clamped(
    server: FakeAuthorizationServer, autojump_clock: trio.testing.MockClock
) -> None:
    server.jwks_headers = {"cache-control": "public, max-age=120"}
    verifier = jwt_verifier(server, verified_ttl=0)  # the same token each time: check it afresh
    assert await verifier(sign()) is not None
    await trio.sleep(110)
    assert await verifier(sign()) is not None
    assert server.fetches() == 1
    await trio.sleep(15)
    assert await verifier(sign()) is not None
    assert server.fetches() == 2
    server.jwks_headers = {"cache-control": "max-age=1"}  # clamped up to a minute
    await trio.sleep(121)
    assert await verifier(sign()) is not None
    assert server.fetches() == 3
    await trio.sleep(50)
    assert await verifier(sign()) is not None
    assert server.fetches() == 3
    await trio.sleep(11)
    assert await verifier(sign()) is not None
    assert server.fetches() == 4


async def test_without_cache_control_the_keys_are_fresh_for_cache_ttl(
    server: FakeAuthorizationServer, autojump_clock: trio.testing.MockClock
) -> None:
    verifier = jwt_verifier(server, cache_ttl=100, verified_ttl=0)
    assert await verifier(sign()) is not None
    await trio.sleep(99)
    assert await verifier(sign()) is not None
    assert server.fetches() == 1
    await trio.sleep(2)
    assert await verifier(sign()) is not None
    assert server.fetches() == 2


async def test_a_key_removed_from_the_jwks_stops_verifying_after_the_next_fetch(
    server: FakeAuthorizationServer, autojump_clock: trio.testing.MockClock
) -> None:
    verifier = jwt_verifier(server)
    assert await verifier(sign(EC_KEY, "ES256", "ec-1")) is not None
    server.jwks["keys"] = [key for key in server.jwks["keys"] if key.get("kid") != "ec-1"]
    await trio.sleep(301)
    assert await verifier(sign(EC_KEY, "ES256", "ec-1")) is None
    assert await verifier(sign()) is not None
    assert server.fetches() == 2


async def test_a_token_that_verified_is_remembered_for_verified_ttl_by_its_hash(
    server: FakeAuthorizationServer, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = jwt_verifier(server, verified_ttl=30, cache_ttl=60)
    token = sign(EC_KEY, "ES256", "ec-1")
    first = await verifier(token)
    assert first is not None
    # The key is withdrawn: the remembered token is honoured for verified_ttl (without
    # looking at the keys), then checked afresh against the key set, until it is refetched.
    server.jwks["keys"] = [key for key in server.jwks["keys"] if key.get("kid") != "ec-1"]
    await trio.sleep(29)
    assert await verifier(token) is first
    await trio.sleep(2)
    fresh = await verifier(token)
    assert fresh is not None and fresh is not first  # verified again, by the key set cached
    await trio.sleep(30)
    assert await verifier(token) is None  # the set was refetched: its key is gone
    assert server.fetches() == 2
    assert not holds(verifier, token)
    assert_not_logged(caplog, token)


async def test_a_remembered_token_is_refused_once_it_expires(server: FakeAuthorizationServer) -> None:
    verifier = jwt_verifier(server, verified_ttl=3600, leeway=0)
    token = sign(exp=NOW + 10)
    assert await verifier(token) is not None
    verifier._now = lambda: float(NOW + 11)
    assert await verifier(token) is None


async def test_remembered_tokens_are_bounded(server: FakeAuthorizationServer) -> None:
    verifier = jwt_verifier(server, verified_max=3)
    tokens = [sign(jti=str(n)) for n in range(5)]
    for token in tokens:
        assert await verifier(token) is not None
    assert len(verifier._verified) == 3


async def test_each_key_is_bound_only_to_the_algorithms_it_fits(server: FakeAuthorizationServer) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    server.jwks["keys"].extend([public_jwk(p384, "p384"), public_jwk(RSA_KEY_2, "rs384", alg="RS384")])
    verifier = jwt_verifier(server)
    assert await verifier(sign()) is not None
    bound = {kid: set(entry.by_alg) for kid, (entry,) in verifier._by_kid.items()}
    assert bound == {
        "rsa-1": {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
        "ec-1": {"ES256"},
        "ed-1": {"EdDSA"},
        "p384": {"ES384"},
        "rs384": {"RS384"},
    }
    assert await verifier(sign(p384, "ES384", "p384")) is not None


# -- failing endpoints ------------------------------------------------------------------------------------
async def test_a_hanging_jwks_endpoint_raises_within_fetch_timeout_while_cached_kids_verify_at_once(
    server: FakeAuthorizationServer, autojump_clock: trio.testing.MockClock
) -> None:
    verifier = jwt_verifier(server, fetch_timeout=3.0)
    known = sign()
    assert await verifier(known) is not None
    await trio.sleep(31)
    server.jwks_mode = "hang"
    server.jwks["keys"].append(public_jwk(RSA_KEY_2, "rsa-2"))
    elapsed: list[float] = []

    async def needs_the_fetch() -> None:
        started = trio.current_time()
        with pytest.raises(VerificationUnavailable, match=r"fetching https://auth\.example\.com/jwks timed out after 3s"):
            await verifier(sign(RSA_KEY_2, kid="rsa-2"))
        elapsed.append(trio.current_time() - started)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(needs_the_fetch)
        await trio.sleep(1)
        started = trio.current_time()
        assert await verifier(known) is not None
        assert trio.current_time() == started
    assert elapsed == [pytest.approx(3.0)]
    assert server.fetches() == 2


async def test_while_a_stale_cache_is_refetched_a_cached_kid_does_not_wait_for_it(
    server: FakeAuthorizationServer, autojump_clock: trio.testing.MockClock
) -> None:
    verifier = jwt_verifier(server, fetch_timeout=3.0)
    known = sign()
    assert await verifier(known) is not None
    await trio.sleep(301)  # stale: the next token starts a refetch
    server.jwks_mode = "hang"
    waited: list[float] = []

    async def refreshing() -> None:
        started = trio.current_time()
        assert await verifier(known) is not None  # the refetch times out, then the stale key serves
        waited.append(trio.current_time() - started)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(refreshing)
        await trio.sleep(1)
        started = trio.current_time()
        assert await verifier(sign(EC_KEY, "ES256", "ec-1")) is not None
        assert trio.current_time() == started
    assert waited == [pytest.approx(3.0)]
    assert server.fetches() == 2


async def test_a_hanging_jwks_endpoint_on_first_use_raises_within_fetch_timeout(
    server: FakeAuthorizationServer, autojump_clock: trio.testing.MockClock
) -> None:
    server.jwks_mode = "hang"
    verifier = jwt_verifier(server, fetch_timeout=2.5)
    with pytest.raises(VerificationUnavailable, match=r"timed out after 2\.5s"):
        await verifier(sign())
    assert trio.current_time() == pytest.approx(2.5)


async def test_the_transport_answers_503_for_a_hanging_jwks_and_401_for_a_bad_token(
    server: FakeAuthorizationServer, autojump_clock: trio.testing.MockClock
) -> None:
    verifier = jwt_verifier(server)
    auth = AuthSettings(verify_token=verifier)
    assert await verify_bearer(auth, sign(exp=NOW - 100)) is None
    server.jwks_mode = "hang"
    await trio.sleep(31)
    assert await verify_bearer(auth, sign(RSA_KEY_2, kid="rsa-2")) is AUTH_UNAVAILABLE
    assert trio.current_time() == pytest.approx(34.0)  # fetch_timeout (3 s), under auth.timeout (5 s)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("500", r"https://auth\.example\.com/jwks answered HTTP 500"),
        ("html", r"https://auth\.example\.com/jwks did not answer JSON"),
        ("huge", r"answered a body over 1048576 bytes"),
        ("huge-streamed", r"answered a body over 1048576 bytes"),
        ("list", r"did not answer a JWK Set"),
    ],
)
async def test_a_failing_jwks_endpoint_raises(
    server: FakeAuthorizationServer, caplog: pytest.LogCaptureFixture, mode: str, message: str
) -> None:
    caplog.set_level(logging.INFO, logger="trio_mcp_sse")
    server.jwks_mode = mode
    token = sign()
    with pytest.raises(VerificationUnavailable, match=message):
        await jwt_verifier(server)(token)
    warned = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warned) == 1 and JWKS_URL in warned[0].getMessage()
    assert getattr(warned[0], "event", None) == "jwks_fetch_failed"
    assert_not_logged(caplog, token)


async def test_a_jwks_without_usable_keys_raises(server: FakeAuthorizationServer) -> None:
    server.jwks = {
        "keys": [
            {"kty": "oct", "kid": "secret", "k": b64(b"shared secret")},
            public_jwk(RSA_KEY, "enc", use="enc"),
            public_jwk(RSA_KEY, "ops", key_ops=["encrypt"]),
            {"kty": "RSA", "kid": "broken", "n": "AQAB"},
            "not a key",
        ]
    }
    with pytest.raises(VerificationUnavailable, match="has no usable signing keys"):
        await jwt_verifier(server)(sign())


async def test_a_network_error_raises(autojump_clock: trio.testing.MockClock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        verifier = JWTVerifier(issuer=ISSUER, audience=AUDIENCE, jwks_uri=JWKS_URL, http_client=client)
        with pytest.raises(VerificationUnavailable, match="ConnectError"):
            await verifier(sign(exp=2**40))


async def test_cached_keys_survive_a_failed_refetch(
    server: FakeAuthorizationServer, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    caplog.set_level(logging.INFO, logger="trio_mcp_sse")
    verifier = jwt_verifier(server)
    known = sign()
    rotated = sign(RSA_KEY_2, kid="rsa-2")
    assert await verifier(known) is not None
    await trio.sleep(301)  # the keys are stale now
    server.jwks_mode = "500"
    assert await verifier(known) is not None  # the refetch fails: the stale key still serves
    assert server.fetches() == 2
    warned = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warned == [f"JWKS refresh failed: {JWKS_URL} answered HTTP 500; still serving the cached keys"]
    with pytest.raises(VerificationUnavailable, match="could not be fetched"):
        await verifier(rotated)  # needs the fetch that just failed: no new attempt yet
    assert await verifier(known) is not None
    assert server.fetches() == 2
    await trio.sleep(3)
    with pytest.raises(VerificationUnavailable, match="HTTP 500"):
        await verifier(rotated)
    assert server.fetches() == 3
    assert await verifier(known) is not None  # within the backoff: served without a fetch
    assert server.fetches() == 3
    server.jwks_mode = "ok"
    server.jwks["keys"].append(public_jwk(RSA_KEY_2, "rsa-2"))
    await trio.sleep(3)
    assert await verifier(rotated) is not None
    assert server.fetches() == 4
    assert len([record for record in caplog.records if record.levelno == logging.WARNING]) == 2


# -- metadata discovery ------------------------------------------------------------------------------------
AS_METADATA = "https://auth.example.com/.well-known/oauth-authorization-server/tenants/acme"
OIDC_INSERTED = "https://auth.example.com/.well-known/openid-configuration/tenants/acme"
OIDC_APPENDED = "https://auth.example.com/tenants/acme/.well-known/openid-configuration"


async def test_jwks_uri_is_discovered_by_rfc8414_path_insertion_and_cached(
    server: FakeAuthorizationServer, autojump_clock: trio.testing.MockClock
) -> None:
    server.documents[AS_METADATA] = {"issuer": TENANT, "jwks_uri": JWKS_URL}
    verifier = jwt_verifier(server, issuer=TENANT, jwks_uri=None)
    access = await verifier(sign(iss=TENANT))
    assert access is not None and access.issuer == TENANT
    assert server.urls() == [AS_METADATA, JWKS_URL]
    await trio.sleep(301)
    assert await verifier(sign(iss=TENANT)) is not None
    assert server.urls() == [AS_METADATA, JWKS_URL, JWKS_URL]


async def test_a_root_issuer_discovers_at_the_root_well_known_paths(server: FakeAuthorizationServer) -> None:
    server.documents["https://auth.example.com/.well-known/openid-configuration"] = {
        "issuer": ISSUER,
        "jwks_uri": JWKS_URL,
    }
    verifier = jwt_verifier(server, jwks_uri=None)
    assert await verifier(sign()) is not None
    assert server.urls() == [
        "https://auth.example.com/.well-known/oauth-authorization-server",
        "https://auth.example.com/.well-known/openid-configuration",
        JWKS_URL,
    ]


async def test_a_metadata_document_for_another_issuer_is_not_used(server: FakeAuthorizationServer) -> None:
    server.documents[AS_METADATA] = {"issuer": "https://evil.example.com", "jwks_uri": "https://evil.example.com/jwks"}
    server.documents[OIDC_APPENDED] = {"issuer": TENANT, "jwks_uri": JWKS_URL}
    verifier = jwt_verifier(server, issuer=TENANT, jwks_uri=None)
    assert await verifier(sign(iss=TENANT)) is not None
    assert server.urls() == [AS_METADATA, OIDC_INSERTED, OIDC_APPENDED, JWKS_URL]


async def test_discovery_raises_when_no_document_is_about_the_issuer(server: FakeAuthorizationServer) -> None:
    for url in (AS_METADATA, OIDC_INSERTED, OIDC_APPENDED):
        server.documents[url] = {"issuer": TENANT + "/", "jwks_uri": "https://evil.example.com/jwks"}
    verifier = jwt_verifier(server, issuer=TENANT, jwks_uri=None)
    with pytest.raises(VerificationUnavailable, match="describes another issuer"):
        await verifier(sign(iss=TENANT))
    assert server.urls() == [AS_METADATA, OIDC_INSERTED, OIDC_APPENDED]


async def test_a_discovered_plain_http_jwks_uri_is_refused(server: FakeAuthorizationServer) -> None:
    server.documents[AS_METADATA] = {"issuer": TENANT, "jwks_uri": "http://auth.example.com/jwks"}
    verifier = jwt_verifier(server, issuer=TENANT, jwks_uri=None)
    with pytest.raises(VerificationUnavailable, match="must be https"):
        await verifier(sign(iss=TENANT))
    assert "http://auth.example.com/jwks" not in server.urls()


# -- configuration ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"issuer": "http://auth.example.com"}, id="http-issuer"),
        pytest.param({"jwks_uri": "http://auth.example.com/jwks"}, id="http-jwks-uri"),
        pytest.param({"issuer": "https://user:pw@auth.example.com"}, id="credentials-in-issuer"),
        pytest.param({"issuer": "https://auth.example.com?tenant=a"}, id="query-in-issuer"),
        pytest.param({"issuer": "auth.example.com"}, id="relative-issuer"),
        pytest.param({"algorithms": ["RS256", "HS256"]}, id="hs256"),
        pytest.param({"algorithms": ["none"]}, id="none"),
        pytest.param({"algorithms": ["RS1"]}, id="unknown-algorithm"),
        pytest.param({"algorithms": []}, id="no-algorithm"),
        pytest.param({"audience": []}, id="no-audience"),
        pytest.param({"leeway": -1}, id="negative-leeway"),
        pytest.param({"fetch_timeout": 0}, id="zero-fetch-timeout"),
    ],
)
def test_unsafe_configuration_is_a_value_error(options: dict[str, Any]) -> None:
    settings: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE}
    settings.update(options)
    with pytest.raises(ValueError):  # noqa: PT011 -- each case has its own message
        JWTVerifier(**settings)


@pytest.mark.parametrize("issuer", ["http://localhost:9000", "http://127.0.0.1:9000/tenant", "http://[::1]:9000"])
def test_loopback_issuers_may_be_plain_http(issuer: str) -> None:
    assert repr(JWTVerifier(issuer=issuer, audience=AUDIENCE)) == f"JWTVerifier(issuer={issuer!r}, audience=({AUDIENCE!r},))"


def test_the_default_algorithms_are_asymmetric_only() -> None:
    assert set(DEFAULT_ALGORITHMS) == {
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
    }  # fmt: skip


def test_auth_settings_oauth_builds_a_jwt_verifier() -> None:
    settings = AuthSettings.oauth(issuer=ISSUER, audience=AUDIENCE, jwt={"leeway": 5, "token_types": ["at+jwt"]})
    assert isinstance(settings.verify_token, JWTVerifier)
    assert settings.protected_resource is not None and settings.protected_resource.resource == AUDIENCE


async def test_a_default_client_is_created_per_fetch_and_closed(
    monkeypatch: pytest.MonkeyPatch, server: FakeAuthorizationServer
) -> None:
    created: list[httpx.AsyncClient] = []
    real = httpx.AsyncClient

    def make(**options: Any) -> httpx.AsyncClient:
        assert options == {"timeout": 3.0, "follow_redirects": False}
        client = real(transport=httpx.MockTransport(server.handle), **options)
        created.append(client)
        return client

    monkeypatch.setattr(httpx, "AsyncClient", make)
    verifier = JWTVerifier(issuer=ISSUER, audience=AUDIENCE, jwks_uri=JWKS_URL)
    verifier._now = lambda: float(NOW)
    assert await verifier(sign()) is not None
    assert len(created) == 1 and created[0].is_closed


async def test_redirects_are_not_followed(server: FakeAuthorizationServer) -> None:
    async def redirecting(request: httpx.Request) -> httpx.Response:
        server.requests.append(request)
        if str(request.url) == JWKS_URL:
            return httpx.Response(302, headers={"location": "https://evil.example.com/jwks"})
        return await server.handle(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(redirecting), follow_redirects=True) as client:
        verifier = JWTVerifier(issuer=ISSUER, audience=AUDIENCE, jwks_uri=JWKS_URL, http_client=client)
        with pytest.raises(VerificationUnavailable, match="HTTP 302"):
            await verifier(sign())
    assert server.urls() == [JWKS_URL]


# -- introspection -----------------------------------------------------------------------------------------
def introspection(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "active": True,
        "sub": "alice",
        "client_id": "client-1",
        "scope": "notes:read notes:write",
        "aud": AUDIENCE,
        "iss": ISSUER,
        "exp": NOW + 600,
        "token_type": "Bearer",
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not DROP}


class FakeIntrospection:
    """Answers ``answers[token]`` (default: inactive) at INTROSPECT_URL."""

    def __init__(self) -> None:
        self.answers: dict[str, Any] = {}
        self.mode = "ok"
        self.requests: list[httpx.Request] = []
        self.forms: list[dict[str, list[str]]] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = await request.aread()
        form = parse_qs(body.decode())
        self.forms.append(form)
        if self.mode == "hang":
            await trio.sleep_forever()
        if self.mode == "500":
            return httpx.Response(500, text="internal error")
        if self.mode == "html":
            return httpx.Response(200, text="<html>sign in</html>")
        if self.mode == "list":
            return httpx.Response(200, json=[{"active": True}])
        return httpx.Response(200, json=self.answers.get(form["token"][0], {"active": False}))


@pytest.fixture
async def introspection_server() -> AsyncIterator[tuple[FakeIntrospection, httpx.AsyncClient]]:
    fake = FakeIntrospection()
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handle)) as client:
        yield fake, client


Introspection = tuple[FakeIntrospection, httpx.AsyncClient]


def introspector(client: httpx.AsyncClient, **options: Any) -> IntrospectionVerifier:
    options.setdefault("client_id", "resource-server")
    options.setdefault("client_secret", "s3cret")
    options.setdefault("audience", AUDIENCE)
    verifier = IntrospectionVerifier(INTROSPECT_URL, http_client=client, **options)
    verifier._now = lambda: float(NOW)
    return verifier


OPAQUE = "opaque-access-token-" + "x" * 16


async def test_an_active_token_becomes_an_access_token(introspection_server: Introspection) -> None:
    fake, client = introspection_server
    fake.answers[OPAQUE] = introspection()
    access = await introspector(client, issuer=ISSUER)(OPAQUE)
    assert access == AccessToken(
        subject="alice",
        scopes=frozenset({"notes:read", "notes:write"}),
        client_id="client-1",
        issuer=ISSUER,
        audience=(AUDIENCE,),
        expires_at=float(NOW + 600),
    )
    assert access is not None and access.claims["active"] is True
    assert fake.forms == [{"token": [OPAQUE], "token_type_hint": ["access_token"]}]


@pytest.mark.parametrize(
    ("answer", "options", "reason"),
    [
        pytest.param({"active": False}, {}, "inactive", id="inactive"),
        pytest.param(introspection(active="true"), {}, "inactive", id="active-not-exactly-true"),
        pytest.param(introspection(aud=DROP), {}, "no audience", id="aud-missing-with-require-audience"),
        pytest.param(introspection(aud="https://other.example.com/mcp"), {}, "wrong audience", id="wrong-aud"),
        pytest.param(introspection(exp=NOW - 1), {}, "expired", id="expired"),
        pytest.param(introspection(iss="https://evil.example.com"), {"issuer": ISSUER}, "wrong issuer", id="wrong-iss"),
        pytest.param(introspection(token_type="refresh_token"), {}, "wrong token type", id="refresh-token"),
        pytest.param(introspection(token_type="DPoP"), {}, "wrong token type", id="dpop-token"),
        pytest.param(introspection(sub=DROP, client_id=DROP), {}, "no subject", id="no-subject"),
    ],
)
async def test_a_refused_introspection_answer_is_none(
    introspection_server: Introspection,
    caplog: pytest.LogCaptureFixture,
    answer: dict[str, Any],
    options: dict[str, Any],
    reason: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_mcp_sse")
    fake, client = introspection_server
    fake.answers[OPAQUE] = answer
    verifier = introspector(client, **options)
    assert await verifier(OPAQUE) is None
    assert await verifier(OPAQUE) is None
    assert len(fake.requests) == 2  # a refusal is not cached
    assert refusals(caplog) == [("INFO", f"access token refused: {reason}", reason)] * 2
    assert_not_logged(caplog, OPAQUE)


async def test_an_answer_without_aud_is_accepted_when_not_required(introspection_server: Introspection) -> None:
    fake, client = introspection_server
    fake.answers[OPAQUE] = introspection(aud=DROP, iss=DROP, token_type=DROP, exp=DROP)
    access = await introspector(client, require_audience=False)(OPAQUE)
    assert access == AccessToken(
        subject="alice", scopes=frozenset({"notes:read", "notes:write"}), client_id="client-1"
    )


async def test_trailing_slash_and_list_audiences_are_accepted(introspection_server: Introspection) -> None:
    fake, client = introspection_server
    fake.answers["a" * 20] = introspection(aud=AUDIENCE + "/")
    fake.answers["b" * 20] = introspection(aud=["https://other.example.com", AUDIENCE], token_type="access_token")
    verifier = introspector(client)
    first, second = await verifier("a" * 20), await verifier("b" * 20)
    assert first is not None and first.audience == (AUDIENCE + "/",)
    assert second is not None and second.audience == ("https://other.example.com", AUDIENCE)


@pytest.mark.parametrize(
    ("mode", "message"),
    [("500", "answered HTTP 500"), ("html", "did not answer JSON"), ("list", "did not answer a JSON object")],
)
async def test_a_failing_introspection_endpoint_raises(
    introspection_server: Introspection, caplog: pytest.LogCaptureFixture, mode: str, message: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_mcp_sse")
    fake, client = introspection_server
    fake.mode = mode
    with pytest.raises(VerificationUnavailable, match=message) as raised:
        await introspector(client)(OPAQUE)
    assert OPAQUE not in str(raised.value) and "s3cret" not in str(raised.value)
    warned = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warned) == 1 and INTROSPECT_URL in warned[0].getMessage()
    assert_not_logged(caplog, OPAQUE)
    assert "s3cret" not in caplog.text


async def test_a_hanging_introspection_endpoint_raises_within_timeout(
    introspection_server: Introspection, autojump_clock: trio.testing.MockClock
) -> None:
    fake, client = introspection_server
    fake.mode = "hang"
    with pytest.raises(VerificationUnavailable, match="timed out after 2s"):
        await introspector(client, timeout=2.0)(OPAQUE)
    assert trio.current_time() == pytest.approx(2.0)


async def test_client_secret_basic_on_the_wire(introspection_server: Introspection) -> None:
    fake, client = introspection_server
    fake.answers[OPAQUE] = introspection()
    verifier = introspector(client, client_id="my client", client_secret="p@ss:w/rd+")
    assert await verifier(OPAQUE) is not None
    (request,) = fake.requests
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    expected = base64.b64encode(b"my%20client:p%40ss%3Aw%2Frd%2B").decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert fake.forms == [{"token": [OPAQUE], "token_type_hint": ["access_token"]}]
    assert "p@ss:w/rd+" not in repr(verifier) and "Basic" not in repr(verifier)


async def test_client_secret_post_on_the_wire(introspection_server: Introspection) -> None:
    fake, client = introspection_server
    fake.answers[OPAQUE] = introspection()
    verifier = introspector(client, auth_method="client_secret_post")
    assert await verifier(OPAQUE) is not None
    (request,) = fake.requests
    assert "authorization" not in request.headers
    assert fake.forms == [
        {
            "token": [OPAQUE],
            "token_type_hint": ["access_token"],
            "client_id": ["resource-server"],
            "client_secret": ["s3cret"],
        }
    ]


async def test_a_cache_hit_avoids_a_second_post(
    introspection_server: Introspection, autojump_clock: trio.testing.MockClock
) -> None:
    fake, client = introspection_server
    fake.answers[OPAQUE] = introspection()
    verifier = introspector(client, cache_ttl=30)
    first = await verifier(OPAQUE)
    await trio.sleep(29)
    assert await verifier(OPAQUE) == first
    assert len(fake.requests) == 1
    await trio.sleep(2)
    assert await verifier(OPAQUE) == first
    assert len(fake.requests) == 2


async def test_the_cache_never_outlives_exp(
    introspection_server: Introspection, autojump_clock: trio.testing.MockClock
) -> None:
    fake, client = introspection_server
    fake.answers[OPAQUE] = introspection(exp=NOW + 10)
    verifier = introspector(client, cache_ttl=30)
    assert await verifier(OPAQUE) is not None
    await trio.sleep(9)
    assert await verifier(OPAQUE) is not None
    assert len(fake.requests) == 1
    await trio.sleep(2)  # trio time past the token's exp: the entry is gone
    assert await verifier(OPAQUE) is not None  # (the fake AS's clock is ours: NOW)
    assert len(fake.requests) == 2
    verifier._now = lambda: float(NOW + 11)  # and by the wall clock, without waiting
    assert await verifier(OPAQUE) is None
    assert len(fake.requests) == 3
    assert verifier._cache == {}


async def test_the_cache_is_a_bounded_lru_keyed_by_the_tokens_hash(introspection_server: Introspection) -> None:
    fake, client = introspection_server
    tokens = [f"token-{index}-{secrets.token_urlsafe(16)}" for index in range(3)]
    for token in tokens:
        fake.answers[token] = introspection()
    verifier = introspector(client, max_cache=2)
    for token in tokens:
        assert await verifier(token) is not None
    assert list(verifier._cache) == [hashlib.sha256(token.encode()).digest() for token in tokens[1:]]
    assert await verifier(tokens[1]) is not None  # a hit, moved to the end
    assert await verifier(tokens[0]) is not None  # a miss: evicts tokens[2]
    assert len(fake.requests) == 4
    assert list(verifier._cache) == [hashlib.sha256(token.encode()).digest() for token in (tokens[1], tokens[0])]
    assert list(reachable_strings(verifier))  # the walk does reach the verifier's state
    for token in tokens:
        assert not holds(verifier, token)


async def test_introspection_urls_must_be_https_except_loopback() -> None:
    with pytest.raises(ValueError, match="must be https"):
        IntrospectionVerifier("http://auth.example.com/introspect", client_id="c", client_secret="s", audience=AUDIENCE)
    with pytest.raises(ValueError, match="must not carry credentials"):
        IntrospectionVerifier("https://c:s@auth.example.com/i", client_id="c", client_secret="s", audience=AUDIENCE)
    loopback = IntrospectionVerifier("http://127.0.0.1:9000/introspect", client_id="c", client_secret="s", audience=AUDIENCE)
    assert repr(loopback) == "IntrospectionVerifier('http://127.0.0.1:9000/introspect', client_id='c')"
