"""Questions to the client as results, answers as retries: multi round-trip requests (2026-07-28).

Theory of operation
-------------------
A handshake-era server asks the client something (elicitation, sampling,
roots) by sending it a request while the tool runs, and waits.  Protocol
2026-07-28 has no such back channel: the server *answers* the request with an
``InputRequiredResult`` naming its questions (``inputRequests``, keyed by
names the server picks), and the client asks again with the same params plus
``inputResponses`` (the answers under the same keys) and the ``requestState``
it was given.

So that a tool is written once, :class:`~trio_mcp_sse.server.Context` hides the
difference.  In the modern era the tool simply runs again from the top on each
retry, with the answers known so far in an :class:`InputRound`:

* every question has a *request key*: the one the tool gives (``key=``), or
  a deterministic one, ``<kind>-<n>`` where ``n`` counts the questions this
  run has asked so far (``elicitation-1``, ``sampling-2``...).  A tool whose
  control flow depends only on its arguments and the answers asks the same
  questions in the same order on every run, so the keys line up;
* a question whose answer is known returns it at once; the first one that is
  not raises :class:`InputRequired`, which ends this run of the tool and
  becomes the ``InputRequiredResult`` (questions asked together with
  :meth:`~trio_mcp_sse.server.Context.request_input` are all sent in one
  round);
* the answers this run used travel to the client inside ``requestState``,
  so the next run has them too, and no worker needs to remember anything
  between rounds: any worker holding the key can resume any request.

``requestState`` is sealed with an HMAC (SHA-256) under the server's
:class:`RequestStateKey` and bound to the method, the target (tool or prompt
name, resource URI), the arguments and an expiry: a state that was altered,
belongs to another call, or is too old is refused with -32602.  The key is
random per process unless configured, so a server run as several workers (or
restarted between rounds) must give every process the same key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Mapping
from typing import Any, Final

import orjson

from .._errors import ClientCapabilityError, MCPError
from .._jsonrpc import INVALID_PARAMS

__all__ = [
    "INPUT_METHODS",
    "MISSING_REQUIRED_CLIENT_CAPABILITY",
    "REQUEST_STATE_SECRET_VARIABLE",
    "InputRequired",
    "InputRound",
    "MissingClientCapability",
    "RequestStateKey",
]

MISSING_REQUIRED_CLIENT_CAPABILITY: Final = -32021
INPUT_METHODS: Final[Mapping[str, str]] = {
    "elicitation/create": "elicitation",
    "sampling/createMessage": "sampling",
    "roots/list": "roots",
}
"""The questions a server may ask, and the client capability each needs."""
_STATE_VERSION: Final = "s1"


class InputRequired(BaseException):
    """This run of a request needs answers from the client (modern era only).

    A ``BaseException`` so that a tool's ``except Exception`` cannot swallow
    it: like cancellation, it must unwind the tool.  The server turns it into
    an ``InputRequiredResult``; a tool never sees it unless it catches
    ``BaseException``.
    """

    def __init__(self, requests: Mapping[str, Mapping[str, Any]]) -> None:
        super().__init__(f"input required: {', '.join(requests)}")
        self.requests = dict(requests)


class MissingClientCapability(MCPError):
    """A request needs a client capability the request's ``_meta`` did not declare (-32021)."""

    def __init__(self, method: str, capability: str) -> None:
        super().__init__(
            MISSING_REQUIRED_CLIENT_CAPABILITY,
            f"{method} needs the client capability {capability!r}, which this request did not declare",
            {"requiredCapabilities": {capability: {}}},
        )
        self.capability = capability


REQUEST_STATE_SECRET_VARIABLE: Final = "TRIO_MCP_SSE_REQUEST_STATE_SECRET"
"""Where workers of one deployment find the secret they share for ``requestState``."""


