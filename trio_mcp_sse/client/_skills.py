"""The host side of the Skills extension (SEP-2640): list skills, get one, load it verified.

A server that declares ``io.modelcontextprotocol/skills`` answers
``skills/list`` and ``skills/get`` with *entries*: a skill's ``SKILL.md`` URI,
its front matter, and the digest and size of every file.  An entry is all a
host needs to show a skill and have it approved; its files are read only when
the skill is loaded (:meth:`SkillsClient.load_skill`: the ``SKILL.md``) and
when a supporting file is needed (:meth:`LoadedSkill.read`), never ahead of
need, as the extension requires.

Every byte read is checked against the entry before anything sees it: its
size, its ``sha256:`` digest and, for the ``SKILL.md``, its front matter field
by field (parsed by the same YAML rules the server side uses,
``trio_mcp_sse._skill_format``).  A mismatch raises
:class:`SkillVerificationError` and the content is dropped, never returned: it
may be corrupted, tampered with, or newer than the entry.  A loaded skill reads
only the files its entry lists, so a file the server added later is refused
until the entry is fetched again (and, for a host that binds approval to an
entry, approved again).
"""

from __future__ import annotations

import base64
import binascii
import logging
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

import mcp_types
import pydantic

from .._skill_format import (
    MAX_SKILL_BYTES,
    MAX_SKILL_RESOURCES,
    SKILL_FILE,
    SKILLS_EXTENSION,
    FrontMatterError,
    digest_of,
    parse_front_matter,
    same_value,
    split_front_matter,
)
from ._errors import ProtocolError, SkillLoadError, SkillVerificationError

if TYPE_CHECKING:
    from ._session import ClientSession

__all__ = ["DirectoryPage", "LoadedSkill", "SkillEntry", "SkillResource", "SkillsClient", "SkillsPage"]

log = logging.getLogger("trio_mcp_sse.client")

_DIGEST: Final = re.compile(r"sha256:[0-9a-f]{64}\Z")
_MAX_PAGES: Final = 100


@dataclass(frozen=True, slots=True)
class SkillResource:
    """One file of a skill's entry: its URI, and the digest and size its content must have."""

    uri: str
    digest: str
    """``sha256:`` and 64 lowercase hex digits."""
    size: int
    """In bytes."""


@dataclass(frozen=True, slots=True)
class SkillEntry:
    """A skill as ``skills/list`` and ``skills/get`` describe it (nothing of it has been read)."""

    uri: str
    """The URI of its ``SKILL.md``: the skill's identity on its server."""
    frontmatter: dict[str, Any]
    """Its ``SKILL.md`` front matter, as the server rendered it."""
    resources: tuple[SkillResource, ...] | None
    """Every file of the skill, ``SKILL.md`` included; ``None`` when the server said ``"dynamic"``
    (generated content: no digests to verify against)."""

    @property
    def name(self) -> str:
        return str(self.frontmatter.get("name", ""))

    @property
    def description(self) -> str:
        return str(self.frontmatter.get("description", ""))

    @property
    def dynamic(self) -> bool:
        return self.resources is None

    @property
    def root(self) -> str:
        """The URI of the skill's root directory: :attr:`uri` without ``/SKILL.md``."""
        return self.uri.removesuffix(f"/{SKILL_FILE}")

    @classmethod
    def from_wire(cls, value: Any) -> SkillEntry:
        """An entry from its JSON; ``ValueError`` says what is wrong with its shape."""
        if not isinstance(value, dict):
            raise ValueError("an entry is not an object")
        uri = value.get("uri")
        if not isinstance(uri, str) or not uri:
            raise ValueError("an entry has no uri")
        front_matter = value.get("frontmatter")
        if not isinstance(front_matter, dict):
            raise ValueError(f"the entry of {uri} has no frontmatter object")
        listed = value.get("resources")
        if listed == "dynamic":
            return cls(uri, front_matter, None)
        if not isinstance(listed, list):
            raise ValueError(f"the entry of {uri} has resources that are neither a list nor \"dynamic\"")
        resources = []
        for item in listed:
            if not isinstance(item, dict):
                raise ValueError(f"the entry of {uri} lists a resource that is not an object")
            file, digest, size = item.get("uri"), item.get("digest"), item.get("size")
            if not isinstance(file, str) or not isinstance(digest, str) or not _DIGEST.match(digest):
                raise ValueError(f"the entry of {uri} lists a resource without a uri and a sha256: digest")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ValueError(f"the entry of {uri} lists {file} without a size (a byte count)")
            resources.append(SkillResource(file, digest, size))
        return cls(uri, front_matter, tuple(resources))


