"""What checking an access token costs a request: ``JWTVerifier`` with and without remembering.

``python -m benchmarks.token_verify [--verifications N]``

Every HTTP request to a protected server carries its bearer token and is
verified: a JWT's signature against the issuer's key set, then its claims.  A
client sends the same token with every request, so the verifier remembers a
token that verified (``verified_ttl``); this measures one verification of a
fresh token (``verified_ttl=0``) against a remembered one, for RS256 and ES256
tokens, in the same run.  The key set is served in memory (``httpx.MockTransport``):
what is measured is the verification, not a fetch.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import httpx
import jwt
import trio
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from trio_mcp_sse import JWTVerifier

ISSUER = "https://auth.example.com"
AUDIENCE = "https://mcp.example.com"


def key_pair(alg: str) -> tuple[Any, dict[str, Any]]:
    private: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048) if alg == "RS256" else ec.generate_private_key(ec.SECP256R1())
    )
    public = jwt.algorithms.get_default_algorithms()[alg].to_jwk(private.public_key(), as_dict=True)
    public.update(kid="k1", alg=alg, use="sig")
    return private, public


async def per_verification(alg: str, verified_ttl: float, count: int) -> float:
    private, public = key_pair(alg)
    keys = httpx.MockTransport(lambda request: httpx.Response(200, json={"keys": [public]}))
    async with httpx.AsyncClient(transport=keys) as client:
        verifier = JWTVerifier(
            issuer=ISSUER, audience=AUDIENCE, jwks_uri=f"{ISSUER}/jwks", http_client=client, verified_ttl=verified_ttl
        )
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 3600, "scope": "a b"}
        token = jwt.encode(claims, private, algorithm=alg, headers={"kid": "k1"})
        assert await verifier(token) is not None  # the key set is fetched here, outside the timing
        started = time.perf_counter()
        for _ in range(count):
            await verifier(token)
        return (time.perf_counter() - started) / count


async def main(count: int) -> None:
    print(f"{'algorithm':<10} {'checked every time':>20} {'remembered':>12} {'ratio':>8}")
    for alg in ("RS256", "ES256"):
        fresh = await per_verification(alg, 0.0, count)
        remembered = await per_verification(alg, 60.0, count)
        print(f"{alg:<10} {fresh * 1e6:>17.1f} us {remembered * 1e6:>9.1f} us {remembered / fresh:>8.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.token_verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("--verifications", type=int, default=5000)
    trio.run(main, parser.parse_args().verifications)
