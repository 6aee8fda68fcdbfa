"""The log is machine-readable: a real run's JSON lines have constant events from the README's
tables and the documented fields; a client's garbage never puts a traceback in the server's log."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
LEVELS = {"info", "warning", "error", "exception", "critical"}
# Lines about the whole process: no bot, no server component.
PROCESS_EVENTS = {
    "swarm_started",
    "swarm_progress",
    "swarm_finished",
    "run_report",
    "webrtc_fast_paths",
    "embedded_server_started",
    "rooms_created",
    "workers_started",
    "worker_exited",
    "health_server_started",
    "signal_received",
    "stopping",
    "library_log",
    "client_protocol_error",
}


def documented_events() -> set[str]:
    """Every `name` in the first column of a table row of the README's "Log events" section."""
    section = README[README.index("### Log events") :]
    section = section[: section.index("\n## ")]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names.update(re.findall(r"`([a-z_]+)`", first))
    return names


def logged_events() -> dict[str, set[str]]:
    """Event names our code logs at INFO or above (literal first arguments), with their files."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "bot").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LEVELS
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and re.fullmatch(r"[a-z][a-z0-9_]*", node.args[0].value)
            ):
                found.setdefault(node.args[0].value, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_event_we_log_is_in_the_readme() -> None:
    documented = documented_events()
    missing = {name: files for name, files in logged_events().items() if name not in documented}
    assert not missing, f"log events missing from the README's tables: {missing}"


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for raw in text.splitlines():
        assert raw.startswith("{"), f"not a JSON line: {raw[:200]!r}"
        line = json.loads(raw)
        assert isinstance(line, dict)
        lines.append(line)
    return lines


def check_lines(lines: list[dict[str, Any]]) -> None:
    documented = documented_events()
    joined: set[str] = set()
    for line in lines:
        event = line.get("event")
        where = json.dumps(line)[:300]
        assert event in documented, f"event {event!r} is not in the README's tables: {where}"
        assert line.get("level") and line.get("timestamp"), where
        assert "exception" not in line, f"a traceback in a healthy run: {where}"
        if "user_id" in line:
            assert line.get("user"), f"user_id without user: {where}"
        if line.get("component") == "server":
            assert "bot" not in line, f"a server line names a bot: {where}"
            continue
        if event in PROCESS_EVENTS:
            continue
        assert line.get("bot") and line.get("room"), f"a bot's line without bot/room: {where}"
        if event == "room_connected":
            joined.add(line["bot"])
        elif event == "room_disconnected":
            joined.discard(line["bot"])
        if line["bot"] in joined:
            assert line.get("client_id"), f"a joined bot's line without client_id: {where}"


def _run(config: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in [n for n in env if n.startswith("ENX_")]:
        del env[name]
    return subprocess.run(
        [sys.executable, "-m", "bot", "run", str(config), "--log-format", "json"],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_real_run_logs_documented_events_and_fields(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        f"""
server: embedded
embedded: {{host: 127.0.0.1, port: 0}}
defaults:
  media: {{kind: synthetic, width: 160, height: 120, fps: 10}}
bots:
  - name: pub
    stay: 6
  - name: rec
    join_delay: 1
    stay: 4
    local_info: {{audio: false, video: false}}
    receive: {{subscribe: all, sink: record, record_dir: {tmp_path / "rec"}, stats_interval_s: 1}}
"""
    )
    proc = _run(config)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = _json_lines(proc.stdout)
    check_lines(lines)
    events = [line["event"] for line in lines]
    for expected in ("room_connected", "recording_started", "recording_file_opened", "recording_file_closed"):
        assert expected in events, expected
    # the recording's file lines name the stream and its participant, as the agent's lines do
    for line in lines:
        if line["event"].startswith("recording_"):
            assert line["bot"] == "rec" and line["client_id"] and line["stream_id"] and line["user"] == "pub"
    # the server's lines are marked as such, bot-free even though it runs in the bots' process
    server = [line for line in lines if line.get("component") == "server"]
    assert {"participant_joined", "stream_published", "participant_left"} <= {s["event"] for s in server}
    # rates on a stream's first stream_stats line are over its first interval, not null
    first = next(line for line in lines if line["event"] == "stream_stats")
    assert isinstance(first["video_bitrate_kbps"], float) and first["video_bitrate_kbps"] > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_rest_failure_is_one_room_error_with_a_code_and_one_join_failed(tmp_path: Path) -> None:
    config = tmp_path / "rest.yaml"
    config.write_text(
        f"""
