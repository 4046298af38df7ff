"""The log format: readable and coloured on a terminal, JSON elsewhere or when asked; log lines
written above the status line, never into it."""

from __future__ import annotations

import io
import json
import re
import sys
import threading
from collections.abc import Iterator

import pytest
import structlog

from iotmon import logging as log
from iotmon.config import Settings

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield
    monkeypatch.undo()
    log.status(None)
    log.configure(json=True)  # as the rest of the suite expects


@pytest.mark.parametrize(
    ("fmt", "json_flag", "tty", "chosen"),
    [
        ("auto", None, True, "console"),
        ("auto", None, False, "json"),
        ("json", None, True, "json"),
        ("console", None, False, "console"),
        ("auto", True, True, "json"),  # the older IOTMON_LOG_JSON, when set
        ("auto", False, False, "console"),
        ("json", False, False, "json"),  # the format wins over it
        ("console", True, True, "console"),
    ],
)
def test_the_format_chosen(fmt: str, json_flag: bool | None, tty: bool, chosen: str) -> None:
    assert log.choose_format(fmt, json_flag, tty=tty) == chosen


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="one of auto, json, console"):
        log.choose_format("yaml", tty=True)


def test_the_setting_comes_from_iotmon_log_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTMON_LOG_FORMAT", "console")
    assert Settings().log_format == "console"
    monkeypatch.setenv("IOTMON_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        Settings()


def test_on_a_terminal_lines_are_readable_and_coloured(
    monkeypatch: pytest.MonkeyPatch, stderr: None
) -> None:
    out = Tty()
    monkeypatch.setattr(sys, "stderr", out)
    assert log.configure() == "console"
    structlog.get_logger("t").info("alert triggered", device="device-003")
    text = out.getvalue()
    assert ANSI.search(text), text
    plain = ANSI.sub("", text)
    assert "alert triggered" in plain
    assert "device=device-003" in plain
    assert not plain.lstrip().startswith("{")


@pytest.mark.parametrize(("fmt", "tty"), [("auto", False), ("json", True)])
def test_piped_or_asked_lines_are_json(
    monkeypatch: pytest.MonkeyPatch, stderr: None, fmt: str, tty: bool
) -> None:
    out = Tty() if tty else Pipe()
    monkeypatch.setattr(sys, "stderr", out)
    assert log.configure(fmt=fmt) == "json"
    structlog.get_logger("t").warning("alert flapping", device="device-003")
    import logging

    logging.getLogger("some.library").warning("a library speaks")
    lines = out.getvalue().splitlines()
    event = json.loads(lines[0])
    assert event["event"] == "alert flapping"
    assert event["device"] == "device-003"
    assert event["level"] == "warning"
    library = json.loads(lines[1])  # a library's record, in the same format
    assert library["event"] == "a library speaks"
    assert library["logger"] == "some.library"
    assert library["level"] == "warning"
    assert "\x1b" not in out.getvalue()


def test_forced_console_on_a_pipe_is_readable_without_colours(
    monkeypatch: pytest.MonkeyPatch, stderr: None
) -> None:
    out = Pipe()
    monkeypatch.setattr(sys, "stderr", out)
    assert log.configure(fmt="console") == "console"
    structlog.get_logger("t").info("hello", n=1)
    assert "hello" in out.getvalue()
    assert "\x1b" not in out.getvalue()


def test_log_lines_go_above_the_status_line_from_any_thread(
    monkeypatch: pytest.MonkeyPatch, stderr: None
) -> None:
    out = Tty()
    monkeypatch.setattr(sys, "stderr", out)
    log.configure(fmt="json")
    log.status("readings/s stored 10.0 | stored 100")

    def talk(n: int) -> None:
        logger = structlog.get_logger("t")
        for i in range(50):
            logger.info("line", thread=n, i=i)

    threads = [threading.Thread(target=talk, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.status("readings/s stored 11.0 | stored 111")
    log.status(None)
    # What a terminal shows: each \r\x1b[2K erases the line so far (the status line).
    screen: list[str] = []
    current = ""
    for ch in re.split(r"(\r\x1b\[2K|\n)", out.getvalue()):
        if ch == "\r\x1b[2K":
            current = ""
        elif ch == "\n":
            screen.append(current)
            current = ""
        else:
            current += ch
    assert current == ""
    events = [json.loads(line) for line in screen[:-1]]  # every log line whole, none mixed in
    assert sorted((e["thread"], e["i"]) for e in events) == [
        (n, i) for n in range(4) for i in range(50)
    ]
    assert screen[-1] == "readings/s stored 11.0 | stored 111"  # the status line, last, whole
