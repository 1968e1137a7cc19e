"""``python -m trio_mcp_sse <command>``: ``serve`` (run an app with graceful drain), ``client`` (smoke-test a server)."""

from __future__ import annotations

import sys

_COMMANDS = """
commands:
  serve    run an ASGI app or an MCPServer (module:attribute) with hypercorn's trio worker,
           draining sessions on SIGTERM; --workers N --broker URL to scale out; --stdio for a
           local subprocess server
  client   connect to an MCP server (URL, or --stdio CMD) and list or call its tools,
           resources and prompts

'python -m trio_mcp_sse serve -h' and 'python -m trio_mcp_sse client -h' print each command's
whole help.
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m trio_mcp_sse {serve,client} ...\n"
    if not args or args[0] in ("-h", "--help"):
        if not args:
            sys.stderr.write(usage)
            return 2
        sys.stdout.write(usage + _COMMANDS)
        return 0
    command, rest = args[0], args[1:]
    if command == "client":
        from .client._cli import main as client_main

        return int(client_main(rest))
    if command == "serve":
        from ._serve import main as serve_main

        return int(serve_main(rest))
    sys.stderr.write(f"unknown command {command!r}\n{usage}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
