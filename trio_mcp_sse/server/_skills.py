"""The Skills extension (SEP-2640, ``io.modelcontextprotocol/skills``): skills served as resources.

A skill is a directory with a ``SKILL.md`` whose YAML front matter names and
describes it (the Agent Skills format).  Served over MCP, each of its files is
an ordinary resource, ``skill://<skill-path>/<file-path>``, read with
``resources/read``; the extension adds ``skills/list`` and ``skills/get``,
whose *entries* carry the front matter verbatim and the digest and size of
every file, so a host can verify what it reads, and ``resources/directory/read``
(announced as ``directoryRead: true``), which lists one directory's children.

**Loaded once, served from memory.**  A skill is read and checked when it is
added (:func:`load_skills_directory`, :meth:`Skill.from_files`), and its files
are served from the bytes read then: a digest computed at load and a file read
from disk at request time could disagree the moment someone edits the file,
and a host must then refuse the skill.  The SEP's limits (512 files, 16 MiB per
skill) bound what that holds.  What cannot be served is refused at load with a
:class:`SkillError` naming the file: no front matter, YAML that is not a
mapping JSON can carry, a name that breaks the naming rules or differs from
the skill's directory, a missing description, a reserved metadata key, too
many or too large files.

The resources go through the server's catalog (:meth:`MCPServer.add_resource`),
so ``resources/list``, ``resources/read``, the cache hints and list-changed
announcements work as for any resource; this module keeps only the entries and
the directory tree beside them.
"""

from __future__ import annotations

import mimetypes
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Protocol
from urllib.parse import quote, unquote

from .. import _skill_format
from .._errors import MCPError
from .._jsonrpc import INVALID_PARAMS
from .._protocol_versions import MODERN_PROTOCOL_VERSIONS, version_at_least
from .._skill_format import (
    DIRECTORY_MIME_TYPE,
    MAX_SKILL_BYTES,
    MAX_SKILL_RESOURCES,
    SKILL_FILE,
    FrontMatterError,
    digest_of,
    front_matter_problems,
    name_problem,
    parse_front_matter,
)
from ._catalog import Catalog
from ._context import Context
from ._handlers import _listing, _string
from ._protocol import CachePolicy
from ._resources import Resource, build_resource

SKILLS_EXTENSION: Final = _skill_format.SKILLS_EXTENSION
"""The skills extension's id, ``io.modelcontextprotocol/skills`` (the key in ``capabilities.extensions``)."""

__all__ = [
    "SKILLS_EXTENSION",
    "Skill",
    "SkillCatalog",
    "SkillError",
    "SkillFile",
    "load_skills_directory",
]

_SCHEME: Final = "skill://"
_PREFIX_SEGMENT: Final = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=-]+\Z")
"""A ``reg-name`` (RFC 3986) without percent-escapes: what the first segment, the URI's
authority, should be, and what every organizational segment of a skill path may be."""
_PATH_SAFE: Final = "/!$&'()*+,;=:@-._~"
"""Characters of a file path left as they are in its URI (RFC 3986 ``pchar`` and ``/``)."""
_MIME_TYPES: Final = mimetypes.MimeTypes()  # the built-in table only: the same on every machine
_MORE_MIME_TYPES: Final = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".toml": "application/toml",
}


class SkillError(ValueError):
    """A skill that cannot be served, said with the file (or skill) at fault.

    Raised when a skill is loaded or added, never while serving: a bad
    ``SKILL.md``, a broken limit, a path that is no valid skill path, a URI
    another skill or resource already has.
    """


@dataclass(frozen=True, slots=True)
class SkillFile:
    """One file of a skill, held in memory: served as the resource at :attr:`uri`."""

    path: str
    """Relative to the skill's root, ``/``-separated (``"SKILL.md"``, ``"references/FORMS.md"``)."""
    uri: str
    content: bytes = field(repr=False)
    mime_type: str
    digest: str = field(init=False)
    """``sha256:`` and the hex digest of :attr:`content`, as the skill's entry lists it."""
    size: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", digest_of(self.content))
        object.__setattr__(self, "size", len(self.content))

    @property
    def text(self) -> str | None:
        """The content as text when it is UTF-8 (then served as ``text``), else ``None`` (a ``blob``)."""
        try:
            return self.content.decode("utf-8")
        except UnicodeDecodeError:
            return None


