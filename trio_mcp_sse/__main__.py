"""``python -m trio_mcp_sse <command>``: ``serve`` (run an app with graceful drain), ``client`` (smoke-test a server)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m trio_mcp_sse {serve,client} ...\n"
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(usage)
        return 0 if args else 2
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
