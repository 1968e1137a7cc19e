"""The defaults and protocol revisions the documentation quotes are the code's.

**Option tables.**  Every Markdown table of ``docs/`` whose first column names arguments,
fields, options, settings or flags (``| argument | default | ... |``, ``| `SecuritySettings`
field | default | ... |``, ``| parameter | meaning |``) is read.  Its *subject*, the class or
function whose parameters the rows are, is found in the header (```SecuritySettings` field``)
or in what stands between the section's heading and the table, nearest first: a backticked
public name (``SessionLimits(...)``, ``MCPServer.http_app``) or a signature in a ``text``
fence; ``SUBJECTS`` names the subject of the few tables whose text does not (hypercorn's
settings, the command lines).  Each row's default (the ``default`` column, or a ``default X`` /
``X by default`` phrase in the description) is compared with the real one: the signature's
(``inspect.signature``), a dataclass field's, or the command-line parser's.  ``4 MiB``,
``4 * 1024 * 1024`` and ``4194304`` are one value, as are ``30 s`` and ``30.0``, ``none`` and
``None``; ``SessionLimits()`` is built and compared.

A row that cannot be checked (an *effective* default, such as ``SecuritySettings()`` for an
argument whose default is ``None``; a value in words) is listed in ``UNCHECKED`` with its
reason, so anything else that cannot be mapped fails: a new table is checked from the start.

**Signatures.**  A signature shown in a ``text`` fence (``open_session(url, *, timeout=10.0,
...)``) of a public callable must name only its parameters, with its defaults.

**Revisions.**  The revisions the home page and the server guide name are
``trio_mcp_sse._protocol_versions``', and a statement that ``server/discover`` is ``-32601``
says in which era (it is answered in 2026-07-28).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import enum
import importlib
import inspect
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from trio_mcp_sse._protocol_versions import (
    HANDSHAKE_PROTOCOL_VERSIONS,
    MODERN_PROTOCOL_VERSIONS,
    UNANNOUNCED_HTTP_VERSION,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(path for path in DOCS.glob("*.md") if path.name != "conformance-report.md")
NAMESPACES = (
    "trio_mcp_sse",
    "trio_mcp_sse.server",
    "trio_mcp_sse.client",
    "trio_mcp_sse.lowlevel",
    "trio_mcp_sse.broker",
    "trio_mcp_sse.testing",
    "trio_mcp_sse.contrib",
)


class Missing(enum.Enum):
    NO_DEFAULT = "no default"  # a required parameter
    UNKNOWN = "not a parameter"
    UNPARSEABLE = "not a value"
    EMPTY = "nothing written"


NO_DEFAULT = Missing.NO_DEFAULT
UNKNOWN = Missing.UNKNOWN
UNPARSEABLE = Missing.UNPARSEABLE
EMPTY = Missing.EMPTY


# -- where the real defaults come from -----------------------------------------------------------


@dataclass
class Subject:
    """Something with named parameters and defaults: a callable, a parser, a config class."""

    name: str
    defaults: dict[str, Any]
    aliases: dict[str, str] = field(default_factory=dict)  # "--drain-timeout" -> "drain_timeout"

    def default(self, name: str) -> Any:
        for spelling in name.split("/"):  # "-b/--bind"
            found = self.defaults.get(self.aliases.get(spelling, spelling), UNKNOWN)
            if found is not UNKNOWN:
                return found
        return UNKNOWN


def defaults_of_callable(target: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(target) and isinstance(target, type):
        found: dict[str, Any] = {}
        for item in dataclasses.fields(target):
            if not item.init:
                continue
            if item.default is not dataclasses.MISSING:
                found[item.name] = item.default
            elif item.default_factory is not dataclasses.MISSING:
                found[item.name] = item.default_factory()
            else:
                found[item.name] = NO_DEFAULT
        return found
    found = {}
    for parameter in inspect.signature(target).parameters.values():
        if parameter.name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        found[parameter.name] = NO_DEFAULT if parameter.default is parameter.empty else parameter.default
    return found


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def parser_subject(name: str, parse: Callable[[], Any]) -> Subject:
    """The options of the parser ``parse`` builds (captured when it parses, so nothing runs)."""

    def capture(parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Captured(parser)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", capture), pytest.raises(_Captured) as caught:
        parse()
    defaults: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    for action in caught.value.parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        defaults[action.dest] = action.default
        for option in action.option_strings or [action.dest.upper()]:
            aliases[option] = action.dest
    return Subject(name, defaults, aliases)


def attribute_subject(target: type) -> Subject:
    names = {name: getattr(target, name) for name in dir(target) if not name.startswith("_")}
    return Subject(target.__qualname__, {k: v for k, v in names.items() if not callable(v) or v is None})


def resolve_public(name: str) -> Any | None:
    """The public object ``name`` (``SessionLimits``, ``MCPServer.http_app``) names, if any."""
    head, _, rest = name.partition(".")
    for namespace in NAMESPACES:
        module = importlib.import_module(namespace)
        if head in getattr(module, "__all__", ()):
            target = getattr(module, head)
            for part in rest.split(".") if rest else ():
                target = getattr(target, part, None)
                if target is None:
                    return None
            return target
    return None


def callable_subject(name: str) -> Subject | None:
    target = resolve_public(name)
    if target is None or not callable(target):
        return None
    try:
        return Subject(name, defaults_of_callable(target))
    except (TypeError, ValueError):
        return None


def _serve_parser() -> Subject:
    from trio_mcp_sse import _serve

    return parser_subject("python -m trio_mcp_sse serve", lambda: _serve._parse(["app:app"]))


def _conformance_parser() -> Subject:
    from conformance import run

    return parser_subject("python -m conformance.run", lambda: run.parse_args([]))


def _hypercorn_config() -> Subject:
    from hypercorn.config import Config

    subject = attribute_subject(Config)
    subject.aliases.update({"--read-timeout": "read_timeout", "--keep-alive": "keep_alive_timeout",
                            "--graceful-timeout": "graceful_timeout", "--workers": "workers"})
    return subject


# Tables whose subject their text does not name: (page, heading) -> the subject.
SUBJECTS: dict[tuple[str, str], Callable[[], Subject]] = {
    ("deployment.md", "Hypercorn settings that matter for SSE"): _hypercorn_config,
    ("operations.md", "Running with a graceful drain"): _serve_parser,
    ("conformance.md", "The driver: `python -m conformance.run`"): _conformance_parser,
    ("transports.md", "Options"): lambda: Subject(
        "StreamableHTTPTransport", defaults_of_callable(resolve_public("StreamableHTTPTransport"))
    ),
}

# Rows whose default is not the code's literal default, each with the reason: (page, name) -> why.
UNCHECKED: dict[tuple[str, str], str] = {
    ("operations.md", "security"): "None in the signature: a SecuritySettings() is made",
    ("operations.md", "limits"): "None in the signature: a SessionLimits() is made",
    ("operations.md", "registry"): "None in the signature: an in-process registry is made",
    ("operations.md", "-b/--bind"): "None in the parser (an append option): 127.0.0.1:8000 is bound",
    ("operations.md", "--broker"): "None in the parser: $TRIO_MCP_SSE_BROKER is read",
    ("operations.md", "--keep-alive-max-requests"): "None in the parser: hypercorn's own (1000) applies",
    ("operations.md", "--backlog"): "None in the parser: hypercorn's own (100) applies",
    ("operations.md", "--no-hypercorn-patches"): "a store_false flag: the patches are on unless given",
    ("security.md", "algorithms"): "the default tuple, summarized in words (RS/PS/ES 256-512, EdDSA)",
    ("client.md", "redirect"): "None in the signature: a LoopbackRedirect() is made",
    ("tasks.md", "task"): "ToolOptions is a TypedDict: False when not given, kept as Tool.task None",
    ("client.md", "store"): "None in the signature: a MemoryTokenStore() is made",
    ("client.md", "client_metadata"): "None in the signature: no other fields ({})",
    ("client.md", "read_timeout"): "the quoted 15 s is the server's keepalive interval, not this default",
    ("conformance.md", "--scenario"): "an append option: every scenario of the set unless given",
    ("conformance.md", "--expected-failures"): "None in the parser: the file named after the set is used",
}


# -- reading the pages ---------------------------------------------------------------------------

FENCE = re.compile(r"^\s*(?P<ticks>`{3,})(?P<lang>[\w+-]*)\s*$")
HEADING = re.compile(r"^(?P<level>#{1,6})\s+(?P<title>.+?)\s*$")
CELL_SPLIT = re.compile(r"(?<!\\)\|")
KNOB_HEADER = re.compile(r"(?:^|\s)(argument|parameter|field|option|setting|flag)s?$", re.IGNORECASE)


@dataclass
class Table:
    page: str
    line: int
    heading: str
    context: str  # what stands between the heading and the table, text fences included
    header: list[str]
    rows: list[list[str]]

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def cells(line: str) -> list[str]:
    return [cell.strip().replace("\\|", "|") for cell in CELL_SPLIT.split(line.strip().strip("|"))]


def tables_of(path: Path) -> Iterator[Table]:
    lines = path.read_text().splitlines()
    heading, context = "", []
    index = 0
    while index < len(lines):
        line = lines[index]
        fence = FENCE.match(line)
        if fence:
            end = index + 1
            while end < len(lines) and not re.match(rf"^\s*{fence['ticks']}\s*$", lines[end]):
                end += 1
            if fence["lang"] in ("text", ""):
                context.extend(lines[index + 1 : end])
            index = end + 1
            continue
        if found := HEADING.match(line):
            heading, context = found["title"], []
        elif line.startswith("|") and index + 1 < len(lines) and re.match(r"^\|[\s:|-]+\|$", lines[index + 1]):
            start = index
            rows = []
            index += 2
            while index < len(lines) and lines[index].startswith("|"):
                rows.append(cells(lines[index]))
                index += 1
            yield Table(path.name, start + 1, heading, "\n".join(context), cells(lines[start]), rows)
            context.append(" ".join(" ".join(row) for row in rows))
            continue
        else:
            context.append(line)
        index += 1


def is_option_table(table: Table) -> bool:
    first = table.header[0].strip()
    if not KNOB_HEADER.search(first):
        return False
    return "default" in [cell.lower() for cell in table.header] or any(
        "default" in " ".join(row[1:]) for row in table.rows
    )


NAME_IN_TEXT = re.compile(r"`(?:async with |await )?(?P<name>[A-Za-z_][\w.]*)(?:\(|`)|^\s*(?:async with |await )?(?P<fenced>[A-Za-z_][\w.]*)\(", re.MULTILINE)


def subjects_of(table: Table) -> list[Subject]:
    """The table's subjects, most likely first: its header, then its context nearest first."""
    override = SUBJECTS.get((table.page, table.heading))
    if override is not None:
        return [override()]
    found: list[Subject] = []
    texts = [table.header[0], table.heading, *reversed(table.context.splitlines())]
    for text in texts:
        for match in NAME_IN_TEXT.finditer(text):
            name = match["name"] or match["fenced"]
            subject = callable_subject(name)
            if subject is not None and subject.name not in [s.name for s in found]:
                found.append(subject)
    # The one that has most of the rows' names first (a table documents one thing), then nearest.
    names = [name for row in table.rows for name in row_names(row[0])]
    order = {id(subject): index for index, subject in enumerate(found)}
    return sorted(
        found, key=lambda s: (-sum(s.default(n) is not UNKNOWN for n in names), order[id(s)])
    )


