"""Moderator actions between real EnxRtc clients with real WebRTC media, judged by what the real
room server received: a drop ends the session without reconnecting; a hard mute (room-wide,
per user) stops that kind at the sender until released and self-unmute is refused meanwhile;
recording notices; the self-mute acknowledgements."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from rtc_faults import AV, NO_MEDIA, Recorder, eventually, growth, packets

from bot.proto import ErrorCode
from bot.rtc import EnxRtc, RoomError
from bot.server import RoomServer

pytestmark = pytest.mark.timeout(90)

IN_FLIGHT_S = 0.3
"""What was already encoded or on the wire when a kind stopped."""


@pytest.fixture
def room_id(room: dict[str, Any]) -> str:
    return str(room["room_id"])


async def _join(
    server: RoomServer,
    room_id: str,
    name: str,
    local_info: dict[str, Any],
    role: str = "participant",
    room_info: dict[str, Any] | None = None,
) -> tuple[EnxRtc, Recorder]:
    rtc = EnxRtc(label=name)
    rec = Recorder(rtc)
    await rtc.join_room(server.mint_token(room_id, name=name, role=role), local_info, room_info)
    return rtc, rec


async def test_a_dropped_participant_leaves_with_the_moderator_cause_and_does_not_reconnect(
    room_server: RoomServer, room_id: str
) -> None:
    mod, mod_rec = await _join(room_server, room_id, "mod", NO_MEDIA, "moderator")
    bob, bob_rec = await _join(
        room_server, room_id, "bob", AV, room_info={"allow_reconnect": True, "number_of_attempts": 3}
    )
    await bob_rec.wait_for("on_published_stream")
    await mod_rec.wait_for("on_stream_added")
    ack = await mod.drop_user([bob.client_id])
    assert ack["result"] == 0 and ack["clientIds"] == [bob.client_id]
    assert (await mod_rec.wait_for("on_ack_drop_user"))["clientIds"] == [bob.client_id]
    gone = await asyncio.wait_for(bob.wait_disconnected(), 10)
    assert gone["cause"] == ErrorCode.DISCONNECTED_BY_MODERATOR and gone["msg"] == "disconnected-by-moderator"
    fired = await bob_rec.wait_for("on_room_disconnected")
    assert fired["cause"] == ErrorCode.DISCONNECTED_BY_MODERATOR and fired["moderator"] == mod.client_id
    await mod_rec.wait_for("on_user_disconnected", lambda p: p["clientId"] == bob_rec.rtc.client_id)
    await asyncio.sleep(2.0)  # long enough for a rejoin attempt to have shown
    assert not {"on_connection_lost", "on_reconnect", "on_user_reconnect_success"} & set(bob_rec.names())
    assert bob.phase == "disconnected"
    assert [p["name"] for p in room_server.room_view(room_id)["participants"]] == ["mod"]
    assert mod_rec.names().count("on_user_connected") == 1  # bob's join; it never came back
    await mod.disconnect()


async def test_a_participant_cannot_use_moderator_controls(room_server: RoomServer, room_id: str) -> None:
    mod, _ = await _join(room_server, room_id, "mod", NO_MEDIA, "moderator")
    bob, bob_rec = await _join(room_server, room_id, "bob", NO_MEDIA)
    calls = [
        (bob.drop_user([mod.client_id]), ErrorCode.DROP_NOT_PERMITTED, "on_ack_drop_user"),
        (bob.hard_mute(), ErrorCode.HARD_MUTE_NOT_PERMITTED, "on_hard_muted"),
        (bob.hard_mute_user_audio(str(mod.client_id)), ErrorCode.NOT_PERMITTED, "on_hard_muted_audio"),
        (bob.start_record(), ErrorCode.RECORD_NOT_PERMITTED, "on_start_recording_event"),
    ]
    for call, code, callback in calls:
        with pytest.raises(RoomError) as err:
            await call
        assert err.value.code == code
        assert bob_rec.payloads(callback)[-1]["result"] == code
    with pytest.raises(RoomError) as bad:
        await bob.drop_user([])
    assert bad.value.code == ErrorCode.INVALID_PARAMETERS
    assert len(room_server.room_view(room_id)["participants"]) == 2
    await bob.disconnect()
    await mod.disconnect()


async def test_room_hard_mute_stops_audio_at_the_sender_until_released(
    room_server: RoomServer, room_id: str
) -> None:
    mod, mod_rec = await _join(room_server, room_id, "mod", NO_MEDIA, "moderator")
    bob, bob_rec = await _join(room_server, room_id, "bob", AV)
    await bob_rec.wait_for("on_published_stream")
    await eventually(lambda: packets(room_server, room_id, bob.client_id, "audio") > 20, what="audio")

    assert (await mod.hard_mute())["msg"] == "Room is muted"
    await mod_rec.wait_for("on_hard_muted")
    notice = await bob_rec.wait_for("on_received_hard_mute")
    assert notice["moderator"] == mod.client_id
    await mod_rec.wait_for("on_remote_stream_audio_mute", lambda p: p["clientId"] == bob.client_id)
    await growth(room_server, room_id, bob, "audio", IN_FLIGHT_S)
    assert await growth(room_server, room_id, bob, "audio") == 0, "audio still flowing while hard-muted"
    assert await growth(room_server, room_id, bob, "video", 0.5) > 0, "video stopped too"
    assert bob.who_am_i()["audioMuted"] is True
    with pytest.raises(RoomError) as err:
        await bob.mute_self_audio(False)
    assert err.value.code == ErrorCode.NOT_PERMITTED and "hard-muted" in err.value.msg
    assert await growth(room_server, room_id, bob, "audio") == 0

    await mod.hard_unmute()
    await bob_rec.wait_for("on_received_hard_unmute")
    await mod_rec.wait_for("on_remote_stream_audio_unmute", lambda p: p["clientId"] == bob.client_id)
    assert await growth(room_server, room_id, bob, "audio") > 0, "audio did not resume"
    assert bob.who_am_i()["audioMuted"] is False
    await bob.disconnect()
    await mod.disconnect()


async def test_per_user_hard_mute_of_video_and_a_self_mute_that_outlasts_it(
    room_server: RoomServer, room_id: str
) -> None:
    mod, _ = await _join(room_server, room_id, "mod", NO_MEDIA, "moderator")
    bob, bob_rec = await _join(room_server, room_id, "bob", AV)
    carol, carol_rec = await _join(room_server, room_id, "carol", AV)
    for rec in (bob_rec, carol_rec):
        await rec.wait_for("on_published_stream")
    await eventually(lambda: packets(room_server, room_id, bob.client_id, "video") > 10, what="video")

    await mod.hard_mute_user_video(str(bob.client_id))
    assert (await bob_rec.wait_for("on_received_hard_mute_video"))["moderator"] == mod.client_id
    await carol_rec.wait_for("on_remote_stream_video_mute", lambda p: p["clientId"] == bob.client_id)
    await growth(room_server, room_id, bob, "video", IN_FLIGHT_S)
    assert await growth(room_server, room_id, bob, "video") == 0, "video still flowing"
    assert await growth(room_server, room_id, bob, "audio", 0.5) > 0, "audio stopped too"
    assert await growth(room_server, room_id, carol, "video", 0.5) > 0, "carol's video stopped"
    assert "on_received_hard_mute_video" not in carol_rec.names()
    with pytest.raises(RoomError):
        await bob.mute_self_video(False)
    await bob.mute_self_video(True)  # muting is still its own; it outlasts the hard mute
    assert bob_rec.payloads("on_video_event")[-1] == {"result": 0, "msg": "Video Off"}

    await mod.hard_unmute_user_video(str(bob.client_id))
    await bob_rec.wait_for("on_received_hard_unmute_video")
    assert await growth(room_server, room_id, bob, "video") == 0, "the self mute was lifted too"
    await bob.mute_self_video(False)
    assert bob_rec.payloads("on_video_event")[-1] == {"result": 0, "msg": "Video On"}
    await carol_rec.wait_for("on_remote_stream_video_unmute", lambda p: p["clientId"] == bob.client_id)
    assert await growth(room_server, room_id, bob, "video") > 0, "video did not resume"
    for rtc in (bob, carol, mod):
        await rtc.disconnect()


async def test_self_mute_acknowledgements_as_the_mobile_sdks_give_them(
    room_server: RoomServer, room_id: str
) -> None:
    bob, rec = await _join(room_server, room_id, "bob", AV)
    await rec.wait_for("on_published_stream")
    await bob.mute_self_audio(True)
    await bob.mute_self_audio(False)
    await bob.mute_self_video(True)
    await bob.mute_self_video(False)
    assert rec.payloads("on_audio_event") == [
        {"result": 0, "msg": "Audio Off"},
        {"result": 0, "msg": "Audio On"},
    ]
    assert rec.payloads("on_video_event") == [
        {"result": 0, "msg": "Video Off"},
        {"result": 0, "msg": "Video On"},
    ]
    await bob.disconnect()


async def test_recording_notices(room_server: RoomServer, room_id: str) -> None:
    mod, mod_rec = await _join(room_server, room_id, "mod", NO_MEDIA, "moderator")
    bob, bob_rec = await _join(room_server, room_id, "bob", NO_MEDIA)
    await mod.start_record()
    assert (await mod_rec.wait_for("on_start_recording_event"))["result"] == 0
    assert (await bob_rec.wait_for("on_room_recording_on"))["moderatorId"] == mod.client_id
    with pytest.raises(RoomError) as err:
        await mod.start_record()
    assert err.value.code == ErrorCode.RECORDING_ALREADY_ON
    await mod.stop_record()
    await bob_rec.wait_for("on_room_recording_off")
    assert "on_room_recording_on" not in mod_rec.names()
    await bob.disconnect()
    await mod.disconnect()


async def test_a_hard_mute_survives_a_rejoin_and_a_release_while_away_reaches_the_rejoined_client(
    room_server: RoomServer, room_id: str
) -> None:
    mod, _ = await _join(room_server, room_id, "mod", NO_MEDIA, "moderator")
    reconnect = {"allow_reconnect": True, "number_of_attempts": 5, "timeout_interval": 30}
    bob, bob_rec = await _join(room_server, room_id, "bob", AV, room_info=reconnect)
    carol, carol_rec = await _join(room_server, room_id, "carol", AV, room_info=reconnect)
    for rec in (bob_rec, carol_rec):
        await rec.wait_for("on_published_stream")
    await mod.hard_mute_user_audio(str(bob.client_id))
    await mod.hard_mute_user_video(str(carol.client_id))
    await bob_rec.wait_for("on_received_hard_mute_audio")
    await carol_rec.wait_for("on_received_hard_mute_video")

    # bob loses the network and comes back: still hard-muted, told nothing new
    await room_server.drop_connection(room_id, str(bob.client_id))
    await bob_rec.wait_for("on_user_reconnect_success", within=20)
    await eventually(
        lambda: packets(room_server, room_id, bob.client_id, "video") > 10, what="bob's new stream"
    )
    assert await growth(room_server, room_id, bob, "audio") == 0, "audio flows again after the rejoin"
    assert len(bob_rec.payloads("on_received_hard_mute_audio")) == 1
    with pytest.raises(RoomError):
        await bob.mute_self_audio(False)

    # carol's video is released while she is away: her rejoined SDK hears it and resumes
    calls = len(carol_rec.calls)
    await room_server.drop_connection(room_id, str(carol.client_id))
    await carol_rec.wait_for("on_connection_lost", after=calls)
    await eventually(
        lambda: any(
            p["name"] == "carol" and not p["connected"]
            for p in room_server.room_view(room_id)["participants"]
        ),
        what="carol away",
    )
    await mod.hard_unmute_user_video(str(carol.client_id))
    await carol_rec.wait_for("on_user_reconnect_success", within=20)
    await carol_rec.wait_for("on_received_hard_unmute_video")
    await eventually(
        lambda: packets(room_server, room_id, carol.client_id, "video") > 10, what="carol's video"
    )
    await carol.mute_self_video(True)  # and it is hers again
    for rtc in (bob, carol, mod):
        await rtc.disconnect()
