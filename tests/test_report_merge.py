"""``enx-bot report merge``: shard reports of real small swarms (one room server, three of four
shards run) merge into one whose totals are the sums and whose percentiles are the pooled
samples'; the missing shard is named; shards of another config are refused."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from rtc_faults import free_port

from bot.agent.ops.report_stats import percentile

ROOT = Path(__file__).resolve().parents[1]
APP_ID, APP_KEY = "merge-app", "merge-key-0123456789abcdef0123456789"
SHARDS, RUN = 4, (0, 1, 2)  # shard 3 never runs


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENX_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _enx(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=env or _env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.fixture(scope="module")
def shard_reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three shards of a 9-bot swarm against one `enx-bot serve`, each writing its report."""
    tmp = tmp_path_factory.mktemp("merge")
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            ":memory:",
            "--log-format",
            "json",
        ],
        env=_env(ENX_APP_ID=APP_ID, ENX_APP_KEY=APP_KEY),
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        api = f"http://127.0.0.1:{port}/video/v2"
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        auth = "Basic " + base64.b64encode(f"{APP_ID}:{APP_KEY}".encode()).decode()
        request = urllib.request.Request(
            f"{api}/rooms",
            data=json.dumps({"name": "merge"}).encode(),
            headers={"Authorization": auth, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            room_id = json.loads(answer.read())["room"]["room_id"]
        config = tmp / "swarm.yaml"
        config.write_text(
            f"""
api_url: {api}
app_id: {APP_ID}
app_key: {APP_KEY}
room_id: {room_id}
ramp: 10
report_dir: {tmp / "reports"}
bots:
  - name: load-{{i}}
    count: 9
    stay: 6             # shards start a second or two apart: all 7 bots overlap
    media: {{kind: synthetic, width: 160, height: 120, fps: 10}}
"""
        )
        shards = [
            subprocess.Popen(
                [sys.executable, "-m", "bot", "run", str(config), "--log-format", "json"],
                env=_env(ENX_SHARD_INDEX=str(i), ENX_SHARD_COUNT=str(SHARDS)),
                cwd=tmp,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in RUN
        ]
        for proc in shards:
            _, err = proc.communicate(timeout=90)
            assert proc.returncode == 0, err
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
    return tmp / "reports"


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_three_shards_merge_into_sums_and_pooled_percentiles(shard_reports: Path, tmp_path: Path) -> None:
    files = sorted(shard_reports.glob("report-*.json"))
    assert [f.name for f in files] == [f"report-{i}.json" for i in RUN]
    shards = [_load(f) for f in files]
    digests = {s["meta"]["config_digest"] for s in shards}
    assert len(digests) == 1 and all(s["meta"]["version"] for s in shards)

    proc = _enx("report", "merge", str(shard_reports), "-o", str(tmp_path / "merged"))
    assert proc.returncode == 6, proc.stderr  # merged, but a shard is missing
    assert proc.stderr.count("\n") == 1 and "shard 3 missing" in proc.stderr
    merged = _load(tmp_path / "merged" / "report.json")
    assert merged["missing_shards"] == [3] and merged["meta"]["shard_count"] == SHARDS
    assert [s["index"] for s in merged["shards"]] == list(RUN)

    total = merged["summary"]
    for key in ("target", "bots", "joined"):
        assert total[key] == sum(s["summary"][key] for s in shards), key
    assert total["bots"] == 7  # bots 0..8 by i % 4: shards 0, 1, 2 run 3 + 2 + 2
    for key in total["media"]:
        assert total["media"][key] == sum(s["summary"]["media"][key] for s in shards), key
    outcomes: dict[str, int] = {}
    for s in shards:
        for name, n in s["summary"]["outcomes"].items():
            outcomes[name] = outcomes.get(name, 0) + n
    assert total["outcomes"] == outcomes == {"completed": 7}

    pooled = sorted(
        b["join_latency_ms"] for s in shards for b in s["bots"] if b["join_latency_ms"] is not None
    )
    assert len(pooled) == 7
    for p in (50, 90, 99):
        assert total["join_latency_ms"][f"p{p}"] == pytest.approx(percentile(pooled, p), abs=1e-3)
    # one wall clock: every shard's bots are in a room together at the peak
    assert max(n for _, n in merged["series"]["in_room"]) == 7
    room = next(iter(merged["rooms"].values()))
    assert room["bots"] == 7 and room["joined"] == 7
    html = (tmp_path / "merged" / "report.html").read_text()
    assert "Shards (3 of 4)" in html and "shard 3: missing" in html


def test_mixed_configs_are_refused_unless_asked(shard_reports: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(shard_reports, mixed)
    other = _load(mixed / "report-1.json")
    other["meta"]["config_digest"] = "0123456789abcdef"
    (mixed / "report-1.json").write_text(json.dumps(other))

    refused = _enx("report", "merge", str(mixed), "-o", str(tmp_path / "out"))
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "different config digests" in refused.stderr
    assert "--allow-mixed" in refused.stderr and not (tmp_path / "out").exists()

    allowed = _enx("report", "merge", str(mixed), "-o", str(tmp_path / "out.json"), "--allow-mixed")
    assert allowed.returncode == 6, allowed.stderr
    assert _load(tmp_path / "out.json")["meta"]["config_digest"] == "mixed"


def test_unreadable_and_absent_inputs(shard_reports: Path, tmp_path: Path) -> None:
    some = tmp_path / "some"
    shutil.copytree(shard_reports, some)
    (some / "report-3.json").write_text(
        '{"schema": "enx-bot.report/1", "summary": '
    )  # a pod killed mid-write
    proc = _enx("report", "merge", str(some), "-o", str(tmp_path / "out"))
    assert proc.returncode == 6
    failed = _load(tmp_path / "out" / "report.json")["failed_shards"]
    assert [Path(f["file"]).name for f in failed] == ["report-3.json"]

    nothing = _enx("report", "merge", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x"))
    assert (
        nothing.returncode == 2
        and nothing.stderr.count("\n") == 1
        and "no such file or folder" in nothing.stderr
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    none = _enx("report", "merge", str(empty), "-o", str(tmp_path / "x"))
    assert none.returncode == 2 and "no report*.json" in none.stderr
    assert "Traceback" not in nothing.stderr + none.stderr
