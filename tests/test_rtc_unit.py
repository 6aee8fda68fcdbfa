"""bot.rtc without a room server: tokens, options, names, emitted fields, callback dispatch."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from bot import proto
from bot.proto import ErrorCode, RoomConnected, Trigger
from bot.proto.names import FLUTTER_CALLBACKS, FLUTTER_METHODS
from bot.proto.token import encode_envelope, mint_token
from bot.rtc import CALLBACK_NAMES, EnxRtc, LocalInfo, RoomError, RoomInfo
from bot.rtc.messages import client_conn_event, publish_request, token_request
from bot.rtc.signalling import signalling_url
from bot.rtc.state import RoomState

TRACE = Path(__file__).resolve().parent / "fixtures" / "traces" / "enxrtc-2.3.16-full.jsonl"
# TEST-NET-1: nothing answers there; a client that tried to connect would hang, not fail.
NOWHERE = "192.0.2.1:9"
APP_KEY = "unit-test-app-key-0123456789-abcdef"


def trace_lines() -> list[dict[str, Any]]:
    return [json.loads(line) for line in TRACE.read_text().splitlines()]


def official(event: str) -> dict[str, Any]:
    """The official client's first emit of ``event`` (a C->S trace line)."""
    for line in trace_lines():
        if line["dir"] == "C->S" and line["kind"] == "event" and line["event"] == event:
            return line
    raise AssertionError(f"{event} not in the trace")


def trace_room_connected() -> RoomConnected:
    for line in trace_lines():
        if line["event"] == "room-connected":
            event = proto.decode_server("room-connected", line["args"])
            assert isinstance(event, RoomConnected)
            return event
    raise AssertionError("no room-connected in the trace")


def token(*, host: str = NOWHERE, now: float | None = None, **kw: Any) -> str:
    return mint_token(
        app_key=APP_KEY,
        host=host,
        room_id=kw.pop("room_id", "room-1"),
        name=kw.pop("name", "bot-1"),
        role=kw.pop("role", "participant"),
        now=time.time() if now is None else now,
        **kw,
    )


