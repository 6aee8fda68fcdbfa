"""The pure parts of receiving: statistics rates, subscription options, the slot rule."""

from __future__ import annotations

from typing import Any

import pytest

from bot.proto import ErrorCode, RoomConnected, StreamInfo, UserInfo
from bot.proto.names import FLUTTER_CALLBACKS, FLUTTER_METHODS
from bot.rtc import CALLBACK_NAMES, EnxRtc, RoomError
from bot.rtc.options import SubscribeOptions, listed_streams_to_subscribe
from bot.rtc.stats import RateWindow, ReceiveSample, SendSample, fraction_lost, receive_stats, send_stats

# --------------------------------------------------------------------------- rates


def test_receive_rates_over_the_interval() -> None:
    before = ReceiveSample(
        at=10.0, packets=100, bytes=50_000, frames=30, packets_received=100, packets_lost=0
    )
    now = ReceiveSample(
        at=12.0,
        packets=190,
        bytes=175_000,
        frames=60,
        keyframes=2,
        keyframe_requests=1,
        packets_received=190,
        packets_lost=10,
        jitter_s=0.004,
        remote_packets_sent=200,
    )
    out = receive_stats(before, now)
    assert out["bitrateKbps"] == 500.0  # 125000 bytes in 2 s
    assert out["framesPerSecond"] == 15.0
    assert out["fractionLost"] == 0.1  # 10 lost of 100 expected in the interval
    assert out["packetsReceived"] == 190 and out["packetsLost"] == 10
    assert out["jitter"] == 0.004 and out["roundTripTime"] is None
    assert (out["frames"], out["keyframes"], out["keyframeRequests"]) == (60, 2, 1)
    assert out["remotePacketsSent"] == 200


def test_rates_need_an_interval_and_counts_that_exist() -> None:
    only = ReceiveSample(at=5.0, frames=3, bytes=None)
    out = receive_stats(None, only)
    assert out["bitrateKbps"] is None and out["framesPerSecond"] is None
    assert out["fractionLost"] is None and out["packetsReceived"] == 0
    assert fraction_lost(0, 0) == 0.0 and fraction_lost(None, 5) is None
    assert fraction_lost(-3, 10) == 0.0  # duplicates (retransmissions) can make loss negative


def test_send_rates() -> None:
    out = send_stats(
        SendSample(at=0.0, packets_sent=0, bytes_sent=0),
        SendSample(
            at=4.0,
            packets_sent=400,
            bytes_sent=250_000,
            packets_lost=2,
            fraction_lost=0.01,
            jitter_s=0.002,
            round_trip_time=0.03,
        ),
    )
    assert out == {
        "bitrateKbps": 500.0,
        "packetsSent": 400,
        "bytesSent": 250_000,
        "packetsLost": 2,
        "fractionLost": 0.01,
        "jitter": 0.002,
        "roundTripTime": 0.03,
    }


def test_rate_window_keeps_rates_steady_whoever_asks() -> None:
    window: RateWindow[SendSample] = RateWindow(SendSample(at=0.0), window_s=1.0)
    assert window.add(SendSample(at=0.3)).at == 0.0  # younger than the window: since the start
    assert window.add(SendSample(at=1.2)).at == 0.0
    assert window.add(SendSample(at=1.25)).at == 0.0  # a second caller right after: same base
    assert window.add(SendSample(at=2.3)).at == 1.25  # the newest sample at least 1 s older
    assert window.add(SendSample(at=2.35)).at == 1.25
    assert len(window._samples) == 3  # older ones are dropped


# --------------------------------------------------------------------------- options


def stream(
    stream_id: int, name: str, *, audio: bool = True, video: bool = True, screen: bool = False
) -> StreamInfo:
    return StreamInfo(
        id=stream_id, client_id=f"c{stream_id}", audio=audio, video=video, name=name, screen=screen
    )


def test_subscribe_options_are_checked() -> None:
    assert SubscribeOptions.build().mode == "none"
    named = SubscribeOptions.build(["alice", "bob"])
    assert named.mode == "all" and named.names == frozenset({"alice", "bob"})
    bad: list[dict[str, Any]] = [
        {"subscribe": "video"},
        {"subscribe": ["alice", 3]},
        {"subscribe": 7},
        {"max_video_subscriptions": -1},
        {"max_video_subscriptions": True},
        {"sink_factory": "DiscardSink"},
        {"stats_interval_s": 0},
        {"stats_interval_s": "1"},
    ]
    for kwargs in bad:
        with pytest.raises(RoomError) as err:
            EnxRtc(**kwargs)
        assert err.value.code == ErrorCode.INVALID_PARAMETERS, kwargs
        assert next(iter(kwargs)) in err.value.msg


def test_what_the_modes_receive() -> None:
    alice, carol = stream(1, "alice"), stream(2, "carol", video=False)
    every = SubscribeOptions.build("all", max_video_subscriptions=2)
    assert every.wants(alice, "alice") and every.kinds(alice, 0) == (True, True)
    assert every.kinds(alice, 2) == (True, False)  # beyond the cap: audio only
    assert every.kinds(carol, 0) == (True, False)  # it has no video
    assert SubscribeOptions.build("audio").kinds(alice, 0, audio_only=True) == (True, False)
    assert not SubscribeOptions.build("none").wants(alice, "alice")
    named = SubscribeOptions.build(["carol"])
    assert named.wants(carol, None) and not named.wants(alice, "alice")
    assert named.wants(stream(3, "cam-1"), "carol")  # by the participant's name too
    assert SubscribeOptions.build("all", max_video_subscriptions=0).kinds(alice, 0) == (True, False)


def test_the_slot_rule_for_listed_streams() -> None:
    me = UserInfo(client_id="me", name="me")
    listed = [stream(1, "a"), stream(2, "b"), stream(7, "c"), stream(9, "share", screen=True)]
    connected = RoomConnected(room_id="r", client_id="me", user=me, streams=listed, initial_num_ats=2)
    assert [s.id for s in listed_streams_to_subscribe(connected)] == [1, 2, 9]
    # our room server sends initialNumATs >= every listed id: all of them
    wide = RoomConnected(room_id="r", client_id="me", user=me, streams=listed, initial_num_ats=9)
    assert [s.id for s in listed_streams_to_subscribe(wide)] == [1, 2, 7, 9]


def test_names_for_the_flutter_table() -> None:
    assert FLUTTER_METHODS["subscribe"] == "subscribe"
    assert FLUTTER_CALLBACKS["onSubscribedStream"][0] == "on_subscribed_stream"
    assert {"on_subscribed_stream", "on_stats"} <= set(CALLBACK_NAMES)
    rtc = EnxRtc()
    assert rtc.on_subscribed_stream is None and rtc.on_stats is None
