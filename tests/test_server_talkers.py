"""Active talkers (issue 14: 3): real bots with real media on the local room server.

A bot that "speaks" sends a tone, a silent one digital silence (Opus: 3-byte packets); the
server tells them apart from the audio-level header extension where aiortc sent it, else from
the payload size (the lean intake: nobody subscribes).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import av
import numpy as np
import pytest
import structlog.testing
from conftest import RawClient
from rtc_faults import AV, Recorder, eventually

from bot.media import SyntheticVideoTrack, ToneAudioTrack
from bot.proto import ErrorCode, RemoteProtocolError, SetTalkerCount, decode_client
from bot.rtc import EnxRtc, RoomError
from bot.server import RoomServer
from bot.server.talkers import Candidate, RoomTalkers, VoiceActivity, entry, list_for

pytestmark = pytest.mark.timeout(120)

Connect = Callable[[], Awaitable[RawClient]]
ENTRY_KEYS = {
    "streamId",
    "clientId",
    "name",
    "mediatype",
    "videoaspectratio",
    "pinned",
    "videomuted",
    "reason",
}


class Voice(ToneAudioTrack):
    """A tone while ``speaking``, digital silence otherwise (switchable while publishing)."""

    def __init__(self, speaking: bool) -> None:
        super().__init__(440.0)
        self.speaking = speaking
        self._quiet = np.zeros((1, self.samples_per_frame), dtype=np.int16)

    def _render(self, index: int) -> av.AudioFrame:
        frame = super()._render(index)
        if self.speaking:
            return frame
        quiet = av.AudioFrame.from_ndarray(self._quiet, format="s16", layout="mono")
        quiet.sample_rate, quiet.pts, quiet.time_base = frame.sample_rate, frame.pts, frame.time_base
        return quiet


class Bot:
    def __init__(self, name: str, speaking: bool, **kw: Any) -> None:
        self.name = name
        self.voice = Voice(speaking)
        self.rtc = EnxRtc(self.voice, SyntheticVideoTrack(160, 120, 5), label=name, **kw)
        self.rec = Recorder(self.rtc)

    async def join(self, server: RoomServer, room_id: str, role: str = "participant") -> None:
        await self.rtc.join_room(server.mint_token(room_id, name=self.name, role=role), AV)
        await self.rec.wait_for("on_published_stream", within=20)

    def lists(self) -> list[tuple[float, list[dict[str, Any]]]]:
        return [(t, p["activeList"]) for t, n, p in self.rec.calls if n == "on_active_talker_list"]

    def head(self) -> str | None:
        lists = self.lists()
        return lists[-1][1][0]["clientId"] if lists and lists[-1][1] else None

    def ids(self) -> list[str]:
        lists = self.lists()
        return [e["clientId"] for e in lists[-1][1]] if lists else []


@pytest.fixture
async def trio(room_server: RoomServer, room: dict[str, Any]) -> Any:
    bots = [Bot("alice", True), Bot("bob", False), Bot("carol", False)]
    for bot in reversed(bots):  # the speaker joins last: its stream id is the highest
        await bot.join(room_server, room["room_id"])
    yield bots
    for bot in bots:
        await bot.rtc.disconnect()


async def test_the_speaker_heads_every_other_list_and_a_new_speaker_takes_over(
    room_server: RoomServer, room: dict[str, Any], trio: list[Bot]
) -> None:
    alice, bob, carol = trio
    ids = {b.name: b.rtc.client_id for b in trio}
    await eventually(lambda: bob.head() == ids["alice"] and carol.head() == ids["alice"], 15, "alice heads")
    for bot in trio:  # nobody is in their own list; everyone else is
        assert sorted(bot.ids()) == sorted(c for n, c in ids.items() if n != bot.name), bot.name
    first = carol.lists()[-1][1][0]
    assert set(first) >= ENTRY_KEYS
    assert first["streamId"] == alice.rtc.published_stream_id and first["name"] == "alice"
    assert first["mediatype"] == "audiovideo" and first["videomuted"] is False and first["pinned"] is False
    assert first["reason"] == "user" and first["videoaspectratio"] == "16:9"
    await asyncio.sleep(2.0)
    assert carol.head() == ids["alice"] and bob.head() == ids["alice"]  # steady while nothing changes
    view = room_server.room_view(room["room_id"])  # the emulator shows what each was sent
    seen = {p["name"]: p["activeTalkers"] for p in view["participants"]}
    assert seen["carol"] == [e["streamId"] for e in carol.lists()[-1][1]]
    assert seen["carol"][0] == alice.rtc.published_stream_id

    before = len(carol.lists())
    bob.voice.speaking = True  # bob chips in while alice goes on
    await eventually(lambda: carol.head() == ids["bob"] and alice.head() == ids["bob"], 10, "bob heads")
    assert len(carol.lists()) > before
    assert carol.ids()[:2] == [ids["bob"], ids["alice"]]

    bob.voice.speaking = alice.voice.speaking = False
    carol.voice.speaking = True
    await eventually(lambda: alice.head() == ids["carol"] and bob.head() == ids["carol"], 10, "carol heads")
    assert alice.ids() == [ids["carol"], ids["bob"]]  # then who spoke most recently

    for bot in trio:  # sent on changes only, at most one per 0.5 s (margin for delivery)
        lists = bot.lists()
        assert all(a[1] != b[1] for a, b in itertools.pairwise(lists)), bot.name
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(lists)]
        assert not gaps or min(gaps) > 0.25, (bot.name, gaps)


async def test_a_video_stopped_for_bandwidth_is_listed_as_the_trace_shows(
    room_server: RoomServer, room: dict[str, Any], trio: list[Bot]
) -> None:
    alice, _bob, carol = trio
    await eventually(lambda: carol.head() == alice.rtc.client_id, 15, "alice heads")
    await room_server.inject_bandwidth(room["room_id"], [alice.rtc.client_id or ""], kbps=80)
    await alice.rtc.mute_self_video(True)  # what the fallback policy does on that alert

    def shown() -> dict[str, Any] | None:
        lists = carol.lists()
        return lists[-1][1][0] if lists and lists[-1][1] else None

    await eventually(lambda: (shown() or {}).get("reason") == "bw", 10, "the bandwidth mute listed")
    head = shown() or {}
    assert head["clientId"] == alice.rtc.client_id and head["mediatype"] == "audio"
    assert head["videomuted"] is True and head["muteDueToBw"] is True
    await room_server.inject_bandwidth(room["room_id"], [alice.rtc.client_id or ""], restored=True)
    await alice.rtc.mute_self_video(False)
    await eventually(lambda: (shown() or {}).get("mediatype") == "audiovideo", 10, "video back")
    assert "muteDueToBw" not in (shown() or {}) and (shown() or {})["reason"] == "user"


async def test_the_talker_count_is_respected(room_server: RoomServer, trio: list[Bot]) -> None:
    alice, bob, carol = trio
    ids = {b.name: b.rtc.client_id for b in trio}
    maximum = carol.rtc.get_max_talkers()
    assert maximum == room_server.max_talkers
    assert await carol.rtc.get_talker_count() == maximum
    await eventually(lambda: len(carol.ids()) == 2, 15, "carol's full list")

    assert await carol.rtc.set_talker_count(1) == 1
    assert carol.rec.payloads("on_set_talker_count")[-1] == {"result": 0, "numTalkers": 1}
    assert await carol.rtc.get_talker_count() == 1
    await eventually(lambda: carol.ids() == [ids["alice"]], 10, "one talker: alice")
    assert len(bob.ids()) == 2  # nobody else's list changed size

    bob.voice.speaking, alice.voice.speaking = True, False
    await eventually(lambda: carol.ids() == [ids["bob"]], 10, "one talker: bob")

    assert await carol.rtc.set_talker_count(0) == 0
    await eventually(lambda: carol.ids() == [] and carol.lists()[-1][1] == [], 10, "an empty list")

    for bad in (maximum + 1, -1, 13, 10**9):
        with pytest.raises(RoomError) as err:
            await carol.rtc.set_talker_count(bad)
        assert err.value.code == ErrorCode.INVALID_PARAMETERS
    with pytest.raises(RoomError):
        await carol.rtc.set_talker_count(True)  # type: ignore[arg-type]
    assert await carol.rtc.get_talker_count() == 0  # nothing changed


async def test_pinned_users_head_every_list_talking_or_not(
    room_server: RoomServer, room: dict[str, Any]
) -> None:
    mod, talker, quiet = Bot("mod", False), Bot("talker", True), Bot("quiet", False)
    await mod.join(room_server, room["room_id"], role="moderator")
    await quiet.join(room_server, room["room_id"])
    await talker.join(room_server, room["room_id"])  # last: heads the lists only by talking
    try:
        await eventually(lambda: mod.head() == talker.rtc.client_id, 15, "the talker heads")
        with pytest.raises(RoomError) as err:
            await talker.rtc.pin_users([quiet.rtc.client_id or ""])
        assert err.value.code == ErrorCode.NOT_PERMITTED
        with pytest.raises(RoomError) as err:
            await mod.rtc.pin_users(["no-such-client"])
        assert err.value.code == ErrorCode.INVALID_PARAMETERS
        assert await mod.rtc.pin_users([quiet.rtc.client_id or ""]) == [quiet.rtc.client_id]
        await eventually(lambda: mod.head() == quiet.rtc.client_id, 10, "the pinned one heads")
        entry = mod.lists()[-1][1][0]
        assert entry["pinned"] is True and mod.lists()[-1][1][1]["pinned"] is False
        assert talker.head() == quiet.rtc.client_id  # every list
        assert await mod.rtc.unpin_users([quiet.rtc.client_id or ""]) == []
        await eventually(lambda: mod.head() == talker.rtc.client_id, 10, "unpinned")
    finally:
        for bot in (mod, talker, quiet):
            await bot.rtc.disconnect()


async def test_talkers_mode_receives_video_of_the_listed_only(
    room_server: RoomServer, room: dict[str, Any]
) -> None:
    """``subscribe="talkers"``: video for who is in the list, audio for the rest, following it."""
    alice, bob = Bot("alice", True), Bot("bob", False)
    viewer = Bot("viewer", False, subscribe="talkers")
    for bot in (alice, bob):
        await bot.join(room_server, room["room_id"])
    await viewer.join(room_server, room["room_id"])
    try:
        await viewer.rtc.set_talker_count(1)
        a, b = alice.rtc.published_stream_id, bob.rtc.published_stream_id

        def receiving(stream_id: int | None, video: bool) -> bool:
            subs = viewer.rec.payloads("on_subscribed_stream")
            last = [p for p in subs if p["streamId"] == stream_id]
            return bool(last) and last[-1]["audio"] is True and last[-1]["video"] is video

        await eventually(lambda: receiving(a, True) and receiving(b, False), 20, "video of alice only")
        bob.voice.speaking, alice.voice.speaking = True, False
        await eventually(lambda: receiving(b, True) and receiving(a, False), 20, "video of bob only")
        assert sorted(viewer.rtc.subscribed_stream_ids) == sorted([a, b])
        leg = room_server.media.publish_leg(room["room_id"], b or 0)
        assert leg is not None and leg.voice.leveled > 0  # audio subscribed: RFC 6464 levels judged
    finally:
        for bot in (alice, bob, viewer):
            await bot.rtc.disconnect()


# --------------------------------------------------------------------------- pure parts


def test_voice_is_judged_by_level_where_there_is_one_else_by_size() -> None:
    voice = VoiceActivity()
    for _ in range(10):
        voice.on_packet(300)  # a tone's Opus packet, no level (lean intake, pre-encoded)
    assert voice.take() is True
    for _ in range(10):
        voice.on_packet(3)  # Opus silence
    assert voice.take() is False
    for _ in range(10):
        voice.on_packet(300, (False, 127))  # big but silent by its level
    assert voice.take() is False and voice.leveled == 10
    for _ in range(10):
        voice.on_packet(20, (False, 17))  # small but loud by its level
    assert voice.take() is True
    voice.on_packet(300)
    assert voice.take() is False  # too few packets to say
    assert voice.take() is False  # and a tick starts empty


def test_the_order_is_pins_then_speakers_latest_first_then_recent_then_join_order() -> None:
    state = RoomTalkers(hangover_s=1.0)
    streams = [Candidate(stream_id=i, client_id=f"c{i}") for i in range(1, 6)]
    state.observe(2, True, 10.0)  # c2 has been talking since 10
    state.observe(4, True, 10.0)
    state.observe(4, False, 12.0)  # c4 spoke at 10 only
    for t in (11.0, 12.0):
        state.observe(2, True, t)
    state.observe(3, True, 11.5)  # c3 chipped in at 11.5 and goes on
    state.observe(3, True, 12.0)
    order = [c.client_id for c in state.order(streams, 12.0)]
    assert order == ["c3", "c2", "c4", "c1", "c5"]
    state.pinned = ["c5"]
    assert [c.client_id for c in state.order(streams, 12.0)][:2] == ["c5", "c3"]
    lst = list_for(state.order(streams, 12.0), "c3", 2)
    assert [c.client_id for c in lst] == ["c5", "c2"]  # never its own stream
    assert list_for(state.order(streams, 12.0), "c3", 0) == []


def test_a_list_entry_has_the_official_shape() -> None:
    """Golden trace lines 35 (normal) and 54 (video muted for bandwidth)."""
    base = {"stream_id": 7, "client_id": "c", "name": "n", "audio": True, "video": True, "pinned": False}
    normal = entry(**base, video_muted=False, bw_low=False)
    assert normal == {
        "streamId": 7,
        "clientId": "c",
        "name": "n",
        "mediatype": "audiovideo",
        "videoaspectratio": "16:9",
        "pinned": False,
        "videomuted": False,
        "reason": "user",
    }
    bw = entry(**base, video_muted=True, bw_low=True)
    assert bw["mediatype"] == "audio" and bw["videomuted"] is True
    assert bw["reason"] == "bw" and bw["muteDueToBw"] is True


@pytest.mark.parametrize(
    "payload",
    [None, "3", [3], {}, {"numTalkers": "3"}, {"numTalkers": None}, {"numTalkers": 1.0}, {"numTalkers": 13}],
)
def test_set_talker_count_decodes_only_a_count(payload: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_client("setTalkerCount", [payload] if payload is not None else [])
    assert decode_client("setTalkerCount", [{"numTalkers": 0}]) == SetTalkerCount(count=0)


# --------------------------------------------------------------------------- bad input, raw clients


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ([{"numTalkers": "3"}], ErrorCode.MALFORMED_REQUEST),
        ([{"numTalkers": True}], ErrorCode.MALFORMED_REQUEST),
        ([{"numTalkers": 2.5}], ErrorCode.MALFORMED_REQUEST),
        ([{"count": 3}], ErrorCode.MALFORMED_REQUEST),
        ([{}], ErrorCode.MALFORMED_REQUEST),
        (["three"], ErrorCode.MALFORMED_REQUEST),
        ([[3]], ErrorCode.MALFORMED_REQUEST),
        ([], ErrorCode.MALFORMED_REQUEST),
        ([{"numTalkers": -1}], ErrorCode.MALFORMED_REQUEST),
        ([{"numTalkers": 10**30}], ErrorCode.MALFORMED_REQUEST),
        ([{"numTalkers": 7}], ErrorCode.INVALID_PARAMETERS),  # above the room's 6
    ],
)
async def test_set_talker_count_with_garbage_is_refused_and_changes_nothing(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect, args: list[Any], code: int
) -> None:
    client = await raw_client()
    await client.join(room_server.mint_token(room["room_id"], "raw"))
    ack = await client.ack("setTalkerCount", *args)
    assert ack["result"] == code and ack["msg"], ack
    assert await client.ack("getTalkerCount") == {"result": 0, "numTalkers": 6}


async def test_talker_requests_before_joining_and_pins_by_participants_are_refused(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    early = await raw_client()
    for event, args in (
        ("setTalkerCount", [{"numTalkers": 1}]),
        ("getTalkerCount", []),
        ("pinUsers", [{"clients": ["x"]}]),
    ):
        assert (await early.ack(event, *args))["result"] == ErrorCode.NOT_JOINED
    member = await raw_client()
    _, connected = await member.join(room_server.mint_token(room["room_id"], "member"))
    me = connected["clientId"]
    assert (await member.ack("pinUsers", {"clients": [me]}))["result"] == ErrorCode.NOT_PERMITTED
    moderator = await raw_client()
    await moderator.join(room_server.mint_token(room["room_id"], "mod", role="moderator"))
    for bad in (
        {"clients": []},
        {"clients": "abc"},
        {"clients": [1]},
        {"clients": ["x" * 500]},
        {"clients": ["a"] * 101},
    ):
        ack = await moderator.ack("pinUsers", bad)
        assert ack["result"] in (ErrorCode.MALFORMED_REQUEST, ErrorCode.INVALID_PARAMETERS), (bad, ack)
    assert (await moderator.ack("pinUsers", {"clients": ["nobody"]}))[
        "result"
    ] == ErrorCode.INVALID_PARAMETERS
    assert await moderator.ack("pinUsers", {"clients": [me, me]}) == {"result": 0, "clients": [me]}
    assert await moderator.ack("unpinUsers", {"clients": [me, "gone-already"]}) == {
        "result": 0,
        "clients": [],
    }


async def test_a_joiner_hears_the_list_once_even_when_empty_and_never_in_a_room_without_talkers(
    room_server: RoomServer, raw_client: Connect
) -> None:
    with_talkers = room_server.create_room("talk")["room_id"]
    without = room_server.create_room("quiet", settings={"active_talker": False})["room_id"]
    a = await raw_client()
    await a.join(room_server.mint_token(with_talkers, "a"))
    b = await raw_client()
    await b.join(room_server.mint_token(without, "b"))
    first = await a.next("active-talkers-updated")
    assert first == {"activeList": [], "active": True}
    await asyncio.sleep(1.5)
    assert a.payloads("active-talkers-updated") == [first]  # nothing changed: nothing more
    assert "active-talkers-updated" not in b.names()


async def test_the_server_logs_count_changes(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    client = await raw_client()
    with structlog.testing.capture_logs() as logs:
        await client.join(room_server.mint_token(room["room_id"], "counted"))
        assert await client.ack("setTalkerCount", {"numTalkers": 2}) == {"result": 0, "numTalkers": 2}
    line = next(e for e in logs if e["event"] == "talker_count_set")
    assert line["count"] == 2 and line["client_id"] == client.client_id
