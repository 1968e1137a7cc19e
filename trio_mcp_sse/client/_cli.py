"""``python -m trio_mcp_sse client URL``: list a server's tools, or call one, printing JSON.

A smoke test for a deployment, so its failure modes are the point: every
problem ends the program with a one-line ``error: ...`` on stderr and a
non-zero status (1: the server or the connection failed, 2: bad command line),
never a traceback and never a hang (every wait has a bound).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson
import pydantic
import trio

from .._errors import MCPError
from .._sse import DEFAULT_MAX_EVENT_SIZE
from ._errors import ClientError
from ._oauth import OAuth
from ._oauth_redirect import LoopbackRedirect
from ._oauth_store import FileTokenStore, MemoryTokenStore
from ._open import open_session
from ._session import ClientSession

__all__ = ["main"]

_MAX_PAGES: Final = 100
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
DEFAULT_TOKEN_STORE: Final = "~/.cache/trio-mcp-sse/oauth.json"


class _UsageError(Exception):
    """A command-line mistake found after parsing (e.g. a bad ``--arg``)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trio_mcp_sse client",
        description="Connect to an MCP server (Streamable HTTP, HTTP+SSE or WebSocket); list its tools, "
        "or call one. Prints JSON.",
    )
    parser.add_argument(
        "url",
        help="the server's URL: a Streamable HTTP endpoint (e.g. http://127.0.0.1:8000/mcp) or an "
        "HTTP+SSE event stream (e.g. http://127.0.0.1:8000/sse), or a WebSocket endpoint "
        "(non-standard, e.g. ws://127.0.0.1:8000/ws)",
    )
    parser.add_argument(
        "--transport",
        choices=("auto", "streamable-http", "sse", "websocket"),
        default="auto",
        help="auto (default): a ws:// or wss:// URL is WebSocket, a URL ending in /sse is HTTP+SSE; "
        "any other is tried as Streamable HTTP first, falling back to HTTP+SSE when the server "
        "answers 400, 404 or 405",
    )
    parser.add_argument(
        "--protocol",
        choices=("auto", "handshake", "2026-07-28"),
        default="auto",
        help="auto (default): the newest protocol era both sides speak (server/discover, falling "
        "back to the initialize handshake); handshake: initialize only; 2026-07-28: that "
        "revision only (Streamable HTTP)",
    )
    parser.add_argument("--call", metavar="TOOL", help="call this tool instead of listing tools")
    parser.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a tool argument (repeatable); VALUE is read as JSON when the tool's schema asks for "
        "a number, boolean, array or object, else taken as a string",
    )
    parser.add_argument("--args-json", metavar="JSON", help="all tool arguments as one JSON object")
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="an HTTP header (repeatable)",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds for connecting and each POST (10)"
    )
    parser.add_argument(
        "--request-timeout", type=float, default=60.0, help="seconds to wait for each response (60)"
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=300.0,
        help="seconds of stream silence before giving up (300)",
    )
    oauth = parser.add_argument_group(
        "OAuth", "authorize with the server's authorization server when it answers 401 (docs/client.md)"
    )
    oauth.add_argument("--oauth", action="store_true", help="act as an OAuth client for the user (authorization code, PKCE)")
    oauth.add_argument("--client-id", metavar="ID", help="a pre-registered client id (else: metadata document or dynamic registration)")
    oauth.add_argument(
        "--client-secret-env", metavar="NAME",
        help="read the pre-registered client's secret from this environment variable (never from the command line)",
    )
    oauth.add_argument("--client-metadata-url", metavar="URL", help="this client's Client ID Metadata Document (https)")
    oauth.add_argument(
        "--token-store", metavar="PATH", default=DEFAULT_TOKEN_STORE,
        help=f"where tokens and registrations are kept, mode 0600 ({DEFAULT_TOKEN_STORE}); 'memory' keeps none",
    )
    oauth.add_argument("--redirect-port", type=int, default=0, metavar="PORT", help="loopback port of the redirect URI (free one)")
    oauth.add_argument("--no-browser", action="store_true", help="only print the authorization URL")
    oauth.add_argument(
        "--login-timeout", type=float, default=300.0, help="seconds to wait for the authorization in the browser (300)"
    )
    parser.add_argument(
        "--max-event-size",
        type=int,
        default=DEFAULT_MAX_EVENT_SIZE,
        metavar="CHARS",
        help="largest server event accepted, in characters; a larger one ends the connection "
        f"({DEFAULT_MAX_EVENT_SIZE}, 16 MiB)",
    )
    return parser


