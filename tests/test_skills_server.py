"""The skills extension (SEP-2640) on the server: loading skills, and serving them in both eras.

Loading: every file of a skill is read once, with its ``sha256:`` digest and size; the front
matter is parsed by the YAML 1.2 core schema (what hosts in other languages read), and what
cannot be served (a bad ``SKILL.md``, the 512-file and 16 MiB limits, links out of the
directory, conflicting URIs) is refused with a :class:`SkillError` naming the file, before
anything is served.  Serving: ``skills/list`` (paginated) and ``skills/get`` give the entries,
``resources/list`` and ``resources/read`` the files, ``resources/directory/read`` each
directory's children, with the errors the SEP names (-32602) and, in the 2026-07-28 era, the
caching hints.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from trio_mcp_sse import MCPError
from trio_mcp_sse.client import ClientSession, open_session
from trio_mcp_sse.server import CachePolicy, MCPServer, Skill, SkillError, load_skills_directory
from trio_mcp_sse.testing import connected_client, open_http_client

SKILLS = "io.modelcontextprotocol/skills"
PDF_SKILL_MD = (
    "---\n"
    "name: pdf-processing\n"
    "description: Extract, fill, and assemble PDF documents\n"
    "license: Apache-2.0\n"
    "metadata:\n"
    "  version: \"2.1\"\n"
    "---\n"
    "\n"
    "# PDF processing\n"
    "\n"
    "Use the forms in references/FORMS.md.\n"
)
FORMS = "# Forms\n\nFill every field.\n"
EXTRACT = "print('extract')\n"
LOGO = b"\x89PNG\r\n\x1a\n\x00\xff\xfe"


def digest(data: str | bytes) -> str:
    return "sha256:" + hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def size(data: str | bytes) -> int:
    return len(data.encode() if isinstance(data, str) else data)


def skill_md(name: str, description: str = "Does things", extra: str = "") -> str:
    return f"---\nname: {name}\ndescription: {description}\n{extra}---\nBody of {name}.\n"


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def skills_dir(tmp_path: Path) -> Path:
    """``skills/pdf-processing`` (with references/, scripts/, assets/ and an empty templates/),
    plus what is not served: hidden files, a README outside every skill."""
    root = tmp_path / "skills"
    write(root / "pdf-processing" / "SKILL.md", PDF_SKILL_MD)
    write(root / "pdf-processing" / "references" / "FORMS.md", FORMS)
    write(root / "pdf-processing" / "scripts" / "extract.py", EXTRACT)
    write(root / "pdf-processing" / "assets" / "logo.png", LOGO)
    (root / "pdf-processing" / "templates").mkdir()
    write(root / "pdf-processing" / ".DS_Store", b"\x00")
    write(root / "pdf-processing" / ".git" / "HEAD", "ref: refs/heads/main\n")
    write(root / "README.md", "Skills of this server.\n")
    return root


PDF_ENTRY = {
    "uri": "skill://pdf-processing/SKILL.md",
    "frontmatter": {
        "name": "pdf-processing",
        "description": "Extract, fill, and assemble PDF documents",
        "license": "Apache-2.0",
        "metadata": {"version": "2.1"},
    },
    "resources": [
        {"uri": "skill://pdf-processing/SKILL.md", "digest": digest(PDF_SKILL_MD), "size": size(PDF_SKILL_MD)},
        {"uri": "skill://pdf-processing/assets/logo.png", "digest": digest(LOGO), "size": size(LOGO)},
        {"uri": "skill://pdf-processing/references/FORMS.md", "digest": digest(FORMS), "size": size(FORMS)},
        {"uri": "skill://pdf-processing/scripts/extract.py", "digest": digest(EXTRACT), "size": size(EXTRACT)},
    ],
}


# -- loading ---------------------------------------------------------------------------------------
def test_a_directory_is_loaded_with_digests_sizes_and_front_matter(skills_dir: Path) -> None:
    (skill,) = load_skills_directory(skills_dir)
    assert skill.path == "pdf-processing"
    assert skill.uri == "skill://pdf-processing/SKILL.md"
    assert skill.root == "skill://pdf-processing"
    assert skill.name == "pdf-processing"
    assert skill.description == "Extract, fill, and assemble PDF documents"
    assert skill.entry == PDF_ENTRY
    assert [(f.path, f.mime_type, f.size, f.digest) for f in skill.files] == [
        ("SKILL.md", "text/markdown", size(PDF_SKILL_MD), digest(PDF_SKILL_MD)),
        ("assets/logo.png", "image/png", size(LOGO), digest(LOGO)),
        ("references/FORMS.md", "text/markdown", size(FORMS), digest(FORMS)),
        ("scripts/extract.py", "text/x-python", size(EXTRACT), digest(EXTRACT)),
    ]
    assert skill.files[1].content == LOGO
    assert skill.files[1].text is None
    assert skill.files[2].text == FORMS
    assert skill.directories == ("assets", "references", "scripts", "templates")


def test_skill_paths_follow_the_layout_and_the_prefix(tmp_path: Path) -> None:
    write(tmp_path / "acme" / "billing" / "refunds" / "SKILL.md", skill_md("refunds"))
    write(tmp_path / "acme" / "support" / "refunds" / "SKILL.md", skill_md("refunds"))
    write(tmp_path / "git-workflow" / "SKILL.md", skill_md("git-workflow"))
    assert [s.uri for s in load_skills_directory(tmp_path)] == [
        "skill://acme/billing/refunds/SKILL.md",
        "skill://acme/support/refunds/SKILL.md",
        "skill://git-workflow/SKILL.md",
    ]
    assert [s.path for s in load_skills_directory(tmp_path, prefix="team/v2")] == [
        "team/v2/acme/billing/refunds", "team/v2/acme/support/refunds", "team/v2/git-workflow",
    ]
    # A directory that is itself a skill is the skill of its own name.
    assert [s.uri for s in load_skills_directory(tmp_path / "git-workflow")] == ["skill://git-workflow/SKILL.md"]
    with pytest.raises(SkillError) as refused:
        load_skills_directory(tmp_path, prefix="a b")
    assert str(refused.value) == (
        "prefix 'a b': the segment 'a b' is not a valid URI segment (letters, digits and -._~!$&'()*+,;= only)"
    )


def test_a_nested_skill_is_a_skill_whose_files_are_the_outer_ones_too(tmp_path: Path) -> None:
    write(tmp_path / "outer" / "SKILL.md", skill_md("outer"))
    write(tmp_path / "outer" / "inner" / "SKILL.md", skill_md("inner"))
    write(tmp_path / "outer" / "inner" / "notes.md", "notes\n")
    outer, inner = load_skills_directory(tmp_path)
    assert [r["uri"] for r in outer.entry["resources"]] == [
        "skill://outer/SKILL.md", "skill://outer/inner/SKILL.md", "skill://outer/inner/notes.md",
    ]
    assert [r["uri"] for r in inner.entry["resources"]] == [
        "skill://outer/inner/SKILL.md", "skill://outer/inner/notes.md",
    ]
    server = MCPServer("nested")
    server.add_skills([outer, inner])
    # One resource per file, named by the innermost skill: its SKILL.md by its own front matter.
    assert {uri: r.name for uri, r in server.resources.items()} == {
        "skill://outer/SKILL.md": "outer",
        "skill://outer/inner/SKILL.md": "inner",
        "skill://outer/inner/notes.md": "notes.md",
    }
    server.remove_skill("skill://outer/SKILL.md")
    assert sorted(server.resources) == ["skill://outer/inner/SKILL.md", "skill://outer/inner/notes.md"]
    server.remove_skill("skill://outer/inner/SKILL.md")
    assert dict(server.resources) == {}
    assert dict(server.skills) == {}
    with pytest.raises(KeyError):
        server.remove_skill("skill://outer/inner/SKILL.md")


def test_front_matter_is_read_by_the_yaml_1_2_core_schema() -> None:
    extra = (
        "switch: on\nanswer: no\ncreated: 2024-01-01\ncount: 017\nmask: 0x1f\nmode: 0o17\n"
        "ratio: 1.5\nbig: 1e3\nflag: true\nnothing: ~\nempty:\n'<<': merged\ntags: [a, 'b c']\n"
    )
    skill = Skill.from_files("typed", {"SKILL.md": skill_md("typed", extra=extra)})
    assert skill.frontmatter == {
        "name": "typed", "description": "Does things",
        "switch": "on", "answer": "no", "created": "2024-01-01", "count": 17, "mask": 31, "mode": 15,
        "ratio": 1.5, "big": 1000.0, "flag": True, "nothing": None, "empty": None, "<<": "merged",
        "tags": ["a", "b c"],
    }


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"SKILL.md": "# no front matter\n"},
         "skill 'demo', SKILL.md: it does not begin with YAML front matter (a line '---', the YAML, then a line '---')"),
        ({"SKILL.md": "---\nname: [demo\n---\n"},
         "skill 'demo', SKILL.md: its front matter is not valid YAML: expected ',' or ']', but got '<stream end>' "
         "(line 2 of the file)"),
        ({"SKILL.md": "---\n- demo\n---\n"}, "skill 'demo', SKILL.md: its front matter must be a YAML mapping, not list"),
        ({"SKILL.md": "---\nname: demo\nname: demo\ndescription: d\n---\n"},
         "skill 'demo', SKILL.md: its front matter is not valid YAML: found duplicate key 'name' (line 3 of the file)"),
        ({"SKILL.md": "---\nname: demo\ndescription: d\n1: one\n---\n"},
         "skill 'demo', SKILL.md: the front matter has the key 1, which is not a string (quote it)"),
        ({"SKILL.md": "---\nname: demo\ndescription: d\nsince: !!timestamp 2024-01-01\n---\n"},
         "skill 'demo', SKILL.md: the front matter field since is a date, which JSON cannot carry "
         "(quote it to make it a string)"),
        ({"SKILL.md": "---\nname: demo\ndescription: d\nlimits: {top: .inf}\n---\n"},
         "skill 'demo', SKILL.md: the front matter field limits.top is inf, which JSON cannot carry"),
        ({"SKILL.md": "---\ndescription: d\n---\n"},
         "skill 'demo', SKILL.md: its front matter has no 'name' (a non-empty string)"),
        ({"SKILL.md": "---\nname: demo\ndescription: ''\n---\n"},
         "skill 'demo', SKILL.md: its front matter has no 'description' (a non-empty string)"),
        ({"SKILL.md": "---\nname: other\ndescription: d\n---\n"},
         "skill 'demo', SKILL.md: its name 'other' must equal the name of the skill's directory, 'demo' "
         "(the last segment of its skill path)"),
        ({"SKILL.md": "---\nname: Demo\ndescription: d\n---\n"},
         "skill 'demo', SKILL.md: the name 'Demo' breaks the Agent Skills naming rules (1-64 characters: "
         "lowercase letters, digits and hyphens, no hyphen first, last or twice in a row)"),
        ({"SKILL.md": "---\nname: demo\ndescription: " + "x" * 1025 + "\n---\n"},
         "skill 'demo', SKILL.md: its description has 1025 characters; the Agent Skills specification allows 1024"),
        ({"SKILL.md": "---\nname: demo\ndescription: d\nmetadata:\n  io.modelcontextprotocol/x: 1\n---\n"},
         "skill 'demo', SKILL.md: its metadata key 'io.modelcontextprotocol/x' uses the prefix "
         "'io.modelcontextprotocol/', reserved for metadata MCP extensions define (none is defined yet)"),
        ({"SKILL.md": b"---\nname: demo\ndescription: \xff\n---\n"},
         "skill 'demo', SKILL.md: not UTF-8 text (byte 28)"),
        ({"README.md": "hello"}, "skill 'demo', SKILL.md: missing (every skill has a SKILL.md at its root)"),
        ({"SKILL.md": skill_md("demo"), "a/../b.md": "x"},
         "skill 'demo': 'a/../b.md' is not a relative file path ('/'-separated, without empty, '.' or '..' segments)"),
        ({"SKILL.md": skill_md("demo"), "docs": "x", "docs/a.md": "y"}, "skill 'demo', docs: both a file and a directory"),
    ],
)
def test_what_cannot_be_served_is_refused_naming_the_file(files: dict[str, str | bytes], message: str) -> None:
    with pytest.raises(SkillError) as refused:
        Skill.from_files("demo", files)
    assert str(refused.value) == message


def test_several_problems_of_one_skill_md_are_told_together() -> None:
    with pytest.raises(SkillError) as refused:
        Skill.from_files("demo", {"SKILL.md": "---\nname: Bad--Name\n---\n"})
    assert str(refused.value) == (
        "skill 'demo', SKILL.md: the name 'Bad--Name' breaks the Agent Skills naming rules (1-64 characters: "
        "lowercase letters, digits and hyphens, no hyphen first, last or twice in a row); its front matter has "
        "no 'description' (a non-empty string)"
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "a skill path is a non-empty string, not ''"),
        ("acme//refunds", "skill path 'acme//refunds': the segment '' is not a valid URI segment "
                          "(letters, digits and -._~!$&'()*+,;= only)"),
        ("a b/refunds", "skill path 'a b/refunds': the segment 'a b' is not a valid URI segment "
                        "(letters, digits and -._~!$&'()*+,;= only)"),
        ("acme/-refunds", "skill path 'acme/-refunds': its last segment is the skill's name, and the name '-refunds' "
                          "breaks the Agent Skills naming rules (1-64 characters: lowercase letters, digits and "
                          "hyphens, no hyphen first, last or twice in a row)"),
    ],
)
def test_a_skill_path_must_make_a_valid_uri(path: str, message: str) -> None:
    with pytest.raises(SkillError) as refused:
        Skill.from_files(path, {"SKILL.md": skill_md("refunds")})
    assert str(refused.value) == message


def test_the_limits_are_inclusive_and_enforced() -> None:
    at_count = {"SKILL.md": skill_md("big"), **{f"f{i:03}.txt": "x" for i in range(511)}}
    assert len(Skill.from_files("big", at_count).files) == 512
    with pytest.raises(SkillError) as refused:
        Skill.from_files("big", {**at_count, "one-more.txt": "x"})
    assert str(refused.value) == "skill 'big': 513 files; a skill may have at most 512 (SEP-2640's limit, SKILL.md included)"
    head = skill_md("big")
    at_size = {"SKILL.md": head, "blob.bin": b"\x00" * (16 * 1024 * 1024 - size(head))}
    assert sum(f.size for f in Skill.from_files("big", at_size).files) == 16 * 1024 * 1024
    with pytest.raises(SkillError) as refused:
        Skill.from_files("big", {**at_size, "one.txt": "x"})
    assert str(refused.value) == (
        f"skill 'big': its files total {16 * 1024 * 1024 + 1} bytes; a skill may have at most 16777216 (16 MiB, SEP-2640's "
        f"limit); the largest: blob.bin ({16 * 1024 * 1024 - size(head)} bytes), SKILL.md ({size(head)} bytes), "
        "one.txt (1 bytes)"
    )


def test_a_directory_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    write(tmp_path / "big" / "SKILL.md", skill_md("big"))
    huge = tmp_path / "big" / "data.bin"
    with huge.open("wb") as file:
        file.truncate(16 * 1024 * 1024 + 1)  # sparse: nothing is written, and nothing is read
    with pytest.raises(SkillError) as refused:
        load_skills_directory(tmp_path)
    assert str(refused.value) == (
        f"{tmp_path / 'big'}: its files total {16 * 1024 * 1024 + 1 + size(skill_md('big'))} bytes; a skill may have "
        f"at most 16777216 (16 MiB, SEP-2640's limit); the largest: data.bin (16777217 bytes), SKILL.md "
        f"({size(skill_md('big'))} bytes)"
    )


def test_errors_from_a_directory_name_the_file_on_disk(tmp_path: Path) -> None:
    write(tmp_path / "demo" / "SKILL.md", "---\nname: demo\n---\n")
    with pytest.raises(SkillError) as refused:
        load_skills_directory(tmp_path)
    assert str(refused.value) == f"{tmp_path / 'demo' / 'SKILL.md'}: its front matter has no 'description' (a non-empty string)"
    with pytest.raises(SkillError) as refused:
        load_skills_directory(tmp_path / "nowhere")
    assert str(refused.value) == f"{tmp_path / 'nowhere'}: no such directory"
    with pytest.raises(SkillError) as refused:
        load_skills_directory(tmp_path / "demo" / "SKILL.md")
    assert str(refused.value) == f"{tmp_path / 'demo' / 'SKILL.md'}: not a directory"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SkillError) as refused:
        load_skills_directory(empty)
    assert str(refused.value) == f"{empty}: holds no skill (no SKILL.md in it or in any directory below it)"


def test_links_inside_the_directory_are_read_and_others_refused(tmp_path: Path) -> None:
    root = tmp_path / "skills"
    write(root / "shared" / "STYLE.md", "style\n")  # outside every skill, but inside the directory
    write(root / "demo" / "SKILL.md", skill_md("demo"))
    os.symlink(root / "shared" / "STYLE.md", root / "demo" / "STYLE.md")
    (skill,) = load_skills_directory(root)
    assert [(f.path, f.content) for f in skill.files[1:]] == [("STYLE.md", b"style\n")]
    secret = write(tmp_path / "secret.txt", "secret\n")
    os.symlink(secret, root / "demo" / "leak.txt")
    with pytest.raises(SkillError) as refused:
        load_skills_directory(root)
    assert str(refused.value) == (
        f"{root / 'demo' / 'leak.txt'}: a symbolic link to {secret.resolve()}, outside {root}: not served"
    )
    os.remove(root / "demo" / "leak.txt")
    os.symlink(root / "shared", root / "demo" / "shared")
    with pytest.raises(SkillError) as refused:
        load_skills_directory(root)
    assert str(refused.value) == (
        f"{root / 'demo' / 'shared'}: a symbolic link to a directory: not followed (link the files instead)"
    )
    # Outside every skill, the same link is not read, so it is not refused.
    os.remove(root / "demo" / "shared")
    os.symlink(secret, root / "leak.txt")
    assert [s.uri for s in load_skills_directory(root)] == ["skill://demo/SKILL.md"]


def test_adding_is_all_or_nothing_and_uris_are_never_shared_by_different_contents() -> None:
    server = MCPServer("conflicts")
    server.add_resource("skill://taken/SKILL.md", "someone else's")
    first = Skill.from_files("fine", {"SKILL.md": skill_md("fine")})
    taken = Skill.from_files("taken", {"SKILL.md": skill_md("taken")})
    with pytest.raises(SkillError) as refused:
        server.add_skills([first, taken])
    assert str(refused.value) == "skill://taken/SKILL.md: a resource of that URI is already registered"
    assert dict(server.skills) == {}
    assert list(server.resources) == ["skill://taken/SKILL.md"]
    server.add_skills([first])
    with pytest.raises(SkillError) as refused:
        server.add_skill("fine", {"SKILL.md": skill_md("fine")})
    assert str(refused.value) == "a skill 'skill://fine/SKILL.md' is already served"
    outer = Skill.from_files("outer", {"SKILL.md": skill_md("outer"), "inner/SKILL.md": skill_md("inner")})
    server.add_skills([outer])
    with pytest.raises(SkillError) as refused:
        server.add_skill("outer/inner", {"SKILL.md": skill_md("inner", description="Changed")})
    assert str(refused.value) == "skill://outer/inner/SKILL.md: two skills have different contents at this URI"
    # The same contents are one resource; it becomes the inner skill's own SKILL.md.
    server.add_skill("outer/inner", {"SKILL.md": skill_md("inner")})
    assert server.resources["skill://outer/inner/SKILL.md"].name == "inner"
    with pytest.raises(TypeError):
        server.add_skills(["skill://fine/SKILL.md"])  # type: ignore[list-item]


# -- serving: the handshake era ----------------------------------------------------------------------
def pdf_server(skills_dir: Path, **options: Any) -> MCPServer:
    server = MCPServer("skills", "1.0.0", **options)
    assert [s.uri for s in server.add_skills_directory(skills_dir)] == ["skill://pdf-processing/SKILL.md"]
    return server


async def test_a_server_without_skills_announces_nothing_and_has_no_methods() -> None:
    async with connected_client(MCPServer("plain")) as client:
        assert (await client.call_error("skills/list"))["code"] == -32601
        assert (await client.call_error("resources/directory/read", {"uri": "skill://x"}))["code"] == -32601
    assert "extensions" not in MCPServer("plain").capabilities()


async def test_the_extension_is_announced_with_directory_read(skills_dir: Path) -> None:
    server = pdf_server(skills_dir)
    capabilities = server.capabilities()
    assert capabilities["extensions"] == {SKILLS: {"directoryRead": True}}
    assert capabilities["resources"] == {"subscribe": True, "listChanged": True}
    assert server.discover_result()["capabilities"]["extensions"] == {SKILLS: {"directoryRead": True}}


async def test_skills_list_and_get_answer_the_entries(skills_dir: Path) -> None:
    async with connected_client(pdf_server(skills_dir)) as client:
        assert await client.call("skills/list") == {"skills": [PDF_ENTRY]}
        assert await client.call("skills/get", {"uri": "skill://pdf-processing/SKILL.md"}) == {"skill": PDF_ENTRY}
        assert await client.call_error("skills/get", {"uri": "skill://nope/SKILL.md"}) == {
            "code": -32602, "message": "No skill is served at skill://nope/SKILL.md",
            "data": {"uri": "skill://nope/SKILL.md"},
        }
        assert await client.call_error("skills/get", {}) == {
            "code": -32602, "message": "skills/get: params.uri must be a string",
        }


async def test_skills_list_is_paginated_and_entries_are_never_split() -> None:
    server = MCPServer("many", page_size=2)
    for name in ("alpha", "beta", "gamma"):
        server.add_skill(name, {"SKILL.md": skill_md(name), "notes.md": f"{name} notes"})
    async with connected_client(server) as client:
        first = await client.call("skills/list")
        assert [s["uri"] for s in first["skills"]] == ["skill://alpha/SKILL.md", "skill://beta/SKILL.md"]
        assert first["nextCursor"] == "2"
        assert [len(s["resources"]) for s in first["skills"]] == [2, 2]
        second = await client.call("skills/list", {"cursor": "2"})
        assert [s["uri"] for s in second["skills"]] == ["skill://gamma/SKILL.md"]
        assert "nextCursor" not in second
        assert await client.call_error("skills/list", {"cursor": "nope"}) == {
            "code": -32602, "message": "skills/list: invalid cursor",
        }


async def test_the_files_are_ordinary_resources(skills_dir: Path) -> None:
    async with connected_client(pdf_server(skills_dir)) as client:
        listed = (await client.call("resources/list"))["resources"]
        assert listed == [
            {"uri": "skill://pdf-processing/SKILL.md", "name": "pdf-processing",
             "description": "Extract, fill, and assemble PDF documents", "mimeType": "text/markdown",
             "size": size(PDF_SKILL_MD)},
            {"uri": "skill://pdf-processing/assets/logo.png", "name": "assets/logo.png", "mimeType": "image/png",
             "size": size(LOGO)},
            {"uri": "skill://pdf-processing/references/FORMS.md", "name": "references/FORMS.md",
             "mimeType": "text/markdown", "size": size(FORMS)},
            {"uri": "skill://pdf-processing/scripts/extract.py", "name": "scripts/extract.py",
             "mimeType": "text/x-python", "size": size(EXTRACT)},
        ]
        assert await client.call("resources/read", {"uri": "skill://pdf-processing/SKILL.md"}) == {
            "contents": [{"uri": "skill://pdf-processing/SKILL.md", "mimeType": "text/markdown", "text": PDF_SKILL_MD}]
        }
        assert await client.call("resources/read", {"uri": "skill://pdf-processing/assets/logo.png"}) == {
            "contents": [{"uri": "skill://pdf-processing/assets/logo.png", "mimeType": "image/png",
                          "blob": base64.b64encode(LOGO).decode()}]
        }
        error = await client.call_error("resources/read", {"uri": "skill://pdf-processing/.DS_Store"})
        assert error["code"] == -32002


def directory(uri: str, name: str) -> dict[str, Any]:
    return {"uri": uri, "name": name, "mimeType": "inode/directory"}


async def test_directory_read_lists_the_direct_children(skills_dir: Path) -> None:
    async with connected_client(pdf_server(skills_dir)) as client:
        root = await client.call("resources/directory/read", {"uri": "skill://pdf-processing"})
        assert root == {"resources": [
            {"uri": "skill://pdf-processing/SKILL.md", "name": "pdf-processing",
             "description": "Extract, fill, and assemble PDF documents", "mimeType": "text/markdown",
             "size": size(PDF_SKILL_MD)},
            directory("skill://pdf-processing/assets", "assets"),
            directory("skill://pdf-processing/references", "references"),
            directory("skill://pdf-processing/scripts", "scripts"),
            directory("skill://pdf-processing/templates", "templates"),
        ]}
        assert await client.call("resources/directory/read", {"uri": "skill://pdf-processing/references"}) == {
            "resources": [{"uri": "skill://pdf-processing/references/FORMS.md", "name": "references/FORMS.md",
                           "mimeType": "text/markdown", "size": size(FORMS)}]
        }
        assert await client.call("resources/directory/read", {"uri": "skill://pdf-processing/templates"}) == {
            "resources": []
        }
        assert await client.call_error("resources/directory/read", {"uri": "skill://pdf-processing/SKILL.md"}) == {
            "code": -32602, "message": "skill://pdf-processing/SKILL.md is not a directory resource",
            "data": {"uri": "skill://pdf-processing/SKILL.md"},
        }
        assert await client.call_error("resources/directory/read", {"uri": "skill://nothing"}) == {
            "code": -32602, "message": "No directory resource at skill://nothing", "data": {"uri": "skill://nothing"},
        }
        assert await client.call_error("resources/directory/read", {"uri": "skill://pdf-processing/"}) == {
            "code": -32602,
            "message": "No directory resource at skill://pdf-processing/: directory URIs have no trailing slash",
            "data": {"uri": "skill://pdf-processing/"},
        }
        assert (await client.call_error("resources/directory/read", {}))["code"] == -32602


async def test_directory_read_covers_organizational_prefixes_and_pages() -> None:
    server = MCPServer("org", page_size=1)
    server.add_skill("acme/billing/refunds", {"SKILL.md": skill_md("refunds"), "examples/email.md": "Dear"})
    async with connected_client(server) as client:
        assert await client.call("resources/directory/read", {"uri": "skill://acme"}) == {
            "resources": [directory("skill://acme/billing", "billing")]
        }
        first = await client.call("resources/directory/read", {"uri": "skill://acme/billing/refunds"})
        assert first == {
            "resources": [{"uri": "skill://acme/billing/refunds/SKILL.md", "name": "refunds",
                           "description": "Does things", "mimeType": "text/markdown",
                           "size": size(skill_md("refunds"))}],
            "nextCursor": "1",
        }
        second = await client.call("resources/directory/read", {"uri": "skill://acme/billing/refunds", "cursor": "1"})
        assert second == {"resources": [directory("skill://acme/billing/refunds/examples", "examples")]}


async def test_removing_a_skill_takes_its_files_and_directories_away(skills_dir: Path) -> None:
    server = pdf_server(skills_dir)
    server.remove_skill("skill://pdf-processing/SKILL.md")
    async with connected_client(server) as client:
        assert await client.call("skills/list") == {"skills": []}
        assert (await client.call("resources/list"))["resources"] == []
        error = await client.call_error("resources/directory/read", {"uri": "skill://pdf-processing"})
        assert error["message"] == "No directory resource at skill://pdf-processing"
    assert server.capabilities()["extensions"] == {SKILLS: {"directoryRead": True}}  # an empty listing


# -- serving: the 2026-07-28 era ---------------------------------------------------------------------
@asynccontextmanager
async def modern_session(server: MCPServer) -> AsyncIterator[ClientSession]:
    async with (
        open_http_client(server.http_app()) as http,
        open_session("http://testserver/mcp", http_client=http, protocol="2026-07-28") as session,
    ):
        assert session.era == "modern"
        yield session


META = {"io.modelcontextprotocol/serverInfo": {"name": "skills", "version": "1.0.0"}}


async def test_modern_results_carry_the_caching_hints(skills_dir: Path) -> None:
    server = pdf_server(skills_dir, cache=CachePolicy(ttl_ms=60_000, scope="public"))
    server.add_skill("cached", {"SKILL.md": skill_md("cached")}, cache=CachePolicy(ttl_ms=5))
    async with modern_session(server) as session:
        listing = await session.send_request("skills/list")
        assert listing == {
            "skills": [PDF_ENTRY, server.skills["skill://cached/SKILL.md"].entry],
            "ttlMs": 60_000, "cacheScope": "public", "resultType": "complete", "_meta": META,
        }
        assert await session.send_request("skills/get", {"uri": "skill://pdf-processing/SKILL.md"}) == {
            "skill": PDF_ENTRY, "ttlMs": 60_000, "cacheScope": "public", "resultType": "complete", "_meta": META,
        }
        cached = await session.send_request("skills/get", {"uri": "skill://cached/SKILL.md"})
        assert (cached["ttlMs"], cached["cacheScope"]) == (5, "private")
        read = await session.send_request("resources/read", {"uri": "skill://cached/SKILL.md"})
        assert (read["ttlMs"], read["cacheScope"]) == (5, "private")
        assert await session.send_request("resources/directory/read", {"uri": "skill://pdf-processing/references"}) == {
            "resources": [{"uri": "skill://pdf-processing/references/FORMS.md", "name": "references/FORMS.md",
                           "mimeType": "text/markdown", "size": size(FORMS)}],
            "resultType": "complete", "_meta": META,
        }


async def test_modern_errors_are_invalid_params(skills_dir: Path) -> None:
    async with modern_session(pdf_server(skills_dir)) as session:
        with pytest.raises(MCPError) as unknown:
            await session.send_request("skills/get", {"uri": "skill://nope/SKILL.md"})
        assert (unknown.value.code, unknown.value.message) == (-32602, "No skill is served at skill://nope/SKILL.md")
        with pytest.raises(MCPError) as not_a_directory:
            await session.send_request("resources/directory/read", {"uri": "skill://pdf-processing/SKILL.md"})
        assert (not_a_directory.value.code, not_a_directory.value.message) == (
            -32602, "skill://pdf-processing/SKILL.md is not a directory resource",
        )
        with pytest.raises(MCPError) as unread:
            await session.send_request("resources/read", {"uri": "skill://pdf-processing/nothing.md"})
        assert (unread.value.code, unread.value.data) == (-32602, {"uri": "skill://pdf-processing/nothing.md"})
