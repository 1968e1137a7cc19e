"""``python -m trio_mcp_sse client URL``: list or use a server's tools, resources and prompts, printing JSON.

A smoke test for a deployment, so its failure modes are the point: every
problem ends the program with a one-line ``error: ...`` on stderr and a
non-zero status (1: the server or the connection failed, 2: bad command line),
never a traceback and never a hang (every wait has a bound).  A failure of the
connection names the transport it happened on, and both attempts when
Streamable HTTP was refused and HTTP+SSE tried next: "404" alone does not say
which request got it.

Standard output carries only the result's JSON, so the output pipes into
``jq``; what the server says while a request runs (log messages, progress)
goes to stderr as it arrives (``_cli_output``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

import mcp_types
import orjson
import pydantic
import trio

from .._errors import MCPError
from .._jsonrpc import JSONRPCNotification
from .._sse import DEFAULT_MAX_EVENT_SIZE
from ._cli_output import NotificationPrinter
from ._errors import ClientError, PostError, SSEConnectionError
from ._oauth import OAuth
from ._oauth_redirect import LoopbackRedirect
from ._oauth_store import FileTokenStore, MemoryTokenStore
from ._open import choose_transport, open_session
from ._session import ClientSession
from ._stdio import connect_stdio
from ._transport import SSEConnection

__all__ = ["main"]

_MAX_PAGES: Final = 100
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
DEFAULT_TOKEN_STORE: Final = "~/.cache/trio-mcp-sse/oauth.json"
LOG_LEVELS: Final = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_TRANSPORT_NAMES: Final = {"streamable-http": "Streamable HTTP", "sse": "HTTP+SSE", "websocket": "WebSocket"}
_ModelT = TypeVar("_ModelT", bound=pydantic.BaseModel)

_DESCRIPTION: Final = """\
Connect to an MCP server (Streamable HTTP, HTTP+SSE or WebSocket), or start one
and speak to it over stdio (--stdio); list its tools, resources, resource
templates or prompts (every page), call a tool, read a resource or get a prompt.
The result is printed as JSON on stdout.  While --call, --read or --prompt
runs, the server's log messages and progress are shown on stderr as they arrive
(progress as a bar on a terminal, as plain lines otherwise), so stdout can be
piped.
"""
_EPILOG: Final = """\

examples:
  python -m trio_mcp_sse client http://127.0.0.1:8000/mcp
  python -m trio_mcp_sse client http://127.0.0.1:8000/mcp --call echo --arg text=hi
  python -m trio_mcp_sse client http://127.0.0.1:8000/mcp --call add --args-json '{"a": 1, "b": 2}'
  python -m trio_mcp_sse client http://127.0.0.1:8000/sse --resources
  python -m trio_mcp_sse client http://127.0.0.1:8000/mcp --read test://static-text
  python -m trio_mcp_sse client http://127.0.0.1:8000/mcp --prompts
  python -m trio_mcp_sse client http://127.0.0.1:8000/mcp --prompt greet --arg name=Ada
  python -m trio_mcp_sse client http://127.0.0.1:8000/mcp --call slow --log-level debug | jq .
  python -m trio_mcp_sse client ws://127.0.0.1:8000/ws --templates
  python -m trio_mcp_sse client --call echo --arg text=hi --stdio -- python -m trio_mcp_sse serve --stdio mymod:server
  python -m trio_mcp_sse client https://mcp.example.com/mcp --oauth --call whoami

exit status: 0 success; 1 the connection or the server failed, or the tool
reported an error (its result is still printed); 2 a command-line mistake.
Every failure is one line on stderr, naming the transport tried, e.g.
  error: Streamable HTTP at http://127.0.0.1:8000/mcp: POST to ... answered 404 Not Found
