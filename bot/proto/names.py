"""Wire names, Python names and the Flutter names of the seed, in one table.

The README's EnxRtc mapping table is generated from :data:`FLUTTER_CALLBACKS` and
:data:`FLUTTER_METHODS` (tests check that every entry exists on ``EnxRtc``).
"""

from __future__ import annotations

# Socket.IO event name (server -> client) -> log event / callback stem
SERVER_EVENT_NAMES: dict[str, str] = {
    "room-connected": "room_connected",
    "user-connected": "user_connected",
    "user-disconnected": "user_disconnected",
    "onAddStream": "stream_added",
    "onRemoveStream": "stream_removed",
    "media_engine_connecting": "media_engine_connecting",
    "user-audio-muted": "remote_audio_muted",
    "user-audio-unmuted": "remote_audio_unmuted",
    "user-video-muted": "remote_video_muted",
    "user-video-unmuted": "remote_video_unmuted",
    "bandwidthEvents": "bandwidth_event",
    "active-talkers-updated": "active_talker_list",
}

# Flutter callback -> (EnxRtc attribute, what the payload is)
FLUTTER_CALLBACKS: dict[str, tuple[str, str]] = {
    "onRoomConnected": ("on_room_connected", "dict: {streams, users, room, me} (room-connected)"),
    "onRoomError": ("on_room_error", "dict: {result: code, msg}"),
    "onRoomDisConnected": ("on_room_disconnected", "dict: {cause: code, msg}"),
    "onUserConnected": ("on_user_connected", "dict: the user (clientId, name, role, ...)"),
    "onUserDisConnected": ("on_user_disconnected", "dict: {clientId, name, role, permissions}"),
    "onPublishedStream": ("on_published_stream", 'dict: {result: "0", msg, streamId}'),
    "onUnPublishedStream": ("on_unpublished_stream", 'dict: {result: "0", msg, streamId}'),
    "onStreamAdded": ("on_stream_added", "dict: the stream (id, clientId, audio, video, ...)"),
    "onStreamRemoved": ("on_stream_removed", "dict: {id}"),
    "onSubscribedStream": (
        "on_subscribed_stream",
        'dict: {result: "0", msg, streamId, clientId, name, audio, video, tapped}: the leg is ready',
    ),
    "onConnectionLost": ("on_connection_lost", "dict: {cause: 1163, msg}; reconnection starts"),
    "onConnectionInterrupted": (
        "on_connection_interrupted",
        "dict: {cause: 1163, msg}; the local network path changed; reconnection starts",
    ),
    "onReconnect": ("on_reconnect", "dict: {attempt, attempts, msg} before each rejoin attempt"),
    "onUserReconnectSuccess": (
        "on_user_reconnect_success",
        "dict: as onRoomConnected, plus attempt, elapsed_ms, streamId (the new stream)",
    ),
    "onRoomBandwidthAlert": ("on_room_bandwidth_alert", "dict: {message: SubscriberBandWidth, bandwidth}"),
    "onBandWidthUpdated": ("on_bandwidth_updated", "dict: {id, msg} (bw-alert list, PublisherBandwidth)"),
    "onSetTalkerCount": ("on_set_talker_count", "dict: {result: 0, numTalkers} (setTalkerCount)"),
    "onGetTalkerCount": ("on_get_talker_count", "dict: {result: 0, numTalkers} (getTalkerCount)"),
}

# Flutter method -> EnxRtc method
FLUTTER_METHODS: dict[str, str] = {
    "joinRoom": "join_room",
    "subscribe": "subscribe",
    "disconnect": "disconnect",
    "getDevices": "get_devices",
    "getSelectedDevice": "get_selected_device",
    "switchMediaDevice": "switch_media_device",
    "muteSelfAudio": "mute_self_audio",
    "muteSelfVideo": "mute_self_video",
    "setAudioOnlyMode": "set_audio_only_mode",
    "getUserList": "get_user_list",
    "whoAmI": "who_am_i",
    "getRoomId": "get_room_id",
    "getClientId": "get_client_id",
    "getClientName": "get_client_name",
    "getRole": "get_role",
    "getMaxTalkers": "get_max_talkers",
    "setTalkerCount": "set_talker_count",
    "getTalkerCount": "get_talker_count",
    "pinUsers": "pin_users",
    "unpinUsers": "unpin_users",
}
