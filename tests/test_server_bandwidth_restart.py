"""The detector after a video restart (issue 14: 4), on a model of the official web client.

EnableX's own client against the room server got a low-bandwidth alert (``jitter`` or
``delivery``, 0 % loss, on loopback) 0.2-1.0 s after every video unmute. What a browser does
that aiortc does not (the loopback test with real bots is tests/test_server_bandwidth_unmute.py):
its RTCP sender reports go on during the mute, stamped with the wall clock (aiortc's carry the
time of the last RTP packet); a disabled track may still send a black frame a second; the
unmute starts with a keyframe burst through the pacer. And some senders' RTP clocks follow
their frames, not time, so the timestamps do not cover the pause. This module replays exactly
that, packet by packet, into the server's meters.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bot.server import BandwidthSettings
from bot.server.bandwidth import PublishMonitor

AUDIO_SSRC, VIDEO_SSRC = 0xA0D10, 0xBEEF
STEP_S = 0.005


@dataclass
class BrowserLink:
    """A browser publisher on loopback: Opus 50 pps, VP8 15 fps of 3 x 900 bytes (~320 kbps)."""

    monitor: PublishMonitor
    mute_style: str = "stopped"  # "stopped": no RTP while muted; "black": one tiny frame a second
    rtp_clock_runs: bool = True  # False: the video RTP clock stops while muted
    tell_server: bool = False  # the room hears user-video-unmuted (the server's hint)
    loss_every: int = 0  # drop every n-th packet (a lossy link)

    def __post_init__(self) -> None:
        self.t = 0.0
        self.seq = {"audio": 100, "video": 50000}
        self.video_ts = 3_000
        self.muted = False
        self.octets = 0
        self.queue: list[tuple[float, int, int, int]] = []  # (departure, seq, ts, size) in the pacer
        self.verdicts: list[tuple[float, str, list[str]]] = []
        self._n = 0
        self._next_frame = 0.0
        self._next_black = 0.0
        self._next_sr = 0.3
        self._next_tick = 0.5
        self._pacer_free = 0.0

    def _arrive(self, kind: str, seq: int, ts: int, size: int, at: float) -> None:
        self._n += 1
        if self.loss_every and self._n % self.loss_every == 0:
            return
        ssrc = AUDIO_SSRC if kind == "audio" else VIDEO_SSRC
        self.monitor.meters[kind].on_rtp(ssrc, seq, ts, at * 1000 + 1.0, size)

    def _send_video(self, packets: int, size: int) -> None:
        """A frame through the pacer (2 Mbit/s): a keyframe's packets go out one by one."""
        for _ in range(packets):
            self.seq["video"] = (self.seq["video"] + 1) % 65536
            start = max(self.t, self._pacer_free)
            self._pacer_free = start + size * 8 / 2_000_000
            self.queue.append((self._pacer_free, self.seq["video"], self.video_ts, size))

    def _step(self) -> None:
        self.t = round(self.t + STEP_S, 6)
        if round(self.t / STEP_S) % 4 == 0:  # audio every 20 ms
            self.seq["audio"] = (self.seq["audio"] + 1) % 65536
            self._arrive("audio", self.seq["audio"], int(self.t * 48000), 80, self.t)
        if self.t >= self._next_frame:
            self._next_frame += 1 / 15
            if self.rtp_clock_runs or not self.muted:
                self.video_ts = (self.video_ts + 6000) % (1 << 32)
            if not self.muted:
                self._send_video(3, 900)
        if self.muted and self.mute_style == "black" and self.t >= self._next_black:
            self._next_black = self.t + 1.0
            self._send_video(1, 60)
        while self.queue and self.queue[0][0] <= self.t:
            departure, seq, ts, size = self.queue.pop(0)
            self.octets += size
            self._arrive("video", seq, ts, size, departure)
        if self.t >= self._next_sr:  # a browser's report: the wall clock, octets sent so far
            self._next_sr += 1.0
            ntp = int(self.t * (1 << 32))
            self.monitor.meters["video"].on_sender_report(VIDEO_SSRC, ntp, self.octets, self.t)
        if self.t >= self._next_tick - 1e-9:
            self._next_tick += 0.5
            verdict = self.monitor.tick(self.t)
            if verdict is not None:
                self.verdicts.append((round(self.t, 2), verdict, list(self.monitor.detector.reasons)))

    def run(self, seconds: float) -> None:
        end = self.t + seconds
        while self.t < end - 1e-9:
            self._step()

    def mute(self) -> None:
        self.muted = True
        self._next_black = self.t + 1.0

    def unmute(self) -> None:
        self.muted = False
        self._send_video(40, 1000)  # the keyframe the restarting encoder starts with
        if self.tell_server:
            self.monitor.meters["video"].restart()


