"""What a new user meets first is true: the README's Python example runs as printed and the SDK
prints nothing of its own; help names every environment default; the example key is one the
server accepts; the packaging is warning-free; the status line is the real one."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.agent.ops.progress import Progress
from bot.proto import MIN_APP_KEY_BYTES
from bot.server import RoomServer

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENX_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _python_example() -> str:
    section = README[README.index("## The EnxRtc client SDK") :]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block, "the SDK section has no Python example"
    return block.group(1)


async def test_the_readme_python_example_runs_and_the_sdk_prints_nothing(
    room_server: RoomServer, tmp_path: Path
) -> None:
    """The example as printed, with a token from the server and STAY_S=3: only its own prints."""
    import asyncio

    source = _python_example()
    assert 'if __name__ == "__main__":' in source and 'os.environ["ENX_TOKEN"]' in source
    room = room_server.create_room(name="readme")
    token = room_server.mint_token(room["room_id"], name="py-bot", role="participant")
    script = tmp_path / "py_bot.py"
    script.write_text(source)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        env=_clean_env(ENX_TOKEN=token, STAY_S="3"),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert err.decode() == ""
    lines = out.decode().splitlines()
    assert lines and all(line.startswith("live as stream ") for line in lines), lines


@pytest.mark.parametrize(
    ("command", "variables"),
    [
        (
            "serve",
            [
                "ENX_HOST",
                "ENX_PORT",
                "ENX_APP_ID",
                "ENX_APP_KEY",
                "ENX_DATA_DIR",
                "ENX_STUN_URL",
                "ENX_TURN_URL",
                "ENX_TURN_USERNAME",
                "ENX_TURN_CREDENTIAL",
                "ENX_RECONNECT_GRACE_S",
            ],
        ),
        ("token", ["ENX_API_URL", "ENX_APP_ID", "ENX_APP_KEY", "ENX_ROOM_ID", "ENX_NAME"]),
    ],
)
def test_help_names_every_environment_default_and_never_a_secret(command: str, variables: list[str]) -> None:
    source = (ROOT / "bot" / "cli.py").read_text()
    read = set(re.findall(r'os\.environ\.get\("(ENX_[A-Z_]+)"', source))
    assert set(variables) <= read, "the test's list names a variable the CLI does not read"
    secret = "s3cret-" + "x" * 40
    proc = subprocess.run(
        [sys.executable, "-m", "bot", command, "--help"],
        env=_clean_env(ENX_APP_KEY=secret, ENX_TURN_CREDENTIAL=secret),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    help_text = " ".join(proc.stdout.split())
    for name in variables:
        assert f"${name}" in help_text, name
    assert secret not in proc.stdout


def test_serve_refuses_a_short_app_key_and_the_readme_key_is_long_enough() -> None:
    keys = set(re.findall(r"ENX_APP_KEY=([^\s$\\]+)", README)) - {"...", "<app"}
    assert keys, "the README shows no example key"
    for key in keys:
        assert len(key.encode()) >= MIN_APP_KEY_BYTES, key
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--port", "0", "--data-dir", ":memory:"],
        env=_clean_env(ENX_APP_ID="local", ENX_APP_KEY="local-secret"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "12 bytes" in lines[0] and f"at least {MIN_APP_KEY_BYTES}" in lines[0]
    assert "local-secret" not in proc.stderr and "Warning" not in proc.stderr


def test_the_status_line_in_the_readme_is_the_real_one() -> None:
    shown = re.search(r"status line on stderr\n\(`([^`]+)`\)", README)
    assert shown, "the README shows no status line"
    now = [0.0]
    progress = Progress(100, io.StringIO(), enabled=True, clock=lambda: now[0])
    for i in range(43):
        progress.bot_state(f"b{i}", "connected")
    for i in range(2):
        progress.bot_state(f"a{i}", "audio-only")
    for i in range(3):
        progress.bot_state(f"j{i}", "joining")
    progress.bot_state("r0", "reconnecting")
    now[0] = 12.2
    assert progress.render() == shown.group(1)


def test_generated_folders_are_ignored_by_git() -> None:
    ignored = (ROOT / ".gitignore").read_text().split()
    for folder in ("data/", "reports/", "recordings/", ".venv/"):
        assert folder in ignored, folder


def test_the_package_builds_without_warnings(tmp_path: Path) -> None:
    """``make run`` builds the project: setuptools must not complain (license, layout). Built
    from a copy, so that the checkout gets no build/ folder."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(ROOT / "bot", src / "bot", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0 and "No matching distribution found for setuptools" in proc.stderr:
        pytest.skip("no package index to fetch setuptools>=77 from")
    assert proc.returncode == 0, proc.stderr
    noise = [line for line in proc.stderr.splitlines() if "Warning" in line or "deprecated" in line.lower()]
    assert not noise, "\n".join(noise)
    wheel = next(out.glob("enx_bot-*.whl"))
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith("METADATA"))).decode()
        tops = {name.split("/")[0] for name in zf.namelist()}
    assert "License-Expression: MIT" in metadata
    assert tops == {"bot", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
