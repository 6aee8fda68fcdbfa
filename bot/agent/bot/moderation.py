"""What a bot logs when a moderator acts on it (docs/protocol/moderation.md).

A hard mute is carried out by the SDK (the kind stops at the sender until released); the bot
logs ``hard_muted`` / ``hard_unmuted`` with the ``kind``, the ``scope`` (``room``: the whole
room, ``user``: this bot) and, as every line about another participant, the moderator's
``user`` (name) and ``user_id`` (clientId; None when the application server acted). Recording
notices are logged as ``room_recording_on`` / ``room_recording_off`` (with the moderator too);
the acknowledgements of its own mutes as ``audio_event`` / ``video_event``. Being dropped is the
run's business (``Outcome.DROPPED``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.rtc import EnxRtc

Log = Callable[[], Any]


def wire_moderation(rtc: EnxRtc, log: Log) -> None:
    """Point ``rtc``'s moderation callbacks at log lines (``log()``: the bot's bound logger now)."""

    def who(client_id: object) -> dict[str, Any]:
        name = next(
            (u.get("name") for u in rtc.get_user_list() if client_id and u.get("clientId") == client_id), None
        )
        return {"user": name, "user_id": client_id or None}

    def hard(muted: bool, kind: str, scope: str) -> Callable[[dict[str, Any]], None]:
        def on(payload: dict[str, Any]) -> None:
            event = "hard_muted" if muted else "hard_unmuted"
            log().warning(event, kind=kind, scope=scope, **who(payload.get("moderator")))

        return on

    def recording(on: bool) -> Callable[[dict[str, Any]], None]:
        def notice(payload: dict[str, Any]) -> None:
            event = "room_recording_on" if on else "room_recording_off"
            log().info(event, **who(payload.get("moderatorId")))

        return notice

    def self_mute(event: str) -> Callable[[dict[str, Any]], None]:
        return lambda payload: log().info(event, result=payload.get("result"), msg=payload.get("msg"))

    rtc.on_received_hard_mute = hard(True, "audio", "room")
    rtc.on_received_hard_unmute = hard(False, "audio", "room")
    rtc.on_received_hard_mute_audio = hard(True, "audio", "user")
    rtc.on_received_hard_unmute_audio = hard(False, "audio", "user")
    rtc.on_received_hard_mute_video = hard(True, "video", "user")
    rtc.on_received_hard_unmute_video = hard(False, "video", "user")
    rtc.on_room_recording_on = recording(True)
    rtc.on_room_recording_off = recording(False)
    rtc.on_audio_event = self_mute("audio_event")
    rtc.on_video_event = self_mute("video_event")