"""


class _UsageError(Exception):
    """A command-line mistake found after parsing (e.g. a bad ``--arg``)."""


class _Failure(Exception):
    """A failure already described in full (with the transport it happened on): exit status 1."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trio_mcp_sse client",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "url",
        nargs="?",
        help="the server's URL: a Streamable HTTP endpoint (e.g. http://127.0.0.1:8000/mcp) or an "
        "HTTP+SSE event stream (e.g. http://127.0.0.1:8000/sse), or a WebSocket endpoint "
        "(non-standard, e.g. ws://127.0.0.1:8000/ws); or none, with --stdio",
    )
    parser.add_argument(
        "--stdio",
        nargs=argparse.REMAINDER,
        metavar="COMMAND",
        help="instead of a URL: start this server command (everything after --stdio, e.g. "
        "--stdio -- python -m trio_mcp_sse serve --stdio mymod:server) and speak to it over its "
        "stdin and stdout; its stderr is shown on this one's; give it last",
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
    commands = parser.add_argument_group("commands", "one at a time; the default is --tools")
    command = commands.add_mutually_exclusive_group()
    command.add_argument("--tools", action="store_true", help="list the tools (the default)")
    command.add_argument("--call", metavar="TOOL", help="call this tool and print its result")
    command.add_argument("--resources", action="store_true", help="list the resources")
    command.add_argument("--templates", action="store_true", help="list the resource templates")
    command.add_argument("--read", metavar="URI", help="read this resource and print its contents")
    command.add_argument("--prompts", action="store_true", help="list the prompts")
    command.add_argument("--prompt", metavar="NAME", help="get this prompt and print its messages")
    commands.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an argument of --call or --prompt (repeatable); for a tool, VALUE is read as JSON "
        "when its schema asks for a number, boolean, array or object, else taken as a string; "
        "a prompt's arguments are strings",
    )
    commands.add_argument(
        "--args-json", metavar="JSON", help="all arguments of --call or --prompt as one JSON object"
    )
    commands.add_argument(
        "--log-level",
        choices=(*LOG_LEVELS, "none"),
        default="info",
        help="before --call, --read or --prompt, ask the server for log messages of this level "
        "and above (info); none: do not ask (what the server sends anyway is still shown)",
    )
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


def _args_json(args: argparse.Namespace) -> dict[str, Any]:
    """The object given with ``--args-json`` (empty without it)."""
    if args.args_json is None:
        return {}
    try:
        loaded = orjson.loads(args.args_json)
    except orjson.JSONDecodeError as error:
        raise _UsageError(f"--args-json is not valid JSON: {error}") from None
    if not isinstance(loaded, dict):
        raise _UsageError("--args-json must be a JSON object")
    return loaded


def _arguments(args: argparse.Namespace, input_schema: Mapping[str, Any] | None) -> dict[str, Any]:
    arguments: dict[str, Any] = _args_json(args)
    properties = (input_schema or {}).get("properties") or {}
    for item in args.arg:
        name, equals, text = item.partition("=")
        if not equals or not name:
            raise _UsageError(f"--arg {item!r}: expected NAME=VALUE")
        schema = properties.get(name) if isinstance(properties, Mapping) else None
        arguments[name] = _coerce(name, text, schema if isinstance(schema, Mapping) else None)
    return arguments


def _prompt_arguments(args: argparse.Namespace) -> dict[str, str]:
    """A prompt's arguments: strings, as the protocol has them (``--arg n=3`` sends ``"3"``)."""
    arguments: dict[str, str] = {}
    for name, value in _args_json(args).items():
        if not isinstance(value, str):
            raise _UsageError(f"--args-json: prompt argument {name!r} must be a string")
        arguments[name] = value
    for item in args.arg:
        name, equals, text = item.partition("=")
        if not equals or not name:
            raise _UsageError(f"--arg {item!r}: expected NAME=VALUE")
        arguments[name] = text
    return arguments


async def _all_pages(list_page: Callable[[str | None], Awaitable[Any]], field: str) -> list[Any]:
    """Every item of a paged list (at most ``_MAX_PAGES`` pages: a server looping on cursors ends)."""
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        page = await list_page(cursor)
        items.extend(getattr(page, field))
        cursor = page.next_cursor
        if not cursor:
            break
    return items


