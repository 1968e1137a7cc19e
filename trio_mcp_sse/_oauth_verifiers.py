"""Access-token verifiers for an OAuth 2.1 resource server: JWTs against a JWKS, and RFC 7662 introspection.

An MCP server that accepts OAuth access tokens must check each one (OAuth 2.1
section 5.2), including that it was issued *for this server* (RFC 8707: the
audience), and answer ``401`` for a bad one.  Both verifiers here follow the
:data:`~trio_mcp_sse._auth.TokenVerifier` contract, which splits failures in
two on purpose:

* the token is not good (expired, tampered, for another resource, malformed):
  return ``None``, and the client gets ``401`` and re-authorizes;
* the verifier cannot tell right now (the JWKS, metadata or introspection
  endpoint is down, hanging or answering garbage): raise, and the client gets
  ``503`` and retries.  Answering ``401`` there would send every client of a
  healthy authorization server through a new authorization flow because of a
  network blip.

Neither ever writes a token into a log line, an exception message or a repr:
a refusal is logged with its reason only (``extra={"event":
"token_refused", "reason": ...}``), a fetch failure with the URL fetched, and
the introspection cache is keyed by the token's SHA-256, never the token.

All network I/O goes through :class:`httpx.AsyncClient` (which runs on Trio
through anyio), never following redirects and always bounded by a Trio
deadline, so a hanging endpoint costs one timeout, not a stuck request.
PyJWT does the parsing and the cryptography; its ``PyJWKClient`` is not used
(it fetches with blocking ``urllib``).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote, urlsplit

import httpx
import jwt
import trio
from jwt.types import Options

from ._access_token import AccessToken, VerificationUnavailable

__all__ = ["IntrospectionVerifier", "JWTVerifier"]

log = logging.getLogger("trio_mcp_sse")

DEFAULT_ALGORITHMS: Final[tuple[str, ...]] = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
"""Asymmetric signature algorithms only: a resource server holds no shared secret with the
authorization server, and accepting ``HS*`` next to public keys is the classic
algorithm-confusion hole (the public key used as the HMAC secret)."""

# Which JWKs may verify which algorithm: (kty, crv), crv None meaning "any/none".  Checked
# before PyJWT sees the key, so a token can never choose how a key is interpreted.
_KEY_FIT: Final[Mapping[str, frozenset[tuple[str, str | None]]]] = {
    "RS256": frozenset({("RSA", None)}),
    "RS384": frozenset({("RSA", None)}),
    "RS512": frozenset({("RSA", None)}),
    "PS256": frozenset({("RSA", None)}),
    "PS384": frozenset({("RSA", None)}),
    "PS512": frozenset({("RSA", None)}),
    "ES256": frozenset({("EC", "P-256")}),
    "ES384": frozenset({("EC", "P-384")}),
    "ES512": frozenset({("EC", "P-521")}),
    "ES256K": frozenset({("EC", "secp256k1")}),
    "EdDSA": frozenset({("OKP", "Ed25519"), ("OKP", "Ed448")}),
}

# Only these JWK members reach PyJWT: a JWKS that (wrongly) publishes private parameters
# must not make us hold a private key, and certificate chains / URLs are never followed.
_PUBLIC_MEMBERS: Final = frozenset({"kty", "kid", "use", "alg", "key_ops", "crv", "n", "e", "x", "y"})

_MAX_BODY: Final = 1024 * 1024
"""Largest JWKS / metadata / introspection response read (bytes)."""
_MAX_KEYS: Final = 100
"""JWKS entries considered: a real set has a handful; more is a misconfiguration or an attack on our CPU."""
_MAX_CANDIDATES: Final = 5
"""Keys tried for one token when several fit (no ``kid``): each try is a signature check."""
_MIN_RSA_BITS: Final = 2048
_FAILURE_BACKOFF: Final = 2.0
"""Seconds after a failed JWKS fetch during which no new fetch is tried (capped at ``refresh_interval``)."""
_MAX_OPAQUE_TOKEN: Final = 16 * 1024
"""Longest token sent to an introspection endpoint; longer ones are refused without asking."""

_COMPACT_JWS: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_PRINTABLE: Final = re.compile(r"[\x21-\x7e]+")
_MAX_AGE: Final = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d{1,10})\"?", re.IGNORECASE)

# Signature and the header/payload structure are PyJWT's; time, issuer and audience are ours
# (an injectable wall clock, and the trailing-slash tolerance on audiences).
_DECODE_OPTIONS: Final[Options] = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": True,
    "verify_jti": True,
    "enforce_minimum_key_length": True,
}

_ACCESS_TOKEN_TYPES: Final = frozenset({"bearer", "access_token", "urn:ietf:params:oauth:token-type:access_token"})


# -- helpers ---------------------------------------------------------------------------------------
def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(name: str, url: str) -> None:
    """An https URL (http only to a loopback host, for development), without credentials or fragment.

    Plain http would let anyone on the path substitute their own keys or say
    "active" about any token.  Credentials in the URL are refused because URLs
    are logged.
    """
    if not isinstance(url, str):
        raise TypeError(f"{name} must be a URL string")
    parts = urlsplit(url)
    host = parts.hostname
    _ = parts.port  # raises ValueError for a malformed port
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"{name} must be an absolute https URL, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{name} must not carry credentials")
    if parts.fragment or "#" in url:
        raise ValueError(f"{name} must not have a fragment: {url!r}")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ValueError(f"{name} must be https (http only for a loopback host), got {url!r}")


def _audience_tuple(name: str, audience: str | Sequence[str]) -> tuple[str, ...]:
    audiences = (audience,) if isinstance(audience, str) else tuple(audience)
    if not audiences:
        raise ValueError(f"{name} must name this server's resource identifier")
    for entry in audiences:
        if not isinstance(entry, str) or not entry:
            raise ValueError(f"{name}: every audience must be a non-empty string")
    return audiences


def _same_resource(a: str, b: str) -> bool:
    """Exact equality, except that one trailing ``/`` difference is tolerated.

    RFC 8707 resource identifiers are compared as strings, but clients and
    libraries disagree on whether ``https://host`` and ``https://host/`` are
    the same (URL parsers add the slash to an empty path; humans leave it off
    when configuring).  Tolerating just that difference keeps real
    deployments working without letting ``https://host/other`` match
    ``https://host``.
    """
    return a == b or a + "/" == b or b + "/" == a


def _audience_matches(token_audiences: Sequence[str], ours: Sequence[str]) -> bool:
    return any(_same_resource(theirs, mine) for theirs in token_audiences for mine in ours)


def _audiences(value: Any) -> tuple[str, ...] | None:
    """``aud`` as a tuple (a string or a list of strings), ``None`` when malformed."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(entry, str) for entry in value):
        return tuple(value)
    return None


