"""Scenario timelines: validated configs, seeded plans, and every action seen from the room
server's side in a real run (mute -> the server's packet counters stop; chat reaches the other
bot; rejoin -> a new clientId; leave)."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from rtc_faults import free_port

from bot.agent import ConfigError
from bot.agent.bot import ScenarioRun
from bot.agent.config import load_config
from bot.agent.ops import NullObserver

ROOT = Path(__file__).resolve().parents[1]
APP_ID, APP_KEY = "scenario-app", "scenario-key-0123456789abcdef0123456789"


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("[{at: 1s, do: mute_adio}]", "did you mean 'mute_audio'"),
        ("[{at: 10 seconds, do: leave}]", "at must be a duration"),
        ("[{at: 20s..10s, do: leave}]", "impossible range"),
        ("[{every: 0s, do: chat, text: hi}]", "more than 0 seconds"),
        ("[{at: 1s, every: 2s, do: mute_audio}]", "one of 'at' or 'every'"),
        ("[{do: mute_audio}]", "one of 'at' or 'every'"),
        ("[{at: 1s, do: chat}]", "needs a 'text'"),
        ("[{at: 1s, do: mute_audio, text: hi}]", "'text' is not a setting of mute_audio"),
        ("[{at: 1s, do: wait_for}]", "wait_for needs 'participants'"),
        ("[{every: 1m, do: leave}]", "leave happens once"),
        ("[{at: 1s, do: chat, text: hi, tme: 3}]", "did you mean"),
        ("[{at: 1s, do: switch_media}]", "needs a 'file'"),
        ("[{at: 1s, do: switch_media, file: a.webm, text: hi}]", "'text' is not a setting of switch_media"),
    ],
)
def test_bad_timelines_are_one_clear_line(tmp_path: Path, steps: str, message: str) -> None:
    path = _config(tmp_path, f"server: embedded\nbots:\n  - name: a\n    scenario: {steps}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert message in str(err.value) and "bots[0]" in str(err.value), str(err.value)
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "check", str(path)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr


def test_rejoin_with_a_given_token_is_refused(tmp_path: Path) -> None:
    path = _config(tmp_path, "token: abc\nbots:\n  - name: a\n    scenario: [{every: 1m, do: rejoin}]\n")
    with pytest.raises(ConfigError, match="needs a fresh token"):
        load_config(path, env={})


def test_a_seed_gives_the_same_plan_and_another_seed_another() -> None:
    path_steps = [
        {"at": "10s..20s", "do": "mute_audio"},
        {"every": "30s..60s", "do": "chat", "text": "hello from {name}"},
        {"every": "2m..4m", "do": "rejoin"},
        {"at": "5m", "do": "leave"},
    ]
    from bot.agent.config.scenario import ScenarioStep

    steps = [ScenarioStep(**s) for s in path_steps]  # type: ignore[arg-type]

    def plan(seed: int, name: str = "load-1") -> list[tuple[float, str]]:
        return ScenarioRun(name, steps, seed=seed, events=NullObserver()).planned()

    assert plan(7) == plan(7)
    assert plan(7) != plan(8) and plan(7) != plan(7, "load-2")
    first = plan(7)
    assert [a for _, a in first] == sorted([a for _, a in first], key=[a for _, a in first].index)
    due = dict((a, d) for d, a in first)
    assert 10 <= due["mute_audio"] <= 20 and due["leave"] == 300
    assert 30 <= due["chat"] <= 60 and 120 <= due["rejoin"] <= 240


# --------------------------------------------------------------------------- a real run


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENX_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


class Server:
    """`enx-bot serve` in a subprocess, its room view polled in the background."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/video/v2"
        self.auth = "Basic " + base64.b64encode(f"{APP_ID}:{APP_KEY}".encode()).decode()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(self.port), "--data-dir", ":memory:"],
            env=_env(ENX_APP_ID=APP_ID, ENX_APP_KEY=APP_KEY),
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.views: list[tuple[float, dict[str, Any]]] = []
        self._stop = threading.Event()
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)

    def call(self, method: str, path: str, body: object = None) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": self.auth, "Content-Type": "application/json"}
        with urllib.request.urlopen(
            urllib.request.Request(url, data, headers, method=method), timeout=10
        ) as r:
            return json.loads(r.read())

    def poll(self, room_id: str) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                with contextlib.suppress(OSError):
                    self.views.append((time.monotonic(), self.call("GET", f"/emulator/rooms/{room_id}")))
                self._stop.wait(0.2)

        threading.Thread(target=loop, daemon=True).start()

    def close(self) -> list[dict[str, Any]]:
        self._stop.set()
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=20)
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _audio_packets(view: dict[str, Any], name: str) -> tuple[int, int] | None:
    """(stream id, audio packets the server received on it) of ``name``'s live stream."""
    for participant in view.get("participants") or []:
        if participant.get("name") == name:
            for stream in participant.get("streams") or []:
                audio = (stream.get("received") or {}).get("audio") or {}
                if "packets" in audio and not stream.get("stale"):
                    return int(stream["id"]), int(audio["packets"])
    return None