async def _all_tools(session: ClientSession) -> list[Any]:
    return await _all_pages(session.list_tools, "tools")


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


def _command(args: argparse.Namespace) -> str:
    for name in ("call", "read", "prompt"):
        if getattr(args, name) is not None:
            return name
    for name in ("resources", "templates", "prompts"):
        if getattr(args, name):
            return name
    return "tools"


@asynccontextmanager
async def _connect(
    args: argparse.Namespace, notification_handlers: Mapping[str, Any]
) -> AsyncIterator[tuple[ClientSession, str]]:
    """The session and where it is (``"HTTP+SSE at URL"``), for error messages.

    ``open_session`` makes the attempts (and the fallback from Streamable HTTP
    to HTTP+SSE); a failed fallback's error carries the first refusal as its
    cause, so the message can name both attempts.
    """
    if args.stdio is not None:
        async with _connect_stdio(args, notification_handlers) as connected:
            yield connected
        return
    url = args.url
    options: dict[str, Any] = {
        "auth": _oauth(args),
        "protocol": args.protocol,
        "headers": _headers(args.header),
        "timeout": args.timeout,
        "read_timeout": args.read_timeout,
        "max_event_size": args.max_event_size,
        "request_timeout": args.request_timeout,
        "notification_handlers": notification_handlers,
    }
    where = f"{_TRANSPORT_NAMES[choose_transport(url, args.transport)]} at {url}"
    async with contextlib.AsyncExitStack() as stack:
        try:
            session = await stack.enter_async_context(open_session(url, transport=args.transport, **options))
        except (ClientError, MCPError) as error:
            refused = error.__cause__
            if isinstance(error, SSEConnectionError) and isinstance(refused, PostError):
                raise _Failure(f"{where}: {refused}; then HTTP+SSE at {url}: {error}") from error
            raise _Failure(f"{where}: {error}") from error
        if isinstance(session._transport, SSEConnection):
            where = f"HTTP+SSE at {url}"
        try:
            yield session, where
        except SSEConnectionError as error:  # the connection broke while in use
            raise _Failure(f"{where}: {error}") from error


@asynccontextmanager
async def _connect_stdio(
    args: argparse.Namespace, notification_handlers: Mapping[str, Any]
) -> AsyncIterator[tuple[ClientSession, str]]:
    """A session with the server ``--stdio`` starts; it is stopped when the block is left."""
    command: list[str] = args.stdio
    where = f"the stdio server {shlex.join(command)}"
    options: dict[str, Any] = {
        "protocol": args.protocol,
        "request_timeout": args.request_timeout,
        "notification_handlers": notification_handlers,
    }
    try:
        async with (
            connect_stdio(command, timeout=args.timeout, max_message_size=args.max_event_size) as connection,
            ClientSession(connection, **options) as session,
        ):
            try:
                await session.negotiate()
            except (ClientError, MCPError) as error:
                raise _Failure(f"{where}: {error}") from error
            yield session, where
    except SSEConnectionError as error:  # could not start it, or it exited while in use
        raise _Failure(f"{where}: {error}") from error


async def _ask_for_logs(session: ClientSession, level: str) -> None:
    """Ask for log messages at ``level``, where the server has them; a refusal is not fatal.

    In the modern era the level travels with each request (no round trip);
    a handshake-era server is asked only if it declared logging, since the
    others would answer -32601.
    """
    if level == "none":
        return
    capabilities = session.server_capabilities
    if session.era != "modern" and (capabilities is None or capabilities.logging is None):
        return
    with contextlib.suppress(MCPError):
        await session.set_logging_level(level)


