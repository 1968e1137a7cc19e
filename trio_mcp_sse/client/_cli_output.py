"""What the command-line client shows on stderr while a request runs: log lines and progress.

Standard output carries only the final JSON, so ``... | jq`` keeps working;
everything the server says meanwhile goes to stderr, in arrival order.  On a
terminal, progress is one bar redrawn in place (``\\r``), and a log line that
arrives while the bar is shown is printed above it (the bar is wiped, the line
written, the bar drawn again).  Anywhere else (a file, a pipe, a CI log) each
progress notification is a plain line, since a carriage return there only
garbles the log.

Everything the server sent is shown with control characters escaped: one
notification is one line, and a server cannot move the cursor or recolour the
user's terminal.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any, Final, TextIO

import orjson

__all__ = ["NotificationPrinter", "format_log", "format_number", "printable"]

BAR_WIDTH: Final = 20
_MAX_DATA: Final = 2000
"""Characters of one log message's data shown; a server may log megabytes."""


def printable(text: str) -> str:
    """``text`` with every non-printable character (newlines, escape sequences) escaped."""
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text
    )


def format_number(value: float) -> str:
    """``3`` for 3.0 (progress is usually whole), else up to 6 significant digits."""
    value = float(value)  # an int has no is_integer() before Python 3.12
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def format_log(params: Mapping[str, Any]) -> str:
    """One ``notifications/message`` as one line: ``[level] logger: data``."""
    level = params.get("level")
    logger = params.get("logger")
    data = params.get("data")
    text = data if isinstance(data, str) else orjson.dumps(data, default=str).decode("utf-8")
    if len(text) > _MAX_DATA:
        text = text[:_MAX_DATA] + "..."
    shown = printable(text)
    if isinstance(logger, str) and logger:
        shown = f"{printable(logger)}: {shown}"
    return f"[{printable(str(level))}] {shown}"


def _progress_text(progress: float, total: float | None, message: str | None) -> str:
    done = format_number(progress)
    text = f"{done}/{format_number(total)}" if total is not None else done
    if total is not None and total > 0:
        text += f" ({min(max(progress / total, 0.0), 1.0):.0%})"
    if message:
        text += f" {printable(message)}"
    return text


def _bar(progress: float, total: float | None) -> str:
    if total is None or not total > 0:
        return ""
    filled = round(BAR_WIDTH * min(max(progress / total, 0.0), 1.0))
    return "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "] "


class NotificationPrinter:
    """Writes log lines and progress to ``stream`` (stderr), as a bar on a terminal.

    ``tty`` overrides ``stream.isatty()``; ``width`` the terminal's width (a
    bar longer than the line would wrap, and ``\\r`` would then redraw only
    its last part).
    """

    def __init__(self, stream: TextIO, *, tty: bool | None = None, width: int | None = None) -> None:
        self._stream = stream
        if tty is None:
            isatty = getattr(stream, "isatty", None)
            tty = bool(isatty()) if callable(isatty) else False
        self._tty = tty
        self._width = width
        self._bar: str | None = None  # the bar currently on screen (TTY only)

    @property
    def tty(self) -> bool:
        return self._tty

    def log(self, params: Mapping[str, Any]) -> None:
        """A ``notifications/message``: one line (above the bar, on a terminal)."""
        line = format_log(params)
        if self._bar is not None:
            self._write("\r" + " " * len(self._bar) + "\r" + line + "\n" + self._bar)
        else:
            self._write(line + "\n")

    def progress(self, progress: float, total: float | None, message: str | None) -> None:
        """A ``notifications/progress``: the bar redrawn in place, or one plain line."""
        text = _progress_text(progress, total, message)
        if not self._tty:
            self._write(f"progress {text}\n")
            return
        bar = self._fit(_bar(progress, total) + text)
        # Pad over what is left of a longer previous bar.
        pad = " " * max(0, len(self._bar or "") - len(bar))
        self._write("\r" + bar + pad)
        self._bar = bar

    def finish(self) -> None:
        """End the bar's line, so what is printed next starts on a line of its own."""
        if self._bar is not None:
            self._write("\n")
            self._bar = None

    def _fit(self, text: str) -> str:
        width = self._width if self._width is not None else shutil.get_terminal_size((80, 24)).columns
        limit = max(width - 1, 10)  # the last column would wrap on some terminals
        return text if len(text) <= limit else text[: limit - 3] + "..."

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
        except UnicodeEncodeError:  # a console in a legacy code page
            self._stream.write(text.encode("ascii", "backslashreplace").decode("ascii"))
        flush = getattr(self._stream, "flush", None)
        if callable(flush):
            flush()
