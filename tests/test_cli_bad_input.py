"""Bad input through the CLI: one line on stderr, the right exit code, no traceback."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.proto import mint_token

ROOT = Path(__file__).resolve().parents[1]


def enx(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ENX_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], err)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_missing_config() -> None:
    assert_one_line(enx("run", "nope.yaml"), 2, "nope.yaml", "does not exist")


def test_unreadable_config(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        path = write(tmp_path, "\xff\xfe bad utf8")
        Path(path).write_bytes(b"\xff\xfe\x00bad")
        assert_one_line(enx("run", path), 2, "cannot be read")
    else:
        path = write(tmp_path, "bots: []")
        os.chmod(path, 0)
        assert_one_line(enx("run", path), 2, "cannot be read")


def test_non_yaml_config(tmp_path: Path) -> None:
    assert_one_line(enx("run", write(tmp_path, "bots: [\n  {name: a\n")), 2, "not valid YAML at line")


def test_unknown_key_with_did_you_mean(tmp_path: Path) -> None:
    path = write(tmp_path, "server: embedded\nbots:\n  - name: a\n    room_info: {allow_reconect: true}\n")
    assert_one_line(enx("run", path), 2, "unknown key 'allow_reconect'", "did you mean 'allow_reconnect'")


def test_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, "server: embedded\nbots:\n  - name: a\n    local_info: {videoMuted: maybe}\n")
    assert_one_line(enx("run", path), 2, "bots[0].local_info.videoMuted must be true or false")


def test_no_token_no_credentials() -> None:
    assert_one_line(enx("run", "configs/bot.yaml"), 2, "set ENX_TOKEN")


def test_bad_arguments() -> None:
    assert_one_line(enx("run"), 2, "error:")
    assert_one_line(enx("frobnicate"), 2, "invalid choice")
    assert_one_line(enx("serve", "--port", "http"), 2, "--port")
    assert_one_line(enx("serve", "--port", "1"), 2, "no app id/key")


def test_media_file_missing(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "server: embedded\nbots:\n  - name: a\n    media: {kind: file, file: /nonexistent/clip.webm}\n",
    )
    assert_one_line(enx("run", path), 2, "bots[0].media.file", "does not exist")


def test_media_file_without_media(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a media file" * 100)
    path = write(tmp_path, f"server: embedded\nbots:\n  - name: a\n    media: {{kind: file, file: {junk}}}\n")
    assert_one_line(enx("run", path), 2, "bots[0].media.file")


@pytest.mark.parametrize(
    ("token", "needle"),
    [
        ("garbage!!", "not base64"),
        (base64.b64encode(b'{"host": "127.0.0.1:1", "roomMe').decode(), "does not decode to JSON"),
        (
            mint_token(
                app_key="k" * 32,
                host="127.0.0.1:1",
                room_id="r",
                name="n",
                role="participant",
                now=time.time() - 3600,
            ),
            "expired",
        ),
    ],
)
def test_bad_token_exits_3(token: str, needle: str) -> None:
    proc = enx("run", "configs/bot.yaml", env={"ENX_TOKEN": token})
    err = assert_one_line(proc, 3, needle)
    assert token not in err and token not in proc.stdout


def test_unreachable_host_exits_3() -> None:
    token = mint_token(
        app_key="k" * 32, host="127.0.0.1:9", room_id="r", name="n", role="participant", now=time.time()
    )
    proc = enx("run", "configs/bot.yaml", env={"ENX_TOKEN": token}, timeout=40)
    err = assert_one_line(proc, 3, "127.0.0.1:9")
    assert token not in err and token not in proc.stdout


def test_unreachable_rest_api_exits_3() -> None:
    env = {
        "ENX_APP_ID": "a",
        "ENX_APP_KEY": "secret-key-123456",
        "ENX_ROOM_ID": "r",
        "ENX_API_URL": "http://127.0.0.1:9/video/v2",
    }
    proc = enx("run", "configs/bot.yaml", env=env)
    err = assert_one_line(proc, 3, "cannot reach", "127.0.0.1:9")
    assert "secret-key-123456" not in proc.stdout + err
