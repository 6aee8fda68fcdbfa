"""The swarm's status line: on a real pseudo-terminal it shares the screen with log lines
without tearing any; anywhere else it writes nothing."""

from __future__ import annotations

import asyncio
import fcntl
import io
import logging
import os
import pty
import re
import struct
import termios

import pytest

from bot.agent.ops.progress import Progress


def screen(output: str) -> list[str]:
    """What a terminal shows for ``output``: \\r, \\n, and erase-line (ESC [ 2 K) honoured."""
    lines: list[list[str]] = [[]]
    col = 0
    i = 0
    while i < len(output):
        ch = output[i]
        if output.startswith("\x1b[2K", i):
            lines[-1] = []
            i += 4
            continue
        if ch == "\r":
            col = 0
        elif ch == "\n":
            lines.append([])
            col = 0
        else:
            line = lines[-1]
            if col < len(line):
                line[col] = ch
            else:
                line.extend(" " * (col - len(line)))
                line.append(ch)
            col += 1
        i += 1
    return ["".join(line).rstrip() for line in lines]


def read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode()


async def test_status_line_and_log_lines_share_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 120 columns
    os.set_blocking(master, False)
    tty = os.fdopen(slave, "w", buffering=1)
    logger = logging.getLogger("test.ops.progress")
    logger.propagate = False
    handler = logging.StreamHandler(tty)  # the log stream, on the same terminal
    handler.setFormatter(logging.Formatter("LOG %(message)s"))
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    output = ""
    try:
        progress = Progress(5, tty, interval=0.02)
        assert progress.enabled
        async with progress:
            progress.attach(logger)
            for i in range(5):
                progress.bot_state(f"b{i}", "joining")
                logger.info("joining bot b%d with a rather long line of structured fields", i)
                await asyncio.sleep(0.03)
                output += read_all(master)
            for i in range(3):
                progress.bot_state(f"b{i}", "connected")
            progress.bot_state("b3", "failed")
            progress.bot_state("b4", "audio-only")
            progress.reconnect("b0")
            logger.info("final log line")
            await asyncio.sleep(0.05)
            assert "joined 4/5" in progress.render()
        output += read_all(master)
        assert logger.handlers == [handler]  # put back on close
    finally:
        tty.close()
        os.close(master)

    shown = [line for line in screen(output) if line]
    logs = [line for line in shown if line.startswith("LOG")]
    assert logs == [
        *(f"LOG joining bot b{i} with a rather long line of structured fields" for i in range(5)),
        "LOG final log line",
    ]
    # no status text ever landed inside a log line, and the last line is the final status
    assert all("joined" not in line for line in logs)
    assert re.fullmatch(
        r"enx-bot {2}joined 4/5 {2}reconnecting 0 {2}audio-only 1 {2}failed 1 {2}\d+s", shown[-1]
    )
    assert "\x1b[2K" in output  # it did redraw in place


async def test_silent_when_not_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(3, out)
    assert not progress.enabled
    logger = logging.getLogger("test.ops.progress.plain")
    handler = logging.StreamHandler(io.StringIO())
    logger.handlers = [handler]
    async with progress:
        progress.attach(logger)
        assert logger.handlers == [handler]  # logs untouched
        progress.bot_state("a", "connected")
        await asyncio.sleep(0.01)
    assert out.getvalue() == ""
    assert progress.render().startswith("enx-bot  joined 1/3  reconnecting 0  audio-only 0  failed 0")


async def test_status_is_cut_to_the_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 30, 0, 0))
    os.set_blocking(master, False)
    try:
        with os.fdopen(slave, "w") as tty:
            progress = Progress(1000, tty)
            progress.draw()
            shown = screen(read_all(master))
    finally:
        os.close(master)
    assert shown == [progress.render()[:29]]  # never wraps onto a second line


def test_dumb_terminal_gets_no_status(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w") as tty:
            assert not Progress(1, tty).enabled
    finally:
        os.close(master)