def shape(value: Any) -> Any:
    """Field names and JSON types, recursively: what must match the official client."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return type(value).__name__


# --------------------------------------------------------------------------- tokens


@pytest.mark.parametrize(
    ("make", "code", "words"),
    [
        (lambda: "not a token at all!", ErrorCode.TOKEN_INVALID, "base64"),
        (lambda: token()[:40], ErrorCode.TOKEN_INVALID, "truncated"),
        (lambda: "", ErrorCode.TOKEN_INVALID, "empty"),
        (lambda: encode_envelope({"tokenId": "x"}), ErrorCode.TOKEN_INVALID, "host"),
        (lambda: token(now=time.time() - 3600), ErrorCode.TOKEN_EXPIRED, "expired"),
    ],
)
async def test_bad_tokens_fail_before_any_network_use(make: Any, code: int, words: str) -> None:
    errors: list[dict[str, Any]] = []
    rtc = EnxRtc()
    rtc.on_room_error = errors.append
    started = time.monotonic()
    with pytest.raises(RoomError) as info:
        await rtc.join_room(make(), {"audio": False, "video": False})
    assert time.monotonic() - started < 1.0  # the host is unreachable: no connect was tried
    assert info.value.code == code
    assert words in info.value.msg
    assert errors == [{"result": int(code), "msg": info.value.msg}]
    assert await asyncio.wait_for(rtc.wait_disconnected(), 1) == {
        "cause": int(code),
        "msg": info.value.msg,
    }
    assert rtc.phase == "disconnected"


async def test_token_never_appears_in_repr_or_logs() -> None:
    text = token(now=time.time() - 3600)
    envelope = proto.decode_token(text)
    secrets = [text, envelope.token_id, envelope.raw["signature"]]
    with capture_logs() as logs:
        rtc = EnxRtc(label="redact")
        with pytest.raises(RoomError):
            await rtc.join_room(text, {})
    blob = repr(rtc) + str(rtc) + json.dumps(logs, default=str)
    assert logs, "the failure is logged"
    for secret in secrets:
        assert secret and secret not in blob
    assert "…" in repr(rtc) or "***" in repr(rtc)


def test_signalling_url_follows_the_token() -> None:
    plain = proto.decode_token(encode_envelope(_env(host="h:1")))
    assert signalling_url(plain) == "http://h:1"
    secure = proto.decode_token(encode_envelope(_env(host="h:1", secure=True)))
    assert signalling_url(secure) == "https://h:1"
    via = proto.decode_token(
        encode_envelope(_env(host="room.example:443", secure=True, gateway="gw.example:8443"))
    )
    assert signalling_url(via) == "https://gw.example:8443?X-Forwarded-Host=room.example%3A443"


def _env(**kw: Any) -> dict[str, Any]:
    return {"roomMeta": {"settings": {"quality": "SD"}}, **kw}


# --------------------------------------------------------------------------- options


def test_options_read_flutter_dicts() -> None:
    local = LocalInfo.from_dict(
        {"audio": True, "video": False, "audioMuted": True, "name": "n", "framerate": 30}
    )
    assert (local.audio, local.video, local.audio_muted, local.video_muted) == (
        True,
        False,
        True,
        False,
    )
    assert local.name == "n" and local.publishes
    assert not LocalInfo.from_dict({"audio": False, "video": False}).publishes
    assert RoomInfo.from_dict({"forceTurn": True, "allow_reconnect": False}).force_turn
    assert LocalInfo.from_dict(None) == LocalInfo()


@pytest.mark.parametrize(
    ("local", "room", "key"),
    [
        ({"audio": "yes"}, None, "audio"),
        ({"audioMuted": 1}, None, "audioMuted"),
        ("audio", None, "local_info"),
        (None, {"forceTurn": "true"}, "forceTurn"),
        (None, {"timeout_interval": -1}, "timeout_interval"),
    ],
)
async def test_bad_options_are_refused_with_1155(local: Any, room: Any, key: str) -> None:
    errors: list[dict[str, Any]] = []
    rtc = EnxRtc()
    rtc.on_room_error = errors.append
    with pytest.raises(RoomError) as info:
        await rtc.join_room(token(), local, room)
    assert info.value.code == ErrorCode.INVALID_PARAMETERS and key in info.value.msg
    assert errors and errors[0]["result"] == ErrorCode.INVALID_PARAMETERS


# --------------------------------------------------------------------------- names


def test_every_flutter_method_and_callback_exists() -> None:
    rtc = EnxRtc()
    for flutter, (attr, _doc) in FLUTTER_CALLBACKS.items():
        assert hasattr(rtc, attr), f"{flutter} -> {attr} missing"
        assert getattr(rtc, attr) is None
    for flutter, method in FLUTTER_METHODS.items():
        assert callable(getattr(rtc, method, None)), f"{flutter} -> {method} missing"
    for name in CALLBACK_NAMES:
        assert getattr(rtc, name) is None, name
    brief = {
        "on_room_connected", "on_room_error", "on_room_disconnected", "on_user_connected",
        "on_user_disconnected", "on_published_stream", "on_unpublished_stream",
        "on_stream_added", "on_stream_removed", "on_active_talker_list",
        "on_room_bandwidth_alert", "on_bandwidth_updated", "on_remote_stream_audio_mute",
        "on_remote_stream_audio_unmute", "on_remote_stream_video_mute",
        "on_remote_stream_video_unmute", "on_connection_lost", "on_connection_interrupted",
        "on_reconnect", "on_user_reconnect_success", "on_room_bandwidth_restored",
        "on_subscribed_stream", "on_stats",
        "on_message_received", "on_user_data_received", "on_acknowledged_send_data",
    }  # fmt: skip
    brief |= {  # moderation (issue 14)
        "on_audio_event", "on_video_event", "on_received_hard_mute", "on_received_hard_unmute",
        "on_received_hard_mute_audio", "on_received_hard_unmute_audio", "on_received_hard_mute_video",
        "on_received_hard_unmute_video", "on_room_recording_on", "on_room_recording_off",
        "on_ack_drop_user", "on_hard_muted", "on_hard_unmuted", "on_hard_muted_audio",
        "on_hard_unmuted_audio", "on_hard_muted_video", "on_hard_unmuted_video",
        "on_start_recording_event", "on_stop_recording_event",
    }  # fmt: skip
    brief |= {  # waiting room, room duration, lecture mode
        "on_room_awaited", "on_user_awaited", "on_ack_for_approve_awaited_user",
        "on_ack_for_deny_awaited_user", "on_conference_remaining_duration", "on_floor_requested",
        "on_floor_request_received", "on_process_floor_requested", "on_granted_floor_request",
        "on_denied_floor_request", "on_released_floor_request",
        "on_set_talker_count", "on_get_talker_count",
    }  # fmt: skip
    assert brief == set(CALLBACK_NAMES)


def test_headless_devices_and_getters_before_joining() -> None:
    rtc = EnxRtc()
    assert rtc.get_devices() == ["NONE"]
    assert rtc.get_selected_device() == "NONE"
    assert rtc.get_user_list() == [] and rtc.who_am_i() == {}
    assert rtc.get_room_id() is None and rtc.get_client_id() is None
    assert rtc.get_max_talkers() is None and rtc.published_stream_id is None


async def test_instances_share_nothing() -> None:
    a, b = EnxRtc(), EnxRtc()
    a.on_room_error = lambda p: None
    assert b.on_room_error is None
    await a.disconnect()
    assert a.phase == "disconnected" and b.phase == "idle"


async def test_disconnect_before_join_is_harmless_and_idempotent() -> None:
    rtc = EnxRtc()
    await rtc.disconnect()
    await rtc.disconnect()
    assert (await rtc.wait_disconnected())["cause"] == ErrorCode.NORMAL_DISCONNECT
    with pytest.raises(RoomError) as info:
        await rtc.join_room(token(), {})
    assert info.value.code == ErrorCode.ALREADY_IN_STATE


# --------------------------------------------------------------------------- emits vs trace


def test_token_request_has_the_official_fields_and_types() -> None:
    ours = proto.encode(token_request(proto.decode_token(token())))
    theirs = official("token")
    assert ours[0] == "token"
    assert shape(list(ours[1])) == shape(theirs["args"])
    payload = ours[1][0]
    assert payload["version"] == "2.3.16"
    assert payload["hostType"] == "enx-bot" and payload["hostDeviceType"] == "headless"
    assert payload["userAgent"].startswith("enx-bot/") and "aiortc/" in payload["userAgent"]
    assert "isReconnecting" not in payload


def test_client_conn_success_has_the_official_fields_and_types() -> None:
    theirs = official("logClientEvents")
    ours = proto.encode(
        client_conn_event(
            "clientConnSuccess",
            envelope=proto.decode_token(token()),
            now=time.time(),
            room_id="r",
            client_id="c",
            client_name="n",
            external_ip="127.0.0.1",
        )
    )
    assert ours[0] == "logClientEvents"
    assert shape(list(ours[1])) == shape(theirs["args"])
    # same timestamp format as JavaScript's toISOString()
    assert len(ours[1][0]["timestamp"]) == len(theirs["args"][0]["timestamp"])
    assert ours[1][0]["timestamp"].endswith("Z")


def test_publish_request_has_the_official_fields_and_types() -> None:
    theirs = official("publish")
    room = trace_room_connected()
    ours = proto.encode(publish_request(LocalInfo(data=True), room))
    assert ours[0] == "publish"
    assert shape(list(ours[1])) == shape(theirs["args"])
    assert len(ours[1]) == 2 and ours[1][1] is None
    # same values too, given the same room and local info (Chrome's name aside)
    expected = dict(theirs["args"][0], attributes={"name": room.user.name})
    assert ours[1][0] == expected


def test_publish_request_carries_mute_on_join() -> None:
    req = publish_request(LocalInfo(audio_muted=True, video_muted=False, name="cam"), trace_room_connected())
    payload = proto.encode(req)[1][0]
    assert payload["muteStream"] == {"audio": True, "video": False}
    assert payload["attributes"] == {"name": "cam"}
    assert payload["minVideoBW"] == 100 and payload["maxVideoBW"] == 1000


def test_media_and_leave_requests_match_the_official_wire_shapes() -> None:
    offer = proto.encode(proto.SignalingMessage(stream_id=1001, msg=proto.Offer(sdp="v=0\r\n")))
    assert shape(list(offer[1])) == shape(official("signaling_message")["args"])
    end = proto.encode(proto.SignalingMessage(stream_id=1001, msg=proto.EndOfCandidates()))
    official_end = [
        line["args"]
        for line in trace_lines()
        if line["dir"] == "C->S" and '"end"' in json.dumps(line["args"])
    ]
    assert list(end[1]) == official_end[0]
    assert list(proto.encode(proto.UnpublishRequest(stream_id=1001))[1]) == official("unpublish")["args"]
    assert list(proto.encode(proto.DropRequest())[1]) == official("drop")["args"]
    assert list(proto.encode(proto.GetMaxTalkers())[1]) == official("getMaxNumberOfTalker")["args"]
    muted = proto.encode(proto.SelfMuteRequest(kind="video", muted=True))
    assert muted == ("user-video-muted", ())
    assert official("user-video-muted")["args"] == []


# --------------------------------------------------------------------------- dispatch


def _server_events_after_join() -> list[Any]:
    events, seen = [], False
    for line in trace_lines():
        if line["dir"] != "S->C" or line["kind"] != "event":
            continue
        if line["event"] == "room-connected":
            seen = True
            continue
        if seen:
            events.append(proto.decode_server(line["event"], line["args"]))
    return events


EXPECTED_FROM_TRACE = [
    # media_engine_connecting of legs that are not ours is routed nowhere
    "on_user_connected",
    "on_stream_added",
    "on_active_talker_list",
    "on_remote_stream_video_mute",  # the {clientId, streamId} shape
    "on_remote_stream_video_mute",
    "on_remote_stream_video_unmute",
    "on_remote_stream_audio_mute",
    "on_remote_stream_audio_unmute",
    "on_room_bandwidth_alert",
    "on_bandwidth_updated",
    "on_bandwidth_updated",
    "on_room_bandwidth_restored",  # the one low stream is restored
    "on_bandwidth_updated",
    "on_bandwidth_updated",  # PublisherBandwidth 300
    "on_bandwidth_updated",  # any other id
    "on_room_bandwidth_alert",  # 1.x onSelfBandwidthAlert
    "on_bandwidth_updated",  # 1.x onBandwidthAlert
    "on_bandwidth_updated",
    "on_room_bandwidth_restored",
    "on_active_talker_list",
    "on_active_talker_list",
    "on_bandwidth_updated",  # PublisherBandwidth 1
    "on_stream_removed",
    "on_user_disconnected",
    "on_active_talker_list",
]


class _NoSocket:
    """A session minus the socket: the inbox its dispatcher reads, a signalling never connected."""

    class signalling:  # stands for RoomSession.signalling
        connected = False

    def __init__(self, inbox: asyncio.Queue[Any]) -> None:
        self.inbox = inbox
        self.early: list[Any] = []

    async def aclose(self, *, leave: bool = False, stream_id: int | None = None) -> None:
        pass

    def retire(self, into: set[asyncio.Task[None]]) -> None:
        pass


def _attach(rtc: EnxRtc, inbox: asyncio.Queue[Any]) -> asyncio.Task[None]:
    """Put an EnxRtc in the state join_room leaves it in, minus the socket."""
    ctx = rtc._ctx
    ctx.room = RoomState(trace_room_connected())
    ctx.phase.step(Trigger.JOIN)
    ctx.phase.step(Trigger.JOINED)
    session: Any = _NoSocket(inbox)
    ctx.session = session
    return rtc._life.dispatcher.start(session)


async def test_callbacks_fire_in_server_order_and_survive_failing_callbacks() -> None:
    fired: list[tuple[str, dict[str, Any]]] = []
    with capture_logs() as logs:
        rtc = EnxRtc(label="order")
        for name in CALLBACK_NAMES:

            def record(payload: dict[str, Any], name: str = name) -> None:
                fired.append((name, payload))

            async def arecord(payload: dict[str, Any], name: str = name) -> None:
                await asyncio.sleep(0)  # an async callback that yields must not reorder
                fired.append((name, payload))

            setattr(rtc, name, arecord if len(name) % 2 else record)

        def boom(payload: dict[str, Any]) -> None:
            fired.append(("on_user_connected", payload))
            raise RuntimeError("application bug")

        async def aboom(payload: dict[str, Any]) -> None:
            fired.append(("on_stream_added", payload))
            raise ValueError("async application bug")

        rtc.on_user_connected = boom
        rtc.on_stream_added = aboom
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        task = _attach(rtc, inbox)
        for event in _server_events_after_join():
            inbox.put_nowait(event)
        for _ in range(200):
            if len(fired) >= len(EXPECTED_FROM_TRACE):
                break
            await asyncio.sleep(0.01)
        await rtc.disconnect()
    assert [name for name, _ in fired][: len(EXPECTED_FROM_TRACE)] == EXPECTED_FROM_TRACE
    assert task.done()
    failures = [e for e in logs if e["event"] == "callback_failed"]
    assert [f["callback"] for f in failures] == ["on_user_connected", "on_stream_added"]
    assert all(f.get("exc_info") and f["log_level"] == "error" for f in failures)
    # payloads use the wire names a Flutter app sees
    payloads = dict(fired)
    assert payloads["on_user_connected"]["clientId"] == "client-remote-0002"
    assert payloads["on_user_connected"]["name"] == "Remote Bot"
    assert payloads["on_stream_added"]["id"] == 2002
    assert payloads["on_stream_added"]["attributes"]["name"] == "Remote Bot"
    assert payloads["on_stream_removed"] == {"id": 2002}
    assert payloads["on_user_disconnected"]["clientId"] == "client-remote-0002"
    alerts = [p for n, p in fired if n == "on_room_bandwidth_alert"]
    assert alerts[0] == {"message": "SubscriberBandWidth", "bandwidth": 100}
    assert alerts[1]["bandwidth"] == 150
    assert fired[-1] == ("on_room_disconnected", {"cause": 2006, "msg": "normal-disconnect"})


async def test_room_state_follows_the_events() -> None:
    rtc = EnxRtc()
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    _attach(rtc, inbox)
    disconnected: list[dict[str, Any]] = []
    rtc.on_user_disconnected = disconnected.append
    users_seen: list[int] = []
    rtc.on_user_connected = lambda p: users_seen.append(len(rtc.get_user_list()))
    for event in _server_events_after_join():
        inbox.put_nowait(event)
    for _ in range(200):
        if disconnected:
            break
        await asyncio.sleep(0.01)
    assert users_seen == [2]  # state is updated before the callback runs
    assert [u["clientId"] for u in rtc.get_user_list()] == ["client-self-0001"]
    assert rtc.who_am_i()["name"] == "enxtrace-web"
    assert rtc.get_room_id() == "room-0001" and rtc.get_client_id() == "client-self-0001"
    assert rtc.get_role() == "moderator" and rtc.get_client_name() == "enxtrace-web"
    await rtc.disconnect()


async def test_disconnect_from_inside_a_callback_does_not_deadlock() -> None:
    rtc = EnxRtc()
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    task = _attach(rtc, inbox)
    order: list[str] = []

    async def leave(payload: dict[str, Any]) -> None:
        order.append("user_connected")
        await rtc.disconnect()
        order.append("left")

    rtc.on_user_connected = leave
    rtc.on_room_disconnected = lambda p: order.append("room_disconnected")
    rtc.on_stream_added = lambda p: order.append("stream_added")  # after leaving: not fired
    for event in _server_events_after_join():
        inbox.put_nowait(event)
    payload = await asyncio.wait_for(rtc.wait_disconnected(), 5)
    await asyncio.wait_for(task, 5)
    assert payload == {"cause": 2006, "msg": "normal-disconnect"}
    assert order == ["user_connected", "room_disconnected", "left"]


async def test_unexpected_socket_close_is_2002() -> None:
    from bot.rtc.signalling import SocketClosed

    rtc = EnxRtc()
    got: list[dict[str, Any]] = []
    rtc.on_room_disconnected = got.append
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    task = _attach(rtc, inbox)
    inbox.put_nowait(SocketClosed(reason="transport close"))
    payload = await asyncio.wait_for(rtc.wait_disconnected(), 5)
    await asyncio.wait_for(task, 5)
    assert payload == got[0] == {"cause": 2002, "msg": "unexpected-disconnection"}
    await rtc.disconnect()  # afterwards: a no-op
    assert got == [payload]


def test_local_bandwidth_narrows_the_rooms_range() -> None:
    room = trace_room_connected()  # 100..1000 kbps
    narrowed = publish_request(LocalInfo(max_video_bw=400, min_video_bw=150), room)
    assert (narrowed.min_video_bw, narrowed.max_video_bw) == (150, 400)
    widened = publish_request(LocalInfo(max_video_bw=5000, min_video_bw=10), room)
    assert (widened.min_video_bw, widened.max_video_bw) == (100, 1000)
    audio_only = publish_request(LocalInfo(video_muted=True), room, video=False)
    assert audio_only.video is False and audio_only.mute_video is False
