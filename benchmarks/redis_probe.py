"""What the broker benchmark reads from Redis: ``INFO`` sections, key counts, the server's pid.

A few lines of RESP instead of a client library, so that a reading costs
Redis the same single command whichever process asks, and the load
generator needs nothing it does not already have.  The codec is sans-io
(:func:`encode_command`, :func:`parse_reply`, :func:`parse_info`); :func:`query`
runs one command on a fresh connection, bounded by ``timeout`` (callers in a
Trio program run it on a worker thread).
"""

from __future__ import annotations

import socket

__all__ = ["RedisReplyError", "encode_command", "info", "parse_info", "parse_reply", "query"]

Reply = bytes | int | None


class RedisReplyError(Exception):
    """Redis answered with an error (``-ERR ...``)."""


def encode_command(*args: str) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def parse_reply(buffer: bytes) -> tuple[Reply, int] | None:
    """The first reply in ``buffer`` and the bytes it took, or None while it is incomplete.

    Enough of RESP for single commands: simple strings, errors (raised as
    :class:`RedisReplyError`), integers and bulk strings (``None`` for a null
    bulk string).  Arrays are not needed here and are refused.
    """
    end = buffer.find(b"\r\n")
    if end < 0:
        return None
    kind, line = buffer[:1], buffer[1:end]
    if kind == b"+":
        return line, end + 2
    if kind == b"-":
        raise RedisReplyError(line.decode(errors="replace"))
    if kind == b":":
        return int(line), end + 2
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if len(buffer) < stop + 2:
            return None
        return buffer[end + 2 : stop], stop + 2
    raise ValueError(f"unsupported RESP reply type {kind!r}")


def parse_info(text: bytes) -> dict[str, str]:
    """``INFO``'s ``name:value`` lines as a dict (section headers and blank lines skipped)."""
    fields: dict[str, str] = {}
    for raw in text.decode(errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, separator, value = line.partition(":")
        if separator:
            fields[name] = value
    return fields


def query(port: int, *args: str, host: str = "127.0.0.1", timeout: float = 5.0) -> Reply:
    """Run one command on a fresh connection; its reply."""
    with socket.create_connection((host, port), timeout=timeout) as connection:
        connection.sendall(encode_command(*args))
        buffer = b""
        while (parsed := parse_reply(buffer)) is None:
            chunk = connection.recv(65536)
            if not chunk:
                raise ConnectionError(f"{host}:{port} closed the connection mid-reply")
            buffer += chunk
    return parsed[0]


def info(port: int, section: str, *, timeout: float = 5.0) -> dict[str, str]:
    """One ``INFO`` section (``memory``, ``stats``, ``server``...) as a dict."""
    reply = query(port, "INFO", section, timeout=timeout)
    if not isinstance(reply, bytes):
        raise ValueError(f"INFO {section} answered {reply!r}")
    return parse_info(reply)
