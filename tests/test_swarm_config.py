"""Swarm configs: bot templates with counts and variants, rooms, ramps, token files, shards; and
bad input through the CLI (one line on stderr, exit 2). No network."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bot.agent.config import load_config, parse_config
from bot.agent.errors import ConfigError
from bot.agent.rules.ramp import Backoff, Pacer, RampSchedule, Stage

ROOT = Path(__file__).resolve().parents[1]
EMB: dict[str, Any] = {"server": "embedded"}


def cfg_of(raw: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    return parse_config(raw, env or {}, "s.yaml")


def test_count_expands_a_template_into_numbered_bots() -> None:
    cfg = cfg_of({**EMB, "bots": [{"name": "load-{i}", "count": 3, "user_ref": "u{i:03}"}, {"name": "solo"}]})
    assert [b.name for b in cfg.bots] == ["load-1", "load-2", "load-3", "solo"]
    assert [b.user_ref for b in cfg.bots[:3]] == ["u001", "u002", "u003"]
    # defaults still merge into every bot of a template
    cfg = cfg_of({**EMB, "defaults": {"stay": 5}, "bots": [{"name": "x{i}", "count": 2}]})
    assert [b.stay for b in cfg.bots] == [5.0, 5.0]


def test_variants_are_drawn_in_exact_proportions_and_interleaved() -> None:
    raw = {
        **EMB,
        "bots": [
            {
                "name": "load-{i}",
                "count": 200,
                "stay": 60,
                "variants": [
                    {"weight": 10, "local_info": {"video": True}},
                    {"weight": 60, "local_info": {"video": False}, "stay": 30},
                    {"weight": 30, "role": "viewer"},
                ],
            }
        ],
    }
    cfg = cfg_of(raw)
    kinds = ["viewer" if b.role == "viewer" else "av" if b.local_info.video else "audio" for b in cfg.bots]
    assert Counter(kinds) == {"av": 20, "audio": 120, "viewer": 60}
    assert Counter(kinds[:20])["av"] == 2  # spread over the whole swarm, not in a block
    assert {b.stay for b in cfg.bots if not b.local_info.video and b.role != "viewer"} == {30.0}
    assert {b.stay for b in cfg.bots if b.role == "viewer"} == {60.0}


def test_rooms_matrix_assigns_consecutive_blocks() -> None:
    cfg = cfg_of({**EMB, "rooms": 3, "bots_per_room": 2, "bots": [{"name": "b{i}", "count": 5}]})
    assert cfg.creates_rooms and [cfg.room_of(i, 3) for i in range(5)] == [0, 0, 1, 1, 2]
    listed = cfg_of(
        {"app_id": "a", "app_key": "k", "rooms": ["r1", "r2"], "bots": [{"name": "b{i}", "count": 4}]}
    )
    assert listed.room_ids == ["r1", "r2"] and [listed.room_of(i, 2) for i in range(4)] == [0, 0, 1, 1]


def test_shards_select_every_nth_bot() -> None:
    raw = {**EMB, "bots": [{"name": "b{i}", "count": 7}]}
    env = {"ENX_SHARD_INDEX": "1", "ENX_SHARD_COUNT": "3"}
    assert [(i, b.name) for i, b in cfg_of(raw, env).my_bots()] == [(1, "b2"), (4, "b5")]
    with pytest.raises(ConfigError, match="ENX_SHARD_INDEX"):
        cfg_of(raw, {"ENX_SHARD_INDEX": "3", "ENX_SHARD_COUNT": "3"})


def test_token_file_gives_one_token_per_bot(tmp_path: Path) -> None:
    (tmp_path / "tokens.txt").write_text("# issued today\ntok-a\n\ntok-b\ntok-c\n")
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text("token_file: tokens.txt\nbots:\n  - {name: 'b{i}', count: 3}\n")
    cfg = load_config(cfg_path, env={})
    assert cfg.mode == "token_file" and cfg.issued_tokens == ("tok-a", "tok-b", "tok-c")
    assert "tok-a" not in repr(cfg)


def test_ramp_forms_and_schedule() -> None:
    assert cfg_of({**EMB, "ramp": 4, "bots": [{"name": "b{i}", "count": 3}]}).ramp.rate == 4.0
    cfg = cfg_of(
        {
            **EMB,
            "ramp": [{"to": 2, "over": "1s"}, {"hold": "500ms"}, {"to": 4, "over": 1}],
            "bots": [{"name": "b{i}", "count": 5}],
        }
    )
    sched = cfg.schedule()
    assert [sched.due(i) for i in range(5)] == pytest.approx([0, 0.5, 1.5, 2.0, 2.5])
    both = cfg_of(
        {**EMB, "ramp": {"rate": 2, "stages": [{"to": 2, "over": 0}]}, "bots": [{"name": "b{i}", "count": 3}]}
    )
    assert [both.schedule().due(i) for i in range(3)] == pytest.approx([0, 0.5, 1.0])


def test_ramp_schedule_follows_rate_and_stages() -> None:
    rate = RampSchedule(5, rate=20)
    assert [rate.due(i) for i in range(5)] == pytest.approx([0, 0.05, 0.1, 0.15, 0.2])
    assert RampSchedule(3).duration == 0  # no ramp: everyone at once
    # the example: to 50 over 10 s, hold 60 s, to 200 over 30 s
    s = RampSchedule(200, rate=20, stages=[Stage(50, 10), Stage(None, 60), Stage(200, 30)])
    assert s.due(0) == 0 and s.due(49) == pytest.approx(9.8)
    assert s.due(50) == pytest.approx(10 + 60) and s.due(199) == pytest.approx(70 + 30 * 149 / 150)
    gaps = [s.due(i + 1) - s.due(i) for i in range(199)]
    assert min(gaps) >= 1 / 20 - 1e-9  # never faster than the rate
    # bots left over after the stages follow at the rate
    tail = RampSchedule(4, rate=10, stages=[Stage(2, 1)])
    assert [tail.due(i) for i in range(4)] == pytest.approx([0, 0.5, 1.0, 1.1])


def test_a_late_start_delays_the_ramp_instead_of_bursting() -> None:
    p = Pacer()
    assert p.start_at(0.0, 0.0) == 0.0 and p.start_at(0.1, 0.1) == pytest.approx(0.1)
    # the bot planned at 0.2 is let go 0.13 s late; the one planned at 0.3 keeps its 0.1 s gap
    assert p.start_at(0.2, 0.33) == pytest.approx(0.33)
    assert p.start_at(0.3, 0.33) == pytest.approx(0.43) and p.slip == pytest.approx(0.13)
    # a start asked for after its time, with the previous far enough back, goes at once
    assert p.start_at(0.4, 0.9) == pytest.approx(0.9) and p.slip == pytest.approx(0.5)
    # out of order (an earlier bot's token came later): its planned distance after the latest
    assert p.start_at(0.35, 0.9) == pytest.approx(0.95)
    # everyone planned at once (no rate) is never held back
    together = Pacer()
    assert [together.start_at(0.0, 1.0) for _ in range(3)] == [1.0, 1.0, 1.0]


def test_backoff_doubles_with_jitter_and_a_ceiling() -> None:
    b, rng = Backoff(first=1, most=5), random.Random(7)
    for retry, d in ((1, 1), (2, 2), (3, 4), (4, 5), (9, 5)):
        got = [b.delay(retry, rng) for _ in range(50)]
        assert all(d / 2 <= x <= d for x in got) and max(got) - min(got) > d / 10


def test_swarm_template_loads_from_the_environment() -> None:
    env = {"ENX_APP_ID": "a", "ENX_APP_KEY": "k", "ENX_ROOM_ID": "r", "ENX_BOTS": "7", "ENX_RAMP": "5"}
    cfg = load_config(ROOT / "configs" / "swarm.yaml", env=env)
    assert cfg.mode == "credentials" and len(cfg.bots) == 7 and cfg.bots[6].name == "load-7"
    assert cfg.ramp.rate == 5 and cfg.shared_media and cfg.workers == "auto" and cfg.join_retries == 3
    b = cfg.bots[0]
    assert (b.local_info.audio, b.local_info.video, b.media.width, b.media.height, b.media.fps) == (
        True, True, 640, 360, 15.0,
    )  # fmt: skip
    naive = load_config(ROOT / "configs" / "swarm.yaml", env={**env, "ENX_SHARED_MEDIA": "false"})
    assert not naive.shared_media
    rooms = load_config(
        ROOT / "configs" / "swarm.yaml",
        env={**env, "ENX_ROOM_ID": "", "ENX_ROOMS": "2", "ENX_BOTS_PER_ROOM": "4"},
    )
    assert rooms.creates_rooms and rooms.rooms == 2 and rooms.bots_per_room == 4


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({**EMB, "bots": [{"name": "b{i}", "count": 0}]}, "bots[0].count must be 1 or more"),
        ({**EMB, "bots": [{"name": "b{i}", "count": -3}]}, "bots[0].count must be 1 or more"),
        ({**EMB, "bots": [{"name": "b{i}", "count": "many"}]}, "count must be a whole number"),
        ({**EMB, "bots": [{"name": "load", "count": 5}]}, "has no {i}: write e.g. 'load-{i}'"),
        ({**EMB, "bots": [{"name": "b{n}-{i}", "count": 2}]}, "only {i}"),
        (
            {**EMB, "bots": [{"name": "b{i}", "count": 2, "variants": []}]},
            "variants must be a non-empty list",
        ),
        (
            {**EMB, "bots": [{"name": "b{i}", "count": 2, "variants": [{"weight": 0}]}]},
            "weight must be a number",
        ),
        (
            {**EMB, "bots": [{"name": "b{i}", "count": 2, "variants": [{"rol": "viewer"}]}]},
            "did you mean 'role'",
        ),
        ({**EMB, "ramp": 0, "bots": [{"name": "a"}]}, "rate must be more than 0"),
        ({**EMB, "ramp": -5, "bots": [{"name": "a"}]}, "rate must be more than 0"),
        (
            {**EMB, "ramp": [{"to": 5, "over": "1s"}], "bots": [{"name": "a"}]},
            "ramps to 5 bots, but the config has 1",
        ),
        (
            {**EMB, "ramp": [{"to": 2}, {"to": 1}], "bots": [{"name": "b{i}", "count": 2}]},
            "stages only ramp up",
        ),
        (
            {
                **EMB,
                "ramp": {"rate": 5, "stages": [{"to": 100, "over": "1s"}]},
                "bots": [{"name": "b{i}", "count": 100}],
            },
            "faster than the ramp rate of 5 joins/s",
        ),
        ({**EMB, "ramp": [{"to": 1, "hold": 3}], "bots": [{"name": "a"}]}, "either {to: N"),
        ({**EMB, "ramp": [{"to": 1, "over": "soon"}], "bots": [{"name": "a"}]}, "over must be a duration"),
        ({**EMB, "ramp": [{"too": 1}], "bots": [{"name": "a"}]}, "did you mean 'to'"),
        ({**EMB, "rooms": 2, "bots_per_room": 2, "bots": [{"name": "b{i}", "count": 5}]}, "hold 4 bots"),
        ({**EMB, "rooms": 0, "bots": [{"name": "a"}]}, "rooms must be 1 or more"),
        ({**EMB, "workers": 0, "bots": [{"name": "a"}]}, "workers must be 1 or more"),
        ({**EMB, "workers": "many", "bots": [{"name": "a"}]}, "workers must be"),
        ({**EMB, "join_retries": -1, "bots": [{"name": "a"}]}, "join_retries must be 0 or more"),
        ({"token_url": "ftp://x", "room_id": "r", "bots": [{"name": "a"}]}, "token_url must start with http"),
        ({"token_url": "http://x/t", "bots": [{"name": "a"}]}, "token_url needs the room"),
        (
            {"app_id": "a", "app_key": "k", "room_id": "r", "rooms": ["x"], "bots": [{"name": "a"}]},
            "not both",
        ),
        ({"token": "t", "rooms": 2, "bots": [{"name": "a"}]}, "do not apply to tokens"),
        ({"app_id": "a", "app_key": "k", "bots": [{"name": "a"}]}, "missing: room_id"),
    ],
)
def test_bad_swarm_configs_give_one_line(raw: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        cfg_of(raw)
    msg = str(exc.value)
    assert needle in msg and msg.startswith("s.yaml") and "\n" not in msg, msg


def enx(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("ENX_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("yaml", "env", "needle"),
    [
        ("server: embedded\nbots:\n  - {name: 'b{i}', count: 0}\n", {}, "bots[0].count must be 1 or more"),
        ("server: embedded\nbots:\n  - {name: 'b{i}', count: -2}\n", {}, "bots[0].count must be 1 or more"),
        ("server: embedded\nramp: 0\nbots:\n  - {name: a}\n", {}, "rate must be more than 0"),
        (
            "server: embedded\nramp: {rate: 1, stages: [{to: 10, over: 1s}]}\nbots:\n  - {name: 'b{i}', count: 10}\n",
            {},
            "faster than the ramp rate",
        ),
        ("token_file: TOKENS\nbots:\n  - {name: 'b{i}', count: 3}\n", {}, "has 2 token(s) for 3 bots"),
        (
            "server: embedded\nbots:\n  - {name: a}\n",
            {"ENX_SHARD_INDEX": "x", "ENX_SHARD_COUNT": "2"},
            "ENX_SHARD_INDEX",
        ),
        ("server: embedded\nevent_loop: uvloop\nbots:\n  - {name: a}\n", {}, "uvloop is not installed"),
    ],
)
def test_bad_swarm_input_through_the_cli(tmp_path: Path, yaml: str, env: dict[str, str], needle: str) -> None:
    if "uvloop" in yaml:
        try:
            import uvloop  # type: ignore[import-not-found]  # noqa: F401
        except ImportError:
            pass
        else:
            pytest.skip("uvloop is installed")
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("t1\nt2\n")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.replace("TOKENS", str(tokens)))
    proc = enx("run", str(path), env=env)
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], err)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(err.splitlines()) == 1 and needle in err, err


def test_worker_count_and_combined_exit_code() -> None:
    from bot.agent.swarm.workers import BOTS_PER_WORKER, combine, resolve_workers

    cores = len(os.sched_getaffinity(0))
    many = cfg_of(
        {**EMB, "workers": "auto", "bots": [{"name": "b{i}", "count": BOTS_PER_WORKER * cores + 1}]}
    )
    assert resolve_workers(many) == cores
    few = cfg_of({**EMB, "workers": "auto", "bots": [{"name": "b{i}", "count": 3}]})
    assert resolve_workers(few) == 1
    one_loop = cfg_of({**EMB, "workers": "auto", "bots": [{"name": "b{i}", "count": BOTS_PER_WORKER}]})
    assert resolve_workers(one_loop) == 1
    # bots encoding their own media fill a loop ten at a time
    naive = {**EMB, "workers": "auto", "shared_media": False, "bots": [{"name": "b{i}", "count": 11}]}
    assert resolve_workers(cfg_of(naive)) == min(2, cores)
    assert resolve_workers(cfg_of({**EMB, "workers": 8, "bots": [{"name": "b{i}", "count": 3}]})) == 3
    assert combine([0, 0]) == 0 and combine([0, 4]) == 4 and combine([4, 3]) == 3 and combine([3, 2]) == 2
    assert combine([0, -9]) == 4  # a worker killed by a signal: its bots' sessions were lost


def test_shared_media_is_the_default_and_a_bot_may_opt_out() -> None:
    from bot.agent.swarm.runner import Agent

    cfg = cfg_of({**EMB, "bots": [{"name": "a"}, {"name": "b", "media": {"shared": False}}]})
    agent = Agent(cfg)
    assert [agent.shares_media(b) for b in cfg.bots] == [True, False]
    naive = cfg_of(
        {**EMB, "shared_media": False, "bots": [{"name": "a"}, {"name": "b", "media": {"shared": True}}]}
    )
    assert [Agent(naive).shares_media(b) for b in naive.bots] == [False, True]


def test_gc_tuning_freezes_the_start_up_heap_and_makes_collections_rare() -> None:
    code = (
        "import gc; from bot.agent.swarm.tuning import GC_THRESHOLDS, tune_gc; before = gc.get_threshold(); "
        "tune_gc(); print(before, gc.get_threshold() == GC_THRESHOLDS, gc.get_freeze_count() > 1000)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split(")", 1)[1].split() == ["True", "True"], out
    assert out.startswith("(700, 10, 10)")  # CPython's defaults: what it changes from
