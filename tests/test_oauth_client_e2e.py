"""The OAuth client over real sockets: the loopback redirect listener, the CLI, concurrent step-ups.

``LoopbackRedirect`` is driven as a browser would drive it (httpx GETs on its
redirect URI); the CLI runs as a subprocess against the protected notes server
(``tests/apps/oauth_app.py``) and the tests' real authorization server
(``tests/oauth_as.py``), the "browser" being ``authorize_headless`` plus a GET
of the redirect the CLI listens for.  Real clock, an absolute bound per test.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import orjson
import pytest
import trio

from trio_mcp_sse.client import (
    AuthorizationError,
    FileTokenStore,
    LoopbackRedirect,
    OAuth,
    open_session,
)

from .oauth_as import authorization_server, authorize_headless
from .server_helpers_e2e import ROOT
from .test_oauth_e2e import HeadlessRedirect, authorize_requests, protected_server, text_of

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:.*deprecated as of 2026-07-28"),
    pytest.mark.filterwarnings("ignore:.*removed as of 2026-07-28"),
]

TEST_TIMEOUT = 90.0
PROMPT = b"Authorize this client by opening: "
AUTHORIZATION_URL = "https://as.example/authorize?client_id=c&state="


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


# -- LoopbackRedirect -----------------------------------------------------------------------------
class Announced:
    """``announce``: keeps the URLs shown to the user; ``wait`` until one more is shown."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self._event = trio.Event()

    def __call__(self, url: str) -> None:
        self.urls.append(url)
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


async def flow(redirect: LoopbackRedirect, announced: Announced, state: str, visit: Any) -> Mapping[str, str]:
    """One ``authorize`` in the background, and ``visit()`` once the URL was announced."""
    result: dict[str, Mapping[str, str]] = {}

    async def wait_for_redirect() -> None:
        result["params"] = await redirect.authorize(AUTHORIZATION_URL + state, state)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_for_redirect)
        await announced.wait()
        assert announced.urls[-1] == AUTHORIZATION_URL + state
        await visit(result)
    return result["params"]


async def test_the_loopback_redirect_answers_the_awaited_callback_and_ignores_anything_else() -> None:
    with trio.fail_after(20):
        announced = Announced()
        redirect = LoopbackRedirect(open_browser=False, announce=announced, timeout=15)
        uri = redirect.redirect_uri
        port = urlsplit(uri).port
        assert uri == f"http://127.0.0.1:{port}/callback" and port
        answers: dict[str, httpx.Response] = {}

        async def visit(result: dict[str, Any]) -> None:
            async with httpx.AsyncClient(timeout=5) as http:
                answers["favicon"] = await http.get(f"http://127.0.0.1:{port}/favicon.ico")
                answers["wrong state"] = await http.get(uri, params={"code": "x", "state": "stale-tab"})
                answers["no state"] = await http.get(uri, params={"code": "x"})
                answers["other path"] = await http.get(f"http://127.0.0.1:{port}/cb", params={"code": "x", "state": "s-1"})
                answers["post"] = await http.post(uri, params={"code": "x", "state": "s-1"})
                await trio.sleep(0.1)
                assert result == {}  # none of those ended the wait
                answers["callback"] = await http.get(uri, params={"code": "x", "state": "s-1", "iss": "https://as.example"})

        params = await flow(redirect, announced, "s-1", visit)
        redirect.close()
    assert params == {"code": "x", "state": "s-1", "iss": "https://as.example"}
    for what in ("favicon", "wrong state", "no state", "other path", "post"):
        assert answers[what].status_code == 404, what
    page = answers["callback"]
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-store"
    assert page.text.startswith("<!doctype html>") and "Authorization complete" in page.text
    assert announced.urls == [AUTHORIZATION_URL + "s-1"]