api_url: http://127.0.0.1:{_free_port()}/video/v2
app_id: app
app_key: key-0123456789
room_id: some-room
join_retries: 0
bots:
  - name: unlucky
"""
    )
    proc = _run(config)
    assert proc.returncode == 3, proc.stderr
    lines = _json_lines(proc.stdout)
    check_lines(lines)
    errors = [line for line in lines if line["event"] == "room_error"]
    failed = [line for line in lines if line["event"] == "join_failed"]
    assert len(errors) == 1 and errors[0]["code"] == 1161 and "cannot reach" in errors[0]["error"]
    assert len(failed) == 1 and failed[0]["attempts"] == 1 and failed[0]["bot"] == "unlucky"
    assert "key-0123456789" not in proc.stdout + proc.stderr


GARBAGE_FRAMES = [
    "garbage",
    "",
    "4" + "[" * 5000,
    "42" + "[" * 5000 + "]" * 5000,
    '42["token",' + '{"a":' * 5000 + "1" + "}" * 5000 + "]",
    '451-["token",{"_placeholder":true,"num":0}]',
    "45x-",
    "4-",
]
GARBAGE_REQUESTS = [
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /video/v2/rooms HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
]


async def _send_garbage(port: int) -> None:
    url = f"http://127.0.0.1:{port}/v3/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as http:
        for frame in GARBAGE_FRAMES:
            async with http.ws_connect(url) as ws:
                await ws.receive(timeout=5)  # the Engine.IO open packet
                await ws.send_str("40")
                await ws.receive(timeout=5)  # the Socket.IO connect answer
                await ws.send_str(frame)
                with contextlib.suppress(TimeoutError):
                    await ws.receive(timeout=0.5)
    for raw in GARBAGE_REQUESTS:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        await writer.drain()
        assert (await asyncio.wait_for(reader.read(12), 5)).startswith(b"HTTP/1.")
        writer.close()


def test_client_garbage_is_one_json_line_each_without_tracebacks(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ENX_APP_ID": "app", "ENX_APP_KEY": "k" * 40}
    argv = [sys.executable, "-m", "bot", "serve", "--port", str(port), "--data-dir", ":memory:"]
    proc = subprocess.Popen(
        [*argv, "--log-format", "json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
                time.sleep(0.1)
        asyncio.run(_send_garbage(port))
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert err == "", f"stderr is not empty: {err[:2000]}"
    lines = _json_lines(out)
    check_lines(lines)
    garbage = [line for line in lines if line["event"] == "client_protocol_error"]
    # every refused frame or request is one line (empty/odd placeholder frames may pass unnoticed)
    assert len(garbage) >= 6, [line["event"] for line in lines]
    assert all(line["level"] == "warning" and line["error"] and line["logger"] for line in garbage)
    assert {line["logger"] for line in garbage} >= {"aiohttp.server", "engineio.server"}


def test_a_traceback_through_our_code_is_kept() -> None:
    """Only a library's refusal of a client's bytes loses its traceback; our own bug keeps it."""
    import logging

    from engineio import packet

    from bot.agent.logs import foreign_record

    def record_of(exc: BaseException) -> dict[str, Any]:
        record = logging.LogRecord("engineio.server", logging.ERROR, __file__, 1, "boom", (), None)
        record.exc_info = (type(exc), exc, exc.__traceback__)
        ed: dict[str, Any] = {
            "event": "boom",
            "_record": record,
            "exc_info": record.exc_info,
            "level": "error",
        }
        return dict(foreign_record(None, "error", ed))

    try:
        packet.Packet(encoded_packet="garbage")
    except ValueError as exc:
        refused = record_of(exc)
    assert refused["event"] == "client_protocol_error" and "exc_info" not in refused

    from bot.proto import TokenError, decode_token

    try:
        decode_token("garbage")
    except TokenError as exc:  # raised in our code: kept, whoever logs it
        ours = record_of(exc)
    else:
        pytest.fail("decode_token accepted garbage")
    assert ours["event"] == "library_log" and "exc_info" in ours
