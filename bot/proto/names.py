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
    "onDataStreamToRoom": "data_received",
    # moderation (docs/protocol/moderation.md)
    "room-disconnected": "room_disconnected",
    "room-muted": "received_hard_mute",
    "room-unmuted": "received_hard_unmute",
    "hardmute-user-audio": "received_hard_mute_audio",
    "hardunmute-user-audio": "received_hard_unmute_audio",
    "hardmute-user-video": "received_hard_mute_video",
    "hardunmute-user-video": "received_hard_unmute_video",
    "room-record-on": "room_recording_on",
    "room-record-off": "room_recording_off",
    # waiting room, room duration, lecture mode
    "room-awaited": "room_awaited",
    "user-awaited": "user_awaited",
    "room-allowed": "room_allowed",
    "conference-remaining-duration": "conference_remaining_duration",
    "floor-requested": "floor_request_received",
    "floor-granted": "granted_floor_request",
    "floor-denied": "denied_floor_request",
    "floor-released": "released_floor_request",
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
    "onMessageReceived": (
        "on_message_received",
        "dict: {type: chat, message, broadcast, sender, senderId, receipients?, timestamp}",
    ),
    "onUserDataReceived": ("on_user_data_received", "dict: as onMessageReceived, type user_data"),
    "onAcknowledgedSendData": (
        "on_acknowledged_send_data",
        "dict: the ack of each send_message / send_user_data: {result: 0} or {result: code, msg}",
    ),
    # moderation (bot/rtc/moderation.py, docs/protocol/moderation.md)
    "onAudioEvent": ("on_audio_event", 'dict: {result: 0, msg: "Audio Off" | "Audio On"} (muteSelfAudio)'),
    "onVideoEvent": ("on_video_event", 'dict: {result: 0, msg: "Video Off" | "Video On"} (muteSelfVideo)'),
    "onReceivedHardMute": ("on_received_hard_mute", "dict: {moderator, msg, status} (room-muted)"),
    "onReceivedHardUnMute": ("on_received_hard_unmute", "dict: {moderator, msg, status} (room-unmuted)"),
    "onReceivedHardMuteAudio": ("on_received_hard_mute_audio", "dict: {clientId, moderator, msg}"),
    "onReceivedHardUnMuteAudio": ("on_received_hard_unmute_audio", "dict: {clientId, moderator, msg}"),
    "onReceivedHardMuteVideo": ("on_received_hard_mute_video", "dict: {clientId, moderator, msg}"),
    "onReceivedHardUnMuteVideo": ("on_received_hard_unmute_video", "dict: {clientId, moderator, msg}"),
    "onRoomRecordingOn": ("on_room_recording_on", "dict: {moderatorId, msg} (room-record-on)"),
    "onRoomRecordingOff": ("on_room_recording_off", "dict: {moderatorId, msg} (room-record-off)"),
    "onAckDropUser": ("on_ack_drop_user", "dict: {result, msg, clientIds, notFound} (moderator)"),
    "onHardMuted": ("on_hard_muted", "dict: {result, msg} (moderator's ack of hardMute)"),
    "onHardUnMuted": ("on_hard_unmuted", "dict: {result, msg} (moderator's ack of hardUnMute)"),
    "onHardMutedAudio": ("on_hard_muted_audio", "dict: {result, msg, clientId}"),
    "onHardUnMutedAudio": ("on_hard_unmuted_audio", "dict: {result, msg, clientId}"),
    "onHardMutedVideo": ("on_hard_muted_video", "dict: {result, msg, clientId}"),
    "onHardUnMutedVideo": ("on_hard_unmuted_video", "dict: {result, msg, clientId}"),
    "onStartRecordingEvent": ("on_start_recording_event", "dict: {result, msg} (moderator)"),
    "onStopRecordingEvent": ("on_stop_recording_event", "dict: {result, msg} (moderator)"),
    # waiting room, room duration, lecture mode (bot/rtc/room_control.py)
    "onRoomAwaited": ("on_room_awaited", 'dict: {event_type: "knock"|"wait_for_moderator"}; join_room waits'),
    "onUserAwaited": ("on_user_awaited", "dict: the waiting user (moderators)"),
    "onAckForApproveAwaitedUser": ("on_ack_for_approve_awaited_user", "dict: {result, msg, clientId}"),
    "onAckForDenyAwaitedUser": ("on_ack_for_deny_awaited_user", "dict: {result, msg, clientId}"),
    "onConferenceRemainingDuration": (
        "on_conference_remaining_duration",
        "dict: {timeLeft} (minutes) before the room ends",
    ),
    "onFloorRequested": ("on_floor_requested", "dict: {result, msg}: the ack of request_floor"),
    "onFloorRequestReceived": ("on_floor_request_received", "dict: {clientId, name} (moderators)"),
    "onProcessFloorRequested": (
        "on_process_floor_requested",
        "dict: {result, msg, clientId, action}: the ack of grant/deny/release_floor",
    ),
    "onGrantedFloorRequest": (
        "on_granted_floor_request",
        "dict: {clientId, name, moderatorId}; publishing starts",
    ),
    "onDeniedFloorRequest": ("on_denied_floor_request", "dict: {clientId, name, moderatorId}"),
    "onReleasedFloorRequest": (
        "on_released_floor_request",
        "dict: {clientId, name, moderatorId}; our stream is gone",
    ),
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
    "sendMessage": "send_message",
    "sendUserData": "send_user_data",
    # moderation (moderator role)
    "dropUser": "drop_user",
    "hardMute": "hard_mute",
    "hardUnMute": "hard_unmute",
    "hardMuteUserAudio": "hard_mute_user_audio",
    "hardUnMuteUserAudio": "hard_unmute_user_audio",
    "hardMuteUserVideo": "hard_mute_user_video",
    "hardUnMuteUserVideo": "hard_unmute_user_video",
    "startRecord": "start_record",
    "stopRecord": "stop_record",
    "approveAwaitedUser": "approve_awaited_user",
    "denyAwaitedUser": "deny_awaited_user",
    "requestFloor": "request_floor",
    "grantFloor": "grant_floor",
    "denyFloor": "deny_floor",
    "releaseFloor": "release_floor",
    "setTalkerCount": "set_talker_count",
    "getTalkerCount": "get_talker_count",
    "pinUsers": "pin_users",
    "unpinUsers": "unpin_users",
}
