"""The admission tables as tables: request-head facts in, a decision out, no sockets, no clock."""

from __future__ import annotations

import pytest

from trio_mcp_sse import (
    AuthSettings,
    CorsSettings,
    SecuritySettings,
    StaticTokens,
)
from trio_mcp_sse._auth import AUTH_UNAVAILABLE, AccessToken
from trio_mcp_sse._http import Outcome
from trio_mcp_sse._intake import (
    Admit,
    Answer,
    Intake,
    RequestHead,
    VerifyToken,
    allow_methods,
    authenticate,
    host_allowed,
)
from trio_mcp_sse.lowlevel import SseServerTransport

from .test_transport import echo_handler

ALICE = AccessToken("alice")

SID = "0123456789abcdef0123456789abcdef"
GOOD = {"host": "127.0.0.1:8000", "content-type": "application/json", "authorization": "Bearer t"}


def head(method: str = "POST", query: str = f"session_id={SID}", **headers: str | None) -> RequestHead:
    merged = {**GOOD, **{name.replace("_", "-"): value for name, value in headers.items()}}
    raw = [(name.encode(), value.encode()) for name, value in merged.items() if value is not None]
    return RequestHead(method, raw, query.encode(), "127.0.0.1")


def transport(**options: object) -> SseServerTransport:
    defaults: dict[str, object] = {
        "security": SecuritySettings(max_body_size=10),
        "auth": AuthSettings(verify_token=StaticTokens({"t": "alice"})),
        "cors": CorsSettings(allow_origins=["https://app.example"]),
    }
    return SseServerTransport(echo_handler, **{**defaults, **options})  # type: ignore[arg-type]


MESSAGE = transport().message_intake
CHALLENGE = (b"www-authenticate", b'Bearer realm="mcp"')

# (request head, token verdict or "unchecked", expected outcome), in the order of docs/security.md.
MESSAGE_ROWS = [
    ("PUT", {}, Answer(Outcome.METHOD_NOT_ALLOWED, allow=b"POST")),
    ("GET", {}, Answer(Outcome.METHOD_NOT_ALLOWED, allow=b"POST")),
    ("OPTIONS", {"origin": None}, Answer(Outcome.METHOD_NOT_ALLOWED, allow=b"POST")),
    ("OPTIONS", {"origin": "https://evil.example"}, Answer(Outcome.FORBIDDEN_ORIGIN)),
    ("POST", {"content_length": "11"}, Answer(Outcome.BODY_TOO_LARGE)),
    ("POST", {"content_length": "\u00b2"}, VerifyToken("t")),  # not a length: left to the body reader
    ("POST", {"host": "evil.example"}, Answer(Outcome.MISDIRECTED_HOST)),
    ("POST", {"host": None}, Answer(Outcome.MISDIRECTED_HOST)),
    ("POST", {"origin": "http://evil.example"}, Answer(Outcome.FORBIDDEN_ORIGIN)),
    ("POST", {"authorization": None}, Answer(Outcome.UNAUTHORIZED, (CHALLENGE,))),
    ("POST", {"authorization": "Basic dTpw"}, Answer(Outcome.INVALID_TOKEN, ((b"www-authenticate", b'Bearer realm="mcp", error="invalid_request"'),))),
    ("POST", {"authorization": "Bearer "}, Answer(Outcome.INVALID_TOKEN, ((b"www-authenticate", b'Bearer realm="mcp", error="invalid_request"'),))),
    ("POST", {}, VerifyToken("t")),
]


@pytest.mark.parametrize(("method", "headers", "expected"), MESSAGE_ROWS)
def test_message_intake_rows(method: str, headers: dict[str, str | None], expected: object) -> None:
    assert MESSAGE.decide(head(method, **headers)) == expected


def test_message_intake_after_verification() -> None:
    assert MESSAGE.decide(head(), None) == Answer(
        Outcome.INVALID_TOKEN, ((b"www-authenticate", b'Bearer realm="mcp", error="invalid_token"'),)
    )
    assert MESSAGE.decide(head(), AUTH_UNAVAILABLE) == Answer(Outcome.AUTH_UNAVAILABLE)
    assert MESSAGE.decide(head(content_type="text/plain"), ALICE) == Answer(Outcome.UNSUPPORTED_MEDIA_TYPE)
    assert MESSAGE.decide(head(content_type=None), ALICE) == Answer(Outcome.UNSUPPORTED_MEDIA_TYPE)
    assert MESSAGE.decide(head(content_type="Application/JSON; charset=utf-8"), ALICE) == Admit(ALICE)
    for query in ("", "session_id=", "session_id=abc", "session_id=" + SID.upper(), "sessionId=" + SID):
        assert MESSAGE.decide(head(query=query), ALICE) == Answer(Outcome.MISSING_SESSION_ID)
    assert MESSAGE.decide(head(), ALICE) == Admit(ALICE)


