"""The skill format of the Skills extension (SEP-2640), sans-io: what both sides must agree on.

A skill is a directory whose ``SKILL.md`` begins with YAML front matter; over
MCP every file of it is a resource (``skill://<skill-path>/<file-path>``) and a
skill's *entry* carries the front matter "rendered verbatim as a JSON object"
and the ``sha256:`` digest and size of each file.  The server computes those;
the client checks what it reads against them, front matter included, so the two
must read YAML the same way.  This module is that one way, shared by
``server/_skills.py`` and ``client/_skills.py``; it does no I/O.

**Which YAML.**  PyYAML's ``safe_load`` implements YAML 1.1, where ``on``,
``no`` and ``yes`` are booleans, ``2024-01-01`` a date and ``017`` an octal
number; the JavaScript ``yaml`` package (and most hosts written since) read the
same text by the YAML 1.2 core schema as the strings ``"on"``, ``"2024-01-01"``
and the number 17.  A server and a host that disagree on what the front matter
says fail the host's field-by-field comparison, so :func:`parse_front_matter`
resolves plain scalars by the 1.2 core schema only (null, booleans, decimal /
``0o`` / ``0x`` integers, floats), refuses duplicate keys (1.2 requires them to
be unique), treats ``<<`` as an ordinary key (1.2 has no merge keys), and
refuses anything JSON cannot carry (non-string keys, dates from explicit tags,
binary, infinities).
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any, Final

import yaml

__all__ = [
    "DIRECTORY_MIME_TYPE",
    "MAX_DESCRIPTION_LENGTH",
    "MAX_SKILL_BYTES",
    "MAX_SKILL_RESOURCES",
    "RESERVED_METADATA_PREFIX",
    "SKILLS_EXTENSION",
    "SKILL_FILE",
    "FrontMatterError",
    "digest_of",
    "front_matter_problems",
    "name_problem",
    "parse_front_matter",
    "same_value",
    "split_front_matter",
]

SKILLS_EXTENSION: Final = "io.modelcontextprotocol/skills"
SKILL_FILE: Final = "SKILL.md"
DIRECTORY_MIME_TYPE: Final = "inode/directory"
MAX_SKILL_RESOURCES: Final = 512
"""SEP-2640's limit: files per skill, ``SKILL.md`` included."""
MAX_SKILL_BYTES: Final = 16 * 1024 * 1024
"""SEP-2640's limit: the sum of a skill's file sizes (16 MiB)."""
MAX_DESCRIPTION_LENGTH: Final = 1024
"""The Agent Skills specification's bound on ``description``."""
RESERVED_METADATA_PREFIX: Final = "io.modelcontextprotocol/"
"""Front matter ``metadata`` keys reserved for metadata MCP extensions define (none yet)."""

