"""Servers under test: how each one is started, on a free loopback port, and always stopped."""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
BACKLOG = "2048"
"""The same listen backlog for every server (uvicorn's default; hypercorn's is 100),
so that opening thousands of sessions measures the servers, not SYN retries."""


GC_DEFAULT = "default {}/{}/{}, no freeze".format(*gc.get_threshold())
"""The garbage collector as every server runs unless its spec says otherwise: neither
hypercorn nor uvicorn nor either app module touches it (``python -m trio_mcp_sse
serve`` would freeze the heap; the benchmark serves with plain hypercorn)."""


@dataclass(frozen=True)
class ServerSpec:
    key: str
    label: str
    kind: str  # "hypercorn", "uvicorn" or "serve" (``python -m trio_mcp_sse serve``)
    app: str
    options: tuple[str, ...] = field(default=())
    """Extra command-line options for the server."""
    transport: str = "sse"
    """``sse`` (HTTP+SSE: ``/sse`` and a POST endpoint) or ``streamable`` (Streamable HTTP at ``/mcp``)."""
    tool: str = "async def"
    """How the ``echo`` tool is defined: ``async def``, or ``def`` (run on a worker thread)."""
    gc: str = GC_DEFAULT
    scenarios: frozenset[str] | None = None
    """The scenarios worth running (None: all).  The tool's kind changes the cost of a
    call, not the memory of an idle session or the cost of moving 4 MiB."""
    needs: str = ""
    """Why this server cannot be measured yet (empty: it can)."""

    @property
    def loadgen_options(self) -> tuple[str, ...]:
        """The load generator's options for this server's transport."""
        return ("--transport", self.transport)

    def argv(self, port: int) -> list[str]:
        if self.kind == "uvicorn":
            # Plain ``pip install uvicorn``: asyncio loop and the h11 parser, pinned so
            # that an optional uvloop/httptools in the environment cannot change the run.
            # Otherwise uvicorn's defaults, like the SDK's own ``run("sse")``: that
            # includes the access log (see the "quiet" variant).
            return [
                sys.executable, "-m", "uvicorn", self.app,
                "--host", "127.0.0.1", "--port", str(port),
                "--loop", "asyncio", "--http", "h11", "--backlog", BACKLOG,
                *self.options,
            ]  # fmt: skip
        if self.kind == "serve":
            # Our own command, as deployments run it (its collector policy, HTTP/1.1 path and
            # hypercorn patches included), with the same backlog as the others.
            return [
                sys.executable, "-m", "trio_mcp_sse", "serve", "--bind", f"127.0.0.1:{port}",
                "--backlog", BACKLOG, "--log-level", "warning", *self.options, self.app,
            ]  # fmt: skip
        return [
            sys.executable, "-m", "hypercorn", "--worker-class", "trio",
            "--bind", f"127.0.0.1:{port}", "--backlog", BACKLOG,
            *self.options, self.app,
        ]  # fmt: skip


THROUGHPUT_ONLY = frozenset({"throughput"})
SERVE_GC = "serve's: gc.freeze() after import, 50000/10/10 once serving"

SERVERS: dict[str, ServerSpec] = {
    spec.key: spec
    for spec in (
        # HTTP+SSE.  Like for like: the async rows with each other, the def rows with each other.
        ServerSpec("ours", "trio-mcp-sse, hypercorn-trio, async def tool", "hypercorn", "benchmarks.app_ours:app"),
        ServerSpec(
            "ours-def", "trio-mcp-sse, hypercorn-trio, def tool", "hypercorn", "benchmarks.app_ours:sync_app()",
            tool="def", scenarios=THROUGHPUT_ONLY,
        ),
        ServerSpec("sdk-uvicorn", "SDK, uvicorn, async def tool", "uvicorn", "benchmarks.app_sdk:app"),
        ServerSpec(
            "sdk-uvicorn-def", "SDK, uvicorn, def tool", "uvicorn", "benchmarks.app_sdk:sync_sse_app",
            ("--factory",), tool="def", scenarios=THROUGHPUT_ONLY,
        ),
        ServerSpec("sdk-hypercorn", "SDK, hypercorn-trio, async def tool", "hypercorn", "benchmarks.app_sdk:app"),
        # The same, under ``python -m trio_mcp_sse serve`` as users run it: its llhttp connections,
        # hypercorn patches and collector policy in (docs/performance.md).
        ServerSpec(
            "ours-serve", "trio-mcp-sse, serve, async def tool", "serve", "benchmarks.app_ours:app", gc=SERVE_GC,
        ),
        ServerSpec(
            "ours-def-serve", "trio-mcp-sse, serve, def tool", "serve", "benchmarks.app_ours:sync_sse_app",
            tool="def", gc=SERVE_GC, scenarios=THROUGHPUT_ONLY,
        ),
        # Streamable HTTP at /mcp, stateful sessions, answers as JSON bodies or event streams.
        ServerSpec(
            "ours-streamable-json", "trio-mcp-sse, hypercorn-trio, JSON answers", "hypercorn",
            "benchmarks.app_ours:streamable_app(response_mode='json')", transport="streamable",
        ),
        ServerSpec(
            "ours-streamable-sse", "trio-mcp-sse, hypercorn-trio, SSE answers", "hypercorn",
            "benchmarks.app_ours:streamable_app(response_mode='sse')", transport="streamable",
        ),
        ServerSpec(
            "ours-streamable-json-serve", "trio-mcp-sse, serve, JSON answers", "serve",
            "benchmarks.app_ours:streamable_json_app", transport="streamable", gc=SERVE_GC,
        ),
        ServerSpec(
            "sdk-streamable-json", "SDK, uvicorn, JSON answers", "uvicorn", "benchmarks.app_sdk:streamable_json_app",
            ("--factory",), transport="streamable",
        ),
        ServerSpec(
            "sdk-streamable-sse", "SDK, uvicorn, SSE answers", "uvicorn", "benchmarks.app_sdk:streamable_sse_app",
            ("--factory",), transport="streamable",
        ),
    )
}

