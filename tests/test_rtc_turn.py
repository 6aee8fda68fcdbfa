"""forceTurn through a real TURN server (coturn): relay-only ICE, the relay pair selected, media
reaching the room server; wrong credentials fail clearly and fast."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest
from netlab import coturn
from rtc_faults import AV, Recorder, eventually, packets

from bot.media import MediaSpec, SharedMedia
from bot.proto import ErrorCode, IceServer
from bot.rtc import EnxRtc
from bot.server import RoomServer

pytestmark = pytest.mark.timeout(60)

APP_ID = "turn-tests"
APP_KEY = "turn-tests-app-key-0123456789abcdef0123"


@pytest.mark.parametrize("shared", [False, True], ids=["own-encoder", "shared-media"])
async def test_force_turn_publishes_over_a_relay_pair(shared: bool) -> None:
    with coturn() as turn, contextlib.ExitStack() as stack:
        ice = IceServer(urls=turn.url, username=turn.username, credential=turn.credential)
        async with (
            contextlib.AsyncExitStack() as media_stack,
            RoomServer(app_id=APP_ID, app_key=APP_KEY, port=0, ice_servers=[ice]) as server,
        ):
            room_id = str(server.create_room(name="relayed")["room_id"])
            tracks: tuple[Any, Any] = (None, None)
            if shared:
                media = await media_stack.enter_async_context(SharedMedia())
                tracks = media.tracks(MediaSpec(width=320, height=180, fps=15), audio=True, video=True)
                for track in tracks:
                    stack.callback(track.stop)
            rtc = EnxRtc(*tracks, label="relayed")
            rec = Recorder(rtc)
            await rtc.join_room(server.mint_token(room_id, name="r"), AV, {"forceTurn": True})
            await rec.wait_for("on_published_stream", within=15)
            publish = (await rtc.stats())["publish"]
            pair = publish["selectedPair"]
            assert pair is not None, publish
            assert pair["local"]["type"] == "relay", pair
            assert pair["local"]["address"] == "127.0.0.1"  # coturn's relay address
            assert pair["local"]["port"] >= 49152  # from coturn's relay range
            await eventually(
                lambda: packets(server, room_id, rtc.client_id, "video") > 10, what="video via TURN"
            )
            assert packets(server, room_id, rtc.client_id, "audio") > 0
            assert not rec.payloads("on_room_error")
            if shared:  # the direct send path, through the relay (aioice's TURN transport)
                assert rtc._publisher.publication is not None
                direct = rtc._publisher.publication.leg.direct
                assert set(direct) == {"audio", "video"}
                assert all(d is not None and d.packets_sent > 10 for d in direct.values()), direct
            await rtc.disconnect()


async def test_force_turn_with_wrong_credentials_is_a_clear_room_error() -> None:
    with coturn() as turn:
        ice = IceServer(urls=turn.url, username=turn.username, credential="not-the-password")
        async with RoomServer(app_id=APP_ID, app_key=APP_KEY, port=0, ice_servers=[ice]) as server:
            room_id = str(server.create_room(name="refused")["room_id"])
            rtc = EnxRtc(label="badcreds")
            rec = Recorder(rtc)
            started = time.monotonic()
            await rtc.join_room(server.mint_token(room_id, name="b"), AV, {"forceTurn": True})
            error = await rec.wait_for("on_room_error", within=5)
            assert time.monotonic() - started < 5
            assert error["result"] == ErrorCode.MEDIA_CONNECTION_FAILED
            assert "relay" in error["msg"] and "credential" in error["msg"]
            assert "on_published_stream" not in rec.names()
            assert rtc.phase == "connected"  # still in the room, without media
            assert (await rtc.stats())["publish"] is None
            await rtc.disconnect()
