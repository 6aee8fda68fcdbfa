"""Builds the client's requests from the token, the options and the room state. Pure functions.

Kept apart from the I/O so tests can hold what we would emit against what the official client
emitted in ``traces/enxrtc-2.3.16-full.jsonl``, with no network.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import metadata

from bot.proto import LogClientEvent, PublishRequest, RoomConnected, TokenEnvelope, TokenRequest

from .options import LocalInfo

SDK_VERSION = "2.3.16"
"""The official SDK whose wire protocol we speak (sent as ``version``)."""
HOST_TYPE = "enx-bot"
HOST_DEVICE_TYPE = "headless"


@cache
def package_version() -> str:
    try:
        return metadata.version("enx-bot")
    except metadata.PackageNotFoundError:
        return "0.0.0"


@cache
def user_agent() -> str:
    try:
        aiortc_version = metadata.version("aiortc")
    except metadata.PackageNotFoundError:
        aiortc_version = "unknown"
    return f"enx-bot/{package_version()} python/{platform.python_version()} aiortc/{aiortc_version}"


@dataclass(frozen=True, kw_only=True)
class Rejoin:
    """What a rejoin adds to ``token`` (PROTOCOL.md sections 1 and 8); used by reconnection."""

    attempt: int
    old_client_id: str
    room_id: str
    role: str
    name: str


def token_request(envelope: TokenEnvelope, rejoin: Rejoin | None = None) -> TokenRequest:
    """The decoded token sent back, plus who we are (trace line 4)."""
    return TokenRequest(
        envelope=dict(envelope.raw),
        version=SDK_VERSION,
        host_type=HOST_TYPE,
        host_version=package_version(),
        host_device_type=HOST_DEVICE_TYPE,
        user_agent=user_agent(),
        is_reconnecting=rejoin is not None,
        reconnect_attempt=None if rejoin is None else rejoin.attempt,
        old_client_id=None if rejoin is None else rejoin.old_client_id,
        room=None if rejoin is None else rejoin.room_id,
        role=None if rejoin is None else rejoin.role,
        name=None if rejoin is None else rejoin.name,
    )


def _timestamp(now: float) -> str:
    """JavaScript's ``Date.toISOString()``: millisecond precision, ``Z``."""
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def client_conn_event(
    event_type: str,
    *,
    envelope: TokenEnvelope,
    now: float,
    room_id: str = "",
    client_id: str = "",
    client_name: str = "",
    external_ip: str = "",
) -> LogClientEvent:
    """``logClientEvents {eventType: clientConnSuccess|clientConnFailed, ...}`` (trace line 9)."""
    return LogClientEvent(
        event_type=event_type,
        fields={
            "roomId": room_id,
            "logId": envelope.log_id or "",
            "timestamp": _timestamp(now),
            "clientId": client_id,
            "clientName": client_name,
            "hostType": HOST_TYPE,
            "hostVersion": package_version(),
            "externalIp": external_ip,
        },
    )


def publish_request(local: LocalInfo, room: RoomConnected, *, video: bool = True) -> PublishRequest:
    """``publish`` for our one stream: kinds, mute state and the video bandwidth (the room's
    range, narrowed by ``local_info``'s ``minVideoBW``/``maxVideoBW``)."""
    max_bw = room.max_video_bw
    if local.max_video_bw is not None:
        max_bw = min(max_bw, local.max_video_bw)
    min_bw = room.min_video_bw
    if local.min_video_bw is not None:
        min_bw = max(min_bw, local.min_video_bw)
    with_video = local.video and video
    return PublishRequest(
        audio=local.audio,
        video=with_video,
        data=local.data,
        name=local.name if local.name is not None else room.user.name,
        mute_audio=local.audio and local.audio_muted,
        mute_video=with_video and local.video_muted,
        min_video_bw=min(min_bw, max_bw),
        max_video_bw=max_bw,
    )