CODE = re.compile(r"`([^`]+)`")


def row_names(cell: str) -> list[str]:
    """The parameter names a row's first cell gives: ``a``, ``b``; ``--flag VALUE``; ``-b/--bind HOST``."""
    names = CODE.findall(cell) or [cell]
    found = []
    for name in names:
        for part in name.split(","):
            part = part.strip()
            if not part:
                continue
            word = part.split()[0]  # "--drain-timeout S" -> "--drain-timeout"
            found.append(word)
    return found


def split_top_level(text: str) -> list[str]:
    """``a, (b, c), "d, e"`` -> three parts (commas inside brackets, quotes or backticks stay)."""
    parts, depth, quote, current = [], 0, "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


# -- values ----------------------------------------------------------------------------------------

UNITS = {
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3,
    "s": 1, "seconds": 1, "ms": 1, "messages": 1, "bytes": 1,
}
NUMBER_WITH_UNIT = re.compile(r"^(?P<number>[\d_.]+(?:\s*[*+]\s*[\d_.]+)*)\s*(?P<unit>[A-Za-z]+)?$")
# No subtraction: ``2025-11-25`` is a revision, not 1989.
_OPERATORS = {ast.Mult: operator.mul, ast.Add: operator.add, ast.Pow: operator.pow}


def safe_eval(node: ast.AST, names: Mapping[str, Any]) -> Any:
    """Literals, arithmetic, names of ``names``, and ``Class()`` of a public class."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -safe_eval(node.operand, names)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](safe_eval(node.left, names), safe_eval(node.right, names))
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        values = [safe_eval(item, names) for item in node.elts]
        return {ast.Tuple: tuple, ast.List: list, ast.Set: set}[type(node)](values)
    if isinstance(node, ast.Dict):
        return {safe_eval(k, names): safe_eval(v, names) for k, v in zip(node.keys, node.values, strict=True)}  # type: ignore[arg-type]
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.Call) and not node.args and not node.keywords and isinstance(node.func, ast.Name):
        target = resolve_public(node.func.id)
        if isinstance(target, type):
            return target()
    raise ValueError(ast.dump(node))


def documented_value(text: str) -> Any:
    """What a documentation cell says a default is, as a Python value (or a ``Missing``)."""
    text = text.strip()
    if not text:
        return EMPTY
    if text.lower() in ("(required)", "required"):
        return NO_DEFAULT
    plain = CODE.sub(lambda found: found[1], text).strip()
    if plain.lower() in ("none", "off", "null"):
        return None
    if found := NUMBER_WITH_UNIT.match(plain):
        unit = found["unit"]
        if unit is None or unit in UNITS:
            try:
                number = safe_eval(ast.parse(found["number"], mode="eval").body, {})
            except (SyntaxError, ValueError):
                return UNPARSEABLE
            return number * UNITS[unit] if unit else number
        return UNPARSEABLE
    try:
        return safe_eval(ast.parse(plain, mode="eval").body, {})
    except (SyntaxError, ValueError):
        pass
    return _Words(plain)


@dataclass(frozen=True)
class _Words:
    """A cell that is not Python: matches a string default spelled the same, or a tuple of
    strings given as a comma list (``GET, POST``)."""

    text: str


def same(documented: Any, real: Any) -> bool:
    if documented is NO_DEFAULT or real is NO_DEFAULT:
        return documented is real
    if isinstance(documented, _Words):
        if isinstance(real, Path):  # a path of this repository, as the docs write it
            return documented.text in (str(real), str(real.relative_to(ROOT)) if real.is_relative_to(ROOT) else "")
        if isinstance(real, str):
            return documented.text.strip("\"'") == real
        if isinstance(real, tuple | list | frozenset | set) and all(isinstance(item, str) for item in real):
            return [part.strip() for part in documented.text.split(",")] == list(real)
        return False
    if documented is None:
        return real is None or real is False or real == ()
    if isinstance(documented, bool) or isinstance(real, bool):
        return documented is real
    if isinstance(documented, int | float) and isinstance(real, int | float):
        return float(documented) == float(real)
    if isinstance(documented, tuple | list) and isinstance(real, tuple | list | frozenset | set):
        return list(documented) == list(real)
    return bool(documented == real)


DEFAULT_PHRASE = re.compile(
    r"\bdefault(?:s to| is|:)?\s+(?P<after>`[^`]+`(?:\s*(?:s|MiB|Mi|KiB))?|[\d_.]+(?:\s*(?:MiB|Mi|KiB|GiB|s)\b)?|True|False|None)"
    r"|(?P<before>`[^`]+`|[\d_.]+(?:\s*(?:MiB|Mi|KiB|GiB|s)\b)?)\s+by default"
)


def quoted_defaults(table: Table, row: list[str]) -> list[str]:
    """The default(s) a row quotes: its ``default`` cell, or the phrases of its description."""
    lowered = [cell.lower() for cell in table.header]
    if "default" in lowered:
        return [row[lowered.index("default")]] if len(row) > lowered.index("default") else []
    return [found["after"] or found["before"] for found in DEFAULT_PHRASE.finditer(" ".join(row[1:]))]


@dataclass
class Check:
    where: str
    page: str
    name: str
    documented: str
    problem: str | None  # None: it matches


def check_table(table: Table) -> Iterator[Check]:
    subjects = subjects_of(table)
    for row in table.rows:
        names = row_names(row[0])
        for quoted in quoted_defaults(table, row):
            values = split_top_level(quoted) if len(names) > 1 else [quoted]
            if len(values) != len(names):
                values = [quoted] * len(names)
            for name, value_text in zip(names, values, strict=True):
                documented = documented_value(value_text)
                if documented is EMPTY:
                    continue
                problem = None
                real: Any = UNKNOWN
                for subject in subjects:
                    real = subject.default(name)
                    if real is not UNKNOWN:
                        break
                if real is UNKNOWN:
                    problem = f"no parameter {name!r} in {[s.name for s in subjects] or 'any subject found'}"
                elif documented is UNPARSEABLE:
                    problem = f"cannot read {value_text!r} as a value (the code's default: {real!r})"
                elif not same(documented, real):
                    problem = f"documented {value_text!r}, the code's default is {real!r} ({subject.name})"
                yield Check(table.where, table.page, name, value_text, problem)


ALL_TABLES = [table for page in PAGES for table in tables_of(page)]
OPTION_TABLES = [table for table in ALL_TABLES if is_option_table(table)]


@pytest.mark.parametrize("table", OPTION_TABLES, ids=lambda table: f"{table.page}:{table.line}")
def test_option_table_defaults_are_the_codes(table: Table) -> None:
    wrong = [
        f"{check.where} `{check.name}`: {check.problem}"
        for check in check_table(table)
        if check.problem is not None and (check.page, check.name) not in UNCHECKED
    ]
    assert wrong == []


def test_every_unchecked_row_is_needed() -> None:
    """An entry of ``UNCHECKED`` for a row that is gone, or that the check now passes, goes."""
    failing = {(c.page, c.name) for table in OPTION_TABLES for c in check_table(table) if c.problem is not None}
    assert sorted(set(UNCHECKED) - failing) == []


def test_the_tables_are_found() -> None:
    found = {(table.page, subject.name) for table in OPTION_TABLES for subject in subjects_of(table)[:1]}
    for expected in [
        ("operations.md", "SessionLimits"), ("security.md", "SecuritySettings"), ("security.md", "AuthSettings"),
        ("scaling.md", "BrokerSettings"), ("transports.md", "MemoryEventStore"),
        ("transports.md", "StreamableHTTPTransport"), ("client.md", "OAuth"), ("websocket.md", "WebSocketSettings"),
    ]:
        assert expected in found


# -- the architecture page's bounds: "4 MiB (`SecuritySettings.max_body_size`)" -----------------

BOUND = re.compile(r"^(?P<values>[^(`]+?)\s*\((?P<names>`[^)]*)\)\s*$")


def test_bounds_table_defaults_are_the_codes() -> None:
    wrong, checked = [], 0
    for table in ALL_TABLES:
        if [cell.lower() for cell in table.header[:2]] != ["bound", "default"]:
            continue
        classes = {name.split(".")[0] for row in table.rows for name in CODE.findall(row[1]) if "." in name}
        for row in table.rows:
            found = BOUND.match(row[1])
            if found is None:
                continue
            values = [re.sub(r"\s+(per|messages)\b.*$", "", part) for part in split_top_level(found["values"])]
            names = [name for name in CODE.findall(found["names"]) if re.fullmatch(r"[\w.]+", name)]
            if len(values) == 1:
                values *= len(names)
            for value, name in zip(values, names, strict=False):
                owner, _, attribute = name.rpartition(".")
                candidates = [owner] if owner else sorted(classes)
                real = next(
                    (d for c in candidates if (d := defaults_of_callable(resolve_public(c)).get(attribute, UNKNOWN)) is not UNKNOWN),
                    UNKNOWN,
                )
                checked += 1
                if not same(documented_value(value), real):
                    wrong.append(f"{table.where} {row[0]!r}: documented {value!r}, `{name}` is {real!r}")
    assert checked >= 5
    assert wrong == []


# -- signatures in text fences ---------------------------------------------------------------------

SIGNATURE = re.compile(r"(?:async with |await )?(?P<name>[A-Za-z_][\w.]*)\(")


def text_fence_signatures(path: Path) -> Iterator[tuple[str, str, str]]:
    """(where, callable name, parameter text) of each ``name(...)`` in the page's text fences."""
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not re.match(rf"^\s*{fence['ticks']}\s*$", lines[end]):
            end += 1
        if fence["lang"] == "text":
            body = "\n".join(lines[index + 1 : end])
            for found in SIGNATURE.finditer(body):
                depth, position = 1, found.end()
                while position < len(body) and depth:
                    depth += {"(": 1, ")": -1}.get(body[position], 0)
                    position += 1
                line = index + 2 + body[: found.start()].count("\n")
                yield f"docs/{path.name}:{line}", found["name"], body[found.end() : position - 1]
        index = end + 1


