"""Smoke tests of the tests' authorization server (tests/oauth_as.py), driven with raw httpx.

The server is only worth having if it is a conformant, independent
implementation, so these tests check the wire behaviour other tests will rely
on -- RFC 8414 metadata, the authorization-code flow with PKCE S256 and RFC
9207 ``iss``, RFC 8707 ``resource`` binding into ``aud``, refresh rotation,
client credentials, RFC 7662 introspection, RFC 9068 tokens verified with
PyJWT against the JWKS -- and that each test control does what it says.  No
project code is involved.  Real processes and clock, each test bounded.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest
import trio

from tests.oauth_as import (
    RS_CLIENT_ID,
    RS_CLIENT_SECRET,
    PreRegisteredClient,
    RunningAuthorizationServer,
    authorization_server,
    authorize_headless,
)

pytestmark = pytest.mark.e2e

RESOURCE = "http://127.0.0.1:9/mcp"  # an absolute URI; the AS never contacts it
REDIRECT_URI = "http://127.0.0.1:9/callback"
SERVICE = PreRegisteredClient("svc", "svc-secret")  # confidential, client_credentials only


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


async def register_public_client(http: httpx.AsyncClient, server: RunningAuthorizationServer) -> str:
    response = await http.post(
        server.url("/register"),
        json={
            "client_name": "smoke test",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "application_type": "native",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert "client_secret" not in body
    assert body["token_endpoint_auth_method"] == "none"
    assert body["application_type"] == "native"
    assert body["redirect_uris"] == [REDIRECT_URI]
    return str(body["client_id"])


def authorization_url(server: RunningAuthorizationServer, client_id: str, challenge: str | None, **params: str | None) -> str:
    query: dict[str, str | None] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "notes:read offline_access",
        "state": "state-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": RESOURCE,
        **params,
    }
    return server.url("/authorize") + "?" + urlencode({k: v for k, v in query.items() if v is not None})


async def redeem(
    http: httpx.AsyncClient, server: RunningAuthorizationServer, client_id: str, code: str, verifier: str, **params: str | None
) -> httpx.Response:
    form: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": client_id,
        "code_verifier": verifier,
        "resource": RESOURCE,
        **params,
    }
    return await http.post(server.url("/token"), data={k: v for k, v in form.items() if v is not None})


async def verified_claims(
    http: httpx.AsyncClient, server: RunningAuthorizationServer, token: str, *, audience: str = RESOURCE
) -> dict[str, Any]:
    """Check the token's signature against the JWKS (by kid) with PyJWT, return its claims."""
    jwks = (await http.get(server.url("/jwks"))).json()
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    keys = {key.key_id: key for key in jwt.PyJWKSet.from_dict(jwks).keys}
    claims: dict[str, Any] = jwt.decode(
        token, keys[header["kid"]].key, algorithms=["RS256"], audience=audience, issuer=server.issuer
    )
    return claims


def oauth_error(response: httpx.Response) -> str:
    assert response.status_code in (400, 401), response.text
    return str(response.json()["error"])