def test_a_scenario_run_is_seen_by_the_room_server(tmp_path: Path) -> None:
    server = Server(tmp_path)
    try:
        room_id = server.call("POST", "/video/v2/rooms", {"name": "scenario"})["room"]["room_id"]
        config = _config(
            tmp_path,
            f"""
api_url: {server.api}
app_id: {APP_ID}
app_key: {APP_KEY}
room_id: {room_id}
seed: 42
defaults:
  local_info: {{data: true}}
  media: {{kind: synthetic, width: 160, height: 120, fps: 10}}
bots:
  - name: alice
    scenario:
      - {{at: 0s, do: wait_for, participants: 2, timeout: 20s}}
      - {{at: 2s, do: mute_audio}}
      - {{at: 5s, do: unmute_audio}}
      - {{at: 3s, do: chat, text: "hello from {{name}}"}}
      - {{at: 7s, do: rejoin}}
      - {{at: 10s, do: leave}}
  - name: bob
    local_info: {{audio: false, video: false}}
    stay: 30
    scenario:
      - {{at: 0s, do: wait_for, text: "hello from alice", timeout: 20s}}
      - {{at: 1s, do: chat, text: "hi alice", to: [alice]}}
      - {{at: 12s..13s, do: leave}}
""",
        )
        server.poll(room_id)
        proc = subprocess.run(
            [sys.executable, "-m", "bot", "run", str(config), "--log-format", "json"],
            env=_env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        server_lines = server.close()
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    actions = [(ln["bot"], ln["action"], ln["outcome"]) for ln in lines if ln["event"] == "scenario_action"]
    assert ("bob", "wait_for", "ok") in actions and ("alice", "wait_for", "ok") in actions
    for expected in ("mute_audio", "unmute_audio", "chat", "rejoin", "leave"):
        assert ("alice", expected, "ok") in actions, (expected, actions)
    assert ("bob", "leave", "ok") in actions
    # the chat reached the other bot, both ways
    heard = [(ln["bot"], ln.get("text")) for ln in lines if ln["event"] == "message_received"]
    assert ("bob", "hello from alice") in heard and ("alice", "hi alice") in heard
    # rejoin: alice left and came back with a new clientId, seen by the server
    joined = [ln for ln in server_lines if ln["event"] == "participant_joined" and ln.get("name") == "alice"]
    assert len(joined) == 2 and joined[0]["client_id"] != joined[1]["client_id"]
    assert [ln["client_id"] for ln in lines if ln["event"] == "room_connected" and ln["bot"] == "alice"] == [
        j["client_id"] for j in joined
    ]
    # mute: the server's audio counter for alice's stream stopped between mute and unmute
    t_mute = next(ln for ln in lines if ln["event"] == "scenario_action" and ln["action"] == "mute_audio")
    t_unmute = next(ln for ln in lines if ln["event"] == "scenario_action" and ln["action"] == "unmute_audio")
    assert t_unmute["t_s"] - t_mute["t_s"] >= 2.5
    seen = [c for _, v in server.views if (c := _audio_packets(v, "alice")) is not None]
    assert seen, "the room view never showed alice's audio"
    counts = [n for sid, n in seen if sid == seen[0][0]]  # the first session's stream
    # a plateau: several consecutive polls with the same count (muted), and growth outside it
    runs, best = 1, 1
    for a, b in itertools.pairwise(counts):
        runs = runs + 1 if a == b else 1
        best = max(best, runs)
    assert best >= 5, f"audio never stopped: {counts}"
    assert counts[-1] > counts[0]
    # the report counts the actions
    report = next(ln for ln in lines if ln["event"] == "run_report")
    assert report["scenario"]["rejoin"] == {"ok": 1} and report["scenario"]["leave"] == {"ok": 2}
    assert report["outcomes"] == {"completed": 2}


def test_the_same_seed_plans_the_same_timeline_twice(tmp_path: Path) -> None:
    body = """
server: embedded
embedded: {host: 127.0.0.1, port: 0}
seed: 9
bots:
  - name: x
    local_info: {audio: false, video: false}
    scenario:
      - {at: 1s..3s, do: mute_audio}
      - {every: 1s..2s, times: 3, do: wait_for, participants: 1}
      - {at: 2s..4s, do: leave}
"""
    plans = []
    for run in range(2):
        path = tmp_path / f"seed-{run}.yaml"
        path.write_text(body)
        proc = subprocess.run(
            [sys.executable, "-m", "bot", "run", str(path), "--log-format", "json"],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        lines = [json.loads(line) for line in proc.stdout.splitlines()]
        plans.append(next(ln["steps"] for ln in lines if ln["event"] == "scenario_planned"))
        # a failing action (nothing published: mute fails) is reported, never ends the bot
        outcomes = {(ln["action"], ln["outcome"]) for ln in lines if ln["event"] == "scenario_action"}
        assert ("leave", "ok") in outcomes
    assert plans[0] == plans[1] and len(plans[0]) >= 3


def test_check_refuses_a_switch_media_file_that_is_missing_or_lacks_a_kind(tmp_path: Path) -> None:
    from test_media import write_test_file

    audio_only = write_test_file(tmp_path / "audio.ogg", video=False)
    for file, message in (
        (tmp_path / "nope.webm", "bots[0].scenario[1].file"),
        (audio_only, "has no video stream"),
    ):
        path = _config(
            tmp_path,
            "server: embedded\nbots:\n  - name: a\n    scenario:\n"
            f"      - {{at: 1s, do: mute_audio}}\n      - {{at: 2s, do: switch_media, file: {file}}}\n",
        )
        proc = subprocess.run(
            [sys.executable, "-m", "bot", "check", str(path)], capture_output=True, text=True, timeout=30
        )
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert message in proc.stderr, proc.stderr


@pytest.mark.slow
def test_a_bot_switches_its_media_file_and_stays_published(tmp_path: Path) -> None:
    from test_media import write_test_file

    first, second = write_test_file(tmp_path / "first.webm"), write_test_file(tmp_path / "second.webm")
    path = _config(
        tmp_path,
        f"""
server: embedded
embedded: {{host: 127.0.0.1, port: 0}}
bots:
  - name: a
    stay: 6
    media: {{kind: file, file: {first}}}
    scenario:
      - {{at: 2s, do: switch_media, file: {second}}}
      - {{at: 4s, do: switch_media, file: {first}}}
""",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "run", str(path), "--log-format", "json"],
        env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    switched = [ln for ln in lines if ln["event"] == "scenario_action" and ln["action"] == "switch_media"]
    assert [(ln["outcome"], ln["file"], ln["kinds"]) for ln in switched] == [
        ("ok", str(second), ["audio", "video"]),
        ("ok", str(first), ["audio", "video"]),
    ], switched
    events = [ln["event"] for ln in lines]
    assert events.count("published_stream") == 1 and "connection_lost" not in events  # no renegotiation
