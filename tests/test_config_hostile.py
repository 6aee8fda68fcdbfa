"""Hostile configs (issue 15, items 1, 2 and 4): refused in one line, exit 2, quickly, by
``check`` and ``run`` alike, before any other work."""

from __future__ import annotations

import socket
import time
import wave
from pathlib import Path

import pytest
from test_cli_bad_input import assert_one_line, enx, write
from test_media import write_test_file

from bot.agent.config import parse_config
from bot.agent.errors import ConfigError
from bot.proto import mint_token

BASE = "token: t\nbots:\n  - name: a\n"


def token_for(room_id: str, name: str = "n", *, age_s: float = 0) -> str:
    return mint_token(
        app_key="k" * 32,
        host="127.0.0.1:1",
        room_id=room_id,
        name=name,
        role="participant",
        now=time.time() - age_s,
    )


def billion_laughs(levels: int = 9) -> str:
    lines = ['l0: &l0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n" + BASE + f"    data: *l{levels}\n"


@pytest.mark.parametrize("command", ["check", "run"])
def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path, command: str) -> None:
    path = write(tmp_path, billion_laughs())
    started = time.monotonic()
    proc = enx(command, path, timeout=20)
    assert_one_line(proc, 2, path, "aliases expand to more than 100,000 values")
    assert time.monotonic() - started < 15


def test_aliases_that_stay_small_are_fine(tmp_path: Path) -> None:
    media = "{width: 160, height: 96}"
    t1, t2 = (token_for("r", name) for name in ("a", "b"))
    text = (
        f"bots:\n  - {{name: a, token: {t1}, media: &m {media}}}\n  - {{name: b, token: {t2}, media: *m}}\n"
    )
    proc = enx("check", write(tmp_path, text))
    assert proc.returncode == 0, proc.stderr
    assert "ok (2 bot(s)" in proc.stdout


def test_a_self_referencing_alias_is_refused(tmp_path: Path) -> None:
    assert_one_line(enx("check", write(tmp_path, BASE + "    data: &x [1, *x]\n")), 2, "contains it")


@pytest.mark.parametrize("opener,closer", [("[", "]"), ("{a: ", "}")])
def test_deep_nesting_is_refused_without_a_traceback(tmp_path: Path, opener: str, closer: str) -> None:
    deep = opener * 10_000 + "1" + closer * 10_000
    assert_one_line(enx("check", write(tmp_path, BASE + f"    data: {deep}\n")), 2, "nested deeper than 64")


@pytest.mark.parametrize("key", ["stay", "join_delay"])
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_float_fields_refuse_nan_and_infinity(tmp_path: Path, key: str, value: str) -> None:
    err = assert_one_line(enx("check", write(tmp_path, BASE + f"    {key}: {value}\n")), 2, key)
    assert "finite number" in err


def test_every_float_field_is_finite() -> None:
    with pytest.raises(ConfigError, match=r"bots\[0\]\.stay must be a finite number"):
        parse_config({"token": "t", "bots": [{"name": "a", "stay": float("nan")}]}, {})
    cfg = parse_config({"token": "t", "bots": [{"name": "a", "stay": 2.5}]}, {})
    assert cfg.bots[0].stay == 2.5


def test_a_garbage_port_in_the_environment_breaks_no_other_command() -> None:
    env = {"ENX_PORT": "http"}
    for args in (["--help"], ["serve", "--help"], ["check", "--help"]):
        proc = enx(*args, env=env)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
    assert_one_line(
        enx("serve", env={**env, "ENX_APP_ID": "a", "ENX_APP_KEY": "k"}), 2, "'http' is not a TCP port"
    )
    assert_one_line(enx("serve", "--port", "70000", env=env), 2, "'70000' is not a TCP port")


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_billion_bots_is_refused_at_once(tmp_path: Path, command: str) -> None:
    text = "app_id: a\napp_key: k\nroom_id: r\nbots:\n  - {name: 'b-{i}', count: 1000000000}\n"
    started = time.monotonic()
    assert_one_line(enx(command, write(tmp_path, text), timeout=20), 2, "1,000,000,000", "20,000")
    assert time.monotonic() - started < 15


