"""What the room says about bandwidth (PROTOCOL.md section 7), turned into what to do. Pure.

``bandwidthEvents {id, msg}`` (and the 1.x ``onSelfBandwidthAlert``/``onBandwidthAlert``, which
``bot.proto`` decodes to the same :class:`~bot.proto.BandwidthEvent`) go in;
:meth:`BandwidthState.apply` returns the callbacks to fire and the changes to make to our own
video, so the decisions are tested without a network and the SDK only carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.proto import BandwidthEvent

from .callbacks import CallbackName, Json

SUBSCRIBER_BANDWIDTH = "SubscriberBandWidth"
PUBLISHER_BANDWIDTH = "PublisherBandwidth"
STOP_VIDEO_KBPS = 1
"""``PublisherBandwidth`` with this bandwidth means: stop sending video (PROTOCOL.md 7)."""


@dataclass(frozen=True)
class Notify:
    """Fire ``callback`` with ``payload``."""

    callback: CallbackName
    payload: Json


@dataclass(frozen=True)
class CapVideo:
    """Cap our video encoder at ``kbps`` (None: no cap)."""

    kbps: int | None


@dataclass(frozen=True)
class HoldVideo:
    """Stop (``hold``) or resume sending video because of the room's bandwidth verdict."""

    hold: bool


Action = Notify | CapVideo | HoldVideo


def is_restore(msg: dict[str, Any]) -> bool:
    """Whether a ``publisher-bw`` message lifts an earlier alert: ``restored: true``, a
    ``bw``/``status`` of ``restored``, or a bandwidth of 0 (no limit any more)."""
    if msg.get("restored") is True:
        return True
    for key in ("bw", "status", "state"):
        value = msg.get(key)
        if isinstance(value, str) and value.lower() == "restored":
            return True
    bandwidth = msg.get("bandwidth")
    return isinstance(bandwidth, int | float) and not isinstance(bandwidth, bool) and bandwidth == 0


def _kbps(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if number > 0 else None


@dataclass
class BandwidthState:
    """The room's bandwidth verdicts so far: the subscriber alert, which remote streams are
    low, the cap on our video and whether the room stopped it."""

    room_alert: bool = False
    low_streams: dict[Any, Json] = field(default_factory=dict)
    cap_kbps: int | None = None
    video_stopped: bool = False

    def apply(self, event: BandwidthEvent) -> list[Action]:
        msg = event.msg
        if event.id == "publisher-bw" and isinstance(msg, dict):
            message = msg.get("message")
            if message == SUBSCRIBER_BANDWIDTH:
                return self._subscriber(dict(msg))
            if message == PUBLISHER_BANDWIDTH:
                return [*self._publisher(dict(msg)), Notify("on_bandwidth_updated", event.to_payload())]
        if event.id == "bw-alert" and isinstance(msg, list):
            return self._streams([e for e in msg if isinstance(e, dict)], event)
        return [Notify("on_bandwidth_updated", event.to_payload())]

    def _subscriber(self, msg: Json) -> list[Action]:
        """Our downlink cannot carry the room's active video (Flutter ``onRoomBandwidthAlert``)."""
        if is_restore(msg):
            if not self.room_alert:
                return []
            self.room_alert = False
            return [Notify("on_room_bandwidth_restored", msg)]
        self.room_alert = True
        return [Notify("on_room_bandwidth_alert", msg)]

    def _publisher(self, msg: Json) -> list[Action]:
        """Our uplink: cap the video at the given kbps; 1 stops it; a restore lifts both."""
        actions: list[Action] = []
        kbps = None if is_restore(msg) else _kbps(msg.get("bandwidth"))
        stop = kbps == STOP_VIDEO_KBPS
        if stop != self.video_stopped:
            self.video_stopped = stop
            actions.append(HoldVideo(stop))
        cap = None if stop else kbps
        if not stop and cap != self.cap_kbps:
            self.cap_kbps = cap
            actions.append(CapVideo(cap))
        return actions

    def _streams(self, entries: list[Json], event: BandwidthEvent) -> list[Action]:
        """``bw-alert``: per remote stream ``low``/``restored``; when the last low stream is
        restored, the room as a whole is restored."""
        was_low = bool(self.low_streams)
        for entry in entries:
            key = entry.get("streamId")
            if str(entry.get("bw", "")).lower() == "restored":
                self.low_streams.pop(key, None)
            else:
                self.low_streams[key] = entry
        actions: list[Action] = [Notify("on_bandwidth_updated", {"id": event.id, "msg": entries})]
        if was_low and not self.low_streams:
            actions.append(Notify("on_room_bandwidth_restored", {"id": event.id, "msg": entries}))
        return actions