def test_signatures_in_text_fences_are_the_codes() -> None:
    wrong, checked = [], 0
    for page in PAGES:
        for where, name, parameters in text_fence_signatures(page):
            target = resolve_public(name)
            if target is None or not callable(target):
                continue
            try:
                definition = ast.parse(f"def _shown({parameters}): pass").body[0]
            except SyntaxError:
                continue  # a call with values, not a signature
            assert isinstance(definition, ast.FunctionDef)
            if not definition.args.defaults and not any(definition.args.kw_defaults):
                continue  # no default shown: a call such as ``ClientSession(connection)``
            real = defaults_of_callable(target)
            module_names = vars(importlib.import_module(target.__module__))
            arguments = definition.args
            positional = arguments.posonlyargs + arguments.args
            shown = dict.fromkeys((a.arg for a in positional + arguments.kwonlyargs), NO_DEFAULT)
            for argument, default in zip(positional[len(positional) - len(arguments.defaults):], arguments.defaults, strict=True):
                shown[argument.arg] = default
            for argument, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True):
                if default is not None:
                    shown[argument.arg] = default
            for parameter, default in shown.items():
                checked += 1
                if parameter not in real:
                    wrong.append(f"{where} {name}: no parameter {parameter!r}")
                    continue
                value = default if default is NO_DEFAULT else safe_eval(default, module_names)
                if not same(value, real[parameter]):
                    text = "no default" if default is NO_DEFAULT else ast.unparse(default)
                    wrong.append(f"{where} {name}: {parameter}={text}, the code's default is {real[parameter]!r}")
    assert checked >= 20
    assert wrong == []


