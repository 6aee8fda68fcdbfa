"""The SDK's active-talker helpers without a network (the live behaviour is in
tests/test_server_talkers.py): the list read as the talkers mode reads it, and refusals
before anything is sent."""

from __future__ import annotations

import pytest

from bot.proto import ErrorCode, StreamInfo
from bot.rtc import EnxRtc, RoomError
from bot.rtc.talkers import talker_ids, wanted


def test_talker_ids_keep_order_skip_junk_and_respect_the_cap() -> None:
    active = [{"streamId": 5}, {"streamId": "7"}, {"streamId": 5}, {"name": "x"}, "junk", {"streamId": True}]
    assert talker_ids(active, None) == [5, 7]
    assert talker_ids(active, 1) == [5]
    assert talker_ids(active, 0) == []


def test_listed_streams_get_video_and_the_rest_audio() -> None:
    av = StreamInfo(id=3, client_id="c", audio=True, video=True)
    assert wanted(av, [3]) == (True, True)
    assert wanted(av, [4]) == (True, False)
    video_only = StreamInfo(id=4, client_id="d", audio=False, video=True)
    assert wanted(video_only, []) == (False, False)


async def test_talker_requests_outside_a_room_are_refused() -> None:
    rtc = EnxRtc()
    for call in (
        rtc.set_talker_count(2),
        rtc.get_talker_count(),
        rtc.pin_users(["a"]),
        rtc.unpin_users(["a"]),
    ):
        with pytest.raises(RoomError) as err:
            await call
        assert err.value.code == ErrorCode.ROOM_NOT_CONNECTED
    for bad in (-1, 13, "3", 2.0, None):
        with pytest.raises(RoomError) as err:
            await rtc.set_talker_count(bad)  # type: ignore[arg-type]
        assert err.value.code == ErrorCode.INVALID_PARAMETERS  # judged before the room is asked
    with pytest.raises(RoomError) as err:
        await rtc.pin_users([])
    assert err.value.code == ErrorCode.INVALID_PARAMETERS


def test_the_talkers_mode_is_a_subscribe_mode() -> None:
    EnxRtc(subscribe="talkers")
    with pytest.raises(RoomError):
        EnxRtc(subscribe="talker")
