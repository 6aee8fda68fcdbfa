"""The application's callbacks: their names, their type, and how one is invoked.

Flutter's ``EnxRtc`` reports everything through callbacks (``onRoomConnected``, ...); here each
is an attribute ``on_<snake_case>`` holding a plain or async function of one dict. One failing
callback must never stop the room: its exception is logged (``callback_failed``, with the
traceback) and the next event is handled as usual.
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
]
CALLBACK_NAMES: tuple[str, ...] = get_args(CallbackName)


async def invoke(callback: Callback | None, payload: Json, *, name: str, log: Any) -> None:
    """Call ``callback(payload)``, awaiting it if it is async; log, never raise, its errors."""
    if callback is None:
        return
    try:
        result = callback(payload)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("callback_failed", callback=name)