def _cycles(link: BrowserLink, n: int = 20) -> None:
    link.run(4.0)
    for i in range(n):
        link.mute()
        link.run(1.0 + 0.25 * (i % 5))
        link.unmute()
        link.run(1.2 + 0.2 * (i % 6))
    link.run(4.0)


@pytest.mark.parametrize(
    ("style", "clock_runs", "told"),
    [
        ("stopped", True, False),
        ("stopped", False, False),
        ("black", True, True),
        ("black", False, True),
    ],
    ids=["track-stopped", "rtp-clock-stopped", "black-frames", "black-frames-clock-stopped"],
)
def test_twenty_browser_style_unmutes_give_no_alert(style: str, clock_runs: bool, told: bool) -> None:
    link = BrowserLink(
        PublishMonitor(BandwidthSettings(), now=0.0),
        mute_style=style,
        rtp_clock_runs=clock_runs,
        tell_server=told,
    )
    _cycles(link)
    assert link.verdicts == []
    assert link.monitor.meters["video"].restarts >= 20
    last = link.monitor.detector.last
    assert last is not None and last.delivery is not None and last.delivery > 0.85  # judged again once warm
    assert last.jitter_ms is not None and last.jitter_ms < 50


def test_without_the_warm_up_the_same_unmutes_cry_wolf() -> None:
    """The model reproduces the field report: a detector that judges a restarting stream at
    once alerts within about a second of an unmute, with no loss."""
    settings = BandwidthSettings(warmup_s=0.0, restart_gap_s=1e9)
    for style, clock_runs in (("stopped", True), ("stopped", False)):
        link = BrowserLink(PublishMonitor(settings, now=0.0), mute_style=style, rtp_clock_runs=clock_runs)
        _cycles(link, n=6)
        lows = [v for v in link.verdicts if v[1] == "low"]
        assert lows, f"{style}, clock runs {clock_runs}: no false alert to prevent"
        assert {r for _, _, reasons in lows for r in reasons} <= {"delivery", "jitter", "queue_delay"}
        assert link.monitor.detector.last is not None and link.monitor.detector.last.loss_pct == 0.0


def test_a_lossy_link_still_alerts_during_the_warm_up() -> None:
    """Loss is never held: an unmute onto a lossy link alerts as fast as before."""
    link = BrowserLink(PublishMonitor(BandwidthSettings(), now=0.0), tell_server=True)
    link.run(4.0)
    link.mute()
    link.run(1.5)
    link.loss_every = 8  # 12.5 % loss from the unmute on
    link.unmute()
    t_unmute = link.t
    link.run(3.0)
    assert link.verdicts, "no alert on a lossy link"
    t, verdict, reasons = link.verdicts[0]
    assert verdict == "low" and "loss" in reasons
    assert t - t_unmute <= 1.5  # the first tick whose window holds enough loss


def test_settings_refuse_a_nonsense_warm_up() -> None:
    with pytest.raises(ValueError):
        BandwidthSettings(restart_gap_s=0)
    with pytest.raises(ValueError):
        BandwidthSettings(warmup_s=-1)