def test_the_earliest_failing_row_wins() -> None:
    everything_wrong = {"host": "evil.example", "origin": "http://evil.example", "content_type": "text/plain",
                        "authorization": None, "content_length": "11"}
    expected = [Outcome.METHOD_NOT_ALLOWED, Outcome.BODY_TOO_LARGE, Outcome.MISDIRECTED_HOST,
                Outcome.FORBIDDEN_ORIGIN, Outcome.UNAUTHORIZED, Outcome.UNSUPPORTED_MEDIA_TYPE, Outcome.MISSING_SESSION_ID]
    fixes = [("method", "POST"), ("content_length", None), ("host", GOOD["host"]), ("origin", None),
             ("authorization", GOOD["authorization"]), ("content_type", GOOD["content-type"]), ("query", "")]
    method, query, headers = "PUT", "", dict(everything_wrong)
    seen = []
    for field, value in fixes:
        decision = MESSAGE.decide(head(method, query, **headers), ALICE)
        assert isinstance(decision, Answer)
        seen.append(decision.outcome)
        if field == "method":
            method = str(value)
        elif field != "query":
            headers[field] = value
    assert seen == expected


def test_cors_preflight_and_cors_origins() -> None:
    preflight = MESSAGE.decide(head("OPTIONS", origin="https://app.example"))
    assert isinstance(preflight, Answer) and preflight.outcome is Outcome.PREFLIGHT
    assert (b"access-control-allow-origin", b"https://app.example") in preflight.headers
    # A CORS origin passes the Origin row (and then needs its token like anyone else).
    assert MESSAGE.decide(head(origin="https://app.example")) == VerifyToken("t")


def test_stream_intake_has_no_body_rows() -> None:
    stream = transport().stream_intake
    assert stream.decide(head("POST")) == Answer(Outcome.METHOD_NOT_ALLOWED, allow=b"GET")
    get = head("GET", query="", content_type=None, content_length="999999")
    assert stream.decide(get) == VerifyToken("t")
    assert stream.decide(get, ALICE) == Admit(ALICE)
    assert stream.decide(head("GET", host="evil.example")) == Answer(Outcome.MISDIRECTED_HOST)


def test_without_auth_everyone_is_anonymous() -> None:
    open_transport = SseServerTransport(echo_handler)
    assert open_transport.message_intake.decide(head(authorization="Bearer whatever")) == Admit(None)
    optional = transport(auth=AuthSettings(verify_token=StaticTokens({}), required=False)).message_intake
    assert optional.decide(head(authorization=None)) == Admit(None)
    assert optional.decide(head(), None) == Answer(
        Outcome.INVALID_TOKEN, ((b"www-authenticate", b'Bearer realm="mcp", error="invalid_token"'),)
    )


def test_a_transport_adds_its_own_rows_between_the_shared_ones() -> None:
    """What a new transport writes: a rule function, placed where its status table wants it."""

    def protocol_version_supported(request: RequestHead) -> Answer | None:
        version = request.header(b"mcp-protocol-version")
        return None if version in (None, "2025-11-25") else Answer(Outcome.INVALID_MESSAGE)

    intake = Intake(
        allow_methods(b"POST", b"GET", b"DELETE"),
        host_allowed(SecuritySettings()),
        authenticate(None),
        protocol_version_supported,
    )
    assert intake.decide(head("PUT")) == Answer(Outcome.METHOD_NOT_ALLOWED, allow=b"POST, GET, DELETE")
    assert intake.decide(head("DELETE", mcp_protocol_version="1999-01-01")) == Answer(Outcome.INVALID_MESSAGE)
    assert intake.decide(head("DELETE", host="evil.example", mcp_protocol_version="1999-01-01")) == Answer(
        Outcome.MISDIRECTED_HOST
    )
    assert intake.decide(head("GET", mcp_protocol_version="2025-11-25")) == Admit(None)
    with pytest.raises(ValueError, match="at most one authentication row"):
        Intake(authenticate(None), authenticate(None))


def test_request_head_reads_the_first_header_value_and_query_parameters() -> None:
    request = RequestHead("GET", [(b"host", b"a"), (b"host", b"b")], b"x=1&session_id=abc&y", None)
    assert request.header(b"host") == "a"
    assert request.header(b"origin") is None
    assert request.query_param(b"session_id") == "abc"
    assert request.query_param(b"y") == ""
    assert request.query_param(b"z") is None