async def test_the_loopback_redirect_keeps_its_port_across_flows_and_reports_a_refusal() -> None:
    with trio.fail_after(20):
        announced = Announced()
        redirect = LoopbackRedirect(open_browser=False, announce=announced, timeout=15)
        uri = redirect.redirect_uri
        pages: list[httpx.Response] = []

        def visiting(*queries: dict[str, str]) -> Any:
            async def visit(result: dict[str, Any]) -> None:
                async with httpx.AsyncClient(timeout=5) as http:
                    for query in queries:
                        pages.append(await http.get(redirect.redirect_uri, params=query))

            return visit

        first = await flow(redirect, announced, "one", visiting({"code": "c1", "state": "one"}))
        assert redirect.redirect_uri == uri
        # The second flow: the first flow's tab reloaded is stale (404); then the user refuses.
        second = await flow(
            redirect,
            announced,
            "two",
            visiting({"code": "c1", "state": "one"}, {"error": "access_denied", "state": "two"}),
        )
        assert redirect.redirect_uri == uri
        redirect.close()
    assert first == {"code": "c1", "state": "one"}
    assert second == {"error": "access_denied", "state": "two"}  # the OAuth flow turns it into AuthorizationError
    assert [page.status_code for page in pages] == [200, 404, 200]
    assert "Authorization refused" in pages[2].text


async def test_the_loopback_redirect_gives_up_after_its_timeout() -> None:
    with trio.fail_after(20):
        redirect = LoopbackRedirect(open_browser=False, announce=lambda url: None, timeout=0.5)
        uri = redirect.redirect_uri
        started = trio.current_time()
        with pytest.raises(AuthorizationError, match=r"within 0\.5 s") as failed:
            await redirect.authorize(AUTHORIZATION_URL + "s", "s")
        waited = trio.current_time() - started
        redirect.close()
    assert 0.5 <= waited < 3.0
    assert str(failed.value) == f"no authorization response reached {uri} within 0.5 s"


# -- the CLI -------------------------------------------------------------------------------------------
async def run_cli(*args: str, env: Mapping[str, str] | None = None, authorize: bool = False) -> tuple[int, str, str]:
    """``python -m trio_mcp_sse client ARGS``: its exit status, stdout and stderr.

    ``authorize``: be the user once the authorization URL is printed (approve
    at the authorization server, then take the browser to the CLI's redirect URI).
    """
    command = [sys.executable, "-m", "trio_mcp_sse", "client", *args]
    process = await trio.lowlevel.open_process(
        command, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}
    )
    out, err = bytearray(), bytearray()
    prompted, done = trio.Event(), trio.Event()
    try:

        async def drain(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
            async for chunk in stream:
                into.extend(chunk)
                if into is err and PROMPT in err and b"\n" in err[err.index(PROMPT) :]:
                    prompted.set()

        async def be_the_user() -> None:
            await prompted.wait()
            line = err[err.index(PROMPT) :].split(b"\n", 1)[0]
            url = line[len(PROMPT) :].decode()
            params = await authorize_headless(url)
            async with httpx.AsyncClient(timeout=10) as http:
                page = await http.get(query_of(url)["redirect_uri"] + "?" + urlencode(params))
            assert page.status_code == 200 and "Authorization complete" in page.text
            done.set()

        async with trio.open_nursery() as user:
            if authorize:
                user.start_soon(be_the_user)
            async with trio.open_nursery() as pipes:
                assert process.stdout is not None and process.stderr is not None
                pipes.start_soon(drain, process.stdout, out)
                pipes.start_soon(drain, process.stderr, err)
                await process.wait()
            if prompted.is_set() and authorize:
                await done.wait()
            user.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
    return process.returncode, out.decode(), err.decode()


async def test_the_cli_authorizes_once_then_reuses_the_stored_token(tmp_path: Path) -> None:
    store_path = tmp_path / "tokens" / "oauth.json"
    with trio.fail_after(TEST_TIMEOUT):
        async with authorization_server() as authority, protected_server(authority.issuer) as (server, _):
            args = [
                server.base_url + "/mcp", "--oauth", "--no-browser", "--token-store", str(store_path),
                "--call", "whoami", "--login-timeout", "20",
            ]  # fmt: skip
            first = await run_cli(*args, authorize=True)
            second = await run_cli(*args)  # would time out after 20 s if it asked again: no user now
            authorizations = await authorize_requests(authority)
            registrations = [entry for entry in await authority.requests() if entry["path"] == "/register"]
        tokens = await FileTokenStore(store_path).get_tokens(server.base_url)
    status, out, err = first
    assert status == 0, err
    assert err.count("Authorize this client by opening: ") == 1
    result = orjson.loads(out)
    assert not result.get("isError")
    who = result["content"][0]["text"]
    assert who.startswith("alice via ") and who.endswith(": notes:read offline_access")

    status, out, err = second
    assert status == 0, err
    assert err == ""  # no URL printed: the stored token was used
    assert orjson.loads(out)["content"][0]["text"] == who
    assert len(authorizations) == 1 and len(registrations) == 1

    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store_path.parent.stat().st_mode) == 0o700
    assert tokens is not None and tokens.refresh_token
    for output in (*first[1:], *second[1:]):
        assert tokens.access_token not in output and tokens.refresh_token not in output


