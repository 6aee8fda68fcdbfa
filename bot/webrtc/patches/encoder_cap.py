"""Patch ``encoder_cap``: a room's video bitrate cap that holds against REMB, and the REMB
estimator a receiver that sends no REMB does without.

Mirrors aiortc 1.16 ``RTCRtpSender.__encoder`` (created lazily in ``_next_encoded_frame`` only
when None), ``Vp8Encoder.target_bitrate`` (clamped to MIN_BITRATE..MAX_BITRATE and stored in
``__target_bitrate``) and ``RTCRtpReceiver.__remote_bitrate_estimator`` (checked for None).
"""

from __future__ import annotations

from typing import Any

from aiortc.codecs.vpx import MAX_BITRATE, MIN_BITRATE, Vp8Encoder

from .. import _internals as n

FLOOR_BITRATE_BPS = 50_000
"""The lowest video cap honoured (a room asking for less gets this; ``1`` means stop video)."""


class CappedVp8Encoder(Vp8Encoder):
    """aiortc's VP8 encoder with a ceiling. The media server's REMB keeps setting
    ``target_bitrate`` (and aiortc clamps it to 250..1500 kbps): a room's PublisherBandwidth
    cap must hold against both, so the setter applies it after them."""

    cap_bps: int | None = None

    @property
    def target_bitrate(self) -> int:
        return int(getattr(self, n.VP8_TARGET_BITRATE))

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        bitrate = max(MIN_BITRATE, min(bitrate, MAX_BITRATE))
        if self.cap_bps is not None:
            bitrate = max(FLOOR_BITRATE_BPS, min(bitrate, self.cap_bps))
        setattr(self, n.VP8_TARGET_BITRATE, bitrate)


def probe(sender: Any) -> bool:
    """Whether the sender has an (unset) encoder slot and aiortc's VP8 encoder stores its
    target where the cap writes it."""
    return getattr(sender, n.SENDER_ENCODER, "missing") is None and isinstance(
        getattr(Vp8Encoder, "target_bitrate", None), property
    )


class Handle:
    """Takes the capped encoder off again (aiortc then creates its own)."""

    def __init__(self, sender: Any, encoder: CappedVp8Encoder) -> None:
        self._sender = sender
        self.encoder = encoder

    def uninstall(self) -> None:
        if getattr(self._sender, n.SENDER_ENCODER, None) is self.encoder:
            setattr(self._sender, n.SENDER_ENCODER, None)


def install(sender: Any) -> Handle | None:
    """Give the sender a :class:`CappedVp8Encoder` before its first frame; None if
    :func:`probe` fails (or an encoder already exists)."""
    if not probe(sender):
        return None
    encoder = CappedVp8Encoder()
    setattr(sender, n.SENDER_ENCODER, encoder)
    return Handle(sender, encoder)


def drop_receive_estimator(receiver: Any) -> None:
    """aiortc gives every video transceiver's receiver a REMB estimator (1000 rate buckets,
    about 96 KiB); a send-only leg's receiver never receives RTP, and a receiver on the lean
    intake sends no REMB, so theirs is let go (the receiver checks for None before use)."""
    if getattr(receiver, n.RECEIVER_REMB_ESTIMATOR, None) is not None:
        setattr(receiver, n.RECEIVER_REMB_ESTIMATOR, None)
