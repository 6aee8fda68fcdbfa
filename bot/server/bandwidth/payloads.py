"""The ``bandwidthEvents`` payloads the server sends (see the package docstring)."""

from __future__ import annotations

from typing import Literal

from .settings import Json, Verdict

PUBLISHER_BW_ID = "publisher-bw"
BW_ALERT_ID = "bw-alert"
SUBSCRIBER_BANDWIDTH = "SubscriberBandWidth"


def publisher_event(kbps: float, *, restored: bool = False) -> Json:
    """``bandwidthEvents`` payload for the participant whose uplink is judged."""
    msg: Json = {"message": SUBSCRIBER_BANDWIDTH, "bandwidth": max(1, round(kbps))}
    if restored:
        msg["restored"] = True
    return {"id": PUBLISHER_BW_ID, "msg": msg}


def stream_event(
    stream_id: int, name: str, verdict: Verdict, kind: Literal["publisher", "subscriber"]
) -> Json:
    """``bandwidthEvents`` payload naming one stream as low / restored."""
    bw = "low" if verdict == "low" else "restored"
    return {"id": BW_ALERT_ID, "msg": [{"streamId": stream_id, "bw": bw, "type": kind, "name": name}]}