async def test_metadata_and_authorization_code_flow() -> None:
    with trio.fail_after(30):
        async with authorization_server() as server, httpx.AsyncClient() as http:
            # RFC 8414, and the same document at the OpenID location.
            metadata = (await http.get(server.url("/.well-known/oauth-authorization-server"))).json()
            assert (await http.get(server.url("/.well-known/openid-configuration"))).json() == metadata
            assert metadata["issuer"] == server.issuer
            assert not server.issuer.endswith("/")
            for name, path in [
                ("authorization_endpoint", "/authorize"),
                ("token_endpoint", "/token"),
                ("registration_endpoint", "/register"),
                ("introspection_endpoint", "/introspect"),
                ("jwks_uri", "/jwks"),
            ]:
                assert metadata[name] == server.url(path)
            assert metadata["response_types_supported"] == ["code"]
            assert metadata["grant_types_supported"] == ["authorization_code", "refresh_token", "client_credentials"]
            assert metadata["code_challenge_methods_supported"] == ["S256"]
            assert metadata["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post", "none"]
            assert metadata["scopes_supported"] == ["notes:read", "notes:write", "offline_access"]
            assert metadata["authorization_response_iss_parameter_supported"] is True

            client_id = await register_public_client(http, server)
            verifier, challenge = pkce()
            redirect = await authorize_headless(authorization_url(server, client_id, challenge))
            assert redirect["state"] == "state-1"
            assert redirect["iss"] == server.issuer  # RFC 9207
            assert "error" not in redirect

            response = await redeem(http, server, client_id, redirect["code"], verifier)
            assert response.status_code == 200, response.text
            assert response.headers["cache-control"] == "no-store"
            tokens = response.json()
            assert tokens["token_type"] == "Bearer"
            assert tokens["expires_in"] == 300
            assert tokens["scope"] == "notes:read offline_access"
            assert tokens["refresh_token"]
            claims = await verified_claims(http, server, tokens["access_token"])
            assert claims["iss"] == server.issuer
            assert claims["sub"] == "alice"
            assert claims["aud"] == RESOURCE
            assert claims["scope"] == "notes:read offline_access"
            assert claims["client_id"] == client_id
            assert claims["jti"]
            assert claims["exp"] - claims["iat"] == 300
            assert abs(claims["iat"] - time.time()) < 30

            # A code is good once.
            reused = await redeem(http, server, client_id, redirect["code"], verifier)
            assert oauth_error(reused) == "invalid_grant"

            # login_hint picks the user.
            verifier_b, challenge_b = pkce()
            redirect_b = await authorize_headless(authorization_url(server, client_id, challenge_b, login_hint="bob"))
            bob = (await redeem(http, server, client_id, redirect_b["code"], verifier_b)).json()
            assert (await verified_claims(http, server, bob["access_token"]))["sub"] == "bob"

            # Refresh rotates: a new refresh token, the old one refused.
            refreshed = await http.post(
                server.url("/token"),
                data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id},
            )
            assert refreshed.status_code == 200, refreshed.text
            new_tokens = refreshed.json()
            assert new_tokens["refresh_token"] != tokens["refresh_token"]
            new_claims = await verified_claims(http, server, new_tokens["access_token"])
            assert (new_claims["sub"], new_claims["aud"], new_claims["scope"]) == ("alice", RESOURCE, "notes:read offline_access")
            again = await http.post(
                server.url("/token"),
                data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id},
            )
            assert oauth_error(again) == "invalid_grant"
            other_resource = await http.post(
                server.url("/token"),
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": new_tokens["refresh_token"],
                    "client_id": client_id,
                    "resource": "http://127.0.0.1:9/other",
                },
            )
            assert oauth_error(other_resource) == "invalid_target"

            # The request log shows what the client sent, never its secrets.
            log = await server.requests()
            authorize = next(entry for entry in log if entry["path"] == "/authorize")
            assert authorize["query"]["resource"] == RESOURCE
            assert authorize["query"]["code_challenge_method"] == "S256"
            assert authorize["status"] == 302
            token_requests = [entry for entry in log if entry["path"] == "/token"]
            assert token_requests[0]["form"]["code_verifier"] == "***"
            assert token_requests[0]["form"]["resource"] == RESOURCE
            assert token_requests[0]["authorization"] is None
            assert any(entry["form"].get("refresh_token") == "***" for entry in token_requests)
            assert verifier not in str(log)
            assert tokens["refresh_token"] not in str(log)
            assert tokens["refresh_token"] not in server.text()


