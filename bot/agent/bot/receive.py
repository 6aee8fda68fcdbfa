"""What a bot does with the media it receives (its ``receive`` config).

:class:`Receiver` is the bot's ``EnxRtc(sink_factory=...)``: one sink per received stream
(``discard``, ``record`` into files, or ``frames``: decode and drop), and the bot's audio
output device (``bot.rtc.devices``): ``NONE`` discards received audio, ``FILE`` (only when
recording, and then the default) records it. It also turns :meth:`EnxRtc.stats` payloads into
``stream_stats`` log lines and media totals for the observer. With ``receive.quality`` every
sink is the quality probe's (``bot.agent.quality``) and ``stream_stats`` carries its scores.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bot.media import DiscardSink, EncodedSink, FrameSink, RecordSink
from bot.rtc import devices

from ..config import ReceiveConfig
from ..ops.observe import BotObserver
from ..quality import QualityProbe

Json = dict[str, Any]


class _AudioGate:
    """A sink that hands everything to ``inner`` but audio while the selected device is
    ``NONE`` (then received audio is discarded, as a headless bot without a file does)."""

    def __init__(self, inner: EncodedSink, receiver: Receiver, log: Any) -> None:
        self.inner = inner
        self._receiver = receiver
        self._log = log
        self.discarded_audio = 0
        self._created = time.monotonic()
        self._first: set[str] = set()

    def write(
        self, kind: Any, codec: str, data: bytes, timestamp: int, clock_rate: int, keyframe: bool
    ) -> None:
        if kind not in self._first:
            self._first.add(kind)
            ms = round((time.monotonic() - self._created) * 1000, 1)
            self._log.info("first_frame", kind=kind, codec=codec, ms=ms)
        if kind == "audio" and self._receiver.selected == devices.NONE:
            self.discarded_audio += 1
            return
        self.inner.write(kind, codec, data, timestamp, clock_rate, keyframe)

    def close(self) -> None:
        self.inner.close()
        if isinstance(self.inner, RecordSink):
            fields: Json = {"files": [str(p) for p in self.inner.files]}
            if self.inner.error is not None:
                fields["error"] = str(self.inner.error)
            self._log.info("recording_closed", **fields, written=self.inner.stats().get("written"))


class Receiver:
    """The bot's sink factory and audio output (see the module)."""

    def __init__(
        self,
        cfg: ReceiveConfig,
        log: Callable[[], Any],
        *,
        users: Callable[[], list[Json]] = list,
        events: BotObserver | None = None,
        bot: str = "",
    ) -> None:
        self.cfg = cfg
        self._log = log
        """The bot's logger as it is now (it gains ``room`` and ``client_id`` on joining)."""
        self.quality = (
            None
            if cfg.quality is None
            else QualityProbe(cfg.quality, log, users=users, events=events, bot=bot)
        )
        self._selected = devices.FILE if cfg.sink == "record" else devices.NONE
        self._totals_base = [0, 0, 0, 0, 0]
        self._legs: dict[str, tuple[int, int, int, int, int]] = {}

    # -- audio output (bot.rtc.devices.AudioOutput) ---------------------------------------------

    @property
    def devices(self) -> tuple[str, ...]:
        return (devices.NONE, devices.FILE) if self.cfg.sink == "record" else (devices.NONE,)

    @property
    def selected(self) -> str:
        return self._selected

    def select(self, device: str) -> bool:
        if device not in self.devices:
            return False
        if device != self._selected:
            self._log().info("audio_device_switched", device=device, previous=self._selected)
        self._selected = device
        return True

    # -- sinks -------------------------------------------------------------------------------------

    def __call__(self, info: Json) -> EncodedSink:
        sink = self.cfg.sink
        if sink == "discard" and self.quality is None:
            return DiscardSink()
        user = info.get("name") or info.get("clientId") or f"stream-{info.get('streamId')}"
        if self.quality is not None:
            return self.quality.sink(info, self._log())
        log = self._log().bind(stream_id=info.get("streamId"), user=user, user_id=info.get("clientId"))
        inner: EncodedSink
        if sink == "record":
            kinds = tuple(k for k in ("audio", "video") if info.get(k))
            inner = RecordSink(
                self.cfg.record_dir,
                str(user),
                rotate_s=self.cfg.rotate_seconds,
                kinds=kinds or ("audio", "video"),  # type: ignore[arg-type]
                request_keyframe=info.get("request_keyframe"),
                log=log,
            )
            log.info("recording_started", directory=str(self.cfg.record_dir), kinds=list(kinds))
        else:
            inner = FrameSink(lambda _frame: None, request_keyframe=info.get("request_keyframe"))
        return _AudioGate(inner, self, log)

    # -- statistics --------------------------------------------------------------------------------

    def log_stats(self, payload: Json) -> None:
        """One ``stream_stats`` line per received stream."""
        for sub in payload.get("subscriptions") or []:
            fields: Json = {}
            for kind in ("video", "audio"):
                k = sub.get(kind)
                if not isinstance(k, dict):
                    continue
                fields[f"{kind}_bitrate_kbps"] = _round(k.get("bitrateKbps"), 1)
                fields[f"{kind}_packets_received"] = k.get("packetsReceived")
                fields[f"{kind}_packets_lost"] = k.get("packetsLost")
                fields[f"{kind}_fraction_lost"] = _round(k.get("fractionLost"), 4)
                fields[f"{kind}_jitter_ms"] = _ms(k.get("jitter"))
                fields[f"{kind}_rtt_ms"] = _ms(k.get("roundTripTime"))
                if kind == "video":
                    fields["video_fps"] = _round(k.get("framesPerSecond"), 1)
                    fields["video_frames"] = k.get("frames")
                    fields["video_keyframes"] = k.get("keyframes")
            if self.quality is not None:
                fields.update(self.quality.on_stats(sub))
            self._log().info(
                "stream_stats",
                stream_id=sub.get("streamId"),
                user=sub.get("name"),
                user_id=sub.get("clientId"),
                state=sub.get("state"),
                interval_s=_round(sub.get("interval"), 2),
                **fields,
            )

    def totals(self, payload: Json) -> tuple[int, int, int, int, int]:
        """``(sent_bytes, sent_packets, recv_bytes, recv_packets, lost)`` since the bot joined:
        a leg that ended (stream gone, a rejoin's new publish leg) keeps counting in the total."""
        now: dict[str, tuple[int, int, int, int, int]] = {}
        pub = payload.get("publish")
        if isinstance(pub, dict):
            lost = sum(_int(pub.get(k, {}).get("packetsLost")) for k in ("audio", "video") if pub.get(k))
            now[f"publish:{pub.get('streamId')}"] = (
                sum(_int(v) for v in (pub.get("bytesSent") or {}).values()),
                sum(_int(v) for v in (pub.get("packetsSent") or {}).values()),
                0,
                0,
                lost,
            )
        for sub in payload.get("subscriptions") or []:
            kinds = [sub[k] for k in ("audio", "video") if isinstance(sub.get(k), dict)]
            now[f"subscribe:{sub.get('streamId')}"] = (
                0,
                0,
                sum(_int(k.get("bytesReceived")) for k in kinds),
                sum(_int(k.get("packetsReceived")) for k in kinds),
                sum(_int(k.get("packetsLost")) for k in kinds),
            )
        for key in set(self._legs) - set(now):
            gone = self._legs.pop(key)
            self._totals_base = [a + b for a, b in zip(self._totals_base, gone, strict=True)]
        for key, leg in now.items():
            before = self._legs.get(key)
            if before is not None and any(b < a for a, b in zip(before, leg, strict=True)):
                # the same stream on a new leg (a rejoin): its counters start again
                self._totals_base = [a + b for a, b in zip(self._totals_base, before, strict=True)]
        self._legs.update(now)
        out = list(self._totals_base)
        for leg in now.values():
            out = [a + b for a, b in zip(out, leg, strict=True)]
        return out[0], out[1], out[2], out[3], out[4]


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _round(value: object, digits: int) -> float | None:
    return round(value, digits) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _ms(seconds: object) -> float | None:
    s = _round(seconds, 6)
    return None if s is None else round(s * 1000, 1)
