"""``serve``'s garbage-collector policy: a raised generation-0 threshold, applied once serving."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from hypercorn.config import Config

from trio_mcp_sse._serve import DEFAULT_GC_THRESHOLD, ServeOptions, _parse, serve


@pytest.fixture
def restored_gc_threshold() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.set_threshold(*before)


async def _serve_once(options: ServeOptions, *, seen_at_start_up: list[int]) -> list[str]:
    """Start ``serve`` on a free port, note the threshold, stop it; returns the binds."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    seen_at_start_up.append(gc.get_threshold()[0])
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    config = Config()
    config.bind = ["127.0.0.1:0"]
    sockets = config.create_sockets()
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)
    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                binds: list[str] = await nursery.start(lambda task_status: serve(app, config, options, sockets=sockets, task_status=task_status))
                nursery.cancel_scope.cancel()
    finally:
        for sock in sockets.insecure_sockets:
            sock.close()
    return binds


@pytest.mark.usefixtures("restored_gc_threshold")
async def test_serve_raises_the_young_threshold_once_started_and_keeps_the_older_ones() -> None:
    gc.set_threshold(700, 10, 10)
    seen: list[int] = []
    binds = await _serve_once(ServeOptions(gc_threshold=12_345), seen_at_start_up=seen)
    assert binds and binds[0].startswith("http://127.0.0.1:")
    assert seen == [700]  # the app started under Python's default
    assert gc.get_threshold() == (12_345, 10, 10)


@pytest.mark.usefixtures("restored_gc_threshold")
async def test_serve_leaves_the_collector_alone_without_a_threshold() -> None:
    gc.set_threshold(700, 10, 10)
    await _serve_once(ServeOptions(gc_threshold=None), seen_at_start_up=[])
    assert gc.get_threshold() == (700, 10, 10)


def test_the_command_line_default_and_opt_out() -> None:
    assert ServeOptions().gc_threshold == DEFAULT_GC_THRESHOLD
    assert _parse(["m:app"]).gc_threshold == DEFAULT_GC_THRESHOLD
    assert _parse(["m:app", "--gc-threshold", "0"]).gc_threshold == 0  # 0: Python's own


def test_a_negative_threshold_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse(["m:app", "--gc-threshold", "-1"])
    assert exit_info.value.code == 2
    assert "--gc-threshold must be >= 0" in capsys.readouterr().err