async def _watched(
    session: ClientSession,
    printer: NotificationPrinter,
    model: type[_ModelT],
    method: str,
    params: Mapping[str, Any],
) -> _ModelT:
    """Send a request with a progress token; its progress and logs reach stderr in arrival order.

    Log messages go through the session's notification handlers, which run on
    a task of their own, while progress is reported on the receive loop: each
    progress line (and the result) first waits for the handlers to catch up
    with what arrived before it.
    """

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        await session._notifications_handled()
        printer.progress(progress, total, message)

    try:
        result = await session._typed(model, method, params, progress=on_progress)
        await session._notifications_handled()
    finally:
        printer.finish()
    return result


async def _run(args: argparse.Namespace, out: Any, err: Any) -> int:
    printer = NotificationPrinter(err)

    async def on_log(notification: JSONRPCNotification) -> None:
        await trio.lowlevel.checkpoint()
        printer.log(notification.params or {})

    command = _command(args)
    async with _connect(args, {"notifications/message": on_log}) as (session, _):
        if command in ("tools", "resources", "templates", "prompts"):
            lists: dict[str, tuple[Callable[[str | None], Awaitable[Any]], str]] = {
                "tools": (session.list_tools, "tools"),
                "resources": (session.list_resources, "resources"),
                "templates": (session.list_resource_templates, "resource_templates"),
                "prompts": (session.list_prompts, "prompts"),
            }
            _print_json(out, _json(await _all_pages(*lists[command])))
            return 0
        if command == "read":
            await _ask_for_logs(session, args.log_level)
            read = await _watched(session, printer, mcp_types.ReadResourceResult, "resources/read", {"uri": args.read})
            _print_json(out, _json(read))
            return 0
        if command == "prompt":
            arguments = _prompt_arguments(args)
            await _ask_for_logs(session, args.log_level)
            params: dict[str, Any] = {"name": args.prompt, "arguments": arguments}
            prompt = await _watched(session, printer, mcp_types.GetPromptResult, "prompts/get", params)
            _print_json(out, _json(prompt))
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
        arguments_ = _arguments(args, input_schema)
        await _ask_for_logs(session, args.log_level)
        call = {"name": args.call, "arguments": arguments_}
        result = await _watched(session, printer, mcp_types.CallToolResult, "tools/call", call)
        _print_json(out, _json(result))
        if result.is_error:
            err.write(f"error: tool {args.call!r} reported an error: {_tool_error_text(result)}\n")
            return EXIT_FAILURE
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the client command; returns the process exit status."""
    out, err = sys.stdout, sys.stderr
    arguments = list(sys.argv[1:] if argv is None else argv)
    command: list[str] | None = None
    if "--stdio" in arguments:  # the server's command line is everything after it, taken as it is
        at = arguments.index("--stdio")
        arguments, command = arguments[:at], arguments[at + 1 :]
        command = command[1:] if command[:1] == ["--"] else command
    try:
        args = _parser().parse_args(arguments)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    args.stdio = command
    if (args.url is None) == (args.stdio is None) or args.stdio == []:
        err.write("error: give the server's URL, or --stdio and the command that starts it\n")
        return EXIT_USAGE
    for option in ("timeout", "request_timeout", "read_timeout", "max_event_size", "login_timeout"):
        if not getattr(args, option) > 0:
            err.write(f"error: --{option.replace('_', '-')} must be > 0\n")
            return EXIT_USAGE
    try:
        if args.call is None and args.prompt is None and (args.arg or args.args_json):
            raise _UsageError("--arg and --args-json need --call TOOL or --prompt NAME")
        return trio.run(_run, args, out, err)
    except _UsageError as error:
        err.write(f"error: {error}\n")
        return EXIT_USAGE
    except ValueError as error:  # e.g. not an http(s) URL
        err.write(f"error: {error}\n")
        return EXIT_USAGE
    except _Failure as error:
        err.write(f"error: {error}\n")
        return EXIT_FAILURE
    except (ClientError, MCPError) as error:
        err.write(f"error: {error}\n")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        err.write("error: interrupted\n")
        return 130