_NAME: Final = re.compile(r"(?!.*--)[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?\Z")
_FRONT_MATTER: Final = re.compile(r"---\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)


class FrontMatterError(ValueError):
    """A ``SKILL.md`` whose front matter is missing, not YAML, or not a JSON-like mapping."""


def digest_of(data: bytes) -> str:
    """The entry's digest of a file's raw bytes: ``sha256:`` and 64 lowercase hex digits."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def name_problem(name: str) -> str | None:
    """Why ``name`` breaks the Agent Skills naming rules, or ``None`` when it keeps them."""
    if _NAME.match(name):
        return None
    return (
        f"the name {name!r} breaks the Agent Skills naming rules (1-64 characters: lowercase letters, "
        "digits and hyphens, no hyphen first, last or twice in a row)"
    )


# -- YAML, by the 1.2 core schema ----------------------------------------------------------------
class _CoreSchemaLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with the YAML 1.2 core schema's plain scalars (see the module docstring)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, str) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
                if isinstance(key, str):
                    seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _construct_int(loader: yaml.SafeLoader, node: Any) -> int:
    text = str(loader.construct_scalar(node))
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if digits.startswith("0o"):
        return sign * int(digits[2:], 8)
    if digits.startswith("0x"):
        return sign * int(digits[2:], 16)
    return sign * int(digits, 10)  # "017" is seventeen in YAML 1.2, not fifteen


_CoreSchemaLoader.yaml_implicit_resolvers = {}  # its own, filled below: the 1.1 ones are not inherited
for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    ("tag:yaml.org,2002:int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        list("-+.0123456789"),
    ),
):
    _CoreSchemaLoader.add_implicit_resolver(_tag, re.compile(rf"^(?:{_pattern})$"), _first)
_CoreSchemaLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _json_problem(value: Any, path: str = "") -> str | None:
    """Where ``value`` holds something a JSON object cannot carry, or ``None``."""
    where = f"the front matter field {path}" if path else "the front matter"
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} is {value}, which JSON cannot carry"
    if isinstance(value, list):
        for index, item in enumerate(value):
            problem = _json_problem(item, f"{path}[{index}]")
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has the key {key!r}, which is not a string (quote it)"
            problem = _json_problem(item, f"{path}.{key}" if path else key)
            if problem:
                return problem
        return None
    return f"{where} is a {type(value).__name__}, which JSON cannot carry (quote it to make it a string)"


def split_front_matter(text: str) -> tuple[str, str] | None:
    """``(yaml, body)`` of a ``SKILL.md`` (a leading BOM ignored), or ``None`` without front matter."""
    found = _FRONT_MATTER.match(text.removeprefix("\ufeff"))
    if found is None:
        return None
    return found.group(1), text.removeprefix("\ufeff")[found.end():]


def parse_front_matter(text: str) -> dict[str, Any]:
    """The front matter of a ``SKILL.md`` as a JSON-like dict; :class:`FrontMatterError` says why not.

    Only the shape is checked here (a mapping JSON can carry); what the
    fields must hold is :func:`front_matter_problems`.
    """
    parts = split_front_matter(text)
    if parts is None:
        raise FrontMatterError(
            "it does not begin with YAML front matter (a line '---', the YAML, then a line '---')"
        )
    try:
        value = yaml.load(parts[0], Loader=_CoreSchemaLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as invalid:
        mark = getattr(invalid, "problem_mark", None)
        problem = getattr(invalid, "problem", None) or str(invalid)
        line = f" (line {mark.line + 2} of the file)" if mark is not None else ""  # after the '---' line
        raise FrontMatterError(f"its front matter is not valid YAML: {problem}{line}") from None
    if not isinstance(value, dict):
        raise FrontMatterError(f"its front matter must be a YAML mapping, not {type(value).__name__}")
    problem = _json_problem(value)
    if problem:
        raise FrontMatterError(problem)
    return value


def front_matter_problems(front_matter: dict[str, Any]) -> list[str]:
    """What a server must not serve: missing or invalid ``name`` / ``description``, reserved keys."""
    problems = []
    name = front_matter.get("name")
    if not isinstance(name, str) or not name:
        problems.append("its front matter has no 'name' (a non-empty string)")
    else:
        problem = name_problem(name)
        if problem:
            problems.append(problem)
    description = front_matter.get("description")
    if not isinstance(description, str) or not description.strip():
        problems.append("its front matter has no 'description' (a non-empty string)")
    elif len(description) > MAX_DESCRIPTION_LENGTH:
        problems.append(
            f"its description has {len(description)} characters; the Agent Skills specification allows "
            f"{MAX_DESCRIPTION_LENGTH}"
        )
    metadata = front_matter.get("metadata")
    if isinstance(metadata, dict):
        reserved = sorted(key for key in metadata if key.startswith(RESERVED_METADATA_PREFIX))
        if reserved:
            problems.append(
                f"its metadata key {reserved[0]!r} uses the prefix {RESERVED_METADATA_PREFIX!r}, reserved for "
                "metadata MCP extensions define (none is defined yet)"
            )
    return problems


def same_value(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1`` (as Python's ``==`` says), ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)
