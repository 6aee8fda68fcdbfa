"""The application's callbacks: their names, their type, and how one is invoked.

Flutter's ``EnxRtc`` reports everything through callbacks (``onRoomConnected``, ...); here each
is an attribute ``on_<snake_case>`` holding a plain or async function of one dict. One failing
callback must never stop the room: its exception is logged (``callback_failed``, with the
traceback), handed to the owner's ``on_error(name, exc)`` if there is one (the agent counts
them), and the next event is handled as usual.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Literal, get_args

Json = dict[str, Any]
Callback = Callable[[Json], Awaitable[None] | None]

CallbackName = Literal[
    "on_room_connected",
    "on_room_error",
    "on_room_disconnected",
    "on_user_connected",
    "on_user_disconnected",
    "on_published_stream",
    "on_unpublished_stream",
    "on_stream_added",
    "on_stream_removed",
    "on_subscribed_stream",
    "on_active_talker_list",
    "on_set_talker_count",
    "on_get_talker_count",
    "on_room_bandwidth_alert",
    "on_room_bandwidth_restored",
    "on_bandwidth_updated",
    "on_remote_stream_audio_mute",
    "on_remote_stream_audio_unmute",
    "on_remote_stream_video_mute",
    "on_remote_stream_video_unmute",
    "on_connection_lost",
    "on_connection_interrupted",
    "on_reconnect",
    "on_user_reconnect_success",
    "on_stats",
    "on_message_received",
    "on_user_data_received",
    "on_acknowledged_send_data",
    # moderation (bot/rtc/moderation.py)
    "on_audio_event",
    "on_video_event",
    "on_received_hard_mute",
    "on_received_hard_unmute",
    "on_received_hard_mute_audio",
    "on_received_hard_unmute_audio",
    "on_received_hard_mute_video",
    "on_received_hard_unmute_video",
    "on_room_recording_on",
    "on_room_recording_off",
    "on_ack_drop_user",
    "on_hard_muted",
    "on_hard_unmuted",
    "on_hard_muted_audio",
    "on_hard_unmuted_audio",
    "on_hard_muted_video",
    "on_hard_unmuted_video",
    "on_start_recording_event",
    "on_stop_recording_event",
    # waiting room, room duration, lecture mode (room_control.py)
    "on_room_awaited",
    "on_user_awaited",
    "on_ack_for_approve_awaited_user",
    "on_ack_for_deny_awaited_user",
    "on_conference_remaining_duration",
    "on_floor_requested",
    "on_floor_request_received",
    "on_process_floor_requested",
    "on_granted_floor_request",
    "on_denied_floor_request",
    "on_released_floor_request",
]
CALLBACK_NAMES: tuple[str, ...] = get_args(CallbackName)

ErrorHook = Callable[[str, Exception], None]
"""``on_callback_error(callback_name, exc)``: told of each failing callback, after the log."""


async def invoke(
    callback: Callback | None,
    payload: Json,
    *,
    name: str,
    log: Any,
    on_error: ErrorHook | None = None,
) -> None:
    """Call ``callback(payload)``, awaiting it if it is async; log (then tell ``on_error``),
    never raise, its errors. A failing ``on_error`` is logged too."""
    if callback is None:
        return
    try:
        result = callback(payload)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        log.exception("callback_failed", callback=name)
        if on_error is None:
            return
        try:
            on_error(name, exc)
        except Exception:
            log.exception("callback_error_hook_failed", callback=name)