async def test_resource_pkce_and_consent_are_enforced() -> None:
    with trio.fail_after(30):
        async with authorization_server() as server, httpx.AsyncClient() as http:
            client_id = await register_public_client(http, server)
            verifier, challenge = pkce()

            # Authorization request errors go back to the (verified) redirect URI, with iss.
            for params, error in [
                ({"resource": None}, "invalid_target"),
                ({"resource": "http://127.0.0.1:9/mcp#fragment"}, "invalid_target"),
                ({"resource": "/relative"}, "invalid_target"),
                ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
                ({"code_challenge_method": "plain"}, "invalid_request"),
                ({"code_challenge_method": None}, "invalid_request"),  # defaults to plain
                ({"scope": "notes:admin"}, "invalid_scope"),
            ]:
                redirect = await authorize_headless(authorization_url(server, client_id, challenge, **params))
                assert redirect.get("error") == error, (params, redirect)
                assert "code" not in redirect
                assert redirect["state"] == "state-1"
                assert redirect["iss"] == server.issuer

            # An unregistered redirect URI is never redirected to (exact match only).
            for uri in ("http://127.0.0.1:9/callback/other", "http://127.0.0.1:10/callback"):
                response = await http.get(authorization_url(server, client_id, challenge, redirect_uri=uri))
                assert response.status_code == 400
                assert "location" not in response.headers

            # Token request: resource required and equal to the authorization's; PKCE checked.
            redirect = await authorize_headless(authorization_url(server, client_id, challenge))
            code = redirect["code"]
            assert oauth_error(await redeem(http, server, client_id, code, verifier, resource=None)) == "invalid_target"
            assert (
                oauth_error(await redeem(http, server, client_id, code, verifier, resource="http://127.0.0.1:9/other"))
                == "invalid_target"
            )
            assert oauth_error(await redeem(http, server, client_id, code, pkce()[0])) == "invalid_grant"
            assert oauth_error(await redeem(http, server, client_id, code, verifier, code_verifier=None)) == "invalid_request"
            assert (
                oauth_error(await redeem(http, server, client_id, code, verifier, redirect_uri="http://127.0.0.1:9/x"))
                == "invalid_grant"
            )
            # Failed attempts do not use the code up; the right request still works.
            assert (await redeem(http, server, client_id, code, verifier)).status_code == 200

            # /_test/deny: the user says no.
            await server.deny(True)
            denied = await authorize_headless(authorization_url(server, client_id, challenge))
            assert denied["error"] == "access_denied"
            assert denied["state"] == "state-1"
            assert denied["iss"] == server.issuer
            assert "code" not in denied
            await server.deny(False)
            assert "code" in await authorize_headless(authorization_url(server, client_id, challenge))


async def test_client_credentials_and_introspection() -> None:
    with trio.fail_after(30):
        async with authorization_server(clients=[SERVICE], scopes=["notes:read", "notes:write"]) as server, httpx.AsyncClient() as http:
            token_url = server.url("/token")
            response = await http.post(
                token_url,
                data={"grant_type": "client_credentials", "resource": RESOURCE, "scope": "notes:read"},
                auth=(SERVICE.client_id, SERVICE.client_secret),
            )
            assert response.status_code == 200, response.text
            tokens = response.json()
            assert "refresh_token" not in tokens
            claims = await verified_claims(http, server, tokens["access_token"])
            assert (claims["sub"], claims["client_id"], claims["aud"], claims["scope"]) == ("svc", "svc", RESOURCE, "notes:read")

            missing = await http.post(
                token_url, data={"grant_type": "client_credentials"}, auth=(SERVICE.client_id, SERVICE.client_secret)
            )
            assert oauth_error(missing) == "invalid_target"
            wrong_secret = await http.post(
                token_url, data={"grant_type": "client_credentials", "resource": RESOURCE}, auth=(SERVICE.client_id, "nope")
            )
            assert wrong_secret.status_code == 401
            assert oauth_error(wrong_secret) == "invalid_client"

            # A dynamically registered confidential client (client_secret_post).
            registered = await http.post(
                server.url("/register"),
                json={"token_endpoint_auth_method": "client_secret_post", "grant_types": ["client_credentials"], "response_types": []},
            )
            assert registered.status_code == 201, registered.text
            info = registered.json()
            assert info["client_secret"]
            assert "application_type" not in info  # only echoed when sent
            post = await http.post(
                token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": info["client_id"],
                    "client_secret": info["client_secret"],
                    "resource": "urn:example:resource",
                },
            )
            assert post.status_code == 200, post.text
            assert jwt.decode(post.json()["access_token"], options={"verify_signature": False})["aud"] == "urn:example:resource"

            # RFC 7662 for the resource-server client.
            async def introspect(token: str, auth: tuple[str, str] = (RS_CLIENT_ID, RS_CLIENT_SECRET)) -> httpx.Response:
                return await http.post(server.url("/introspect"), data={"token": token}, auth=auth)

            live = (await introspect(tokens["access_token"])).json()
            assert live["active"] is True
            assert (live["aud"], live["sub"], live["client_id"], live["scope"]) == (RESOURCE, "svc", "svc", "notes:read")
            assert (live["iss"], live["exp"], live["iat"]) == (server.issuer, claims["exp"], claims["iat"])
            assert live["token_type"] == "Bearer"
            assert (await introspect("not-a-token")).json() == {"active": False}
            # Only resource-server clients may look; others learn nothing.
            assert (await introspect(tokens["access_token"], (SERVICE.client_id, SERVICE.client_secret))).json() == {
                "active": False
            }
            assert (await introspect(tokens["access_token"], (RS_CLIENT_ID, "wrong"))).status_code == 401
            await server.revoke(tokens["access_token"])
            assert (await introspect(tokens["access_token"])).json() == {"active": False}