def test_the_bounds_on_bots_and_rooms() -> None:
    def cfg(count: int, rooms: int | None = None) -> dict[str, object]:
        extra = {"rooms": rooms} if rooms is not None else {"room_id": "r"}
        return {"app_id": "a", "app_key": "k", **extra, "bots": [{"name": "b-{i}", "count": count}]}

    assert len(parse_config(cfg(20_000), {}).bots) == 20_000
    with pytest.raises(ConfigError, match="20,001"):
        parse_config(
            cfg(10_000) | {"bots": [{"name": "a-{i}", "count": 10_000}, {"name": "c-{i}", "count": 10_001}]},
            {},
        )
    with pytest.raises(ConfigError, match="more than the 2,000 one config may create"):
        parse_config(cfg(10, rooms=2_001), {})


@pytest.mark.parametrize(
    ("token", "needle"),
    [("x", "not base64"), ("dDE=", "does not decode to JSON"), (token_for("r", age_s=3600), "expired")],
)
def test_check_reads_the_token_without_the_network(token: str, needle: str) -> None:
    proc = enx("check", "configs/bot.yaml", env={"ENX_TOKEN": token})
    err = assert_one_line(proc, 2, "configs/bot.yaml", needle)
    assert len(token) < 8 or token not in err


def test_check_accepts_a_good_token() -> None:
    proc = enx("check", "configs/bot.yaml", env={"ENX_TOKEN": token_for("r")})
    assert proc.returncode == 0, proc.stderr
    assert "ok (1 bot(s), token mode)" in proc.stdout


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_token_for_another_room_than_room_id_is_refused(command: str) -> None:
    env = {"ENX_TOKEN": token_for("room-a"), "ENX_ROOM_ID": "room-b"}
    err = assert_one_line(enx(command, "configs/bot.yaml", env=env), 2, "room-a", "room_id is room-b")
    assert env["ENX_TOKEN"] not in err


def test_a_taken_metrics_port_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"ENX_TOKEN": token_for("r"), "ENX_METRICS_PORT": str(port), "ENX_METRICS_HOST": "127.0.0.1"}
        proc = enx("run", "configs/bot.yaml", env=env)
    assert_one_line(proc, 2, "cannot serve metrics", "choose another metrics_port")
    assert "RuntimeWarning" not in proc.stderr


def _pcm_wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(b"\0\0" * 48000)
    return path


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_file_run_cannot_send_is_a_config_error_for_check_and_run(tmp_path: Path, command: str) -> None:
    wav = _pcm_wav(tmp_path / "pcm.wav")
    text = f"server: embedded\nbots:\n  - name: a\n    local_info: {{video: false}}\n    media: {{kind: file, file: {wav}}}\n"
    assert_one_line(enx(command, write(tmp_path, text)), 2, "bots[0].media.file", "re-encoding")


def test_a_file_without_the_video_the_bot_publishes_is_refused(tmp_path: Path) -> None:
    ogg = write_test_file(tmp_path / "audio.ogg", video=False)
    media = f"media: {{kind: file, file: {ogg}}}"
    for shared in ("true", "false"):
        text = f"server: embedded\nshared_media: {shared}\nbots:\n  - name: a\n    {media}\n"
        err = assert_one_line(enx("check", write(tmp_path, text)), 2, "has no video stream")
        assert "set local_info.video: false" in err
        ok = f"server: embedded\nshared_media: {shared}\nbots:\n  - name: a\n    local_info: {{video: false}}\n    {media}\n"
        proc = enx("check", write(tmp_path, ok))
        assert proc.returncode == 0, proc.stderr