def _headers(values: Sequence[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, colon, text = value.partition(":")
        if not colon or not name.strip():
            raise _UsageError(f"--header {value!r}: expected 'NAME: VALUE'")
        headers[name.strip()] = text.strip()
    return headers


def _schema_types(schema: Mapping[str, Any]) -> set[str]:
    kinds: set[str] = set()
    declared = schema.get("type")
    if isinstance(declared, str):
        kinds.add(declared)
    elif isinstance(declared, list):
        kinds.update(kind for kind in declared if isinstance(kind, str))
    for key in ("anyOf", "oneOf"):
        for option in schema.get(key) or []:
            if isinstance(option, Mapping):
                kinds |= _schema_types(option)
    return kinds


_JSON_TYPES: Final = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def _coerce(name: str, text: str, schema: Mapping[str, Any] | None) -> Any:
    """Turn ``--arg name=text`` into the JSON value the tool's schema asks for."""
    kinds = _schema_types(schema) if schema is not None else set()
    try:
        parsed: Any = orjson.loads(text)
        parsed_ok = True
    except orjson.JSONDecodeError:
        parsed, parsed_ok = None, False
    if not kinds:
        return parsed if parsed_ok else text  # no schema: JSON if it is JSON
    if parsed_ok:
        for kind in kinds - {"string"}:
            types = _JSON_TYPES.get(kind, ())
            if isinstance(parsed, types) and not (kind != "boolean" and isinstance(parsed, bool)):
                return parsed
    if "string" in kinds:
        return text
    wanted = " or ".join(sorted(kinds))
    raise _UsageError(f"--arg {name}={text}: expected {wanted} (as JSON)")


def _arguments(args: argparse.Namespace, input_schema: Mapping[str, Any] | None) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    if args.args_json is not None:
        try:
            loaded = orjson.loads(args.args_json)
        except orjson.JSONDecodeError as error:
            raise _UsageError(f"--args-json is not valid JSON: {error}") from None
        if not isinstance(loaded, dict):
            raise _UsageError("--args-json must be a JSON object")
        arguments.update(loaded)
    properties = (input_schema or {}).get("properties") or {}
    for item in args.arg:
        name, equals, text = item.partition("=")
        if not equals or not name:
            raise _UsageError(f"--arg {item!r}: expected NAME=VALUE")
        schema = properties.get(name) if isinstance(properties, Mapping) else None
        arguments[name] = _coerce(name, text, schema if isinstance(schema, Mapping) else None)
    return arguments


async def _all_tools(session: ClientSession) -> list[Any]:
    tools: list[Any] = []
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        page = await session.list_tools(cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _json(value: Any) -> str:
    if isinstance(value, pydantic.BaseModel):
        value = value.model_dump(by_alias=True, mode="json", exclude_unset=True)
    elif isinstance(value, list):
        value = [_dump(item) for item in value]
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode("utf-8")


def _print_json(out: Any, text: str) -> None:
    """Print JSON; escape non-ASCII if ``out`` cannot encode it (a console in a legacy code page).

    Both spellings are the same JSON, and the tool has already run: failing
    here would lose its result.
    """
    try:
        out.write(text + "\n")
    except UnicodeEncodeError:
        out.write(json.dumps(json.loads(text), indent=2, ensure_ascii=True) + "\n")


def _dump(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(by_alias=True, mode="json", exclude_unset=True)
    return value


def _tool_error_text(result: Any) -> str:
    for block in result.content:
        text = getattr(block, "text", None)
        if isinstance(text, str) and text:
            return " ".join(text.split())[:200]
    return "no details"


def _oauth(args: argparse.Namespace) -> OAuth | None:
    if args.client_secret_env is not None and args.client_id is None:
        raise _UsageError("--client-secret-env needs --client-id")
    if not (args.oauth or args.client_id or args.client_metadata_url):
        return None
    secret = None
    if args.client_secret_env is not None:
        secret = os.environ.get(args.client_secret_env)
        if not secret:
            raise _UsageError(f"--client-secret-env {args.client_secret_env}: that environment variable is empty")
    store = MemoryTokenStore() if args.token_store == "memory" else FileTokenStore(args.token_store)
    redirect = LoopbackRedirect(port=args.redirect_port, open_browser=not args.no_browser, timeout=args.login_timeout)
    return OAuth(
        redirect=redirect,
        client_id=args.client_id,
        client_secret=secret,
        client_metadata_url=args.client_metadata_url,
        client_name="trio-mcp-sse client",
        store=store,
        timeout=args.timeout,
    )


async def _run(args: argparse.Namespace, out: Any, err: Any) -> int:
    headers = _headers(args.header)
    async with open_session(
        args.url,
        auth=_oauth(args),
        transport=args.transport,
        protocol=args.protocol,
        headers=headers,
        timeout=args.timeout,
        read_timeout=args.read_timeout,
        max_event_size=args.max_event_size,
        request_timeout=args.request_timeout,
    ) as session:
        if args.call is None:
            _print_json(out, _json(await _all_tools(session)))
            return 0
        input_schema: Mapping[str, Any] | None = None
        if args.arg:
            tools = {tool.name: tool for tool in await _all_tools(session)}
            if args.call not in tools:
                names = ", ".join(sorted(tools)) or "none"
                err.write(
                    f"error: the server has no tool named {args.call!r} (its tools: {names})\n"
                )
                return EXIT_FAILURE
            input_schema = tools[args.call].input_schema
        result = await session.call_tool(args.call, _arguments(args, input_schema))
        _print_json(out, _json(result))
        if result.is_error:
            err.write(f"error: tool {args.call!r} reported an error: {_tool_error_text(result)}\n")
            return EXIT_FAILURE
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the client command; returns the process exit status."""
    out, err = sys.stdout, sys.stderr
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    for option in ("timeout", "request_timeout", "read_timeout", "max_event_size", "login_timeout"):
        if not getattr(args, option) > 0:
            err.write(f"error: --{option.replace('_', '-')} must be > 0\n")
            return EXIT_USAGE
    try:
        if args.call is None and (args.arg or args.args_json):
            raise _UsageError("--arg and --args-json need --call TOOL")
        return trio.run(_run, args, out, err)
    except _UsageError as error:
        err.write(f"error: {error}\n")
        return EXIT_USAGE
    except ValueError as error:  # e.g. not an http(s) URL
        err.write(f"error: {error}\n")
        return EXIT_USAGE
    except (ClientError, MCPError) as error:
        err.write(f"error: {error}\n")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        err.write("error: interrupted\n")
        return 130