def _timestamp(value: Any) -> float | None:
    """A NumericDate (POSIX seconds) as a float, ``None`` when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value) if abs(value) < 2**53 else None
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _scopes(claims: Mapping[str, Any]) -> frozenset[str] | None:
    """Scopes from ``scope`` (RFC 9068/7662: a space-separated string) or ``scp`` (a list, or a string).

    A list under either name is accepted (several servers issue one); any
    other type makes the token malformed (``None``) rather than silently
    scope-less, so a misconfigured server shows up in the logs.
    """
    if "scope" in claims:
        value = claims["scope"]
    elif "scp" in claims:
        value = claims["scp"]
    else:
        return frozenset()
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(entry, str) for entry in value):
        return frozenset(part for entry in value for part in entry.split())
    return None


def _media_type(value: str) -> str:
    """A ``typ`` compared the way RFC 7515 section 4.1.9 says: case-insensitive, ``application/`` implied."""
    lowered = value.strip().lower()
    return lowered.removeprefix("application/")


def _refused(reason: str) -> None:
    log.info("access token refused: %s", reason, extra={"event": "token_refused", "reason": reason})


async def _read_limited(response: httpx.Response, url: str) -> bytes:
    """The body, refused past ``_MAX_BODY`` (by its Content-Length before reading, else as it arrives).

    Stopping a chunked body early leaves httpx's inner async generators
    unexhausted, which Trio reports as a ``ResourceWarning`` (off by default);
    that is the price of not downloading the rest.
    """
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > _MAX_BODY:
        raise VerificationUnavailable(f"{url} answered a body over {_MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > _MAX_BODY:
            raise VerificationUnavailable(f"{url} answered a body over {_MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(body: bytes, url: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise VerificationUnavailable(f"{url} did not answer JSON") from None


@asynccontextmanager
async def _http_client(given: httpx.AsyncClient | None, request_timeout: float) -> AsyncIterator[httpx.AsyncClient]:
    """The application's client (never closed here), or a fresh one for this one exchange."""
    if given is not None:
        yield given
        return
    async with httpx.AsyncClient(timeout=request_timeout, follow_redirects=False) as client:
        yield client


