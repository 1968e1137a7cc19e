"""What ``serve`` needs from hypercorn's private internals, checked before it starts.

``serve`` bounds every socket write by replacing hypercorn's trio
``TCPServer`` with a subclass that overrides ``protocol_send`` and uses the
connection's ``send_lock``, ``stream`` and ``protocol`` (see ``_serve.py``).
None of that is hypercorn's public API: a release could rename any of it, and
the override would then be skipped or fail on the first write -- silently
unbounded writes, or errors under load.  pyproject.toml pins hypercorn to the
releases whose internals were verified; this check is the run-time guard for
an environment that installed another one anyway.  It inspects names and
signatures only, so it is cheap and has no side effects.
"""

from __future__ import annotations

import dataclasses
import dis
import importlib
import importlib.metadata
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["SUPPORTED_HYPERCORN", "HypercornInternalsError", "check_hypercorn_internals", "missing_internals"]

SUPPORTED_HYPERCORN = ">=0.18,<0.19"
"""Keep equal to the pin in pyproject.toml."""

_CONFIG_ATTRIBUTES = (
    "accesslog",
    "backlog",
    "bind",
    "create_sockets",
    "errorlog",
    "graceful_timeout",
    "keep_alive_max_requests",
    "loglevel",
    "root_path",
    "worker_class",
    "wsgi_max_body_size",
)


class HypercornInternalsError(RuntimeError):
    """The installed hypercorn lacks an internal that ``serve`` relies on; the message is one line."""


def _parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def _names_used(cls: type) -> set[str]:
    """Attribute and global names the class's own functions refer to (``self.send_lock`` -> ``send_lock``)."""
    names: set[str] = set()
    for member in vars(cls).values():
        code = getattr(member, "__code__", None)
        if code is not None:
            names.update(code.co_names)
    return names


def missing_internals() -> list[str]:
    """What ``serve`` needs and the installed hypercorn does not have (empty: all there)."""
    missing: list[str] = []
    try:
        events = importlib.import_module("hypercorn.events")
        tcp_server = importlib.import_module("hypercorn.trio.tcp_server")
        run = importlib.import_module("hypercorn.trio.run")
        utils = importlib.import_module("hypercorn.utils")
        config_module = importlib.import_module("hypercorn.config")
    except ImportError as error:
        return [f"module {error.name}"]

    for name in ("Closed", "RawData"):
        if not inspect.isclass(getattr(events, name, None)):
            missing.append(f"hypercorn.events.{name}")
    raw_data = getattr(events, "RawData", None)
    if inspect.isclass(raw_data) and (
        not dataclasses.is_dataclass(raw_data)
        or "data" not in {field.name for field in dataclasses.fields(raw_data)}
    ):
        missing.append("hypercorn.events.RawData.data")

    server_class = getattr(tcp_server, "TCPServer", None)
    if not inspect.isclass(server_class):
        missing.append("hypercorn.trio.tcp_server.TCPServer")
    else:
        protocol_send = getattr(server_class, "protocol_send", None)
        if not inspect.iscoroutinefunction(protocol_send) or _parameters(protocol_send) != ["self", "event"]:
            missing.append("async TCPServer.protocol_send(self, event)")
        used = _names_used(server_class)
        missing.extend(
            f"TCPServer.{attribute}" for attribute in ("send_lock", "stream", "protocol") if attribute not in used
        )

    worker_serve = getattr(run, "worker_serve", None)
    if not inspect.iscoroutinefunction(worker_serve):
        missing.append("async hypercorn.trio.run.worker_serve")
    else:
        wanted = {"app", "config", "sockets", "shutdown_trigger", "task_status"}
        if not wanted <= set(_parameters(worker_serve)):
            missing.append("worker_serve(app, config, *, sockets, shutdown_trigger, task_status)")
        # serve() swaps the class by rebinding this module global; worker_serve must look it up there.
        globals_read = {
            instruction.argval
            for instruction in dis.get_instructions(worker_serve)
            if instruction.opname == "LOAD_GLOBAL"
        }
        if not inspect.isclass(getattr(run, "TCPServer", None)) or "TCPServer" not in globals_read:
            missing.append("hypercorn.trio.run.worker_serve creating connections from its global TCPServer")

    wrap_app = getattr(utils, "wrap_app", None)
    if wrap_app is None or _parameters(wrap_app)[:3] != ["app", "wsgi_max_body_size", "mode"]:
        missing.append("hypercorn.utils.wrap_app(app, wsgi_max_body_size, mode)")

    config_class = getattr(config_module, "Config", None)
    if not inspect.isclass(config_class):
        missing.append("hypercorn.config.Config")
    else:
        config = config_class()
        missing.extend(f"Config.{name}" for name in _CONFIG_ATTRIBUTES if not hasattr(config, name))
    return missing


def check_hypercorn_internals() -> None:
    """Raise :class:`HypercornInternalsError` (one line naming the version and what is missing) unless all is there."""
    missing = missing_internals()
    if missing:
        try:
            version = importlib.metadata.version("hypercorn")
        except importlib.metadata.PackageNotFoundError:
            version = "(version unknown)"
        raise HypercornInternalsError(
            f"python -m trio_mcp_sse serve cannot run on hypercorn {version}: it lacks "
            f"{', '.join(missing)} (supported: hypercorn{SUPPORTED_HYPERCORN})"
        )
