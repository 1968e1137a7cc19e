"""Admission as a decision table: request-head facts in, an answer or an admission out; the table does no I/O.

Theory of operation
-------------------
Every endpoint of every transport admits a request the same way: a fixed,
ordered list of *rules* runs over the request head (method, headers, query),
and the first rule that objects decides the answer.  The order is the
documented status table (``docs/security.md``); it lives in exactly one place,
the tuple of rules an endpoint declares::

    POST_MESSAGE = Intake(
        allow_methods(b"POST", cors=cors), declared_body_within(limit),
        host_allowed(security), origin_allowed(security, cors), authenticate(auth),
        content_type_json(), session_id_in_query(),
    )

A rule is a plain function ``RequestHead -> Answer | None``.  A new transport
reuses the shared rules and adds its own rows (``Accept`` -> 406, a bad
``MCP-Protocol-Version`` -> 400, a missing or malformed ``Mcp-Session-Id`` ->
400) by writing such functions and placing them in its tuple: it never
re-implements Host/Origin/auth/body-limit checks.  What depends on more than
the head (an unknown session, 409 for a second stream of a session) is decided
after the table, by the registry or the session.  Every answer is an
:class:`~trio_mcp_sse._http.Outcome`, so the status code still comes from the
one table in ``_http.py``.

Token verification is the only step that needs I/O (the application's
verifier).  :meth:`Intake.decide` stays pure by stopping there: it returns
:class:`VerifyToken`; the caller verifies (bounded, see
:func:`trio_mcp_sse._auth.verify_bearer`) and calls ``decide`` again with the
verdict (:func:`settle` does both; the rows before authentication are pure and cheap, so they simply run
again and pass again; the table continues after the authentication row).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Final

from ._auth import (
    AUTH_UNAVAILABLE,
    UNCHECKED,
    AccessToken,
    AuthSettings,
    TokenVerdict,
    verify_bearer,
)
from ._cors import CorsSettings
from ._http import Outcome, RawHeaders, Scope, Send, send_outcome
from ._logs import log_refusal
from ._metrics import Metrics
from ._security import SecuritySettings
from ._session import is_session_id

__all__ = [
    "Admit",
    "Answer",
    "Authenticate",
    "Decision",
    "Intake",
    "RequestHead",
    "Rule",
    "VerifyToken",
    "allow_methods",
    "authenticate",
    "content_type_json",
    "declared_body_within",
    "host_allowed",
    "origin_allowed",
    "send_answer",
    "session_id_in_query",
    "settle",
]

_NO_HEADERS: Final[RawHeaders] = ()


class RequestHead:
    """The facts of a request head that admission looks at, decoded on first use."""

    __slots__ = ("_headers", "_params", "_raw", "method", "query", "scope", "server_host")

    def __init__(self, method: str, raw_headers: RawHeaders, query: bytes = b"", server_host: str | None = None) -> None:
        self.method = method
        self.query = query
        self.server_host = server_host
        self.scope: Scope | None = None
        """The ASGI scope the head came from, if any (refusal logs name its path and peer)."""
        self._headers: dict[bytes, bytes] | None = None
        self._params: dict[bytes, bytes] | None = None
        self._raw = raw_headers

    @classmethod
    def from_scope(cls, scope: Scope) -> RequestHead:
        server = scope.get("server")
        head = cls(scope["method"], scope["headers"], scope.get("query_string", b""), server[0] if server else None)
        head.scope = scope
        return head

    def header(self, name: bytes) -> str | None:
        """First value of a header (``name`` lower-case), decoded as latin-1."""
        headers = self._headers
        if headers is None:
            # Built in C, first value winning; only the values asked for are decoded.
            headers = self._headers = dict(reversed(self._raw))
        value = headers.get(name)
        return None if value is None else value.decode("latin-1")

    def query_param(self, name: bytes) -> str | None:
        """First value of a query parameter, undecoded beyond latin-1 (session ids need no more)."""
        params = self._params
        if params is None:
            params = {}
            for pair in self.query.split(b"&"):
                key, _, raw = pair.partition(b"=")
                params.setdefault(key, raw)
            self._params = params
        value = params.get(name)
        return None if value is None else value.decode("latin-1")


@dataclass(frozen=True, slots=True)
class Answer:
    """End the request here with ``outcome`` (a refusal, or a preflight's 204)."""

    outcome: Outcome
    headers: RawHeaders = _NO_HEADERS
    allow: bytes = b""
    """The ``Allow`` value of a 405."""


@dataclass(frozen=True, slots=True)
class VerifyToken:
    """Verify this bearer token, then call :meth:`Intake.decide` again with the verdict."""

    token: str


@dataclass(frozen=True, slots=True)
class Admit:
    """Every rule passed; ``token`` is what the request's access token says (``None``: anonymous)."""

    token: AccessToken | None = None

    @property
    def principal(self) -> str | None:
        """Who is asking: the token's subject (``None``: anonymous)."""
        return None if self.token is None else self.token.subject


Decision = Answer | VerifyToken | Admit
_ANONYMOUS: Final = Admit(None)


Rule = Callable[[RequestHead], Answer | None]


@dataclass(frozen=True, slots=True)
class Authenticate:
    """The authentication row: where the principal is decided (see :func:`authenticate`).

    ``endpoint`` is the path of the endpoint the row guards, relative to the
    mount point: the challenges name that endpoint's metadata document.
    """

    auth: AuthSettings | None
    endpoint: str = ""

    def challenge(self, head: RequestHead, error: str | None, scopes: Collection[str] | None = None) -> RawHeaders:
        assert self.auth is not None
        value = self.auth.challenge(error, scope=head.scope, endpoint=self.endpoint, scopes=scopes)
        return ((b"www-authenticate", value),)

    def decide(self, head: RequestHead, verdict: TokenVerdict) -> Answer | VerifyToken | Admit:
        auth = self.auth
        if auth is None:
            return _ANONYMOUS
        credentials = head.header(b"authorization")
        if credentials is None:
            if auth.required:
                return Answer(Outcome.UNAUTHORIZED, self.challenge(head, None))
            return _ANONYMOUS
        scheme, _, token = credentials.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return Answer(Outcome.INVALID_TOKEN, self.challenge(head, "invalid_request"))
        if verdict is UNCHECKED:
            return VerifyToken(token)
        if verdict is AUTH_UNAVAILABLE:
            return Answer(Outcome.AUTH_UNAVAILABLE)
        if verdict is None:
            return Answer(Outcome.INVALID_TOKEN, self.challenge(head, "invalid_token"))
        assert isinstance(verdict, AccessToken)
        granted = auth.granted(verdict)
        if granted != verdict.scopes:  # scopes the hierarchy implies count as granted, everywhere after
            verdict = dataclasses.replace(verdict, scopes=granted)
        if auth.missing(verdict, auth.required_scopes):
            return Answer(
                Outcome.INSUFFICIENT_SCOPE, self.challenge(head, "insufficient_scope", auth.required_scopes)
            )
        return Admit(verdict)

    def refuse_message(self, head: RequestHead, token: AccessToken | None, message: Any) -> Answer | None:
        """``403 insufficient_scope`` for a message the token is not enough for (after the table, once
        the body is parsed: the scopes a message needs depend on what it asks, e.g. which tool).

        The challenge lists every scope the operation needs, so one step-up is enough.
        """
        auth = self.auth
        if auth is None or auth.scopes_for is None:
            return None
        needed = auth.needed_for(message)
        if not auth.missing(token, needed):
            return None
        if token is None:  # anonymous (``required=False``): authenticate first
            return Answer(Outcome.UNAUTHORIZED, self.challenge(head, None, needed))
        return Answer(Outcome.INSUFFICIENT_SCOPE, self.challenge(head, "insufficient_scope", needed))


class Intake:
    """One endpoint's admission table: rules in the order their answers take precedence."""

    __slots__ = ("_after", "_auth", "_before", "rules")

    def __init__(self, *rules: Rule | Authenticate) -> None:
        rows = [index for index, rule in enumerate(rules) if isinstance(rule, Authenticate)]
        if len(rows) > 1:
            raise ValueError("an intake table has at most one authentication row")
        self.rules = rules
        # Split once at the authentication row, so deciding is two plain loops.
        at = rows[0] if rows else len(rules)
        self._before: tuple[Rule, ...] = rules[:at]  # type: ignore[assignment]
        auth = rules[at] if rows else None
        self._auth = auth if isinstance(auth, Authenticate) and auth.auth is not None else None
        self._after: tuple[Rule, ...] = rules[at + 1 :]  # type: ignore[assignment]

    @property
    def authentication(self) -> Authenticate | None:
        """The authentication row, when authentication is configured."""
        return self._auth

    def refuse_message(self, head: RequestHead, admitted: Admit, message: Any) -> Answer | None:
        """The scope check of one parsed message (see :meth:`Authenticate.refuse_message`)."""
        if self._auth is None:
            return None
        return self._auth.refuse_message(head, admitted.token, message)

    def decide(self, head: RequestHead, verdict: TokenVerdict = UNCHECKED) -> Decision:
        """Run the rules in order: the first answer wins; a token to verify pauses the table."""
        for rule in self._before:
            answer = rule(head)
            if answer is not None:
                return answer
        admitted = _ANONYMOUS
        if self._auth is not None:
            decided = self._auth.decide(head, verdict)
            if not isinstance(decided, Admit):
                return decided
            admitted = decided
        for rule in self._after:
            answer = rule(head)
            if answer is not None:
                return answer
        return admitted


# -- the shared rows ------------------------------------------------------------------------------
def allow_methods(*methods: bytes, cors: CorsSettings | None = None) -> Rule:
    """The method row: any other method gets 405 with ``Allow`` listing these.

    ``OPTIONS`` is a CORS preflight when ``cors`` is configured: 204 for an
    allowed origin, 403 for another (without CORS, or without an Origin, 405).
    """
    names = frozenset(method.decode("ascii") for method in methods)
    allow = b", ".join(methods)
    not_allowed = Answer(Outcome.METHOD_NOT_ALLOWED, allow=allow)

    def rule(head: RequestHead) -> Answer | None:
        if head.method in names:
            return None
        if head.method != "OPTIONS" or cors is None:
            return not_allowed
        origin = head.header(b"origin")
        if origin is None:
            return not_allowed
        if not cors.allows(origin):
            return Answer(Outcome.FORBIDDEN_ORIGIN)
        return Answer(Outcome.PREFLIGHT, cors.preflight_headers(origin))

    return rule


def declared_body_within(limit: int) -> Rule:
    """A ``Content-Length`` over ``limit``: 413 before a byte is read (streamed bodies are counted while read)."""

    def rule(head: RequestHead) -> Answer | None:
        declared = head.header(b"content-length")
        # isascii first: "²" is a str.isdigit() digit that int() refuses.
        if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
            return Answer(Outcome.BODY_TOO_LARGE)
        return None

    return rule


def host_allowed(security: SecuritySettings) -> Rule:
    """DNS-rebinding protection, part one: a ``Host`` not allowed gets 421."""

    def rule(head: RequestHead) -> Answer | None:
        if security.host_allowed(head.header(b"host"), head.server_host):
            return None
        return Answer(Outcome.MISDIRECTED_HOST)

    return rule


def origin_allowed(security: SecuritySettings, cors: CorsSettings | None) -> Rule:
    """DNS-rebinding protection, part two: an ``Origin`` present and not allowed (nor a CORS origin) gets 403."""

    def rule(head: RequestHead) -> Answer | None:
        origin = head.header(b"origin")
        if origin is None or security.origin_allowed(origin, head.header(b"host"), head.server_host):
            return None
        if cors is not None and cors.allows(origin):
            return None
        return Answer(Outcome.FORBIDDEN_ORIGIN)

    return rule


def authenticate(auth: AuthSettings | None, endpoint: str = "") -> Authenticate:
    """The bearer-token row: 401 without a required token or with a malformed/rejected one, 503 if the
    verifier failed, 403 if the token lacks ``required_scopes``; otherwise the access token.
    ``None`` settings: everyone is anonymous.  ``endpoint``: the guarded endpoint's path (challenges
    name its metadata document)."""
    return Authenticate(auth, endpoint)


def content_type_json() -> Rule:
    """A body that does not declare ``application/json`` (parameters allowed): 415."""

    def rule(head: RequestHead) -> Answer | None:
        content_type = head.header(b"content-type")
        if content_type is not None and content_type.partition(";")[0].strip().lower() == "application/json":
            return None
        return Answer(Outcome.UNSUPPORTED_MEDIA_TYPE)

    return rule


def session_id_in_query(name: bytes = b"session_id") -> Rule:
    """The session id query parameter missing or not a session id (:func:`~trio_mcp_sse._session.is_session_id`): 400."""

    def rule(head: RequestHead) -> Answer | None:
        session_id = head.query_param(name)
        if session_id is None or not is_session_id(session_id):
            return Answer(Outcome.MISSING_SESSION_ID)
        return None

    return rule


# -- the two awaits around the table ------------------------------------------------------------------
async def settle(intake: Intake, head: RequestHead, decision: Answer | VerifyToken, auth: AuthSettings | None) -> Answer | Admit:
    """Finish a decision that was not an admission: verify the token it asks for and decide again."""
    if isinstance(decision, Answer):
        return decision
    assert auth is not None  # only an authentication row asks for a token
    settled = intake.decide(head, await verify_bearer(auth, decision.token))
    assert not isinstance(settled, VerifyToken)
    return settled


async def send_answer(
    send: Send,
    answer: Answer,
    *,
    metrics: Metrics,
    cors_headers: RawHeaders = _NO_HEADERS,
    detail: str | None = None,
    jsonrpc_code: int | None = None,
    scope: Scope | None = None,
) -> None:
    """Answer with ``answer``'s outcome; a refusal is counted in ``mcp_rejections_total`` and,
    given the request's ``scope``, logged (one rate-limited line, see ``_logs.log_refusal``).

    ``jsonrpc_code``: the body is a JSON-RPC error with that code (see :func:`send_outcome`)."""
    if answer.outcome is Outcome.PREFLIGHT:
        await send_outcome(send, answer.outcome, extra_headers=answer.headers)
        return
    metrics.rejections[answer.outcome.label] += 1
    if scope is not None:
        log_refusal(scope, answer.outcome)
    await send_outcome(
        send,
        answer.outcome,
        allow=answer.allow,
        detail=detail,
        extra_headers=(*answer.headers, *cors_headers),
        jsonrpc_code=jsonrpc_code,
    )