async def test_keys_mint_and_hanging_jwks() -> None:
    with trio.fail_after(30):
        async with authorization_server(clients=[SERVICE], access_token_ttl=60) as server, httpx.AsyncClient() as http:

            async def kids() -> list[str]:
                return [key["kid"] for key in (await http.get(server.url("/jwks"))).json()["keys"]]

            async def service_token() -> str:
                response = await http.post(
                    server.url("/token"),
                    data={"grant_type": "client_credentials", "resource": RESOURCE},
                    auth=(SERVICE.client_id, SERVICE.client_secret),
                )
                assert response.status_code == 200, response.text
                assert response.json()["expires_in"] == 60
                return str(response.json()["access_token"])

            jwks = (await http.get(server.url("/jwks"))).json()
            assert [(key["kty"], key["alg"], key["use"]) for key in jwks["keys"]] == [("RSA", "RS256", "sig")]
            assert all("d" not in key for key in jwks["keys"])  # public keys only
            [first] = await kids()
            assert jwt.get_unverified_header(await service_token())["kid"] == first

            second = await server.rotate_keys(keep_old=True)
            assert second != first
            assert await kids() == [first, second]
            token = await service_token()
            assert jwt.get_unverified_header(token)["kid"] == second
            await verified_claims(http, server, token)
            third = await server.rotate_keys(keep_old=False)
            assert await kids() == [third]

            # Minted tokens: given claims over the defaults, header overrides, current key.
            past = int(time.time()) - 3600
            minted = await server.mint({"sub": "mallory", "aud": "http://127.0.0.1:9/elsewhere", "exp": past})
            assert jwt.get_unverified_header(minted) == {"alg": "RS256", "typ": "at+jwt", "kid": third}
            with pytest.raises(jwt.ExpiredSignatureError):
                await verified_claims(http, server, minted, audience="http://127.0.0.1:9/elsewhere")
            unverified = jwt.decode(minted, options={"verify_signature": False})
            assert (unverified["sub"], unverified["exp"], unverified["iss"]) == ("mallory", past, server.issuer)
            assert {"iat", "jti", "scope", "client_id"} <= unverified.keys()
            fresh = await server.mint({"scope": "notes:write"}, kid="unknown-kid", typ="JWT")
            assert jwt.get_unverified_header(fresh) == {"alg": "RS256", "typ": "JWT", "kid": "unknown-kid"}
            assert jwt.decode(fresh, options={"verify_signature": False})["scope"] == "notes:write"
            unsigned = await server.mint({}, alg="none")
            assert unsigned.endswith(".")
            no_exp = await server.mint({"exp": None})
            assert "exp" not in jwt.decode(no_exp, options={"verify_signature": False})
            introspected = await http.post(server.url("/introspect"), data={"token": minted}, auth=(RS_CLIENT_ID, RS_CLIENT_SECRET))
            assert introspected.json() == {"active": False}  # expired

            # hang-jwks: GET /jwks never answers, the rest of the server does.
            await server.hang_jwks(True)
            with pytest.raises(httpx.ReadTimeout):
                await http.get(server.url("/jwks"), timeout=0.5)
            await service_token()
            await server.hang_jwks(False)
            assert await kids() == [third]