async def _get_json(client: httpx.AsyncClient, url: str, accept: str) -> tuple[httpx.Headers, Any]:
    try:
        async with client.stream("GET", url, headers={"accept": accept}, follow_redirects=False) as response:
            if response.status_code != 200:
                raise VerificationUnavailable(f"{url} answered HTTP {response.status_code}")
            body = await _read_limited(response, url)
            headers = response.headers
    except httpx.HTTPError as error:
        raise VerificationUnavailable(f"fetching {url} failed: {type(error).__name__}: {error}") from None
    return headers, _parse_json(body, url)


def _metadata_urls(issuer: str) -> tuple[str, ...]:
    """Where an issuer's metadata may live, in the order the MCP specification tries them.

    RFC 8414 inserts the well-known suffix between the host and the issuer's
    path (``https://as/.well-known/oauth-authorization-server/tenant``); OpenID
    Connect Discovery has the same insertion form and its original appended
    form (``https://as/tenant/.well-known/openid-configuration``).
    """
    parts = urlsplit(issuer)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    return tuple(
        dict.fromkeys(
            (
                f"{origin}/.well-known/oauth-authorization-server{path}",
                f"{origin}/.well-known/openid-configuration{path}",
                f"{issuer.rstrip('/')}/.well-known/openid-configuration",
            )
        )
    )


@dataclass(frozen=True, slots=True)
class _Key:
    """One usable JWKS entry, already bound to each configured algorithm it may verify."""

    kid: str | None
    by_alg: Mapping[str, jwt.PyJWK]


@dataclass(frozen=True, slots=True)
class _Lookup:
    known: bool
    """The kid is in the cache (for a token without kid: some cached key fits its algorithm)."""
    keys: list[jwt.PyJWK]
    """The cached keys that may verify the token."""