@dataclass(frozen=True, slots=True)
class Skill:
    """A skill as this server serves it (frozen): build one with :meth:`from_files` or
    :func:`load_skills_directory`, add it with :meth:`MCPServer.add_skills`."""

    path: str
    """The skill path: ``"pdf-processing"``, or ``"acme/billing/refunds"`` under a prefix."""
    frontmatter: dict[str, Any]
    """The front matter of its ``SKILL.md``, as parsed (a JSON-like dict)."""
    files: tuple[SkillFile, ...]
    """``SKILL.md`` first, then the others by path."""
    directories: tuple[str, ...] = ()
    """Its subdirectories, relative to its root (empty ones included, so they can be read)."""
    cache: CachePolicy | None = None
    """Caching hints of its ``skills/get`` and of its files' reads (default: the server's)."""
    uri: str = field(init=False)
    """The URI of its ``SKILL.md``: how ``skills/get`` names it."""
    entry: dict[str, Any] = field(init=False, compare=False, repr=False)
    """Its entry in ``skills/list`` and ``skills/get``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "uri", f"{_SCHEME}{self.path}/{SKILL_FILE}")
        object.__setattr__(self, "entry", {
            "uri": self.uri,
            "frontmatter": self.frontmatter,
            "resources": [{"uri": file.uri, "digest": file.digest, "size": file.size} for file in self.files],
        })

    @property
    def name(self) -> str:
        return str(self.frontmatter["name"])

    @property
    def description(self) -> str:
        return str(self.frontmatter["description"])

    @property
    def root(self) -> str:
        """The URI of its root directory (``skill://<skill-path>``, no trailing slash)."""
        return f"{_SCHEME}{self.path}"

    @classmethod
    def from_files(
        cls, path: str, files: Mapping[str, str | bytes], *, cache: CachePolicy | None = None
    ) -> Skill:
        """A skill from files in memory: ``{"SKILL.md": "---\\nname: ...", "references/FORMS.md": ...}``.

        ``path`` is the skill path; its last segment is the skill's name and must
        equal the front matter's ``name``.  Text (``str``) is stored as UTF-8.
        :class:`SkillError` says what cannot be served.
        """
        contents = [(name, data.encode("utf-8") if isinstance(data, str) else bytes(data)) for name, data in files.items()]
        return _build_skill(
            path, contents, (), cache, where=lambda file: f"skill {path!r}, {file}" if file else f"skill {path!r}"
        )


def _guess_mime_type(path: str, text: bool) -> str:
    if path.rsplit("/", 1)[-1] == SKILL_FILE:
        return "text/markdown"
    suffix = os.path.splitext(path)[1].lower()
    guessed = _MORE_MIME_TYPES.get(suffix) or _MIME_TYPES.guess_type(path, strict=False)[0]
    return guessed or ("text/plain" if text else "application/octet-stream")


def _check_skill_path(path: str) -> list[str]:
    if not isinstance(path, str) or not path:
        raise SkillError(f"a skill path is a non-empty string, not {path!r}")
    segments = path.split("/")
    for segment in segments[:-1]:
        if segment in ("", ".", "..") or not _PREFIX_SEGMENT.match(segment):
            raise SkillError(
                f"skill path {path!r}: the segment {segment!r} is not a valid URI segment "
                "(letters, digits and -._~!$&'()*+,;= only)"
            )
    problem = name_problem(segments[-1])
    if problem:
        raise SkillError(f"skill path {path!r}: its last segment is the skill's name, and {problem}")
    return segments


def _check_prefix(prefix: str) -> list[str]:
    segments = prefix.split("/")
    for segment in segments:
        if segment in ("", ".", "..") or not _PREFIX_SEGMENT.match(segment):
            raise SkillError(
                f"prefix {prefix!r}: the segment {segment!r} is not a valid URI segment "
                "(letters, digits and -._~!$&'()*+,;= only)"
            )
    return segments


def _check_file_path(skill_path: str, file: str) -> None:
    segments = file.split("/")
    if not file or "\\" in file or "\x00" in file or any(s in ("", ".", "..") for s in segments):
        raise SkillError(
            f"skill {skill_path!r}: {file!r} is not a relative file path ('/'-separated, without empty, "
            "'.' or '..' segments)"
        )


def _build_skill(
    path: str,
    contents: Sequence[tuple[str, bytes]],
    directories: Iterable[str],
    cache: CachePolicy | None,
    *,
    where: Callable[[str], str],
) -> Skill:
    """Check everything a server must not serve, then the frozen :class:`Skill`."""
    segments = _check_skill_path(path)
    by_path: dict[str, bytes] = {}
    for file, data in contents:
        _check_file_path(path, file)
        if file in by_path:
            raise SkillError(f"{where(file)}: given twice")
        by_path[file] = data
    folders = set(directories)
    for file in by_path:
        parts = file.split("/")
        folders.update("/".join(parts[:index]) for index in range(1, len(parts)))
    clash = sorted(folders & by_path.keys())
    if clash:
        raise SkillError(f"{where(clash[0])}: both a file and a directory")
    if SKILL_FILE not in by_path:
        raise SkillError(f"{where(SKILL_FILE)}: missing (every skill has a {SKILL_FILE} at its root)")
    _check_limits(len(by_path), {file: len(data) for file, data in by_path.items()}, where)
    try:
        text = by_path[SKILL_FILE].decode("utf-8")
    except UnicodeDecodeError as invalid:
        raise SkillError(f"{where(SKILL_FILE)}: not UTF-8 text (byte {invalid.start})") from None
    try:
        front_matter = parse_front_matter(text)
    except FrontMatterError as invalid:
        raise SkillError(f"{where(SKILL_FILE)}: {invalid}") from None
    problems = front_matter_problems(front_matter)
    name = front_matter.get("name")
    if not problems and name != segments[-1]:
        problems.append(
            f"its name {name!r} must equal the name of the skill's directory, {segments[-1]!r} "
            "(the last segment of its skill path)"
        )
    if problems:
        raise SkillError(f"{where(SKILL_FILE)}: {'; '.join(problems)}")
    files = [
        SkillFile(
            path=file,
            uri=f"{_SCHEME}{path}/{quote(file, safe=_PATH_SAFE)}",
            content=data,
            mime_type=_guess_mime_type(file, _is_text(data)),
        )
        for file, data in sorted(by_path.items(), key=lambda item: (item[0] != SKILL_FILE, item[0]))
    ]
    return Skill(
        path=path, frontmatter=front_matter, files=tuple(files), directories=tuple(sorted(folders)), cache=cache
    )


def _check_limits(count: int, sizes: Mapping[str, int], where: Callable[[str], str]) -> None:
    """SEP-2640's limits on one skill: :class:`SkillError` naming the biggest files when broken."""
    if count > MAX_SKILL_RESOURCES:
        raise SkillError(
            f"{where('')}: {count} files; a skill may have at most {MAX_SKILL_RESOURCES} "
            f"(SEP-2640's limit, {SKILL_FILE} included)"
        )
    total = sum(sizes.values())
    if total > MAX_SKILL_BYTES:
        biggest = sorted(sizes, key=lambda file: -sizes[file])[:3]
        raise SkillError(
            f"{where('')}: its files total {total} bytes; a skill may have at most {MAX_SKILL_BYTES} "
            f"(16 MiB, SEP-2640's limit); the largest: "
            + ", ".join(f"{file} ({sizes[file]} bytes)" for file in biggest)
        )


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# -- skills on disk ------------------------------------------------------------------------------
def load_skills_directory(
    directory: str | os.PathLike[str], *, prefix: str | None = None, cache: CachePolicy | None = None
) -> list[Skill]:
    """The skills under ``directory``: each directory in it holding a ``SKILL.md`` is one.

    ``directory`` may itself be a skill (it has a ``SKILL.md``), or hold skills
    at any depth: ``skills/pdf-processing/SKILL.md`` is the skill
    ``pdf-processing``, ``skills/acme/billing/refunds/SKILL.md`` the skill
    ``acme/billing/refunds`` (directories above a skill are its organizational
    prefix), and a skill inside another is a skill of its own whose files are
    the outer one's too.  ``prefix`` (``"acme"``, ``"acme/billing"``) goes in
    front of every skill path.  Every file under a skill is one of its files,
    except hidden ones (a name starting with ``.``: ``.git``, ``.DS_Store``);
    files outside every skill are not read.  A symbolic link is read when it
    points at a file inside ``directory``, and refused otherwise.

    Blocking (it reads the files): call it at start-up, or in a worker thread
    while serving (``await trio.to_thread.run_sync(load_skills_directory, path)``,
    then :meth:`MCPServer.add_skills`).  :class:`SkillError` names the file
    that cannot be served.
    """
    root = Path(directory)
    try:
        resolved = root.resolve(strict=True)
    except OSError:
        raise SkillError(f"{root}: no such directory") from None
    if not resolved.is_dir():
        raise SkillError(f"{root}: not a directory")
    base = [] if prefix is None else _check_prefix(prefix)
    files, folders, refused = _walk(root, resolved)
    roots = sorted(folder for folder in folders if _join(folder, SKILL_FILE) in files)
    if not roots:
        raise SkillError(f"{root}: holds no skill (no {SKILL_FILE} in it or in any directory below it)")
    skills = []
    for folder in roots:
        segments = [*base, *(folder.split("/") if folder else [resolved.name])]
        inside = {rel: path for rel, path in files.items() if _within(rel, folder)}
        where_root = root / folder if folder else root

        def where(file: str, at: Path = where_root) -> str:
            return str(at / file) if file else str(at)

        for rel, problem in refused.items():
            if _within(rel, folder):
                raise SkillError(f"{root / rel}: {problem}")
        members = {_relative(rel, folder): path for rel, path in inside.items()}
        sizes = {}
        for member, path in members.items():
            try:
                sizes[member] = path.stat().st_size
            except OSError as error:
                raise SkillError(f"{where(member)}: cannot read it: {error.strerror}") from None
        _check_limits(len(members), sizes, where)  # before reading a byte of a file too large
        contents = []
        for member, path in sorted(members.items()):
            try:
                contents.append((member, path.read_bytes()))
            except OSError as error:
                raise SkillError(f"{where(member)}: cannot read it: {error.strerror}") from None
        subfolders = [_relative(rel, folder) for rel in folders if rel != folder and _within(rel, folder)]
        skills.append(_build_skill("/".join(segments), contents, subfolders, cache, where=where))
    return skills


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _within(rel: str, folder: str) -> bool:
    return not folder or rel.startswith(folder + "/")


def _relative(rel: str, folder: str) -> str:
    return rel[len(folder) + 1:] if folder else rel


def _walk(root: Path, resolved: Path) -> tuple[dict[str, Path], set[str], dict[str, str]]:
    """Every file and directory under ``root`` (hidden ones left out), by relative path, and
    what cannot be served (refused only if it is inside a skill)."""
    files: dict[str, Path] = {}
    folders: set[str] = {""}
    refused: dict[str, str] = {}
    pending = [("", root)]
    while pending:
        rel, path = pending.pop()
        try:
            with os.scandir(path) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as error:
            raise SkillError(f"{path}: cannot list it: {error.strerror}") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child = _join(rel, entry.name)
            if entry.is_symlink():
                target = Path(entry.path).resolve()
                if not target.is_relative_to(resolved):
                    refused[child] = f"a symbolic link to {target}, outside {root}: not served"
                elif target.is_dir():
                    refused[child] = "a symbolic link to a directory: not followed (link the files instead)"
                elif target.is_file():
                    files[child] = Path(entry.path)
                else:
                    refused[child] = "a symbolic link to nothing that can be read"
            elif entry.is_dir(follow_symlinks=False):
                folders.add(child)
                pending.append((child, Path(entry.path)))
            elif entry.is_file(follow_symlinks=False):
                files[child] = Path(entry.path)
            else:
                refused[child] = "not a regular file (a socket, FIFO or device): not served"
    return files, folders, refused


# -- serving -------------------------------------------------------------------------------------
class _Request(Protocol):
    """What a handler reads of the request (a :class:`Context`)."""

    @property
    def protocol_version(self) -> str | None: ...


def _modern(context: _Request) -> bool:
    return version_at_least(context.protocol_version, MODERN_PROTOCOL_VERSIONS[0])


class SkillCatalog:
    """The skills one server serves: their entries, their files in the catalog, the directory tree.

    Created by the server the first time a skill is added; it then announces
    the extension (``directoryRead: true``) and serves its three methods.
    Files two skills share (a skill nested in another) are one resource,
    removed with the last skill that has it.
    """

    def __init__(self, catalog: Catalog, default_cache: Callable[[], CachePolicy]) -> None:
        self._catalog = catalog
        self._default_cache = default_cache
        self._skills: dict[str, Skill] = {}
        self.skills: Mapping[str, Skill] = MappingProxyType(self._skills)
        """Read-only, by the URI of each skill's ``SKILL.md``, in the order added."""
        self._resources: dict[str, Resource] = {}
        self._owners: dict[str, set[str]] = {}
        self._skill_files: set[str] = set()
        """The files registered as a skill's own ``SKILL.md`` (not as another's supporting file)."""
        self._directories: dict[str, list[dict[str, Any]]] = {}

    def handlers(self) -> dict[str, Callable[[Any, Mapping[str, Any], Context], Any]]:
        return {
            "skills/list": self.list_skills,
            "skills/get": self.get_skill,
            "resources/directory/read": self.read_directory,
        }

    # -- changes -----------------------------------------------------------------------------
    def add(self, skills: Sequence[Skill]) -> None:
        """Serve ``skills``, all or none: every conflict is found before anything is added."""
        new: dict[str, SkillFile] = {}
        uris: set[str] = set()
        for skill in skills:
            if not isinstance(skill, Skill):
                raise TypeError(f"not a Skill: {skill!r} (build one with Skill.from_files or load_skills_directory)")
            if skill.uri in self._skills or skill.uri in uris:
                raise SkillError(f"a skill {skill.uri!r} is already served")
            uris.add(skill.uri)
            for file in skill.files:
                held = self._resources.get(file.uri)
                other = new.get(file.uri)
                if held is not None or other is not None:
                    digest = other.digest if other is not None else self._digest(file.uri)
                    if digest != file.digest:
                        raise SkillError(f"{file.uri}: two skills have different contents at this URI")
                elif file.uri in self._catalog.resources:
                    raise SkillError(f"{file.uri}: a resource of that URI is already registered")
                else:
                    new[file.uri] = file
        for skill in sorted(skills, key=lambda skill: skill.path.count("/"), reverse=True):
            # Deepest first: a nested skill's SKILL.md is registered as its own (named by its front
            # matter), not as a supporting file of the skill around it.
            for file in skill.files:
                if file.uri not in self._resources:
                    self._resources[file.uri] = self._register(skill, file)
                elif file.path == SKILL_FILE and file.uri not in self._skill_files:
                    self._resources[file.uri] = self._register(skill, file, replace=True)
                self._owners.setdefault(file.uri, set()).add(skill.uri)
        for skill in skills:
            self._skills[skill.uri] = skill
        self._rebuild_directories()

    def remove(self, uri: str) -> None:
        """Stop serving the skill whose ``SKILL.md`` is ``uri``; ``KeyError`` if there is none."""
        skill = self._skills.pop(uri)
        for file in skill.files:
            owners = self._owners[file.uri]
            owners.discard(uri)
            if not owners:
                del self._owners[file.uri]
                del self._resources[file.uri]
                self._skill_files.discard(file.uri)
                if file.uri in self._catalog.resources:
                    self._catalog.remove_resource(file.uri)
        self._rebuild_directories()

    def _digest(self, uri: str) -> str:
        owner = next(iter(self._owners[uri]))
        return next(file.digest for file in self._skills[owner].files if file.uri == uri)

    def _register(self, skill: Skill, file: SkillFile, *, replace: bool = False) -> Resource:
        text = file.text
        if file.path == SKILL_FILE:
            # The SEP's resource metadata: name and description from the front matter.
            self._skill_files.add(file.uri)
            name, description = skill.name, skill.description
        else:
            name, description = file.path, None
        resource = build_resource(
            file.uri, text if text is not None else file.content, name=name, description=description,
            mime_type=file.mime_type, size=file.size, cache=skill.cache,
        )
        assert isinstance(resource, Resource)  # a skill file's URI has no template braces: quoted
        if replace:
            self._catalog.replace(resource)
        else:
            self._catalog.add(resource)
        return resource

    def _rebuild_directories(self) -> None:
        """Every directory of every skill (organizational prefixes included) and its children."""
        children: dict[str, dict[str, dict[str, Any]]] = {}

        def add_path(uri: str, entry: dict[str, Any] | None) -> None:
            parts = uri.removeprefix(_SCHEME).split("/")
            for index in range(1, len(parts)):
                folder = _SCHEME + "/".join(parts[:index])
                child = _SCHEME + "/".join(parts[: index + 1])
                listing = children.setdefault(folder, {})
                if index < len(parts) - 1 or entry is None:
                    listing.setdefault(
                        child, {"uri": child, "name": unquote(parts[index]), "mimeType": DIRECTORY_MIME_TYPE}
                    )
                    children.setdefault(child, {})
                else:
                    listing[child] = entry

        for skill in self._skills.values():
            children.setdefault(skill.root, {})
            for folder in skill.directories:
                add_path(f"{skill.root}/{quote(folder, safe=_PATH_SAFE)}", None)
            for file in skill.files:
                add_path(file.uri, self._resources[file.uri].definition)
        self._directories = {
            folder: [listing[uri] for uri in sorted(listing)] for folder, listing in children.items()
        }

    # -- the methods ---------------------------------------------------------------------------
    async def list_skills(self, connection: Any, params: Mapping[str, Any], context: Context) -> dict[str, Any]:
        entries = [skill.entry for skill in self._skills.values()]
        result = _listing("skills", entries, params, self._catalog.page_size, "skills/list")
        if _modern(context):  # ListSkillsResult is cacheable (2026-07-28 on)
            result.update(self._default_cache().hints())
        return result

    async def get_skill(self, connection: Any, params: Mapping[str, Any], context: Context) -> dict[str, Any]:
        uri = _string(params, "uri", "skills/get")
        skill = self._skills.get(uri)
        if skill is None:
            raise MCPError(INVALID_PARAMS, f"No skill is served at {uri}", {"uri": uri})
        result: dict[str, Any] = {"skill": skill.entry}
        if _modern(context):
            result.update((skill.cache or self._default_cache()).hints())
        return result

    async def read_directory(self, connection: Any, params: Mapping[str, Any], context: Context) -> dict[str, Any]:
        uri = _string(params, "uri", "resources/directory/read")
        listing = self._directories.get(uri)
        if listing is None:
            if uri in self._resources or uri in self._catalog.resources:
                raise MCPError(INVALID_PARAMS, f"{uri} is not a directory resource", {"uri": uri})
            if uri.endswith("/") and uri.rstrip("/") in self._directories:
                raise MCPError(
                    INVALID_PARAMS, f"No directory resource at {uri}: directory URIs have no trailing slash",
                    {"uri": uri},
                )
            raise MCPError(INVALID_PARAMS, f"No directory resource at {uri}", {"uri": uri})
        return _listing("resources", listing, params, self._catalog.page_size, "resources/directory/read")