@dataclass(frozen=True, slots=True)
class SkillsPage:
    """One page of ``skills/list``: pass ``next_cursor`` back for the next (``None``: the last)."""

    skills: tuple[SkillEntry, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class DirectoryPage:
    """One page of ``resources/directory/read``: the directory's direct children.

    A subdirectory has ``mime_type`` ``"inode/directory"``; read it the same way to descend.
    """

    resources: tuple[mcp_types.Resource, ...]
    next_cursor: str | None


class SkillsClient:
    """The skills a session's server serves: ``skills = SkillsClient(session)``.

    Every method asks the server only after it declared the extension
    (:attr:`supported`); otherwise :class:`SkillLoadError`.  ``request_timeout``
    bounds each request, as in :meth:`ClientSession.send_request`.
    """

    def __init__(self, session: ClientSession) -> None:
        self.session = session

    def _settings(self) -> Mapping[str, Any] | None:
        capabilities = self.session.server_capabilities
        extensions = capabilities.extensions if capabilities is not None else None
        settings = (extensions or {}).get(SKILLS_EXTENSION)
        return settings if isinstance(settings, dict) else None

    @property
    def supported(self) -> bool:
        """Whether the server declared ``io.modelcontextprotocol/skills``."""
        return self._settings() is not None

    @property
    def directory_read(self) -> bool:
        """Whether it also serves ``resources/directory/read`` (``directoryRead: true``)."""
        settings = self._settings()
        return settings is not None and settings.get("directoryRead") is True

    def _require(self) -> None:
        if not self.supported:
            raise SkillLoadError(f"the server does not declare the skills extension ({SKILLS_EXTENSION})")

    async def list_skills(self, cursor: str | None = None, *, request_timeout: float | None = None) -> SkillsPage:
        """One page of the server's skills (``skills/list``).

        An entry of the wrong shape is left out, with a warning in the log: the
        extension forbids loading it, and one bad entry must not hide the rest.
        An empty or partial listing does not mean the server has no other
        skills: :meth:`get_skill` answers for any skill it serves.
        """
        self._require()
        result = await self.session.send_request(
            "skills/list", {} if cursor is None else {"cursor": cursor}, request_timeout=request_timeout
        )
        listed = result.get("skills")
        if not isinstance(listed, list):
            raise ProtocolError("skills/list: the server's result has no skills list")
        entries = []
        for value in listed:
            try:
                entries.append(SkillEntry.from_wire(value))
            except ValueError as invalid:
                log.warning("skills/list: leaving out an entry: %s", invalid)
        next_cursor = result.get("nextCursor")
        if next_cursor is not None and not isinstance(next_cursor, str):
            raise ProtocolError("skills/list: the server's nextCursor is not a string")
        return SkillsPage(tuple(entries), next_cursor or None)

    async def list_all_skills(self, *, request_timeout: float | None = None) -> list[SkillEntry]:
        """Every page of ``skills/list`` (at most 100; a cursor seen twice is a :class:`ProtocolError`)."""
        entries: list[SkillEntry] = []
        seen: set[str] = set()
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await self.list_skills(cursor, request_timeout=request_timeout)
            entries.extend(page.skills)
            if page.next_cursor is None:
                return entries
            if page.next_cursor in seen:
                raise ProtocolError(f"skills/list: the server gave the cursor {page.next_cursor!r} twice")
            seen.add(page.next_cursor)
            cursor = page.next_cursor
        raise ProtocolError(f"skills/list: more than {_MAX_PAGES} pages")

    async def get_skill(self, uri: str, *, request_timeout: float | None = None) -> SkillEntry:
        """The entry of the skill whose ``SKILL.md`` is ``uri`` (``skills/get``), listed or not.

        A skill the server does not serve is its ``MCPError`` -32602.
        """
        self._require()
        result = await self.session.send_request("skills/get", {"uri": uri}, request_timeout=request_timeout)
        try:
            entry = SkillEntry.from_wire(result.get("skill"))
        except ValueError as invalid:
            raise ProtocolError(f"skills/get: {invalid}") from None
        if entry.uri != uri:
            raise ProtocolError(f"skills/get: asked for {uri}, the server answered with {entry.uri}")
        return entry

    async def load_skill(
        self, skill: SkillEntry | str, *, allow_dynamic: bool = False, request_timeout: float | None = None
    ) -> LoadedSkill:
        """Load a skill: read its ``SKILL.md`` and check it against the entry, then hand it over.

        ``skill`` is an entry (from :meth:`list_skills` or :meth:`get_skill`) or
        the URI of a ``SKILL.md``, whose entry is asked for first.  Only the
        ``SKILL.md`` is read; the other files are read by :meth:`LoadedSkill.read`
        when needed.  Raises :class:`SkillVerificationError` when the content is
        not what the entry says (nothing is returned), and :class:`SkillLoadError`
        for an entry that cannot be loaded: no ``SKILL.md`` among its
        resources, files outside the skill, over the extension's limits (512
        files, 16 MiB), or ``"dynamic"`` without ``allow_dynamic`` (such a skill
        has no digests, so only its front matter can be checked).
        """
        entry = skill if isinstance(skill, SkillEntry) else await self.get_skill(skill, request_timeout=request_timeout)
        _check_entry(entry, allow_dynamic=allow_dynamic)
        loaded = LoadedSkill(self, entry, request_timeout)
        data = await loaded._fetch_verified(entry.uri)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SkillVerificationError(f"{entry.uri}: not UTF-8 text", uri=entry.uri) from None
        try:
            front_matter = parse_front_matter(text)
        except FrontMatterError as invalid:
            raise SkillVerificationError(f"{entry.uri}: {invalid}", uri=entry.uri) from None
        differing = [
            key for key in sorted(front_matter.keys() | entry.frontmatter.keys())
            if key not in front_matter or key not in entry.frontmatter
            or not same_value(front_matter[key], entry.frontmatter[key])
        ]
        if differing:
            raise SkillVerificationError(
                f"{entry.uri}: its front matter differs from the skill's entry in "
                + ", ".join(repr(key) for key in differing),
                uri=entry.uri,
            )
        loaded._text = text
        return loaded

    async def read_directory(
        self, uri: str, cursor: str | None = None, *, request_timeout: float | None = None
    ) -> DirectoryPage:
        """One page of the direct children of the directory ``uri`` (``resources/directory/read``).

        Only a server that declared ``directoryRead: true`` is asked
        (:class:`SkillLoadError` otherwise, as the extension requires).  A directory
        read is a live view: a loaded skill still reads only what its entry lists.
        """
        self._require()
        if not self.directory_read:
            raise SkillLoadError("the server does not serve resources/directory/read (no directoryRead: true)")
        params: dict[str, Any] = {"uri": uri} if cursor is None else {"uri": uri, "cursor": cursor}
        result = await self.session.send_request("resources/directory/read", params, request_timeout=request_timeout)
        try:
            resources = tuple(mcp_types.Resource.model_validate(item) for item in result.get("resources") or ())
        except pydantic.ValidationError as invalid:
            raise ProtocolError(f"resources/directory/read: a child is not a valid Resource: {invalid.errors()[0]['msg']}") from None
        next_cursor = result.get("nextCursor")
        return DirectoryPage(resources, next_cursor if isinstance(next_cursor, str) and next_cursor else None)


def _check_entry(entry: SkillEntry, *, allow_dynamic: bool) -> None:
    """What makes an entry unloadable, before anything is read."""
    if not entry.uri.endswith(f"/{SKILL_FILE}") or "://" not in entry.uri:
        raise SkillLoadError(f"{entry.uri}: a skill's URI names its {SKILL_FILE}", uri=entry.uri)
    name = entry.root.rsplit("/", 1)[-1]
    if entry.frontmatter.get("name") != name:
        raise SkillLoadError(
            f"{entry.uri}: the entry's name {entry.frontmatter.get('name')!r} is not the last segment of its "
            f"skill path, {name!r}",
            uri=entry.uri,
        )
    if entry.resources is None:
        if not allow_dynamic:
            raise SkillLoadError(
                f"{entry.uri}: a dynamic skill (no digests to verify its files against); pass allow_dynamic=True "
                "to load it anyway",
                uri=entry.uri,
            )
        return
    uris = [resource.uri for resource in entry.resources]
    if entry.uri not in uris:
        raise SkillLoadError(f"{entry.uri}: the entry does not list the {SKILL_FILE} itself", uri=entry.uri)
    if len(set(uris)) != len(uris):
        raise SkillLoadError(f"{entry.uri}: the entry lists a file twice", uri=entry.uri)
    outside = [uri for uri in uris if not uri.startswith(entry.root + "/")]
    if outside:
        raise SkillLoadError(f"{entry.uri}: the entry lists {outside[0]}, outside the skill", uri=entry.uri)
    if len(uris) > MAX_SKILL_RESOURCES:
        raise SkillLoadError(
            f"{entry.uri}: {len(uris)} files, over the extension's limit of {MAX_SKILL_RESOURCES}", uri=entry.uri
        )
    total = sum(resource.size for resource in entry.resources)
    if total > MAX_SKILL_BYTES:
        raise SkillLoadError(
            f"{entry.uri}: {total} bytes of files, over the extension's limit of {MAX_SKILL_BYTES} (16 MiB)",
            uri=entry.uri,
        )


class LoadedSkill:
    """A skill whose ``SKILL.md`` was read and verified: :attr:`text` is what the model may see.

    Its other files are read on demand with :meth:`read` (relative to the
    skill's root, as ``SKILL.md`` refers to them), each verified against the
    entry the skill was loaded from and kept once verified.
    """

    def __init__(self, client: SkillsClient, entry: SkillEntry, request_timeout: float | None) -> None:
        self.entry = entry
        """The entry the skill was loaded from, and its files are verified against."""
        self._client = client
        self._request_timeout = request_timeout
        self._text = ""
        self._verified: dict[str, bytes] = {}
        self._retrieved = 0
        self._listed: dict[str, SkillResource] = {
            unquote(resource.uri): resource for resource in entry.resources or ()
        }

    def __repr__(self) -> str:
        return f"<LoadedSkill {self.entry.uri}>"

    @property
    def text(self) -> str:
        """The verified ``SKILL.md``, front matter included."""
        return self._text

    @property
    def body(self) -> str:
        """The ``SKILL.md`` after its front matter: the instructions."""
        parts = split_front_matter(self._text)
        return parts[1] if parts is not None else self._text

    @property
    def frontmatter(self) -> dict[str, Any]:
        return self.entry.frontmatter

    @property
    def files(self) -> tuple[str, ...]:
        """The paths of the skill's files, relative to its root (``()`` for a dynamic skill)."""
        root = unquote(self.entry.root) + "/"
        return tuple(sorted(uri.removeprefix(root) for uri in self._listed))

    def uri_of(self, path: str) -> str:
        """The URI of ``path`` (relative to the skill's root, or a URI already) as the entry lists it."""
        if "://" in path:
            candidate = unquote(path)
        else:
            normal = posixpath.normpath(path)
            if path.startswith("/") or normal == ".." or normal.startswith("../"):
                raise SkillLoadError(f"{path!r} is outside the skill {self.entry.uri}", uri=self.entry.uri)
            candidate = f"{unquote(self.entry.root)}/{normal}"
        listed = self._listed.get(candidate)
        if listed is not None:
            return listed.uri
        if self.entry.dynamic and candidate.startswith(unquote(self.entry.root) + "/"):
            return candidate
        raise SkillVerificationError(
            f"{candidate}: not a file of the skill's entry (an unlisted file is a change to the skill: get its "
            "entry again and load it again)",
            uri=candidate,
        )

    async def read(self, path: str) -> bytes:
        """The content of one file of the skill, verified against the entry (cached once verified).

        ``path`` is relative to the skill's root (``"references/FORMS.md"``) or a
        URI.  :class:`SkillVerificationError` when the server's content differs
        from the entry, or the entry does not list the file (then nothing is
        asked of the server).
        """
        uri = self.uri_of(path)
        cached = self._verified.get(uri)
        if cached is not None:
            return cached
        return await self._fetch_verified(uri)

    async def read_text(self, path: str) -> str:
        """:meth:`read`, decoded as UTF-8."""
        data = await self.read(path)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise SkillLoadError(f"{self.uri_of(path)}: not UTF-8 text", uri=self.uri_of(path)) from None

    async def _fetch_verified(self, uri: str) -> bytes:
        result = await self._client.session.send_request(
            "resources/read", {"uri": uri}, request_timeout=self._request_timeout
        )
        data = _content_bytes(uri, result)
        listed = self._listed.get(unquote(uri))
        if listed is not None:
            if len(data) != listed.size:
                raise SkillVerificationError(
                    f"{uri}: {len(data)} bytes, but the skill's entry says {listed.size}", uri=uri
                )
            if digest_of(data) != listed.digest:
                raise SkillVerificationError(
                    f"{uri}: its digest is {digest_of(data)}, but the skill's entry says {listed.digest}", uri=uri
                )
        else:  # a dynamic skill: nothing to verify but the total it may retrieve
            self._retrieved += len(data)
            if self._retrieved > MAX_SKILL_BYTES:
                raise SkillLoadError(
                    f"{uri}: the dynamic skill {self.entry.uri} went over the extension's limit of "
                    f"{MAX_SKILL_BYTES} bytes (16 MiB)",
                    uri=uri,
                )
        self._verified[uri] = data
        return data


def _content_bytes(uri: str, result: Mapping[str, Any]) -> bytes:
    """The raw bytes ``resources/read`` returned for ``uri`` (text as UTF-8, a blob decoded)."""
    contents = result.get("contents")
    if not isinstance(contents, list) or not contents:
        raise SkillVerificationError(f"{uri}: the server's answer has no contents", uri=uri)
    chosen = next((item for item in contents if isinstance(item, dict) and item.get("uri") == uri), contents[0])
    if isinstance(chosen, dict) and isinstance(chosen.get("text"), str):
        return str(chosen["text"]).encode("utf-8")
    if isinstance(chosen, dict) and isinstance(chosen.get("blob"), str):
        try:
            return base64.b64decode(chosen["blob"], validate=True)
        except binascii.Error:
            raise SkillVerificationError(f"{uri}: the server's blob is not base64", uri=uri) from None
    raise SkillVerificationError(f"{uri}: the server's answer has neither text nor a blob", uri=uri)

