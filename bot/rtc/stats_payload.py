"""The payload of :meth:`~bot.rtc.EnxRtc.stats`: one sample per leg, turned into figures by
:mod:`bot.rtc.stats` (which the legs import, so it must not import them back)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from .publication import LocalPublication
from .stats import Json, interval, receive_stats, send_stats
from .subscription import RemoteSubscription


async def collect(
    publication: LocalPublication | None, subscriptions: Iterable[RemoteSubscription], log: Any
) -> Json:
    """The payload of :meth:`~bot.rtc.EnxRtc.stats` (documented there): one sample per leg."""
    publish = None if publication is None else await publish_stats(publication, log)
    received = await asyncio.gather(*(subscription_stats(s, log) for s in subscriptions))
    return {"publish": publish, "subscriptions": list(received)}


async def publish_stats(publication: LocalPublication, log: Any) -> Json:
    leg = publication.leg
    pair = publication.selected_pair()
    out: Json = {
        "streamId": publication.stream_id,
        "state": publication.state,
        "connectionState": leg.connection_state,
        "selectedPair": None if pair is None else pair.to_dict(),
        "sending": {kind: leg.is_sending(kind) for kind in leg.kinds},
        "videoBitrate": leg.video_bitrate,
        "packetVideo": leg.sends_packets("video"),
    }
    try:
        samples = await leg.sample()
    except Exception:  # a leg closing under us: report what is known
        log.debug("stats_failed", leg="publish", exc_info=True)
        samples = {}
    out["packetsSent"] = {kind: current.packets_sent for kind, (_, current) in samples.items()}
    out["bytesSent"] = {kind: current.bytes_sent for kind, (_, current) in samples.items()}
    out["interval"] = next((interval(prev.at, cur.at) for prev, cur in samples.values()), None)
    for kind, (previous, current) in samples.items():
        out[kind] = send_stats(previous, current)
    return out


async def subscription_stats(subscription: RemoteSubscription, log: Any) -> Json:
    leg = subscription.leg
    out: Json = {
        "streamId": subscription.stream_id,
        "clientId": subscription.stream.client_id,
        "name": subscription.stream.name,
        "state": subscription.state,
        "connectionState": leg.connection_state,
        "tapped": leg.tapped,
        "sink": type(leg.sink).__name__,
    }
    try:
        samples = await leg.sample()
    except Exception:
        log.debug("stats_failed", leg="subscribe", stream_id=subscription.stream_id, exc_info=True)
        samples = {}
    out["interval"] = next((interval(prev.at, cur.at) for prev, cur in samples.values()), None)
    for kind, (previous, current) in samples.items():
        kind_stats = receive_stats(previous, current)
        counters = leg.counters(kind)
        for key, at in (
            ("firstFrameMs", None if counters is None else counters.first_frame_at),
            ("firstKeyframeMs", None if counters is None else counters.first_keyframe_at),
        ):
            kind_stats[key] = None if at is None else round((at - subscription.started_at) * 1000, 1)
        out[kind] = kind_stats
    return out
