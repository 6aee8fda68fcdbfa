"""Bandwidth alerts from what the media legs really carry (PROTOCOL.md section 7). Pure.

Wire payloads the server sends (``bot.rtc`` maps them; all are ``bandwidthEvents {id, msg}``):

**A publisher's uplink is too poor** (judged on its publish leg):

- to that participant::

    {"id": "publisher-bw", "msg": {"message": "SubscriberBandWidth", "bandwidth": <kbps>}}

- to every other participant, one event per announced stream of it::

    {"id": "bw-alert", "msg": [{"streamId": <id>, "bw": "low", "type": "publisher", "name": <name>}]}

**It recovered** (a full window healthy):

- to that participant (the alert again, with ``restored: true``; ``bandwidth`` is what the
  window carried)::

    {"id": "publisher-bw", "msg": {"message": "SubscriberBandWidth", "bandwidth": <kbps>,
                                   "restored": true}}

- to the others: the same ``bw-alert`` entry with ``"bw": "restored"``.

**A subscriber's downlink is too poor** (judged on a subscribe leg, from the RTCP receiver
reports the subscriber sends), to that subscriber only::

    {"id": "bw-alert", "msg": [{"streamId": <id>, "bw": "low"|"restored", "type": "subscriber",
                                "name": <publisher's stream name>}]}

``<kbps>`` is the payload bitrate (all kinds) the server received over the last
``recent_s`` (1 s; for an alert: what the link carries now) or, for a restore, over the whole
window; rounded, at least 1. The emulator's ``POST /emulator/rooms/{room_id}/bandwidth`` sends exactly these
events through the same code path.

What is measured (per publish leg, by taps on the server's own aiortc receivers)
-----------------------------------------------------------------------------------
Every ``tick_s`` each leg's counters are sampled; a verdict covers the last ``window_s``:

- **loss**: from RTP sequence numbers, per SSRC: packets expected (sequence span) against
  distinct packets received; duplicates are ignored and a late retransmission counts as
  received. The worst kind that expected at least ``min_packets`` counts. Audio carries no
  retransmissions in aiortc, so audio loss is the raw network loss.
- **queue delay**: transit = arrival time - RTP timestamp (per SSRC, clock rate of the kind);
  the lowest transit in the window minus the lowest over the last ``baseline_s``. A standing
  queue in front of a link that is too slow shows here before anything is dropped. Taking the
  window's minimum ignores bursts and event-loop hiccups.
- **delivery**: video bitrate received against what the publisher says it sent, from its RTCP
  sender reports (octet counts over the sender's NTP clock). A link slower than the sender
  gives a ratio under 1 while its queue grows. This is how "video bitrate below what the
  publisher should send" is judged: against the publisher's *actual* encoder output, not its
  configured bitrate, because a static picture encodes to a few kbps whatever the target
  (aiortc's VP8 starts at 500 kbps and moves between 250 and 1500 kbps with REMB).
- **jitter**: RFC 3550 interarrival jitter, worst kind.

Low when any of: loss >= ``loss_low_pct``, queue delay >= ``delay_low_ms``, delivery <=
``delivery_low`` (only judged while the publisher sends at least ``delivery_min_kbps`` of
video), jitter >= ``jitter_low_ms``. Restored when a full window after the alert is under every
restore threshold (``loss_restore_pct``, ``delay_restore_ms``, ``delivery_restore``,
``jitter_restore_ms``). No verdict while a window expected fewer than ``min_packets``
packets (nothing flows: muted, or the link is cut entirely; ICE reports the latter).

**Restarts.** A kind whose packets resume after ``restart_gap_s`` (0.5 s) without any, or
that the room hears unmuted (``user-video-unmuted``), warms up for ``warmup_s`` (2 s): its queue
delay, jitter and delivery are not judged, loss is. A browser's sender reports go on during a
mute stamped with the wall clock (aiortc's carry the last packet's time), so a window spanning
the pause would read the pause as a slow link; a restarting encoder opens with a keyframe burst
through its pacer; and a sender whose RTP clock follows its frames shifts the transit by the
pause. So a restart forgets the sender reports, counts no jitter across the pause, and re-learns
the queue baseline when the transit jumped; jitter starts afresh once warm.

Defaults (:class:`BandwidthSettings`): window 2.5 s, tick 0.5 s, loss 5 % / 2 %, queue delay
400 ms / 150 ms, delivery 0.6 / 0.85 (from 30 kbps of video), jitter 200 ms / 100 ms, at least
20 packets per window, delay baseline over 60 s, an alert's bandwidth over the last 1 s.

Limits, honestly
----------------
- Once the participant has fallen back to audio only, no video arrives: the restore is then
  judged on audio alone (loss, queue delay, jitter). That says "the link carries audio cleanly
  again", not "the link would now carry the video": a link that is merely slow (no loss, no
  queue at audio rates) restores although video would congest it again. A lossy link (the
  tests throttle with netem ``rate`` *and* ``loss``) restores only once the loss is gone.
- The queue-delay baseline is the lowest transit of the last 60 s: a congestion that lasts
  longer raises it, and the delay signal then reads normal (loss and delivery still count).
  Clock drift between the peers is ignored (about 0.4 ms per minute at 100 ppm).
- Delivery relies on the publisher's RTCP sender reports (aiortc and browsers send them every
  0.5-1.5 s); without two of them in a window it is not judged.
- Subscribe legs are judged only from the subscriber's receiver reports (loss and jitter):
  the server's sender sees no arrival times.
- A total outage (nothing arrives) gives no verdict: ICE consent (about 30 s) fails the leg.
"""

from __future__ import annotations

from .detector import Detector, WindowStats
from .meter import KindWindow, RtpMeter, combine
from .monitors import PublishMonitor, SubscribeMonitor
from .payloads import BW_ALERT_ID, PUBLISHER_BW_ID, SUBSCRIBER_BANDWIDTH, publisher_event, stream_event
from .settings import BandwidthSettings, Json, Verdict

__all__ = [
    "BW_ALERT_ID",
    "PUBLISHER_BW_ID",
    "SUBSCRIBER_BANDWIDTH",
    "BandwidthSettings",
    "Detector",
    "Json",
    "KindWindow",
    "PublishMonitor",
    "RtpMeter",
    "SubscribeMonitor",
    "Verdict",
    "WindowStats",
    "combine",
    "publisher_event",
    "stream_event",
]