@pytest.mark.parametrize(
    ("extra", "env", "message"),
    [
        (["--oauth", "--client-secret-env", "E2E_CLIENT_SECRET"], {"E2E_CLIENT_SECRET": "hunter2-e2e"},
         "error: --client-secret-env needs --client-id\n"),
        (["--client-secret-env", "E2E_CLIENT_SECRET"], {"E2E_CLIENT_SECRET": "hunter2-e2e"},
         "error: --client-secret-env needs --client-id\n"),
        (["--client-id", "cli", "--client-secret-env", "E2E_CLIENT_SECRET"], {"E2E_CLIENT_SECRET": ""},
         "error: --client-secret-env E2E_CLIENT_SECRET: that environment variable is empty\n"),
    ],
    ids=["no-client-id", "no-client-id-nor-oauth", "empty-variable"],
)  # fmt: skip
async def test_the_cli_refuses_a_client_secret_it_cannot_use_in_one_line(
    extra: list[str], env: dict[str, str], message: str
) -> None:
    with trio.fail_after(30):
        # Nothing listens on port 9: the command line is refused before any connection.
        status, out, err = await run_cli("http://127.0.0.1:9/mcp", *extra, env=env)
    assert (status, out, err) == (2, "", message)
    assert "hunter2" not in err


# -- concurrent step-ups ----------------------------------------------------------------------------------
async def test_concurrent_calls_needing_a_step_up_share_one_authorization() -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with authorization_server() as authority, protected_server(authority.issuer) as (server, resource):
            browser = HeadlessRedirect()
            auth = OAuth(redirect=browser, client_name="e2e-concurrent")
            results: list[str] = []
            async with open_session(server.base_url + "/mcp", auth=auth) as session:
                assert len(browser.urls) == 1  # the login, before connecting

                async def add(n: int) -> None:
                    results.append(text_of(await session.call_tool("add_note", {"text": f"note {n}"})))

                async with trio.open_nursery() as nursery:
                    for n in range(5):
                        nursery.start_soon(add, n)
                notes = text_of(await session.call_tool("read_notes", {}))
            authorizations = await authorize_requests(authority)
    assert sorted(results) == [f"{n} notes" for n in range(1, 6)]
    assert sorted(notes.splitlines()) == [f"alice: note {n}" for n in range(5)]
    assert len(authorizations) == 2  # the login and one step-up
    assert len(browser.urls) == 2
    login, step_up = (entry["query"] for entry in authorizations)
    assert login["scope"] == "notes:read offline_access"
    assert step_up["scope"] == "notes:read offline_access notes:write" and step_up["resource"] == resource
