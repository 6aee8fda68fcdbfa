"""The server's bandwidth detector: pure meters on synthetic packets, the emulator's injection
(exactly the detector's events), and a real throttled link (NetLab, root only).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection
from conftest import APP_ID, APP_KEY, RawClient
from netlab import NetLab, netlab

from bot.server import BandwidthSettings, RoomServer
from bot.server.bandwidth import (
    PublishMonitor,
    SubscribeMonitor,
    WindowStats,
    publisher_event,
    stream_event,
)
from bot.server.media import BandwidthChange

ROOT = Path(__file__).resolve().parents[1]
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{APP_ID}:{APP_KEY}".encode()).decode()}
Connect = Callable[[], Awaitable[RawClient]]
Peer = Callable[[], RTCPeerConnection]


# --------------------------------------------------------------------------- pure meters


class Link:
    """Synthetic publisher -> server link: Opus (50 pps) and VP8 (15 fps x 3 packets) RTP, with
    loss, a growing queue and sender reports, on a fake clock."""

    def __init__(self, monitor: PublishMonitor) -> None:
        self.monitor = monitor
        self.t = 0.0
        self.seq = {"audio": 1000, "video": 60000}  # video wraps its sequence numbers
        self.ts = {"audio": 4_000_000_000, "video": 123}  # audio wraps its timestamps
        self.sent_octets = 0
        self.loss_every = 0  # drop every n-th packet (0: none)
        self.queue_growth = 0.0  # seconds of queue added per second
        self.queue_s = 0.0
        self.video = True
        self.video_duty = 1.0  # share of each second with video frames (an encoder skipping frames)
        self.last_video_t = 0.0
        self._n = 0
        self._next_sr = 0.7

    def run(self, seconds: float, tick: float = 0.5) -> list[tuple[float, str]]:
        """Send for ``seconds``; tick the monitor every ``tick``; the verdicts, timed."""
        verdicts = []
        end = self.t + seconds
        next_tick = self.t + tick
        step = 0.02
        while self.t < end - 1e-9:
            self.t = round(self.t + step, 6)
            self.queue_s += self.queue_growth * step
            self._packet("audio", 960, 80)
            if self.video and round(self.t / step) % 4 == 0:  # 12.5 fps, 3 packets a frame
                self.ts["video"] = (self.ts["video"] + 7200) % (1 << 32)  # the capture clock runs on
            if self.video and round(self.t / step) % 4 == 0 and (self.t % 1.0) < self.video_duty:
                self.last_video_t = self.t
                for _ in range(3):
                    self._packet("video", 0, 900)
                    self.sent_octets += 900
            if self.t >= self._next_sr:  # stamped like aiortc: when its last RTP packet went out
                ntp = int(self.last_video_t * (1 << 32))
                arrival = self.t + self.queue_s
                self.monitor.meters["video"].on_sender_report(0xBEEF, ntp, self.sent_octets, arrival)
                self._next_sr += 0.9
            if self.t >= next_tick - 1e-9:
                verdict = self.monitor.tick(self.t)
                if verdict:
                    verdicts.append((self.t, verdict))
                next_tick += tick
        return verdicts

    def _packet(self, kind: str, ts_step: int, size: int) -> None:
        seq = self.seq[kind] = (self.seq[kind] + 1) % 65536
        ts = self.ts[kind] = (self.ts[kind] + ts_step) % (1 << 32)
        self._n += 1
        if self.loss_every and self._n % self.loss_every == 0:
            return
        ssrc = 0xA0D10 if kind == "audio" else 0xBEEF
        arrival_ms = (self.t + self.queue_s) * 1000 + 20
        self.monitor.meters[kind].on_rtp(ssrc, seq, ts, arrival_ms, size)


def _monitor(**settings: Any) -> PublishMonitor:
    return PublishMonitor(BandwidthSettings(**settings), now=0.0)


def test_a_clean_link_never_alerts_and_counts_every_packet() -> None:
    link = Link(_monitor())
    assert link.run(20.0) == []
    stats = link.monitor.detector.last
    assert stats is not None
    assert stats.loss_pct == 0.0 and stats.queue_ms is not None and abs(stats.queue_ms) < 1
    assert stats.delivery is not None and 0.95 < stats.delivery <= 1.0
    assert 280 < stats.kbps < 330  # audio 32 kbps + video 270 kbps of payload


def test_loss_alerts_within_a_window_and_restores_after_a_clean_one() -> None:
    link = Link(_monitor())
    link.run(5.0)
    link.loss_every = 10  # 10 %
    low = link.run(5.0)
    assert [v for _, v in low] == ["low"]
    assert low[0][0] - 5.0 <= 2.0  # alert within 2 s of the loss starting
    assert link.monitor.detector.reasons == ["loss"]
    link.loss_every = 0
    restored = link.run(6.0)
    assert [v for _, v in restored] == ["restored"]
    assert 2.5 <= restored[0][0] - 10.0 <= 3.5  # a whole clean window first


def test_an_encoder_skipping_frames_is_not_a_slow_link() -> None:
    """A low bitrate cap makes VP8 skip frames: sender reports then come long after the last
    packet they are stamped with. That must not read as video lost on the way."""
    link = Link(_monitor())
    link.video_duty = 0.3
    assert link.run(20.0) == []
    last = link.monitor.detector.last
    assert last is not None and (last.delivery is None or last.delivery > 0.85)


def test_duplicates_and_wraparound_are_not_loss() -> None:
    monitor = _monitor()
    meter = monitor.meters["video"]
    for i in range(300):
        seq = (65400 + i) % 65536
        meter.on_rtp(1, seq, (i * 3000) % (1 << 32), i * 20.0, 500)
        meter.on_rtp(1, seq, (i * 3000) % (1 << 32), i * 20.0 + 5, 500)  # a retransmission
        if i % 25 == 0:
            monitor.tick(i * 0.02)
    window = meter.window(299 * 0.02)
    assert window is not None and window.loss_pct == 0.0 and window.received == window.expected


def test_a_standing_queue_alerts_before_anything_is_lost() -> None:
    link = Link(_monitor())
    link.run(5.0)
    link.queue_growth = 0.5  # the link carries 2/3 of what is sent: the queue grows 0.5 s/s
    low = link.run(6.0)
    assert [v for _, v in low] == ["low"]
    assert "queue_delay" in link.monitor.detector.reasons or "delivery" in link.monitor.detector.reasons


def test_restore_on_audio_alone_once_video_stopped() -> None:
    """The audio-only fallback: no video, restore judged on audio (loss, queue, jitter)."""
    link = Link(_monitor())
    link.run(5.0)
    link.loss_every = 8
    assert [v for _, v in link.run(4.0)] == ["low"]
    link.video = False  # the publisher fell back to audio only; the link is still lossy
    assert link.run(5.0) == []
    link.loss_every = 0
    restored = link.run(5.0)
    assert [v for _, v in restored] == ["restored"]
    assert link.monitor.detector.last is not None and link.monitor.detector.last.delivery is None


def test_too_few_packets_give_no_verdict() -> None:
    monitor = _monitor()
    for i in range(10):
        monitor.meters["audio"].on_rtp(1, i * 2, i * 960, i * 100.0, 80)  # half lost, but 10 packets
    assert monitor.tick(3.0) is None and monitor.tick(3.5) is None


def test_subscriber_reports_alert_and_restore() -> None:
    monitor = SubscribeMonitor(BandwidthSettings(), now=0.0)
    highest, lost, verdicts = 1000, 0, []
    for step in range(1, 41):
        t = step * 0.5
        highest += 40
        if 10 <= step < 20:
            lost += 6  # 15 %
        monitor.on_receiver_report(7, 90000, lost, highest, 900, t)
        if verdict := monitor.tick(t):
            verdicts.append((t, verdict))
    assert [v for _, v in verdicts] == ["low", "restored"]
    assert verdicts[0][0] <= 7.0 and verdicts[1][0] >= 10.0


def test_settings_refuse_nonsense() -> None:
    for bad in (
        {"window_s": 0},
        {"tick_s": 5, "window_s": 2},
        {"loss_low_pct": 1, "loss_restore_pct": 2},
        {"delivery_low": 0.9, "delivery_restore": 0.5},
        {"min_packets": 0},
    ):
        with pytest.raises(ValueError):
            BandwidthSettings(**bad)


def test_payloads_are_the_documented_ones() -> None:
    assert publisher_event(123.4) == {
        "id": "publisher-bw",
        "msg": {"message": "SubscriberBandWidth", "bandwidth": 123},
    }
    assert publisher_event(0.2, restored=True)["msg"] == {
        "message": "SubscriberBandWidth",
        "bandwidth": 1,
        "restored": True,
    }
    assert stream_event(7, "alice", "low", "publisher") == {
        "id": "bw-alert",
        "msg": [{"streamId": 7, "bw": "low", "type": "publisher", "name": "alice"}],
    }
    assert stream_event(7, "alice", "restored", "subscriber")["msg"][0]["bw"] == "restored"


# --------------------------------------------------------------------------- injection


async def _post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession(headers=AUTH) as http:
        kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
        async with http.post(url, **kwargs) as r:
            return r.status, await r.json(content_type=None)


async def _pair(
    room_server: RoomServer, room_id: str, connect: Connect, peer: Peer
) -> tuple[RawClient, RawClient, int]:
    alice = await connect()
    await alice.join(room_server.mint_token(room_id, name="alice"))
    bob = await connect()
    await bob.join(room_server.mint_token(room_id, name="bob"))
    stream_id = await alice.publish(peer(), name="alice-cam")
    await bob.next("onAddStream")
    return alice, bob, stream_id


async def test_injection_sends_exactly_what_the_detector_sends(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect, peer: Peer
) -> None:
    room_id = room["room_id"]
    alice, bob, stream_id = await _pair(room_server, room_id, raw_client, peer)
    url = f"{room_server.url}/emulator/rooms/{room_id}/bandwidth"

    assert await _post(url, {"client_ids": [alice.client_id], "bandwidth": 120}) == (200, {"result": 0})
    alert = await alice.next("bandwidthEvents")
    low = await bob.next("bandwidthEvents")
    assert alert == {"id": "publisher-bw", "msg": {"message": "SubscriberBandWidth", "bandwidth": 120}}
    assert low == {
        "id": "bw-alert",
        "msg": [{"streamId": stream_id, "bw": "low", "type": "publisher", "name": "alice-cam"}],
    }

    status, _ = await _post(url, {"client_ids": [alice.client_id], "restored": True, "bandwidth": 900})
    assert status == 200
    restore = await alice.next("bandwidthEvents")
    back = await bob.next("bandwidthEvents")
    assert restore == {
        "id": "publisher-bw",
        "msg": {"message": "SubscriberBandWidth", "bandwidth": 900, "restored": True},
    }
    assert back["msg"][0] == {
        "streamId": stream_id,
        "bw": "restored",
        "type": "publisher",
        "name": "alice-cam",
    }
    view = room_server.room_view(room_id)["participants"][0]["streams"][0]
    assert view["bandwidth"]["state"] == "ok"  # the detector judges afresh

    # the detector's own verdicts go through the same code path, to the same wire payloads
    signalling = room_server.signalling
    for verdict, kbps in (("low", 120.0), ("restored", 900.0)):
        stats = WindowStats(span_s=2.5, packets=200, loss_pct=12.0, kbps=kbps)
        await signalling.bandwidth_events.on_change(
            BandwidthChange(room_id=room_id, stream_id=stream_id, verdict=verdict, stats=stats)  # type: ignore[arg-type]
        )
    assert await alice.next("bandwidthEvents") == alert
    assert await bob.next("bandwidthEvents") == low
    assert await alice.next("bandwidthEvents") == restore
    assert await bob.next("bandwidthEvents") == back
    await bob.settle()
    assert alice.payloads("bandwidthEvents").count(alert) == 2 and len(bob.payloads("bandwidthEvents")) == 4


async def test_injected_alert_holds_the_detector_until_an_injected_restore(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect, peer: Peer
) -> None:
    room_id = room["room_id"]
    alice, bob, stream_id = await _pair(room_server, room_id, raw_client, peer)
    url = f"{room_server.url}/emulator/rooms/{room_id}/bandwidth"
    assert (await _post(url, {"client_ids": [alice.client_id], "bandwidth": 80}))[0] == 200
    await alice.next("bandwidthEvents")
    stats = WindowStats(span_s=2.5, packets=200, loss_pct=0.0, kbps=400)
    change = BandwidthChange(room_id=room_id, stream_id=stream_id, verdict="restored", stats=stats)
    await room_server.signalling.bandwidth_events.on_change(change)  # the link looks fine: held
    await alice.settle()
    assert len(alice.payloads("bandwidthEvents")) == 1 and len(bob.payloads("bandwidthEvents")) == 1


async def test_a_participant_without_a_stream_still_gets_its_alert(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    carol = await raw_client()
    await carol.join(room_server.mint_token(room["room_id"], name="carol"))
    dave = await raw_client()
    await dave.join(room_server.mint_token(room["room_id"], name="dave"))
    url = f"{room_server.url}/emulator/rooms/{room['room_id']}/bandwidth"
    assert (await _post(url, {"client_ids": [carol.client_id], "bandwidth": 64}))[0] == 200
    assert (await carol.next("bandwidthEvents"))["msg"]["bandwidth"] == 64
    await dave.settle()
    assert "bandwidthEvents" not in dave.names()


async def test_real_legs_are_measured_and_a_clean_loopback_never_alerts(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect, peer: Peer
) -> None:
    """Both taps on real aiortc legs: the publisher's RTP and sender reports, the subscriber's
    receiver reports."""
    room_id = room["room_id"]
    alice, bob, stream_id = await _pair(room_server, room_id, raw_client, peer)
    await bob.subscribe(peer(), stream_id)
    await asyncio.sleep(3.5)
    publish = room_server.media.publish_leg(room_id, stream_id)
    subscribe = room_server.media.subscribe_leg(room_id, bob.client_id or "", stream_id)
    assert publish is not None and subscribe is not None
    window = publish.monitor.detector.last
    assert window is not None and window.packets > 100 and window.loss_pct == 0.0
    assert window.queue_ms is not None and window.queue_ms < 100 and window.kbps > 10
    assert window.delivery is None or window.delivery > 0.85  # sender reports seen when judged
    sub = subscribe.monitor.detector.last
    assert sub is not None and sub.packets > 20 and sub.loss_pct == 0.0  # from bob's RTCP RRs
    view = room_server.room_view(room_id)["participants"][0]["streams"][0]["bandwidth"]
    assert view["state"] == "ok" and view["window"]["packets"] == window.packets
    assert "bandwidthEvents" not in alice.names() + bob.names()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{nope", 400),
        ({"bandwidth": 100}, 400),
        ({"client_ids": [], "bandwidth": 100}, 400),
        ({"client_ids": "abc", "bandwidth": 100}, 400),
        ({"client_ids": [3], "bandwidth": 100}, 400),
        ({"client_ids": ["x"]}, 400),
        ({"client_ids": ["x"], "bandwidth": -5}, 400),
        ({"client_ids": ["x"], "bandwidth": True}, 400),
        ({"client_ids": ["x"], "restored": "yes"}, 400),
        ({"client_ids": ["no-such-client"], "bandwidth": 100}, 404),
    ],
)
async def test_malformed_injections_are_refused(
    room_server: RoomServer, room: dict[str, Any], body: Any, status: int
) -> None:
    got, reply = await _post(f"{room_server.url}/emulator/rooms/{room['room_id']}/bandwidth", body)
    assert got == status and reply["result"] == status and reply["error"]


async def test_injection_into_an_unknown_room_is_404(room_server: RoomServer) -> None:
    got, _ = await _post(
        f"{room_server.url}/emulator/rooms/nope/bandwidth", {"client_ids": ["a"], "bandwidth": 1}
    )
    assert got == 404


# --------------------------------------------------------------------------- a real throttled link


def _reader(stream: Any, sink: list[dict[str, Any]]) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").strip()
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                event = json.loads(line)
                event.setdefault("t_read", time.monotonic())
                sink.append(event)


def _wait(pred: Callable[[], Any], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"{what} did not happen within {within} s")


def _in_bot_ns(lab: NetLab, code: str) -> str:
    out = subprocess.run(
        ["ip", "netns", "exec", lab.bot_ns, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip()[-300:])
    return out.stdout.strip()


@contextlib.contextmanager
def _room_server_in(lab: NetLab, port: int) -> Iterator[tuple[subprocess.Popen[bytes], list[dict[str, Any]]]]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ENX_")}, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "bot", "serve", "--host", lab.server_ip, "--port", str(port)]
    argv += ["--app-id", APP_ID, "--app-key", APP_KEY, "--data-dir", ":memory:", "--log-format", "json"]
    proc = lab.spawn(
        lab.server_ns, argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    logs: list[dict[str, Any]] = []
    threading.Thread(target=_reader, args=(proc.stdout, logs), daemon=True).start()
    _wait(
        lambda: any(e.get("event") == "server_started" for e in logs) or proc.poll() is not None,
        15,
        "server start",
    )
    assert proc.poll() is None, "room server exited"
    yield proc, logs


def _throttle(lab: NetLab) -> str:
    """netem 150 kbit/s + 10 % loss on the publisher's uplink; where the kernel has no netem
    (some sandboxes), tbf at 150 kbit/s with a 200 ms buffer: loss then comes from tail drops."""
    try:
        lab.throttle(rate_kbit=150, loss_pct=10)
        return "netem rate 150kbit loss 10%"
    except subprocess.CalledProcessError:
        subprocess.run(
            [
                *("tc", "-n", lab.bot_ns, "qdisc", "replace", "dev", lab.bot_dev, "root"),
                *("tbf", "rate", "150kbit", "burst", "16kb", "latency", "200ms"),
            ],
            check=True,
            capture_output=True,
            timeout=10,
        )
        return "tbf rate 150kbit latency 200ms (no netem in this kernel)"


@pytest.mark.slow
def test_a_throttled_lossy_uplink_alerts_the_publisher_and_restores_when_lifted() -> None:
    """tc netem (150 kbit/s, 10 % loss) on the publisher's uplink; the server's detector must
    alert within a few seconds of the limit and restore within a few of lifting it."""
    with netlab() as lab:
        port = 8080
        with _room_server_in(lab, port) as (_, server_logs):
            api = f"http://{lab.server_ip}:{port}/video/v2"
            token = _in_bot_ns(
                lab,
                "import json,base64,urllib.request as u\n"
                f"h={{'Content-Type':'application/json','Authorization':'Basic '+base64.b64encode(b'{APP_ID}:{APP_KEY}').decode()}}\n"
                "def post(p,b): return json.load(u.urlopen(u.Request("
                f"'{api}'+p,data=json.dumps(b).encode(),headers=h),timeout=5))\n"
                "r=post('/rooms',{'name':'tc'})['room']['room_id']\n"
                "print(post('/rooms/'+r+'/tokens',{'name':'probe','role':'participant'})['token'])",
            )
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("ENX_")}, "ENX_TOKEN": token}
            probe = lab.spawn(
                lab.bot_ns,
                [sys.executable, str(ROOT / "tests" / "publisher_probe.py"), "--stay", "60"],
                env={**env, "PYTHONUNBUFFERED": "1"},
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=ROOT,
            )
            events: list[dict[str, Any]] = []
            threading.Thread(target=_reader, args=(probe.stdout, events), daemon=True).start()

            def seen(name: str, after: float = 0.0) -> dict[str, Any] | None:
                return next((e for e in list(events) if e.get("event") == name and e["t"] >= after), None)

            _wait(lambda: seen("published_stream"), 30, "the probe publishing")
            time.sleep(4)  # a healthy link first: no alert
            assert seen("room_bandwidth_alert") is None, f"alert on a clean link: {events}"

            t_limit = time.monotonic()
            shaping = _throttle(lab)
            alert = _wait(lambda: seen("room_bandwidth_alert", t_limit), 15, "publisher-bw alert")
            time.sleep(2)
            t_lift = time.monotonic()
            lab.unthrottle()
            restored = _wait(lambda: seen("room_bandwidth_restored", t_lift), 20, "the restore")

            low = next(e for e in server_logs if e.get("event") == "bandwidth_low")
            back = next(e for e in server_logs if e.get("event") == "bandwidth_restored")
            print(
                f"\n{shaping}: tc limit -> publisher-bw alert {alert['t'] - t_limit:.2f} s "
                f"(bandwidth {alert['bandwidth']} kbps, reasons {low['reasons']}, window {low['window']})"
                f"\nunthrottle -> restore {restored['t'] - t_lift:.2f} s (window {back['window']})"
            )
            assert alert["message"] == "SubscriberBandWidth" and isinstance(alert["bandwidth"], int)
            assert alert["bandwidth"] >= 1 and "restored" not in alert
            assert restored.get("restored") is True
            assert alert["t"] - t_limit < 6.0 and restored["t"] - t_lift < 10.0
            probe.terminate()
            probe.wait(10)