VARIANTS: dict[str, ServerSpec] = {
    spec.key: spec
    for spec in (
        ServerSpec("bare-asgi", "bare ASGI echo (floor)", "hypercorn", "benchmarks.app_variants:bare"),
        ServerSpec(
            "quart-routes", "Quart-Trio routes echo", "hypercorn", "benchmarks.app_variants:make_quart_routes()"
        ),
        ServerSpec(
            "ours-no-quart", "ours, transport as bare ASGI", "hypercorn", "benchmarks.app_variants:make_transport()"
        ),
        ServerSpec(
            "ours-def-inline", "trio-mcp-sse, hypercorn-trio, def tool, inline=True", "hypercorn",
            "benchmarks.app_ours:sync_app(inline=True)", tool="def, inline", scenarios=THROUGHPUT_ONLY,
        ),
        ServerSpec("ours-frozen", "ours, gc.freeze()", "hypercorn", "benchmarks.app_frozen:make_ours()", gc="gc.freeze() after import"),
        *(
            ServerSpec(
                f"ours-frozen-gc{threshold // 1000}k", f"ours, gc.freeze(), gen-0 threshold {threshold:,}", "hypercorn",
                f"benchmarks.app_frozen:make_ours(threshold={threshold})",
                gc=f"gc.freeze() after import, thresholds {threshold}/10/10",
            )
            for threshold in (10_000, 50_000, 200_000)
        ),
        ServerSpec(
            "sdk-uvicorn-frozen", "SDK, uvicorn, gc.freeze()", "uvicorn", "benchmarks.app_frozen:make_sdk",
            ("--factory",), gc="gc.freeze() after import",
        ),
        ServerSpec(
            "sdk-uvicorn-quiet", "SDK, uvicorn, no access log", "uvicorn", "benchmarks.app_sdk:app",
            ("--no-access-log",),
        ),
        # serve's hypercorn patches (docs/contrib/hypercorn-patches.md), all and one by one, under plain hypercorn.
        ServerSpec("ours-patched", "ours, hypercorn patches", "hypercorn", "benchmarks.app_patched:make_ours()"),
        *(
            ServerSpec(
                f"ours-patched-{short}", f"ours, hypercorn patch {name}", "hypercorn",
                f"benchmarks.app_patched:make_ours(patches='{name}')",
            )
            for short, name in (
                ("keepalive", "keep-alive-deadline"), ("writes", "coalesced-response-writes"), ("date", "cached-date-header")
            )
        ),
        ServerSpec(
            "ours-streamable-json-patched", "trio-mcp-sse, JSON answers, hypercorn patches", "hypercorn",
            "benchmarks.app_patched:make_streamable_json()", transport="streamable",
        ),
        ServerSpec(
            "ours-serve-unpatched", "ours, serve --no-hypercorn-patches", "serve", "benchmarks.app_ours:app",
            ("--no-hypercorn-patches",), gc=SERVE_GC,
        ),
        # serve's HTTP/1.1 paths: llhttp is the default of the ``*-serve`` servers; these run hypercorn's h11 one.
        ServerSpec(
            "ours-serve-h11", "ours, serve --http-parser h11", "serve", "benchmarks.app_ours:app",
            ("--http-parser", "h11"), gc=SERVE_GC,
        ),
        ServerSpec(
            "ours-streamable-json-serve-h11", "trio-mcp-sse, serve --http-parser h11, JSON answers", "serve",
            "benchmarks.app_ours:streamable_json_app", ("--http-parser", "h11"), transport="streamable", gc=SERVE_GC,
        ),
    )
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _answering(port: int) -> bool:
    """Does an application answer HTTP on ``port``?  (A bound socket alone is not enough:
    hypercorn binds in its supervisor before the worker process has loaded the app.)"""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as probe:
            probe.settimeout(5.0)
            probe.sendall(b"GET /readiness-probe HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return probe.recv(16).startswith(b"HTTP/1.1 ")
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server and every process it started: SIGTERM, then SIGKILL after a bound."""
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for member in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(tree, timeout=5)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(alive, timeout=5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextlib.contextmanager
def running(
    spec: ServerSpec, *, extra_env: dict[str, str] | None = None, root: Path = ROOT
) -> Iterator[tuple[int, int, Path]]:
    """Start ``spec`` on a free port; yield ``(port, pid, log_path)``; always stop it.

    ``root`` is the source tree the server imports from (another checkout, to
    compare two versions of the package in one run).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    env.update(extra_env or {})
    last_error = ""
    with tempfile.NamedTemporaryFile(prefix=f"bench-{spec.key.replace('/', '_')}-", suffix=".log", delete=False) as log_file:
        log_path = Path(log_file.name)
        for _attempt in range(3):  # a free port can be taken between probing and binding
            port = free_port()
            proc = subprocess.Popen(
                spec.argv(port), cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, preexec_fn=_raise_nofile,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and proc.poll() is None and not _answering(port):
                    time.sleep(0.1)
                if proc.poll() is None and _answering(port):
                    yield port, proc.pid, log_path
                    log_path.unlink(missing_ok=True)  # kept only when something failed
                    return
                last_error = log_path.read_text(errors="replace")[-2000:]
            finally:
                _stop(proc)
    raise RuntimeError(f"{spec.label} did not start:\n{last_error}")
