"""Scores a person would give a stream: an audio MOS from the E-model, a video score from what
arrives.

**Audio MOS** is the ITU-T G.107 E-model, simplified as in Cole & Rosenbluth, "Voice over IP
performance monitoring" (ACM SIGCOMM CCR 31(2), 2001): ``R = 93.2 - Id - Ie,eff`` (the default
R0 minus Is, A = 0), with

* ``Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3)``, ``d`` the one-way mouth-to-ear delay in ms:
  half the round-trip time where it is known (a monitor that only receives does not know it: 0),
  plus the jitter buffer (twice the jitter) plus 20 ms of Opus packetisation;
* ``Ie,eff = Ie + (95 - Ie) Ppl / (Ppl + Bpl)`` (G.107 eq. 7-29 with BurstR = 1: random loss),
  ``Ppl`` the loss in percent.

Opus values: ITU-T G.113 lists none for Opus. On the narrowband scale Opus at WebRTC rates
(32 kbps and up, fullband) is transparent, so ``Ie = 0``; for ``Bpl`` G.113 Appendix I gives
25.1 to G.711 with packet-loss concealment, and Opus' concealment (without in-band FEC, as
aiortc sends it) is at least as good on random loss, so we take a conservative 20 (a choice of
ours, documented: 5% loss gives MOS 3.8, 10% 3.1, 20% 2.3). ``MOS = 1 + 0.035 R + 7e-6 R (R - 60)
(100 - R)`` (G.107 Annex B), 1..4.5.

**Video score** (1..5, ours; there is no standard for a received-video opinion without the
picture): ``1 + 3.5 * f_fps * f_res * f_freeze`` where ``f_fps = log(fps) / log(15)`` (15 fps and
up: 1, 1 fps: 0), ``f_res = 0.8 + 0.1 log2(height / 180)`` (180p 0.8, 360p 0.9, 720p 1;
unknown: 1; only sampled decoding knows it) and ``f_freeze = 1 - 2 x`` the fraction of the last
interval spent frozen (frozen half the time or more: 0). 640x360 at 15 fps without freezes: 4.15.
"""

from __future__ import annotations

import math

R_DEFAULT = 93.2
"""G.107's R for default parameters (R0 - Is - Id(0) with A = 0)."""

OPUS_IE = 0.0
OPUS_BPL = 20.0
OPUS_PACKET_MS = 20.0


def r_to_mos(r: float) -> float:
    """G.107 Annex B."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)


def delay_impairment(one_way_ms: float) -> float:
    d = max(0.0, one_way_ms)
    return 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)


def loss_impairment(loss: float, ie: float = OPUS_IE, bpl: float = OPUS_BPL) -> float:
    """``Ie,eff`` for ``loss`` (a fraction, 0..1) of random loss."""
    ppl = min(100.0, max(0.0, loss * 100))
    return ie + (95 - ie) * ppl / (ppl + bpl)


def audio_mos(loss: float, jitter_ms: float | None = None, rtt_ms: float | None = None) -> float:
    """The E-model MOS of an Opus stream (see the module)."""
    one_way = (rtt_ms or 0.0) / 2 + 2 * (jitter_ms or 0.0) + OPUS_PACKET_MS
    r = R_DEFAULT - delay_impairment(one_way) - loss_impairment(loss)
    return round(r_to_mos(r), 2)


def video_score(fps: float | None, height: int | None = None, frozen_fraction: float = 0.0) -> float:
    """The video score (see the module); no frames at all is 1."""
    if fps is None or fps <= 1:
        return 1.0
    f_fps = min(1.0, math.log(fps) / math.log(15))
    f_res = 1.0 if not height else min(1.0, max(0.0, 0.8 + 0.1 * math.log2(height / 180)))
    f_freeze = max(0.0, 1 - 2 * min(1.0, max(0.0, frozen_fraction)))
    return round(1 + 3.5 * f_fps * f_res * f_freeze, 2)