# -- protocol revisions ----------------------------------------------------------------------------

REVISION = re.compile(r"\b20\d\d-\d\d-\d\d\b")
KNOWN_REVISIONS = set(HANDSHAKE_PROTOCOL_VERSIONS) | set(MODERN_PROTOCOL_VERSIONS)
STREAMABLE_HTTP_REVISIONS = {v for v in HANDSHAKE_PROTOCOL_VERSIONS if v >= UNANNOUNCED_HTTP_VERSION} | set(
    MODERN_PROTOCOL_VERSIONS
)


def statements(path: Path) -> list[str]:
    """The page's sentences outside code fences: a table row, list item or paragraph, split at
    a sentence's end."""
    text, inside = [], False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            text.append(line)
    blocks = re.split(r"\n\s*\n|\n(?=\s*(?:[-*] |\d+\. |\|))", "\n".join(text))
    return [
        sentence.strip()
        for block in blocks
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z`*(])", " ".join(block.split()))
        if sentence.strip()
    ]


def revisions_in(sentence: str) -> set[str]:
    return set(REVISION.findall(sentence))


def the_statement(page: str, pattern: str) -> str:
    found = [s for s in statements(DOCS / page) if re.search(pattern, s)]
    assert found, f"docs/{page} no longer says {pattern!r}: say which revisions are served"
    return found[0]


def test_home_page_names_the_streamable_http_revisions() -> None:
    statement = the_statement("index.md", r"\*\*Streamable HTTP\*\* \(")
    parenthetical = statement.partition("**Streamable HTTP** (")[2].partition(") and")[0]
    assert revisions_in(parenthetical) == STREAMABLE_HTTP_REVISIONS, statement


@pytest.mark.parametrize("page", ["index.md", "server.md"])
def test_initialize_negotiates_the_handshake_revisions(page: str) -> None:
    statement = the_statement(page, r"`initialize` negotiates among")
    listed = statement.partition("negotiates among")[2].split(";")[0].split(":")[0]
    assert revisions_in(listed) == set(HANDSHAKE_PROTOCOL_VERSIONS), statement


def test_server_guide_names_both_eras() -> None:
    statement = the_statement("server.md", r"speaks both protocol eras")
    assert revisions_in(statement) == KNOWN_REVISIONS, statement
    streamable = the_statement("server.md", r"Streamable HTTP \(`/mcp`\) serves")
    assert "both" in streamable and set(MODERN_PROTOCOL_VERSIONS) <= revisions_in(streamable), streamable


@pytest.mark.parametrize("page", ["index.md", "server.md"])
def test_pages_name_only_known_revisions(page: str) -> None:
    unknown = {r for s in statements(DOCS / page) for r in revisions_in(s)} - KNOWN_REVISIONS
    assert unknown == set()


@pytest.mark.parametrize("page", ["index.md", "server.md"])
def test_server_discover_is_answered_in_2026_07_28(page: str) -> None:
    answered = [s for s in statements(DOCS / page) if "`server/discover`" in s and "answered" in s]
    assert answered, f"docs/{page} does not say that `server/discover` is answered (2026-07-28)"


def test_server_discover_as_32601_names_its_era() -> None:
    """``server/discover`` is ``-32601`` only in the handshake era (and so over HTTP+SSE)."""
    unqualified = [
        f"docs/{page.name}: {sentence}"
        for page in PAGES
        for sentence in statements(page)
        if re.search(r"`server/discover`.*-32601", sentence)
        and not re.search(r"handshake|HTTP\+SSE|answered", sentence, re.IGNORECASE)
    ]
    assert unqualified == []


# -- the readers themselves ------------------------------------------------------------------------


def test_values_are_read_in_every_spelling() -> None:
    assert documented_value("4 MiB") == documented_value("`4 * 1024 * 1024`") == documented_value("4194304")
    assert same(documented_value("16 Mi"), 16 * 1024 * 1024)
    assert same(documented_value("30 s"), 30.0) and same(documented_value("`10.0` s"), 10.0)
    assert same(documented_value("`10_000`"), 10000)
    assert same(documented_value("none"), None) and same(documented_value("`None`"), None)
    assert same(documented_value('`"/sse"`'), "/sse") and same(documented_value("mcp"), "mcp")
    assert same(documented_value("`GET, POST`"), ("GET", "POST"))
    assert same(documented_value("`SessionLimits()`"), resolve_public("SessionLimits")())
    assert same(documented_value("(required)"), NO_DEFAULT)
    assert not same(documented_value("4 MiB"), 16 * 1024 * 1024)
    assert not same(documented_value("`True`"), 1)
    assert documented_value("in-process") == _Words("in-process")
    assert not same(documented_value("in-process"), None)


def test_a_wrong_default_in_a_table_is_found(tmp_path: Path) -> None:
    page = tmp_path / "sample.md"
    page.write_text(
        "## Limits\n\n`SessionLimits(...)`:\n\n| field | default | at the bound |\n|---|---|---|\n"
        "| `inbound_buffer` | `64` | ok |\n| `send_timeout` | 3 s | wrong |\n| `no_such` | 1 | unknown |\n\n"
        "## Connecting\n\n```text\nconnect_streamable_http(url, *, max_event_size=4 * 1024 * 1024)\n```\n\n"
        "| parameter | meaning |\n|---|---|\n| `max_event_size` | bytes, default 4 MiB |\n"
        "| `reconnect_attempts` | (default 3) |\n"
    )
    problems = {check.name: check.problem for table in tables_of(page) if is_option_table(table) for check in check_table(table)}
    assert problems["inbound_buffer"] is None and problems["reconnect_attempts"] is None
    assert "30.0" in (problems["send_timeout"] or "")
    assert "no parameter" in (problems["no_such"] or "")
    assert "16777216" in (problems["max_event_size"] or "")


def test_an_unqualified_discover_statement_is_found(tmp_path: Path) -> None:
    page = tmp_path / "sample.md"
    page.write_text(
        "- `initialize` negotiates among 2025-11-25; unknown methods (including `server/discover`) get `-32601`.\n"
        "- In the handshake era `server/discover` is `-32601`.\n\n| unknown method (including `server/discover`) | `-32601` |\n"
    )
    found = [s for s in statements(page) if re.search(r"`server/discover`.*-32601", s)]
    assert [bool(re.search(r"handshake|HTTP\+SSE", s, re.IGNORECASE)) for s in found] == [False, True, False]
