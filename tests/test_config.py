"""Config loading: interpolation, validation, one-line errors that say where and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.agent.config import load_config, parse_config
from bot.agent.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_configs_load() -> None:
    demo = load_config(ROOT / "configs" / "demo.yaml", env={})
    assert demo.mode == "embedded" and len(demo.bots) == 3
    assert any(b.stay and b.stay < 15 for b in demo.bots), "one bot leaves early"
    assert demo.bots[1].local_info.audio_muted is False
    tok = load_config(ROOT / "configs" / "bot.yaml", env={"ENX_TOKEN": "abc", "ENX_NAME": "mon-1"})
    assert tok.mode == "token" and tok.bots[0].name == "mon-1" and tok.bots[0].stay is None
    cred = load_config(
        ROOT / "configs" / "bot.yaml",
        env={
            "ENX_APP_ID": "a",
            "ENX_APP_KEY": "k",
            "ENX_ROOM_ID": "r",
            "ENX_API_URL": "http://127.0.0.1:1/video/v2",
        },
    )
    assert cred.mode == "credentials" and cred.api_url == "http://127.0.0.1:1/video/v2"
    default = load_config(
        ROOT / "configs" / "bot.yaml", env={"ENX_APP_ID": "a", "ENX_APP_KEY": "k", "ENX_ROOM_ID": "r"}
    )
    assert default.api_url == "https://api.enablex.io/video/v2"
    ri = tok.bots[0].room_info
    assert (ri.allow_reconnect, ri.number_of_attempts, ri.timeout_interval) == (True, 3, 15.0)


def test_interpolation_types_and_defaults() -> None:
    raw = {
        "server": "embedded",
        "bots": [
            {"name": "${N:-x}", "stay": "${S:-2.5}", "local_info": {"audio": "${A}"}, "user_ref": "id-${N}"}
        ],
    }
    cfg = parse_config(raw, {"A": "false", "N": "bob"})
    b = cfg.bots[0]
    assert (b.name, b.stay, b.local_info.audio, b.user_ref) == ("bob", 2.5, False, "id-bob")
    with pytest.raises(ConfigError, match=r"environment variable A is not set"):
        parse_config(raw, {})


def test_defaults_are_merged_and_checked() -> None:
    raw = {
        "server": "embedded",
        "defaults": {"room_info": {"forceTurn": True}},
        "bots": [{"name": "a"}, {"name": "b"}],
    }
    cfg = parse_config(raw, {})
    assert all(b.room_info.force_turn for b in cfg.bots)
    with pytest.raises(ConfigError, match=r"unknown key 'forceturn' \(did you mean 'forceTurn'\?\)"):
        parse_config(
            {"server": "embedded", "defaults": {"room_info": {"forceturn": 1}}, "bots": [{"name": "a"}]}, {}
        )


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (
            {"server": "embedded", "bots": [{"name": "a", "local_info": {"audiomuted": True}}]},
            "did you mean 'audioMuted'",
        ),
        (
            {"server": "embedded", "bots": [{"name": "a", "room_info": {"number_of_attempts": "3x"}}]},
            "must be a whole number",
        ),
        ({"server": "embedded", "bots": [{"name": "a", "stay": -1}]}, "stay must be more than 0"),
        ({"server": "embedded", "bots": []}, "non-empty list"),
        ({"server": "embedded"}, "'bots' is missing"),
        ({"server": "embedded", "bots": [{"name": "a"}, {"name": "a"}]}, "repeated: a"),
        ({"server": "embedded", "bots": [{"name": "a", "media": {"kind": "file"}}]}, "media.file is not set"),
        ({"server": "embedded", "bots": [{"name": "a", "role": "admin"}]}, "role must be one of"),
        ({"server": "embeded", "bots": [{"name": "a"}]}, "server must be"),
        ({"bots": [{"name": "a"}]}, "no way into a room"),
        ({"token": "t", "bots": [{"name": "a"}, {"name": "b"}]}, "tokens are single use"),
        ({"server": "embedded", "bots": [{"name": "a"}], "api_ur": "x"}, "did you mean 'api_url'"),
    ],
)
def test_bad_configs_give_one_line(raw: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(raw, {}, "x.yaml")
    msg = str(exc.value)
    assert needle in msg and msg.startswith("x.yaml") and "\n" not in msg


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml", env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("bots: [\n  - name: a\n  nope: : :\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_config(bad, env={})
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(empty, env={})
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, env={})