# -- JWT ---------------------------------------------------------------------------------------------
class JWTVerifier:
    """Verify JWT access tokens (RFC 9068 style) signed by ``issuer`` for ``audience``.

    A token is accepted only when all of this holds: it is a compact JWS of at
    most ``max_token_size`` bytes; its header ``alg`` is one of ``algorithms``
    (asymmetric only) and, with ``token_types``, its ``typ`` is one of them
    (``at+jwt`` for RFC 9068 tokens); its signature verifies with a key of the
    issuer's JWKS that fits that algorithm; ``iss`` is ``issuer`` exactly;
    ``aud`` names one of ``audience``; ``exp`` is present and not past, and
    ``nbf`` / ``iat`` (when present) are not in the future, each give or take
    ``leeway`` seconds of clock skew; and it names a subject (``sub``, or
    ``client_id`` for a client acting for itself).

    Keys come from ``jwks_uri``, or from the issuer's metadata (RFC 8414 or
    OpenID Connect Discovery) when it is not given.  Header parameters that
    point at keys (``jku``, ``x5u``, ``jwk``, ``x5c``) are ignored: letting a
    token say where its key is lets anyone sign tokens.

    The JWKS is cached for ``cache_ttl`` seconds (or the response's
    ``Cache-Control: max-age``, clamped to 60..3600).  See
    :meth:`_candidate_keys` for how an unknown ``kid`` and a failing endpoint
    are handled.  ``fetch_timeout`` bounds each refresh (discovery included),
    below ``AuthSettings.timeout`` by default so a failure is recorded (and the
    cached keys keep serving) rather than cut short by the transport.
    ``http_client``: an application's client to fetch with (never closed
    here); by default a short-lived one per fetch.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str | Sequence[str],
        jwks_uri: str | None = None,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        leeway: float = 30.0,
        token_types: Collection[str] | None = None,
        cache_ttl: float = 300.0,
        refresh_interval: float = 30.0,
        fetch_timeout: float = 3.0,
        max_token_size: int = 16 * 1024,
        http_client: httpx.AsyncClient | None = None,
        verified_ttl: float = 60.0,
        verified_max: int = 10_000,
    ) -> None:
        _check_url("issuer", issuer)
        if urlsplit(issuer).query:
            raise ValueError("issuer must not have a query (RFC 8414 section 2)")
        if jwks_uri is not None:
            _check_url("jwks_uri", jwks_uri)
        if isinstance(algorithms, str):
            raise TypeError("algorithms must be a list of algorithm names, not one string")
        chosen = tuple(dict.fromkeys(algorithms))
        if not chosen:
            raise ValueError("algorithms must name at least one algorithm")
        for alg in chosen:
            if not isinstance(alg, str):
                raise TypeError("algorithms must be strings")
            if alg.upper().startswith("HS") or alg.lower() == "none":
                raise ValueError(
                    f"algorithm {alg!r} is refused: a resource server verifies with public keys only "
                    "(symmetric or unsigned tokens invite algorithm confusion)"
                )
            if alg not in _KEY_FIT:
                raise ValueError(f"unsupported algorithm {alg!r}; choose from {sorted(_KEY_FIT)}")
        types: frozenset[str] | None = None
        if token_types is not None:
            if isinstance(token_types, str):
                raise TypeError("token_types must be a collection of types, not one string")
            types = frozenset(_media_type(entry) for entry in token_types)
            if not types:
                raise ValueError("token_types must name at least one type (or be None)")
        for name, value in (("leeway", leeway), ("refresh_interval", refresh_interval)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be >= 0")
        for name, value in (("cache_ttl", cache_ttl), ("fetch_timeout", fetch_timeout)):
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be > 0")
        if max_token_size <= 0:
            raise ValueError("max_token_size must be > 0")
        if not math.isfinite(verified_ttl) or verified_ttl < 0 or verified_max < 0:
            raise ValueError("verified_ttl and verified_max must be >= 0")

        self._issuer = issuer
        self._audiences = _audience_tuple("audience", audience)
        self._jwks_uri = jwks_uri
        self._algorithms = chosen
        self._leeway = float(leeway)
        self._token_types = types
        self._cache_ttl = float(cache_ttl)
        self._refresh_interval = float(refresh_interval)
        self._fetch_timeout = float(fetch_timeout)
        self._max_token_size = max_token_size
        self._http_client = http_client
        self._now: Callable[[], float] = time.time
        """The wall clock that ``exp``/``nbf``/``iat`` are compared with (tests replace it)."""

        self._lock = trio.Lock()
        self._by_kid: dict[str, list[_Key]] = {}
        self._keys: list[_Key] = []
        self._fetched_at: float | None = None  # trio time of the last successful fetch
        self._fresh_until = -math.inf  # trio time
        self._failed_at: float | None = None  # trio time of the last failed fetch, since the last success
        self._verified_ttl = float(verified_ttl)
        self._verified_max = verified_max
        self._verified: OrderedDict[bytes, tuple[AccessToken, float]] = OrderedDict()
        """Tokens that verified recently: sha256 of the token -> (result, trio time it is good until)."""

    def __repr__(self) -> str:
        return f"JWTVerifier(issuer={self._issuer!r}, audience={self._audiences!r})"

    async def __call__(self, token: str) -> AccessToken | None:
        """Verify ``token``; one that verified within ``verified_ttl`` seconds is not verified again.

        A client sends the same token with every request, and checking a JWT
        costs about 150 us (PyJWT's parsing more than the signature), which
        would be a third of a tool call's server time.  A remembered token is
        keyed by its SHA-256 (never kept itself), still refused once past
        ``exp``, and remembered at most ``verified_ttl`` seconds, so a key
        withdrawn from the JWKS stops being honoured within that time.
        """
        digest = b""
        if self._verified_max and self._verified_ttl > 0 and isinstance(token, str):
            digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
            remembered = self._verified.get(digest)
            if remembered is not None:
                result, until = remembered
                if trio.current_time() < until and not result.expired(self._now(), self._leeway):
                    self._verified.move_to_end(digest)
                    return result
                del self._verified[digest]
        verdict = await self._verify(token)
        if isinstance(verdict, str):
            _refused(verdict)
            return None
        if digest:
            self._verified[digest] = (verdict, trio.current_time() + self._verified_ttl)
            while len(self._verified) > self._verified_max:
                self._verified.popitem(last=False)
        return verdict

    async def _verify(self, token: str) -> AccessToken | str:
        """The access token, or why it is refused; raises :class:`VerificationUnavailable`."""
        if not isinstance(token, str) or len(token) > self._max_token_size:
            return "too large"
        # Shape first, so nothing of a hostile string is parsed beyond three base64url parts.
        if not _COMPACT_JWS.fullmatch(token):
            return "malformed"
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            return "malformed"
        except jwt.PyJWTError:
            return "unsupported header"  # an unknown "crit" extension, a non-string kid
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            return "algorithm not allowed"
        if self._token_types is not None:
            typ = header.get("typ")
            if not isinstance(typ, str) or _media_type(typ) not in self._token_types:
                return "wrong token type"
        kid = header.get("kid")
        lookup = await self._candidate_keys(kid if isinstance(kid, str) else None, alg)
        if not lookup.keys:
            return "key does not fit the algorithm" if lookup.known else "unknown signing key"
        claims: Any = None
        for key in lookup.keys:
            try:
                claims = jwt.decode(token, key=key, algorithms=[alg], options=_DECODE_OPTIONS)
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidAlgorithmError:
                return "key does not fit the algorithm"
            except jwt.InvalidKeyError:
                return "unusable key"
            except jwt.DecodeError:
                return "malformed"
            except jwt.PyJWTError:
                return "malformed claims"  # a non-string sub or jti
            break
        if claims is None:
            return "bad signature"
        if not isinstance(claims, dict):
            return "malformed"
        return self._check_claims(claims)

    def _check_claims(self, claims: dict[str, Any]) -> AccessToken | str:
        now = self._now()
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or issuer != self._issuer:
            return "wrong issuer"
        audience = _audiences(claims.get("aud"))
        if audience is None:
            return "wrong audience" if "aud" not in claims else "malformed audience"
        if not _audience_matches(audience, self._audiences):
            return "wrong audience"
        if "exp" not in claims:
            return "no expiry"
        expires = _timestamp(claims["exp"])
        if expires is None:
            return "malformed expiry"
        if now >= expires + self._leeway:
            return "expired"
        if "nbf" in claims:
            not_before = _timestamp(claims["nbf"])
            if not_before is None:
                return "malformed nbf"
            if not_before > now + self._leeway:
                return "not yet valid"
        if "iat" in claims:
            issued = _timestamp(claims["iat"])
            if issued is None:
                return "malformed iat"
            if issued > now + self._leeway:
                return "issued in the future"
        scopes = _scopes(claims)
        if scopes is None:
            return "malformed scope"
        client_id = _string(claims.get("client_id")) or _string(claims.get("azp"))
        subject = _string(claims.get("sub")) or client_id
        if subject is None:
            return "no subject"
        return AccessToken(
            subject=subject,
            scopes=scopes,
            client_id=client_id,
            issuer=issuer,
            audience=audience,
            expires_at=expires,
            claims=claims,
        )

    # -- keys ----------------------------------------------------------------------------------------
    def _lookup(self, kid: str | None, alg: str) -> _Lookup:
        if kid is not None:
            entries = self._by_kid.get(kid, [])
            keys = [entry.by_alg[alg] for entry in entries if alg in entry.by_alg]
            return _Lookup(bool(entries), keys[:_MAX_CANDIDATES])
        # No kid: the keys that fit, those published without a kid first (the issuer meant them).
        fitting = sorted(
            (entry for entry in self._keys if alg in entry.by_alg), key=lambda entry: entry.kid is not None
        )
        keys = [entry.by_alg[alg] for entry in fitting[:_MAX_CANDIDATES]]
        return _Lookup(bool(keys), keys)

    def _answer_from_cache(self, lookup: _Lookup, now: float) -> _Lookup | None:
        """The cache's answer when no fetch is due, else ``None``."""
        if self._fetched_at is None:
            return None  # never fetched
        if lookup.known and now < self._fresh_until:
            return lookup
        if not lookup.known and now - self._fetched_at < self._refresh_interval:
            # Just fetched and still unknown: a fetch now would say the same, and anyone can
            # mint tokens with random kids; refusing bounds what they cost the issuer.
            return lookup
        return None

    async def _candidate_keys(self, kid: str | None, alg: str) -> _Lookup:
        """The cached keys for a token, fetching the JWKS when it is stale or the kid is new.

        * A ``kid`` not in the cache is how key rotation shows up, so it
          triggers a refetch, but at most one per ``refresh_interval`` after a
          successful fetch: anyone can send tokens with made-up kids, and each
          must not become a request to the authorization server.  A rotated
          key is normally published well before it signs anything, so the
          limit costs nothing in practice.
        * When a fetch fails the cached keys stay: tokens signed by a known
          key keep working through an authorization-server outage (stale keys
          beat an outage; a revoked key is gone at the next successful fetch),
          and a token that needed the fetch raises, so its client gets
          ``503`` and retries rather than re-authorizing.  After a failure no
          new fetch is tried for a couple of seconds, so a dead endpoint is
          not hammered (and the failure is logged once per attempt).
        * Concurrent callers share one fetch through a lock; one that gets
          the lock re-checks the cache first.  While a fetch of a stale cache
          is in flight, a token whose key is cached does not wait for it.
        """
        lookup = self._lookup(kid, alg)
        answer = self._answer_from_cache(lookup, trio.current_time())
        if answer is not None:
            return answer
        if lookup.known and lookup.keys and self._lock.locked():
            return lookup  # stale, and someone is refreshing: do not queue behind a slow endpoint
        async with self._lock:
            lookup = self._lookup(kid, alg)
            now = trio.current_time()
            answer = self._answer_from_cache(lookup, now)
            if answer is not None:
                return answer
            backoff = min(self._refresh_interval, _FAILURE_BACKOFF)
            if self._failed_at is not None and now - self._failed_at < backoff:
                if lookup.known:
                    return lookup
                raise VerificationUnavailable(
                    f"the JWKS of {self._issuer} could not be fetched {now - self._failed_at:.1f}s ago"
                )
            try:
                await self._refresh()
            except VerificationUnavailable as error:
                self._failed_at = trio.current_time()
                log.warning(
                    "JWKS refresh failed: %s%s",
                    error,
                    "; still serving the cached keys" if self._keys else "",
                    extra={"event": "jwks_fetch_failed", "url": self._jwks_uri or self._issuer},
                )
                if lookup.known:
                    return lookup
                raise
            return self._lookup(kid, alg)

    async def _refresh(self) -> None:
        """Fetch the JWKS (finding its URL in the issuer's metadata first if need be); replace the cache.

        The whole refresh, discovery included, shares one ``fetch_timeout``
        deadline, so it fails (and is recorded as failed) before the
        transport's own verification timeout cuts it short.
        """
        target = self._jwks_uri or self._issuer
        try:
            with trio.fail_after(self._fetch_timeout):
                async with _http_client(self._http_client, self._fetch_timeout) as client:
                    if self._jwks_uri is None:
                        self._jwks_uri = await self._discover(client)
                    target = self._jwks_uri
                    headers, document = await _get_json(
                        client, self._jwks_uri, "application/jwk-set+json, application/json"
                    )
        except trio.TooSlowError:
            raise VerificationUnavailable(f"fetching {target} timed out after {self._fetch_timeout:g}s") from None
        except VerificationUnavailable:
            raise
        except Exception as error:  # anything else the client raises is still "cannot tell now"
            raise VerificationUnavailable(f"fetching {target} failed: {type(error).__name__}") from None
        keys = self._load_jwks(document, target)
        by_kid: dict[str, list[_Key]] = {}
        for key in keys:
            if key.kid is not None:
                by_kid.setdefault(key.kid, []).append(key)
        now = trio.current_time()
        self._keys = keys
        self._by_kid = by_kid
        self._fetched_at = now
        self._fresh_until = now + self._ttl(headers)
        self._failed_at = None

    def _ttl(self, headers: httpx.Headers) -> float:
        """``Cache-Control: max-age`` clamped to a minute..an hour (a server's whim never means a fetch per
        request nor keys kept for days), else ``cache_ttl``."""
        control = headers.get("cache-control")
        if control:
            found = _MAX_AGE.search(control)
            if found is not None:
                return float(min(max(int(found.group(1)), 60), 3600))
        return self._cache_ttl

    async def _discover(self, client: httpx.AsyncClient) -> str:
        """The ``jwks_uri`` from the first metadata document that is about our issuer.

        A document whose ``issuer`` is not ours exactly is not used (RFC 8414
        section 3.3): otherwise whoever controls one of those paths could name
        the keys our tokens are checked with.
        """
        problems: list[str] = []
        for url in _metadata_urls(self._issuer):
            try:
                _, document = await _get_json(client, url, "application/json")
            except VerificationUnavailable as error:
                problems.append(str(error))
                continue
            if not isinstance(document, dict):
                problems.append(f"{url} is not a metadata document")
                continue
            if document.get("issuer") != self._issuer:
                problems.append(f"{url} describes another issuer")
                continue
            jwks_uri = document.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                problems.append(f"{url} names no jwks_uri")
                continue
            try:
                _check_url("jwks_uri", jwks_uri)
            except ValueError as error:
                problems.append(f"{url}: {error}")
                continue
            return jwks_uri
        raise VerificationUnavailable(f"no usable metadata for issuer {self._issuer}: " + "; ".join(problems))

    def _load_jwks(self, document: Any, url: str) -> list[_Key]:
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise VerificationUnavailable(f"{url} did not answer a JWK Set")
        keys = [key for entry in document["keys"][:_MAX_KEYS] if (key := self._usable_key(entry)) is not None]
        if not keys:
            raise VerificationUnavailable(f"{url} has no usable signing keys")
        return keys

    def _usable_key(self, entry: Any) -> _Key | None:
        """A JWKS entry bound to the configured algorithms it fits, or ``None`` to ignore it.

        Ignored: keys for encryption (``use`` other than ``sig``, ``key_ops``
        without ``verify``), symmetric keys, keys PyJWT cannot load and RSA
        keys under 2048 bits.  A key's own ``alg``, when present, is the only
        algorithm it verifies.
        """
        if not isinstance(entry, dict):
            return None
        use = entry.get("use")
        if use is not None and use != "sig":
            return None
        operations = entry.get("key_ops")
        if operations is not None and (not isinstance(operations, list) or "verify" not in operations):
            return None
        kid = entry.get("kid")
        declared = entry.get("alg")
        if (kid is not None and not isinstance(kid, str)) or (declared is not None and not isinstance(declared, str)):
            return None
        public = {name: value for name, value in entry.items() if name in _PUBLIC_MEMBERS}
        kty, crv = public.get("kty"), public.get("crv")
        by_alg: dict[str, jwt.PyJWK] = {}
        for alg in self._algorithms:
            if declared is not None and declared != alg:
                continue
            if not any(kty == fit_kty and (fit_crv is None or crv == fit_crv) for fit_kty, fit_crv in _KEY_FIT[alg]):
                continue
            try:
                key = jwt.PyJWK(public, algorithm=alg)
            except Exception:  # a JWKS entry we cannot use must never break the others
                continue
            if kty == "RSA" and getattr(key.key, "key_size", 0) < _MIN_RSA_BITS:
                continue
            by_alg[alg] = key
        return _Key(kid, by_alg) if by_alg else None


# -- introspection -----------------------------------------------------------------------------------
class IntrospectionVerifier:
    """Verify opaque access tokens by asking the authorization server (RFC 7662 token introspection).

    Each token is POSTed to ``endpoint`` with this resource server's client
    credentials (``client_secret_basic``: an ``Authorization: Basic`` header,
    or ``client_secret_post``: in the form).  The answer must say
    ``"active": true``; then ``exp`` must not be past, ``iss`` (when present
    and ``issuer`` is set) must be ``issuer``, ``aud`` must name one of
    ``audience`` (a token without ``aud`` is refused when
    ``require_audience``: otherwise a token issued for any other resource of
    the same authorization server would be accepted here), and
    ``token_type``, when given, must be a bearer access token (a ``DPoP``
    token presented without its proof, or a refresh token, is refused).

    A non-200 answer, one that is not a JSON object, a network error or no
    answer within ``timeout`` raises (``503``): the server cannot tell.

    Positive answers are cached for ``cache_ttl`` seconds, never past the
    token's ``exp``, in an LRU of ``max_cache`` entries keyed by the token's
    SHA-256 (the cache holds no token).  Negative answers are not cached:
    tokens that are refused are mostly one-offs (garbage, or expired ones a
    client is about to replace), so caching them would save little while
    letting a flood of made-up tokens evict the valid entries; and a token
    reported inactive because it was introspected a moment after issuance
    (replication lag at the authorization server) works on the next try.
    The cost: revocation shows up within ``cache_ttl``.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        client_id: str,
        client_secret: str,
        audience: str | Sequence[str],
        issuer: str | None = None,
        auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic",
        require_audience: bool = True,
        cache_ttl: float = 30.0,
        max_cache: int = 10_000,
        timeout: float = 3.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        _check_url("endpoint", endpoint)
        if not isinstance(client_id, str) or not client_id:
            raise ValueError("client_id must be a non-empty string")
        if not isinstance(client_secret, str):
            raise TypeError("client_secret must be a string")
        if auth_method not in ("client_secret_basic", "client_secret_post"):
            raise ValueError("auth_method must be 'client_secret_basic' or 'client_secret_post'")
        if not math.isfinite(cache_ttl) or cache_ttl < 0:
            raise ValueError("cache_ttl must be >= 0")
        if max_cache < 0:
            raise ValueError("max_cache must be >= 0")
        if not math.isfinite(timeout) or timeout <= 0:
            raise ValueError("timeout must be > 0")
        self._endpoint = endpoint
        self._client_id = client_id
        self._client_secret = client_secret
        self._audiences = _audience_tuple("audience", audience)
        self._issuer = issuer
        self._auth_method = auth_method
        self._require_audience = require_audience
        self._cache_ttl = float(cache_ttl)
        self._max_cache = max_cache
        self._timeout = float(timeout)
        self._http_client = http_client
        self._now: Callable[[], float] = time.time
        """The wall clock that ``exp`` is compared with (tests replace it)."""
        # sha256(token) -> (trio time the entry expires, the access token)
        self._cache: OrderedDict[bytes, tuple[float, AccessToken]] = OrderedDict()

    def __repr__(self) -> str:
        return f"IntrospectionVerifier({self._endpoint!r}, client_id={self._client_id!r})"

    def _basic_credentials(self) -> str:
        """RFC 6749 section 2.3.1: each part form-urlencoded, then ``id:secret`` in base64.

        Percent-encoding everything but the unreserved characters (spaces as
        ``%20``) decodes the same under form-decoding and plain
        percent-decoding, which servers use interchangeably.
        """
        pair = f"{quote(self._client_id, safe='')}:{quote(self._client_secret, safe='')}"
        return "Basic " + base64.b64encode(pair.encode()).decode("ascii")

    async def __call__(self, token: str) -> AccessToken | None:
        verdict = await self._verify(token)
        if isinstance(verdict, str):
            _refused(verdict)
            return None
        return verdict

    async def _verify(self, token: str) -> AccessToken | str:
        if not isinstance(token, str) or len(token) > _MAX_OPAQUE_TOKEN:
            return "too large"
        if not _PRINTABLE.fullmatch(token):
            return "malformed"
        key = hashlib.sha256(token.encode()).digest()
        cached = self._cached(key)
        if cached is not None:
            return cached
        verdict = self._judge(await self._introspect(token))
        if isinstance(verdict, AccessToken):
            self._store(key, verdict)
        return verdict

    def _cached(self, key: bytes) -> AccessToken | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        deadline, access = entry
        if trio.current_time() >= deadline or access.expired(self._now()):
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return access

    def _store(self, key: bytes, access: AccessToken) -> None:
        lifetime = self._cache_ttl
        if access.expires_at is not None:
            lifetime = min(lifetime, access.expires_at - self._now())
        if lifetime <= 0 or self._max_cache == 0:
            return
        self._cache[key] = (trio.current_time() + lifetime, access)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max_cache:
            self._cache.popitem(last=False)

    async def _introspect(self, token: str) -> Any:
        form = {"token": token, "token_type_hint": "access_token"}
        headers = {"accept": "application/json"}
        if self._auth_method == "client_secret_basic":
            headers["authorization"] = self._basic_credentials()
        else:
            form["client_id"] = self._client_id
            form["client_secret"] = self._client_secret
        url = self._endpoint
        try:
            try:
                with trio.fail_after(self._timeout):
                    async with (
                        _http_client(self._http_client, self._timeout) as client,
                        client.stream("POST", url, data=form, headers=headers, follow_redirects=False) as response,
                    ):
                        if response.status_code != 200:
                            raise VerificationUnavailable(f"{url} answered HTTP {response.status_code}")
                        body = await _read_limited(response, url)
            except trio.TooSlowError:
                raise VerificationUnavailable(f"introspection at {url} timed out after {self._timeout:g}s") from None
            except VerificationUnavailable:
                raise
            except Exception as error:  # the request carried the token: say only what kind of failure
                raise VerificationUnavailable(f"introspection at {url} failed: {type(error).__name__}") from None
            document = _parse_json(body, url)
            if not isinstance(document, dict):
                raise VerificationUnavailable(f"{url} did not answer a JSON object")
        except VerificationUnavailable as error:
            log.warning("token introspection failed: %s", error, extra={"event": "introspection_failed", "url": url})
            raise
        return document

    def _judge(self, document: dict[str, Any]) -> AccessToken | str:
        if document.get("active") is not True:
            return "inactive"
        expires: float | None = None
        if "exp" in document:
            expires = _timestamp(document["exp"])
            if expires is None:
                return "malformed expiry"
            if self._now() >= expires:
                return "expired"
        issuer = document.get("iss")
        if issuer is not None:
            if not isinstance(issuer, str):
                return "malformed issuer"
            if self._issuer is not None and issuer != self._issuer:
                return "wrong issuer"
        if "aud" in document:
            audience = _audiences(document["aud"])
            if audience is None:
                return "malformed audience"
            if not _audience_matches(audience, self._audiences):
                return "wrong audience"
        elif self._require_audience:
            return "no audience"
        else:
            audience = ()
        token_type = document.get("token_type")
        if token_type is not None and (
            not isinstance(token_type, str) or token_type.lower() not in _ACCESS_TOKEN_TYPES
        ):
            return "wrong token type"
        scopes = _scopes(document)
        if scopes is None:
            return "malformed scope"
        client_id = _string(document.get("client_id"))
        subject = _string(document.get("sub")) or client_id
        if subject is None:
            return "no subject"
        return AccessToken(
            subject=subject,
            scopes=scopes,
            client_id=client_id,
            issuer=issuer if isinstance(issuer, str) else self._issuer,
            audience=audience,
            expires_at=expires,
            claims=document,
        )
