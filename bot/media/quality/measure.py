"""Measures on decoded frames, cheap enough to run once per sample: numpy on strided views."""

from __future__ import annotations

import math

import av
import numpy as np

THUMB_COLUMNS = 64
"""A thumbnail is about this wide (rows in proportion): enough to see a picture move."""

SILENCE_FLOOR_DBFS = -120.0
"""The level of digital silence (all-zero samples), instead of minus infinity."""


def luma_thumbnail(frame: av.VideoFrame) -> tuple[float, np.ndarray]:
    """``(mean luma 0..255, thumbnail)`` of a picture, from a strided view of its Y plane.

    Subsampling (not averaging) keeps this at a few microseconds; the mean of the subsample is
    the picture's mean luma to within a fraction of a level on anything but a test chart."""
    plane = frame.planes[0]
    width, height = frame.width, frame.height
    y = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)[:height, :width]
    step = max(1, width // THUMB_COLUMNS)
    thumb = y[step // 2 :: step, step // 2 :: step].astype(np.float32)
    return float(thumb.mean()), thumb


def picture_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute luma difference of two thumbnails (inf when their sizes differ)."""
    if a.shape != b.shape:
        return math.inf
    return float(np.abs(a - b).mean())


def audio_dbfs(frame: av.AudioFrame) -> float:
    """RMS level in dBFS (a full-scale square wave is 0 dBFS, a full-scale sine -3 dBFS)."""
    return dbfs_of_power(mean_square(frame))


def mean_square(frame: av.AudioFrame) -> float:
    """Mean of the squared samples, scaled to full scale 1.0 (float or 16-bit formats)."""
    samples = frame.to_ndarray()
    if samples.size == 0:
        return 0.0
    if samples.dtype == np.int16:
        x = samples.astype(np.float32) / 32768.0
    else:
        x = samples.astype(np.float32, copy=False)
    return float(np.mean(x * x))


def dbfs_of_power(power: float) -> float:
    if power <= 0:
        return SILENCE_FLOOR_DBFS
    return max(SILENCE_FLOOR_DBFS, 10 * math.log10(power))
