"""``python -m trio_mcp_sse <command>``: ``serve`` (run an app with graceful drain), ``client`` (smoke-test a server)."""

from __future__ import annotations

import sys
from importlib import import_module


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m trio_mcp_sse {serve,client} ...\n"
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(usage)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command in ("client", "serve"):
        # Imported by name: each command's module pulls in its own dependencies.
        module = import_module(".client._cli" if command == "client" else "._serve", __package__)
        return int(module.main(rest))
    sys.stderr.write(f"unknown command {command!r}\n{usage}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
