"""Synthetic sources: a moving test pattern with a readable frame counter, and a tone.

Both are generated with numpy from tables built once in the constructor, so a frame costs a few
array copies: a bot process runs dozens of these next to the encoders. The counter is a big
seven-segment number so that a person can read it in a browser and a receiver can read it back
with :func:`read_frame_counter`, even after lossy VP8 coding. Both have fault controls for
tests and demos of monitoring bots, set at any time from the event loop: ``paused`` (frames
stop, the stream stays published), ``black`` / ``constant`` (video) and ``silent`` (audio).
"""

from __future__ import annotations

import fractions
import math
import zlib
from dataclasses import dataclass

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..errors import MediaSourceError
from .clock import Pacer

VIDEO_CLOCK_RATE = 90000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)

COUNTER_DIGITS = 6
"""The counter shows the frame index modulo 10**6 (18 hours at 15 fps)."""

_BLACK = 16  # video-range luma: what a decoder gives back unchanged
_WHITE = 235
_NEUTRAL_CHROMA = 128

# Segment order a..g; each digit is the set of its lit segments.
_SEGMENTS = "abcdefg"
_DIGIT_SEGMENTS = ("abcdef", "bc", "abdeg", "abcdg", "bcfg", "acdfg", "acdefg", "abc", "abcdefg", "abcdfg")
_DIGIT_MASKS = tuple(sum(1 << _SEGMENTS.index(s) for s in segs) for segs in _DIGIT_SEGMENTS)
_MASK_TO_DIGIT = {mask: digit for digit, mask in enumerate(_DIGIT_MASKS)}

Rect = tuple[int, int, int, int]  # y0, y1, x0, x1


@dataclass(frozen=True)
class _CounterLayout:
    """Where the counter sits in a frame; derived from the frame size alone.

    Sender and receiver compute it independently, so nothing but the pixels travels.
    """

    box: Rect
    digit_origins: tuple[tuple[int, int], ...]
    digit_h: int
    digit_w: int
    draw: tuple[Rect, ...]  # per segment, relative to the digit origin
    sample: tuple[Rect, ...]  # per segment: the segment's core, away from blurred edges
    background: tuple[Rect, ...]  # absolute: box padding that is always dark