class RequestStateKey:
    """Seals and opens ``requestState``: HMAC-SHA256 under one secret, with an expiry.

    ``secret``: bytes or text shared by every worker that may serve a retry;
    ``None`` takes the ``TRIO_MCP_SSE_REQUEST_STATE_SECRET`` environment
    variable (``serve --workers N`` sets one for its workers), else draws 32
    random bytes (fine for one process).  ``max_age``: seconds a state stays valid.
    """

    __slots__ = ("_secret", "max_age")

    def __init__(self, secret: bytes | str | None = None, *, max_age: float = 3600.0) -> None:
        if secret is None:
            secret = os.environ.get(REQUEST_STATE_SECRET_VARIABLE) or os.urandom(32)
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        if len(secret) < 16:
            raise ValueError("a request-state secret needs at least 16 bytes")
        if max_age <= 0:
            raise ValueError("max_age must be > 0")
        self._secret = secret
        self.max_age = max_age

    def __repr__(self) -> str:
        return f"RequestStateKey(max_age={self.max_age:g})"  # never the secret

    def _mac(self, body: str) -> str:
        digest = hmac.new(self._secret, body.encode("ascii"), hashlib.sha256).digest()
        return _b64(digest)

    def seal(self, binding: str, answers: Mapping[str, Any], *, now: float | None = None) -> str:
        """A state carrying ``answers``, valid for the call ``binding`` names."""
        issued = time.time() if now is None else now
        payload = {"b": binding, "a": dict(answers), "e": int(issued + self.max_age)}
        body = f"{_STATE_VERSION}.{_b64(orjson.dumps(payload))}"
        return f"{body}.{self._mac(body)}"

    def open(self, state: object, binding: str, *, now: float | None = None) -> dict[str, Any]:
        """The answers in ``state``; -32602 if it is forged, altered, foreign or expired."""
        if not isinstance(state, str):
            raise MCPError(INVALID_PARAMS, "requestState must be a string")
        body, _, mac = state.rpartition(".")
        if not body.startswith(f"{_STATE_VERSION}.") or not hmac.compare_digest(mac, self._mac(body)):
            raise MCPError(INVALID_PARAMS, "requestState failed its integrity check")
        try:
            payload = orjson.loads(_unb64(body.partition(".")[2]))
        except (ValueError, orjson.JSONDecodeError):
            raise MCPError(INVALID_PARAMS, "requestState failed its integrity check") from None
        if payload.get("b") != binding:
            raise MCPError(INVALID_PARAMS, "requestState belongs to another request")
        if (time.time() if now is None else now) > payload.get("e", 0):
            raise MCPError(INVALID_PARAMS, "requestState has expired: start the request again")
        answers = payload.get("a")
        return answers if isinstance(answers, dict) else {}


def request_binding(method: str, params: Mapping[str, Any]) -> str:
    """What a ``requestState`` is valid for: the method, its target and its arguments."""
    target = params.get("uri") if method == "resources/read" else params.get("name")
    arguments = params.get("arguments")
    digest = hashlib.sha256(orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
    return f"{method}|{target}|{digest}"


class InputRound:
    """The answers one run of a modern request may use, and the questions it asks.

    Built by the server from the request's ``requestState`` (answers of
    earlier rounds) and ``inputResponses`` (answers of the last round; they
    win).  ``used`` collects the answers this run consumed: they are what the
    next ``requestState`` carries.
    """

    __slots__ = ("_answers", "_asked", "_capabilities", "used")

    def __init__(self, answers: Mapping[str, Any], client_capabilities: Mapping[str, Any]) -> None:
        self._answers = dict(answers)
        self._capabilities = client_capabilities
        self._asked = 0
        self.used: dict[str, Any] = {}

    def key_for(self, method: str, key: str | None) -> str:
        """The request key of the next question: the tool's own, or the deterministic one."""
        self._asked += 1
        return key if key is not None else f"{INPUT_METHODS.get(method, 'input')}-{self._asked}"

    def _check(self, method: str) -> None:
        capability = INPUT_METHODS.get(method)
        if capability is None:
            raise ClientCapabilityError(
                method, method, f"{method} cannot be asked of a 2026-07-28 client: only {', '.join(INPUT_METHODS)} can"
            )
        if self._capabilities.get(capability) is None:
            raise MissingClientCapability(method, capability)

    def _take(self, key: str) -> dict[str, Any] | None:
        if key not in self._answers:
            return None
        answer = self._answers[key]
        if not isinstance(answer, dict):
            raise MCPError(INVALID_PARAMS, f"inputResponses[{key!r}] must be an object", {"key": key})
        self.used[key] = answer
        return answer

    def answer(self, method: str, params: Mapping[str, Any] | None, *, key: str | None = None) -> dict[str, Any]:
        """The client's answer to one question, or :class:`InputRequired` for it."""
        self._check(method)
        request_key = self.key_for(method, key)
        found = self._take(request_key)
        if found is None:
            raise InputRequired({request_key: _input_request(method, params)})
        return found

    def answer_all(self, requests: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """Answers to several questions, or one :class:`InputRequired` naming every unanswered one."""
        answers: dict[str, dict[str, Any]] = {}
        missing: dict[str, dict[str, Any]] = {}
        for key, request in requests.items():
            method = request.get("method")
            if not isinstance(method, str):
                raise ValueError(f"input request {key!r} needs a 'method'")
            self._check(method)
            self._asked += 1
            found = self._take(key)
            if found is None:
                missing[key] = _input_request(method, request.get("params"))
            else:
                answers[key] = found
        if missing:
            raise InputRequired(missing)
        return answers


def _input_request(method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    request: dict[str, Any] = {"method": method}
    request["params"] = dict(params) if params is not None else {}
    return request


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
