"""Where the OAuth client keeps tokens and registrations: ``FileTokenStore`` and ``MemoryTokenStore``.

``FileTokenStore`` is what keeps a refresh token on disk between runs of the
CLI, so what ``docs/client.md`` promises is the point: one JSON file, mode
``0600`` in a ``0700`` directory, rewritten atomically, refused when other
users can read it, and a clear ``OAuthError`` (never a traceback) for a file
it cannot use.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from trio_mcp_sse.client import (
    ClientRegistration,
    FileTokenStore,
    MemoryTokenStore,
    OAuthError,
    TokenSet,
    TokenStore,
    _oauth_store,
)

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")

RESOURCE = "https://mcp.example.com/mcp"
OTHER_RESOURCE = "https://other.example.com/mcp"
ISSUER = "https://auth.example.com"
ACCESS = "ACCESS-sEcReT-7f3a"
REFRESH = "REFRESH-sEcReT-91cd"
CLIENT_SECRET = "CLIENT-sEcReT-44be"

TOKENS = TokenSet(
    access_token=ACCESS,
    resource=RESOURCE,
    issuer=ISSUER,
    token_endpoint=f"{ISSUER}/token",
    expires_at=1_900_000_000.25,
    refresh_token=REFRESH,
    scopes=("notes:read", "offline_access"),
    obtained_at=1_800_000_000.5,
)
REGISTRATION = ClientRegistration(
    issuer=ISSUER,
    client_id="client-1",
    client_secret=CLIENT_SECRET,
    token_endpoint_auth_method="client_secret_basic",
    redirect_uris=("http://127.0.0.1:8765/callback",),
    secret_expires_at=1_900_000_000.0,
    source="dynamic",
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def names(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir())


async def test_tokens_and_registrations_survive_a_new_store_object(tmp_path: Path) -> None:
    path = tmp_path / "oauth.json"
    store = FileTokenStore(path)
    assert await store.resources() == []  # no file yet: empty, not an error
    assert await store.get_tokens(RESOURCE) is None and await store.get_client(ISSUER) is None
    await store.set_tokens(RESOURCE, TOKENS)
    await store.set_client(ISSUER, REGISTRATION)
    public = ClientRegistration(issuer="https://a.example", client_id="public", source="metadata-document")
    await store.set_client("https://a.example", public)

    again = FileTokenStore(path)  # another run of the program
    assert await again.resources() == [RESOURCE]
    assert await again.get_tokens(RESOURCE) == TOKENS
    assert await again.get_tokens(OTHER_RESOURCE) is None
    assert await again.get_client(ISSUER) == REGISTRATION
    assert await again.get_client("https://a.example") == public
    # Replacing one entry keeps the others.
    replaced = TokenSet(access_token="ACCESS-2", resource=RESOURCE, issuer=ISSUER, token_endpoint=f"{ISSUER}/token")
    await again.set_tokens(RESOURCE, replaced)
    assert await FileTokenStore(path).get_tokens(RESOURCE) == replaced
    assert await FileTokenStore(path).get_client(ISSUER) == REGISTRATION


async def test_the_path_may_start_with_a_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    store = FileTokenStore("~/.cache/app/oauth.json")
    await store.set_tokens(RESOURCE, TOKENS)
    assert store.path == tmp_path / ".cache" / "app" / "oauth.json"
    assert store.path.is_file()


async def test_saving_none_deletes(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "oauth.json")
    await store.set_tokens(RESOURCE, TOKENS)
    await store.set_tokens(OTHER_RESOURCE, TOKENS)
    await store.set_client(ISSUER, REGISTRATION)
    await store.set_tokens(RESOURCE, None)
    await store.set_client(ISSUER, None)
    await store.set_client("https://never-stored.example", None)  # deleting nothing is fine
    assert await store.resources() == [OTHER_RESOURCE]
    assert await store.get_tokens(RESOURCE) is None
    assert await store.get_client(ISSUER) is None
    on_disk = json.loads(store.path.read_text())
    assert list(on_disk["tokens"]) == [OTHER_RESOURCE] and on_disk["clients"] == {}


@posix_only
async def test_the_file_is_0600_in_a_new_0700_directory_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "trio-mcp-sse" / "oauth.json"
    previous = os.umask(0)  # the most permissive umask: the modes must not depend on it
    try:
        store = FileTokenStore(path)
        await store.set_tokens(RESOURCE, TOKENS)
        assert mode(path) == 0o600
        assert mode(path.parent) == 0o700
        await store.set_client(ISSUER, REGISTRATION)  # a rewrite keeps the mode
        assert mode(path) == 0o600
    finally:
        os.umask(previous)


@posix_only
@pytest.mark.parametrize("loose", [0o644, 0o640, 0o604, 0o660, 0o606])
async def test_a_file_other_users_can_read_or_write_is_refused_with_the_fix(tmp_path: Path, loose: int) -> None:
    path = tmp_path / "oauth.json"
    store = FileTokenStore(path)
    await store.set_tokens(RESOURCE, TOKENS)
    path.chmod(loose)
    for attempt in (store.resources, lambda: store.get_tokens(RESOURCE), lambda: store.get_client(ISSUER)):
        with pytest.raises(OAuthError, match="chmod 600") as refused:
            await attempt()
        assert str(path) in str(refused.value)
    with pytest.raises(OAuthError, match="chmod 600"):
        await store.set_tokens(RESOURCE, None)  # nor is it rewritten (its secrets stay where they are)
    assert mode(path) == loose and json.loads(path.read_text())["tokens"][RESOURCE]["access_token"] == ACCESS
    path.chmod(0o600)  # the fix the message names
    assert await store.get_tokens(RESOURCE) == TOKENS


def write_store(path: Path, content: bytes) -> FileTokenStore:
    path.write_bytes(content)
    path.chmod(0o600)
    return FileTokenStore(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b'{"version": 1, "tokens": {', "cannot read the token store"),
        (b"\x00\xff\xfe not UTF-8", "cannot read the token store"),
        (b"", "cannot read the token store"),
        (b'{"version": 2, "tokens": {}, "clients": {}}', "not a token store of this version; delete it"),
        (b'{"tokens": {}, "clients": {}}', "not a token store of this version; delete it"),
        (b"[1, 2, 3]", "not a token store of this version; delete it"),
        (b'"just a string"', "not a token store of this version; delete it"),
    ],
    ids=["truncated", "binary", "empty", "newer-version", "no-version", "a-list", "a-string"],
)
async def test_a_corrupt_or_foreign_file_is_a_clear_oauth_error(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "oauth.json"
    store = write_store(path, content)
    with pytest.raises(OAuthError, match=match) as refused:
        await store.get_tokens(RESOURCE)
    assert str(path) in str(refused.value)
    with pytest.raises(OAuthError, match=match):
        await store.set_tokens(RESOURCE, TOKENS)  # not overwritten behind the user's back
    assert path.read_bytes() == content


@pytest.mark.parametrize(
    "content",
    [
        {"version": 1, "tokens": [], "clients": {}},
        {"version": 1, "tokens": {RESOURCE: {"access_token": "x"}}, "clients": {}},
        {"version": 1, "tokens": {RESOURCE: "a string"}, "clients": {}},
        {"version": 1, "tokens": {}, "clients": {ISSUER: 5}},
        {"version": 1, "tokens": {}, "clients": {ISSUER: {"client_id": "no issuer"}}},
    ],
    ids=["tokens-a-list", "token-missing-fields", "token-a-string", "client-a-number", "client-missing-fields"],
)
async def test_a_well_formed_file_with_broken_entries_is_a_clear_oauth_error(
    tmp_path: Path, content: dict[str, Any]
) -> None:
    path = tmp_path / "oauth.json"
    store = write_store(path, json.dumps(content).encode())

    async def read_everything() -> None:
        for resource in await store.resources():
            await store.get_tokens(resource)
        await store.get_tokens(RESOURCE)
        await store.get_client(ISSUER)

    with pytest.raises(OAuthError, match="delete it") as refused:
        await read_everything()
    assert str(path) in str(refused.value)


async def test_each_change_replaces_the_file_atomically_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "oauth.json"
    store = FileTokenStore(path)
    for n in range(5):
        await store.set_tokens(f"{RESOURCE}/{n}", TOKENS)
        await store.set_client(f"{ISSUER}/{n}", REGISTRATION)
    await store.set_tokens(f"{RESOURCE}/0", None)
    assert names(tmp_path) == ["oauth.json"]
    before = path.read_text()

    # A crash half-way through writing: the old contents stay, whole, and no temporary file is left.
    real_dump = json.dump

    def crash(data: Any, file: Any, **options: Any) -> None:
        file.write(json.dumps(data)[:10])
        raise OSError("disk full")

    monkeypatch.setattr(_oauth_store.json, "dump", crash)
    with pytest.raises(OSError, match="disk full"):
        await store.set_tokens(OTHER_RESOURCE, TOKENS)
    monkeypatch.setattr(_oauth_store.json, "dump", real_dump)
    assert path.read_text() == before
    assert names(tmp_path) == ["oauth.json"]
    assert await FileTokenStore(path).get_tokens(OTHER_RESOURCE) is None
    assert len(await FileTokenStore(path).resources()) == 4


async def test_a_file_another_process_rewrote_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "oauth.json"
    ours, theirs = FileTokenStore(path), FileTokenStore(path)
    await ours.set_tokens(RESOURCE, TOKENS)
    await theirs.set_client(ISSUER, REGISTRATION)
    await ours.set_tokens(OTHER_RESOURCE, TOKENS)  # does not lose what the other wrote
    assert await ours.get_client(ISSUER) == REGISTRATION
    assert sorted(await theirs.resources()) == sorted([RESOURCE, OTHER_RESOURCE])


async def test_the_memory_store_keeps_and_deletes_per_resource_and_per_issuer() -> None:
    store = MemoryTokenStore()
    assert isinstance(store, TokenStore) and isinstance(FileTokenStore("unused.json"), TokenStore)
    assert await store.resources() == [] and await store.get_tokens(RESOURCE) is None
    await store.set_tokens(RESOURCE, TOKENS)
    await store.set_tokens(OTHER_RESOURCE, TOKENS)
    await store.set_client(ISSUER, REGISTRATION)
    assert sorted(await store.resources()) == sorted([RESOURCE, OTHER_RESOURCE])
    assert await store.get_tokens(RESOURCE) is TOKENS and await store.get_client(ISSUER) is REGISTRATION
    assert await store.get_client("https://a.example") is None  # registrations are per issuer
    await store.set_tokens(RESOURCE, None)
    await store.set_client(ISSUER, None)
    await store.set_client(ISSUER, None)
    assert await store.resources() == [OTHER_RESOURCE]
    assert await store.get_client(ISSUER) is None
    assert await MemoryTokenStore().resources() == []  # one store's contents are its own


def test_reprs_never_show_a_token_or_a_secret() -> None:
    shown = [repr(TOKENS), str(TOKENS), f"{TOKENS}", repr([TOKENS]), repr(REGISTRATION), str(REGISTRATION), repr({1: REGISTRATION})]
    for text in shown:
        for secret in (ACCESS, REFRESH, CLIENT_SECRET):
            assert secret not in text
    assert "refresh_token=***" in repr(TOKENS) and "access_token=***" in repr(TOKENS)
    assert "client_secret=***" in repr(REGISTRATION)
    assert RESOURCE in repr(TOKENS) and "client-1" in repr(REGISTRATION)  # what is not secret is shown
    without = ClientRegistration(issuer=ISSUER, client_id="public")
    assert "client_secret=None" in repr(without)
    assert "refresh_token=None" in repr(TokenSet(access_token=ACCESS, resource=RESOURCE, issuer=ISSUER, token_endpoint="t"))
