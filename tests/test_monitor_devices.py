"""Where received audio goes (``getDevices``, ``getSelectedDevice``, ``switchMediaDevice``), the
``receive`` config, and the bot's media totals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog

from bot.agent.bot.receive import Receiver
from bot.agent.config import ConfigError, ReceiveConfig, parse_config
from bot.media.sinks import DiscardSink, RecordSink
from bot.rtc import EnxRtc


def _receiver(**kw: Any) -> Receiver:
    log = structlog.get_logger("test")
    return Receiver(ReceiveConfig(**kw), lambda: log)


def test_a_plain_client_has_only_none() -> None:
    rtc = EnxRtc()
    assert rtc.get_devices() == ["NONE"]
    assert rtc.get_selected_device() == "NONE"
    assert rtc.switch_media_device("NONE") is True
    assert rtc.switch_media_device("SPEAKER_PHONE") is False
    assert rtc.switch_media_device("FILE") is False
    assert rtc.get_selected_device() == "NONE"


def test_a_discarding_bot_has_only_none() -> None:
    rtc = EnxRtc(subscribe="all", sink_factory=_receiver(subscribe="all"))
    assert rtc.get_devices() == ["NONE"]
    assert rtc.switch_media_device("FILE") is False
    assert rtc.get_selected_device() == "NONE"


def test_a_recorder_records_audio_to_file_until_switched(tmp_path: Path) -> None:
    receiver = _receiver(subscribe="all", sink="record", record_dir=str(tmp_path))
    rtc = EnxRtc(subscribe="all", sink_factory=receiver)
    assert rtc.get_devices() == ["NONE", "FILE"]
    assert rtc.get_selected_device() == "FILE"
    sink: Any = receiver({"streamId": 1, "clientId": "c1", "name": "alice", "audio": True, "video": False})
    assert isinstance(sink.inner, RecordSink)
    opus = bytes([0xFC, 0xFF, 0xFE])  # a valid Opus TOC + payload is not needed to be counted
    sink.write("audio", "opus", opus, 0, 48000, True)
    assert sink.discarded_audio == 0
    assert rtc.switch_media_device("NONE") is True
    assert rtc.get_selected_device() == "NONE"
    sink.write("audio", "opus", opus, 960, 48000, True)
    assert sink.discarded_audio == 1  # received audio goes nowhere now
    assert rtc.switch_media_device("BLUETOOTH") is False
    assert rtc.get_selected_device() == "NONE"
    assert rtc.switch_media_device("FILE") is True
    sink.close()


def test_discard_sink_by_default() -> None:
    assert isinstance(_receiver()({"streamId": 1, "audio": True, "video": True}), DiscardSink)


def _bot(receive: dict[str, Any]) -> dict[str, Any]:
    return {"token": "t", "bots": [{"name": "b", "receive": receive}]}


def test_receive_config_parses() -> None:
    cfg = parse_config(
        _bot({"subscribe": ["alice", "bob"], "max_video": 2, "sink": "record", "rotate_s": "30m"}), {}
    )
    r = cfg.bots[0].receive
    assert r.subscribe_option == ["alice", "bob"] and r.max_video == 2 and r.rotate_seconds == 1800
    assert parse_config(_bot({"stats_interval_s": "2s"}), {}).bots[0].receive.stats_seconds == 2
    assert parse_config({"token": "t", "bots": [{"name": "b"}]}, {}).bots[0].receive.subscribe == "none"


@pytest.mark.parametrize(
    ("receive", "message"),
    [
        ({"subscribe": "everyone"}, "receive.subscribe must be one of"),
        ({"subscribe": []}, "empty list"),
        ({"max_video": -1}, "max_video must be 0 or more"),
        ({"sink": "recrod"}, "did you mean 'record'"),
        ({"sink": "discard", "rotate_s": 10}, "rotate_s applies to sink: record"),
        ({"stats_interval_s": 0}, "stats_interval_s must be more than 0"),
        ({"stats_interval_s": "soon"}, "must be a duration"),
        ({"subscrbe": "all"}, "did you mean 'subscribe'"),
    ],
)
def test_receive_config_errors(receive: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(_bot(receive), {})


def test_media_totals_keep_counting_over_ended_legs() -> None:
    r = _receiver()
    pub = {"streamId": 1, "bytesSent": {"audio": 100, "video": 900}, "packetsSent": {"audio": 1, "video": 9}}
    sub = {"streamId": 7, "video": {"bytesReceived": 500, "packetsReceived": 5, "packetsLost": 1}}
    assert r.totals({"publish": pub, "subscriptions": [sub]}) == (1000, 10, 500, 5, 1)
    # stream 7 is gone; a rejoin publishes stream 2 from zero
    pub2 = {"streamId": 2, "bytesSent": {"audio": 10}, "packetsSent": {"audio": 1}}
    assert r.totals({"publish": pub2, "subscriptions": []}) == (1010, 11, 500, 5, 1)
