"""bot.proto without a network: trace round trips, malformed input, token envelope."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from bot import proto
from bot.proto import ErrorCode, RemoteProtocolError, TokenError

TRACES = Path(__file__).resolve().parent / "fixtures" / "traces"  # tests/fixtures/README.md


def trace_lines(name: str) -> list[dict]:
    with open(TRACES / name) as fh:
        return [json.loads(line) for line in fh]


@pytest.mark.parametrize("trace", ["enxrtc-2.3.16-full.jsonl", "enxrtc-2.3.16-reconnect.jsonl"])
def test_official_client_messages_round_trip(trace: str) -> None:
    """Every C->S event of the official client decodes, and re-encodes to the same wire args."""
    seen = set()
    for line in trace_lines(trace):
        if line["kind"] != "event" or line["dir"] != "C->S":
            continue
        event = proto.decode_client(line["event"], line["args"])
        name, args = proto.encode(event)
        assert name == line["event"]
        seen.add(name)
        if name == "logClientEvents":
            assert args[0] == line["args"][0]
        else:
            assert list(args) == line["args"], name
    assert {"token", "publish", "signaling_message", "unpublish", "drop"} <= seen


@pytest.mark.parametrize("trace", ["enxrtc-2.3.16-full.jsonl", "enxrtc-2.3.16-reconnect.jsonl"])
def test_server_messages_the_official_client_accepted_decode(trace: str) -> None:
    kinds = set()
    for line in trace_lines(trace):
        if line["kind"] != "event" or line["dir"] != "S->C":
            continue
        event = proto.decode_server(line["event"], line["args"])
        assert not isinstance(event, proto.UnknownEvent), line["event"]
        kinds.add(type(event).__name__)
    assert "RoomConnected" in kinds and "MediaEngineConnecting" in kinds


def test_media_engine_connecting_keys_subscribe_legs_by_peer_id() -> None:
    sub = proto.decode_server("media_engine_connecting", [{"peerId": 2002, "msg": {"type": "ready"}}])
    pub = proto.decode_server("media_engine_connecting", [{"streamId": 1001, "msg": {"type": "ready"}}])
    assert isinstance(sub, proto.MediaEngineConnecting) and sub.subscriber and sub.stream_id == 2002
    assert isinstance(pub, proto.MediaEngineConnecting) and not pub.subscriber
    assert proto.encode(sub)[1][0] == {"peerId": 2002, "msg": {"type": "ready"}}


def test_candidates_and_end_marker() -> None:
    cand = proto.decode_client(
        "signaling_message",
        [
            {
                "streamId": 7,
                "msg": {
                    "type": "candidate",
                    "candidate": {
                        "sdpMLineIndex": 0,
                        "sdpMid": "0",
                        "candidate": "a=candidate:1 1 udp 1 1.2.3.4 5 typ host",
                    },
                },
            },
            None,
        ],
    )
    assert isinstance(cand, proto.SignalingMessage) and isinstance(cand.msg, proto.Candidate)
    end = proto.SignalingMessage(stream_id=7, msg=proto.EndOfCandidates())
    _, args = proto.encode(end)
    assert args == (
        {
            "streamId": 7,
            "msg": {
                "type": "candidate",
                "candidate": {"sdpMLineIndex": -1, "sdpMid": "end", "candidate": "end"},
            },
        },
        None,
    )


def test_room_connected_always_carries_what_the_official_client_needs() -> None:
    user = proto.UserInfo(client_id="c1", name="a")
    payload = proto.encode(proto.RoomConnected(room_id="r", client_id="c1", user=user))[1][0]
    for key in ("room", "videoBitrateQualityMap", "user", "videoMutedUsers", "raisedHands", "approvedHands"):
        assert key in payload
    assert payload["room"]["sharePermissions"] == {"screen": {"state": "idle"}, "canvas": {"state": "idle"}}
    assert "settings" in payload["room"]


def test_mute_relay_carries_user() -> None:
    user = proto.UserInfo(client_id="c2", name="b", video_muted=True)
    name, args = proto.encode(proto.UserMuteChanged(kind="video", muted=True, client_id="c2", user=user))
    assert name == "user-video-muted" and args[0]["user"]["videoMuted"] is True


@pytest.mark.parametrize(
    ("name", "args", "needle"),
    [
        ("publish", ["nope", None], "publish: payload must be an object"),
        ("publish", [{"audio": "yes"}, None], "publish: field 'audio' must be a boolean"),
        ("signaling_message", [{"streamId": 1}, None], "signaling_message: field 'msg' is missing"),
        ("signaling_message", [{"streamId": True, "msg": {"type": "offer", "sdp": ""}}, None], "streamId"),
        ("subscribe", [], "subscribe: missing argument"),
        ("unpublish", [{"x": 1}], "unpublish: field 'streamId' is missing"),
        ("unpublish", [[1]], "unpublish: argument must be a stream id"),
        ("token", [7], "token: payload must be an object"),
        ("bogus", [], "unknown client event 'bogus'"),
    ],
)
def test_malformed_client_messages_name_the_problem(name: str, args: list, needle: str) -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        proto.decode_client(name, args)
    assert needle in str(exc.value)


def test_acks() -> None:
    assert proto.Ack.from_args("signaling_message", []).ok
    ack = proto.Ack.from_args("token", [{"result": 4101, "msg": "invalid token"}])
    assert not ack.ok and ack.result == 4101 and ack.msg == "invalid token"
    assert proto.Ack.from_args("publish", [{"result": 0, "id": 5}]).fields["id"] == 5
    assert not proto.Ack.from_args("subscribe", [None]).ok
    with pytest.raises(RemoteProtocolError):
        proto.Ack.from_args("publish", ["x"])


# --------------------------------------------------------------------------- tokens

KEY = "k" * 32


def test_token_mint_decode_verify() -> None:
    now = time.time()
    text = proto.mint_token(
        app_key=KEY, host="127.0.0.1:9", room_id="r1", name="bot", role="participant", now=now
    )
    env = proto.decode_token(text)
    assert env.host == "127.0.0.1:9" and env.room_id == "r1" and env.name == "bot"
    assert env.signalling_url == "http://127.0.0.1:9"
    claims = proto.verify_token_id(env.token_id, app_key=KEY, now=now)
    assert claims["room_id"] == "r1"
    assert text not in repr(env) and env.token_id not in repr(env)
    env.check_expiry(now)


def test_token_expired_is_clear() -> None:
    then = time.time() - 3600
    env = proto.decode_token(
        proto.mint_token(app_key=KEY, host="h:1", room_id="r", name="n", role="participant", now=then)
    )
    with pytest.raises(TokenError) as exc:
        env.check_expiry(time.time())
    assert exc.value.code == ErrorCode.TOKEN_EXPIRED and "expired" in str(exc.value)
    with pytest.raises(TokenError) as exc2:
        proto.verify_token_id(env.token_id, app_key=KEY, now=time.time())
    assert exc2.value.code == ErrorCode.TOKEN_EXPIRED


def test_token_wrong_signature() -> None:
    env = proto.decode_token(
        proto.mint_token(app_key=KEY, host="h:1", room_id="r", name="n", role="participant", now=time.time())
    )
    with pytest.raises(TokenError) as exc:
        proto.verify_token_id(env.token_id, app_key="other-key-" * 4, now=time.time())
    assert exc.value.code == ErrorCode.TOKEN_INVALID and "signature" in str(exc.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("%%%not-base64%%%", "not base64"),
        (base64.b64encode(b'{"host": "h:1", "roomMe').decode(), "does not decode to JSON"),
        (base64.b64encode(b"[1, 2]").decode(), "not an object"),
        (base64.b64encode(b'{"roomMeta": {"settings": {"quality": "SD"}}}').decode(), "no 'host'"),
        (base64.b64encode(b'{"host": "h:1"}').decode(), "quality"),
    ],
)
def test_bad_tokens(text: str, needle: str) -> None:
    with pytest.raises(TokenError) as exc:
        proto.decode_token(text)
    assert needle in str(exc.value)
    if len(text) > 20:
        assert text not in str(exc.value)


def test_truncated_real_token_is_refused_without_echoing_it() -> None:
    text = proto.mint_token(
        app_key=KEY, host="h:1", room_id="r", name="n", role="participant", now=time.time()
    )
    cut = text[: len(text) // 2]
    with pytest.raises(TokenError) as exc:
        proto.decode_token(cut)
    assert cut not in str(exc.value)


def test_redact() -> None:
    assert proto.redact("abcdefghijklmnopqrstuvwxyz") == "abcdef…(26 chars)"
    assert proto.redact("short") == "***"
    assert proto.redact(None) == "<none>"


def test_proto_is_sans_io() -> None:
    """bot.proto must not import asyncio, sockets or any other bot layer."""
    import ast

    root = Path(proto.__file__).parent
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for n in names:
                assert n.split(".")[0] not in {"asyncio", "socket", "aiohttp", "socketio", "aiortc"}, (
                    path,
                    n,
                )
                assert not n.startswith("bot."), (path, n)