def _counter_layout(width: int, height: int) -> _CounterLayout | None:
    """Lay the counter out in the top-left corner; None if the frame is too small for it."""
    digit_h = round(height * 0.16)
    margin = max(2, round(min(width, height) * 0.03)) & ~1
    while digit_h >= 14:
        t = max(2, round(digit_h / 7))
        digit_w = round(digit_h * 0.6)
        gap = 2 * t
        pad = 2 * t
        box_w = 2 * pad + COUNTER_DIGITS * digit_w + (COUNTER_DIGITS - 1) * gap
        box_h = 2 * pad + digit_h
        if margin + box_w <= width - margin and margin + box_h <= height - margin:
            break
        digit_h -= 2
    else:
        return None
    # Round the box out to even coordinates so it covers whole chroma samples.
    y0, x0 = margin, margin
    y1 = (y0 + box_h + 1) & ~1
    x1 = (x0 + box_w + 1) & ~1
    origins = tuple((y0 + pad, x0 + pad + i * (digit_w + gap)) for i in range(COUNTER_DIGITS))
    mid = digit_h // 2
    h, w = digit_h, digit_w
    draw: tuple[Rect, ...] = (
        (0, t, 0, w),  # a
        (0, mid, w - t, w),  # b
        (mid, h, w - t, w),  # c
        (h - t, h, 0, w),  # d
        (mid, h, 0, t),  # e
        (0, mid, 0, t),  # f
        (mid - t // 2, mid - t // 2 + t, 0, w),  # g
    )
    q = t // 4  # trim off the edges that compression smears
    hx0, hx1 = t + q, w - t - q
    upper = (t + q, mid - t // 2 - q)
    lower = (mid - t // 2 + t + q, h - t - q)
    sample: tuple[Rect, ...] = (
        (q, t - q, hx0, hx1),
        (*upper, w - t + q, w - q),
        (*lower, w - t + q, w - q),
        (h - t + q, h - q, hx0, hx1),
        (*lower, q, t - q),
        (*upper, q, t - q),
        (mid - t // 2 + q, mid - t // 2 + t - q, hx0, hx1),
    )
    background = (
        (y0 + q, y1 - q, x0 + q, x0 + pad - q),  # left padding
        (y0 + q, y1 - q, x1 - pad + q, x1 - q),  # right padding
    )
    return _CounterLayout(
        box=(y0, y1, x0, x1),
        digit_origins=origins,
        digit_h=digit_h,
        digit_w=digit_w,
        draw=draw,
        sample=sample,
        background=background,
    )


def _luma_plane(frame: av.VideoFrame | np.ndarray) -> np.ndarray:
    if isinstance(frame, np.ndarray):
        if frame.ndim != 2:
            raise TypeError("read_frame_counter wants a 2-D luma (Y) plane or an av.VideoFrame")
        return frame
    if frame.format.name == "gray":
        return frame.to_ndarray()
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    return frame.to_ndarray()[: frame.height]


def read_frame_counter(frame: av.VideoFrame | np.ndarray) -> int | None:
    """Read back the counter drawn by :class:`SyntheticVideoTrack`, or None if there is none.

    Takes a decoded frame or its luma plane, at the size it was sent. Each segment is judged by
    the mean of its core against the box's dark padding, which survives compression noise; a
    digit whose lit segments spell no digit makes the whole read fail rather than guess.
    """
    y = _luma_plane(frame)
    layout = _counter_layout(y.shape[1], y.shape[0])
    if layout is None:
        return None
    bg = float(np.mean([y[r0:r1, c0:c1].mean() for r0, r1, c0, c1 in layout.background]))
    means = np.array(
        [
            [y[oy + r0 : oy + r1, ox + c0 : ox + c1].mean() for r0, r1, c0, c1 in layout.sample]
            for oy, ox in layout.digit_origins
        ]
    )
    high = float(means.max())
    if bg > 80 or high - bg < 60:
        return None  # no dark box with bright segments here
    lit = means > (bg + high) / 2
    value = 0
    for row in lit:
        mask = int(sum(1 << i for i, on in enumerate(row) if on))
        digit = _MASK_TO_DIGIT.get(mask)
        if digit is None:
            return None
        value = value * 10 + digit
    return value


def _check_video_size(width: int, height: int, fps: float) -> None:
    if width % 2 or height % 2 or not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise MediaSourceError(
            f"video size {width}x{height} is invalid: width and height must be even numbers "
            "between 16 and 4096; check media.width and media.height in the config"
        )
    if not (0 < fps <= 120):
        raise MediaSourceError(
            f"video frame rate {fps} is invalid: use a rate above 0 and at most 120; "
            "check media.fps in the config"
        )
    if _counter_layout(width, height) is None:
        raise MediaSourceError(
            f"video size {width}x{height} is too small to draw the frame counter: "
            "use at least 160x90; check media.width and media.height in the config"
        )


class SyntheticVideoTrack(MediaStreamTrack):
    """A scrolling colour-bar pattern with the frame index drawn on it, paced in real time.

    Frame ``n`` shows ``n`` (modulo 10**6) and has ``pts = n * 90000 / fps``, so a receiver can
    count losses and measure latency from the pixels alone. ``label`` tints the pattern, so
    several bots in one room can be told apart at a glance.
    """

    kind = "video"

    def __init__(self, width: int = 640, height: int = 360, fps: float = 15.0, label: str = "") -> None:
        _check_video_size(width, height, fps)
        super().__init__()
        self.width = width
        self.height = height
        self.fps = float(fps)
        self.label = label
        self.frames_sent = 0
        self.paused = False
        """Fault control for tests and demos: no frame is produced (the stream stays published,
        the media clock runs on: frames resume with the timestamps they would have had)."""
        self.black = False
        """Fault control: every frame is black (video-range luma 16, neutral chroma)."""
        self.constant: int | None = None
        """Fault control: every frame shows frame ``constant`` (a publisher stuck on one image)."""
        self._pacer = Pacer()
        layout = _counter_layout(width, height)
        assert layout is not None  # checked above
        self._layout = layout
        self._y_ext, self._u_ext, self._v_ext = self._pattern(width, height, label)
        # One full scroll every four seconds; even steps keep luma and chroma aligned.
        self._step = max(2, round(width / (self.fps * 4))) & ~1
        self._glyphs = self._draw_glyphs(layout)
        self._buf = np.empty((height * 3 // 2, width), dtype=np.uint8)
        flat = self._buf.reshape(-1)
        quarter = width * height // 4
        self._y = self._buf[:height]
        self._u = flat[width * height : width * height + quarter].reshape(height // 2, width // 2)
        self._v = flat[width * height + quarter :].reshape(height // 2, width // 2)

    @staticmethod
    def _pattern(width: int, height: int, label: str) -> tuple[np.ndarray, ...]:
        """One period of the pattern, repeated so any scroll offset is a plain slice."""
        x = np.arange(width)
        # Seven 75% colour bars (Y, U, V), softened by a diagonal-looking luma wave.
        bars = np.array(
            [
                [180, 128, 128],
                [162, 44, 142],
                [131, 156, 44],
                [112, 72, 58],
                [84, 184, 198],
                [65, 100, 212],
                [35, 212, 114],
            ],
            dtype=np.float64,
        )
        idx = (x * len(bars)) // width
        wave = 25 * np.sin(2 * math.pi * 3 * x / width)
        rows = np.arange(height)[:, None]
        y = bars[idx, 0][None, :] + wave[None, :] + 30 * (rows / height - 0.5)
        tint_u = tint_v = 0.0
        if label:
            crc = zlib.crc32(label.encode())
            tint_u, tint_v = (crc & 0xFF) / 255 * 60 - 30, ((crc >> 8) & 0xFF) / 255 * 60 - 30
        cx = x[::2]
        u = np.broadcast_to(bars[idx[cx], 1] + tint_u, (height // 2, width // 2))
        v = np.broadcast_to(bars[idx[cx], 2] + tint_v, (height // 2, width // 2))

        def ext(plane: np.ndarray) -> np.ndarray:
            p = np.clip(plane, _BLACK, _WHITE).astype(np.uint8)
            return np.ascontiguousarray(np.concatenate([p, p], axis=1))

        return ext(y), ext(u), ext(v)

    @staticmethod
    def _draw_glyphs(layout: _CounterLayout) -> np.ndarray:
        glyphs = np.full((10, layout.digit_h, layout.digit_w), _BLACK, dtype=np.uint8)
        for digit, mask in enumerate(_DIGIT_MASKS):
            for i, (r0, r1, c0, c1) in enumerate(layout.draw):
                if mask & (1 << i):
                    glyphs[digit, r0:r1, c0:c1] = _WHITE
        return glyphs

    def make_frame(self, index: int) -> av.VideoFrame:
        """Render frame ``index`` without pacing (for tests and pre-encoding)."""
        w = self.width
        off = (index * self._step) % w
        self._y[:] = self._y_ext[:, off : off + w]
        self._u[:] = self._u_ext[:, off // 2 : off // 2 + w // 2]
        self._v[:] = self._v_ext[:, off // 2 : off // 2 + w // 2]
        y0, y1, x0, x1 = self._layout.box
        self._y[y0:y1, x0:x1] = _BLACK
        self._u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = _NEUTRAL_CHROMA
        self._v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = _NEUTRAL_CHROMA
        dh, dw = self._layout.digit_h, self._layout.digit_w
        value = index % 10**COUNTER_DIGITS
        for i, (oy, ox) in enumerate(self._layout.digit_origins):
            digit = value // 10 ** (COUNTER_DIGITS - 1 - i) % 10
            self._y[oy : oy + dh, ox : ox + dw] = self._glyphs[digit]
        frame = av.VideoFrame.from_ndarray(self._buf, format="yuv420p")
        frame.pts = round(index * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = VIDEO_TIME_BASE
        return frame

    def _black_frame(self, index: int) -> av.VideoFrame:
        self._y[:] = _BLACK
        self._u[:] = _NEUTRAL_CHROMA
        self._v[:] = _NEUTRAL_CHROMA
        frame = av.VideoFrame.from_ndarray(self._buf, format="yuv420p")
        frame.pts = round(index * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = VIDEO_TIME_BASE
        return frame

    async def recv(self) -> av.VideoFrame:
        """The next frame, when it is due (while ``paused``, the due frames are skipped)."""
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            index = self.frames_sent
            await self._pacer.wait(index / self.fps)
            if self.readyState != "live":
                raise MediaStreamError  # stopped while we slept
            self.frames_sent += 1
            if not self.paused:
                break
        if self.black:
            return self._black_frame(index)
        if self.constant is not None:
            frame = self.make_frame(self.constant)
            frame.pts = round(index * VIDEO_CLOCK_RATE / self.fps)
            return frame
        return self.make_frame(index)


class ToneAudioTrack(MediaStreamTrack):
    """A sine tone (or silence when ``frequency`` is None), s16 mono, paced in real time.

    A tone lets a receiver check that audio arrives and is intact (its spectrum peaks at
    ``frequency``); the phase carries over between frames so there are no clicks.
    """

    kind = "audio"

    def __init__(
        self,
        frequency: float | None = 440.0,
        sample_rate: int = 48000,
        ptime_ms: int = 20,
        amplitude: float = 0.2,
    ) -> None:
        if sample_rate <= 0 or (sample_rate * ptime_ms) % 1000 or ptime_ms <= 0:
            raise MediaSourceError(
                f"audio framing {sample_rate} Hz x {ptime_ms} ms is invalid: the frame must "
                "hold a whole number of samples (e.g. 48000 Hz, 20 ms)"
            )
        if frequency is not None and not (0 < frequency < sample_rate / 2):
            raise MediaSourceError(
                f"tone frequency {frequency} Hz is invalid: use a value above 0 and below "
                f"{sample_rate // 2} Hz, or none for silence; check media.tone_hz in the config"
            )
        if not (0 <= amplitude <= 1):
            raise MediaSourceError(f"tone amplitude {amplitude} is invalid: use a value from 0 to 1")
        super().__init__()
        self.frequency = frequency
        self.sample_rate = sample_rate
        self.samples_per_frame = sample_rate * ptime_ms // 1000
        self.frames_sent = 0
        self.paused = False
        """Fault control: no frame is produced (packets stop; the media clock runs on)."""
        self.silent = False
        """Fault control: digital silence (all-zero samples) instead of the tone."""
        self._time_base = fractions.Fraction(1, sample_rate)
        self._pacer = Pacer()
        self._phase = 0.0
        self._scale = amplitude * 32767
        n = self.samples_per_frame
        if frequency is None:
            self._silence: np.ndarray | None = np.zeros((1, n), dtype=np.int16)
        else:
            self._silence = None
            self._step = 2 * math.pi * frequency / sample_rate
            self._ramp = self._step * np.arange(n)

    def _render(self, index: int) -> av.AudioFrame:
        """The next stretch of the tone; ``index`` only sets the timestamp."""
        if self.silent:
            samples = np.zeros((1, self.samples_per_frame), dtype=np.int16)
        elif self._silence is not None:
            samples = self._silence
        else:
            wave = np.sin(self._phase + self._ramp) * self._scale
            samples = wave.astype(np.int16).reshape(1, -1)
            self._phase = (self._phase + self._step * self.samples_per_frame) % (2 * math.pi)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = index * self.samples_per_frame
        frame.time_base = self._time_base
        return frame

    async def recv(self) -> av.AudioFrame:
        """The next frame, when it is due (while ``paused``, the due frames are skipped)."""
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            index = self.frames_sent
            await self._pacer.wait(index * self.samples_per_frame / self.sample_rate)
            if self.readyState != "live":
                raise MediaStreamError
            self.frames_sent += 1
            if not self.paused:
                return self._render(index)
