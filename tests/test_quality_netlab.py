"""A throttled link between network namespaces (tests/netlab.py, root only): a monitoring bot
whose downlink loses packets (netem 20% loss, or tbf tail drops at 200 kbit/s) sees the audio MOS fall below ``min_mos`` and logs
``quality_degraded``, then ``quality_recovered`` once the link is clean again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from netlab import NetLab, netlab
from test_server_bandwidth import ROOT, _in_bot_ns, _reader, _room_server_in, _wait

pytestmark = pytest.mark.timeout(150)

QUALITY = {"min_mos": 3.5, "for_s": 3, "hold_s": 2, "freeze_ms": 1500}


def _tokens(lab: NetLab, port: int, names: list[str]) -> list[str]:
    from conftest import APP_ID, APP_KEY

    api = f"http://{lab.server_ip}:{port}/video/v2"
    out = _in_bot_ns(
        lab,
        "import json,base64,urllib.request as u\n"
        f"h={{'Content-Type':'application/json','Authorization':'Basic '+base64.b64encode(b'{APP_ID}:{APP_KEY}').decode()}}\n"
        "def post(p,b): return json.load(u.urlopen(u.Request("
        f"'{api}'+p,data=json.dumps(b).encode(),headers=h),timeout=5))\n"
        "r=post('/rooms',{'name':'quality'})['room']['room_id']\n"
        f"print(json.dumps([post('/rooms/'+r+'/tokens',{{'name':n,'role':'participant'}})['token'] for n in {names!r}]))",
    )
    return list(json.loads(out))


def _throttle_downlink(lab: NetLab) -> str:
    """On the server's side of the link (what the monitor receives): netem 20% random loss, or
    where the kernel has no netem (this sandbox), tbf at 200 kbit/s, whose short queue
    tail-drops what a 640x360 stream sends beyond that: loss on both kinds."""
    dev = ("tc", "-n", lab.server_ns, "qdisc", "replace", "dev", lab.server_dev, "root")
    netem = subprocess.run([*dev, "netem", "loss", "20%"], capture_output=True, timeout=10, check=False)
    if netem.returncode == 0:
        return "netem loss 20%"
    tbf = ("tbf", "rate", "200kbit", "burst", "8kb", "latency", "100ms")
    subprocess.run([*dev, *tbf], check=True, capture_output=True, timeout=10)
    return "tbf rate 200kbit (no netem in this kernel)"


def _clean(lab: NetLab) -> None:
    subprocess.run(
        ["tc", "-n", lab.server_ns, "qdisc", "del", "dev", lab.server_dev, "root"],
        check=False,
        capture_output=True,
        timeout=10,
    )


@pytest.mark.slow
def test_a_lossy_downlink_degrades_then_recovers(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    bot = {
        "name": "monitor",
        "local_info": {"audio": False, "video": False},
        "receive": {"subscribe": "all", "stats_interval_s": 1, "quality": QUALITY},
    }
    config.write_text(yaml.safe_dump({"token": "${ENX_TOKEN}", "bots": [bot]}))
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("ENX_")}
    with netlab() as lab:
        port = 8080
        with _room_server_in(lab, port):
            publisher_token, monitor_token = _tokens(lab, port, ["alice", "monitor"])
            publisher = lab.spawn(
                lab.server_ns,  # its uplink is not the throttled link
                [sys.executable, str(ROOT / "tests" / "publisher_probe.py"), "--stay", "120"],
                env={**clean_env, "ENX_TOKEN": publisher_token, "PYTHONUNBUFFERED": "1"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=ROOT,
            )
            monitor = lab.spawn(
                lab.bot_ns,
                [sys.executable, "-m", "bot", "run", str(config), "--log-format", "json"],
                env={**clean_env, "ENX_TOKEN": monitor_token, "PYTHONUNBUFFERED": "1"},
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=ROOT,
            )
            events: list[dict[str, Any]] = []
            threading.Thread(target=_reader, args=(monitor.stdout, events), daemon=True).start()

            def seen(name: str, after: float = 0.0) -> dict[str, Any] | None:
                return next(
                    (e for e in list(events) if e.get("event") == name and e["t_read"] >= after), None
                )

            def stats(after: float) -> list[dict[str, Any]]:
                return [e for e in list(events) if e.get("event") == "stream_stats" and e["t_read"] >= after]

            _wait(lambda: seen("subscribed_stream"), 40, "the monitor receiving alice")
            t_clean = time.monotonic()
            _wait(
                lambda: len([s for s in stats(t_clean) if s.get("mos") is not None]) >= 3, 20, "clean stats"
            )
            clean = [s for s in stats(t_clean) if s.get("mos") is not None]
            assert all(s["mos"] >= 4.0 for s in clean), clean
            assert seen("quality_degraded") is None

            t_loss = time.monotonic()
            shaping = _throttle_downlink(lab)
            degraded = _wait(lambda: seen("quality_degraded", t_loss), 20, "quality_degraded")
            lossy = [s for s in stats(t_loss) if s.get("mos") is not None]
            assert degraded["mos"] is not None and degraded["mos"] < 3.5, degraded
            assert degraded["user"] == "alice" and degraded["user_id"] and degraded["stream_id"] is not None
            assert degraded["t_read"] - t_loss >= 2.5  # for_s, not the first bad sample
            assert seen("loss_high", t_loss) is not None
            time.sleep(2)
            t_lift = time.monotonic()
            _clean(lab)
            recovered = _wait(lambda: seen("quality_recovered", t_lift), 20, "quality_recovered")
            after = stats(recovered["t_read"])
            print(
                f"\n{shaping} -> quality_degraded in {degraded['t_read'] - t_loss:.1f} s "
                f"(mos {degraded['mos']}, lossy mos {[s['mos'] for s in lossy]}); "
                f"clean -> quality_recovered in {recovered['t_read'] - t_lift:.1f} s"
            )
            assert recovered["t_read"] - t_lift < 15
            monitor.terminate()
            monitor.wait(15)
            publisher.terminate()
            publisher.wait(15)
    assert len([e for e in events if e.get("event") == "quality_degraded"]) == 1, "one episode, one pair"
    assert all(s.get("mos") is None or s["mos"] >= 3.5 for s in after[1:]), after
