"""Audio output devices, as Flutter's ``getDevices`` names them.

A headless bot has no speaker: received audio is discarded, so the only device is ``NONE``.
(A later issue adds ``FILE``: record what is received.)
"""

from __future__ import annotations

from typing import Final

NONE: Final = "NONE"
FLUTTER_DEVICES: Final = ("SPEAKER_PHONE", "WIRED_HEADSET", "EARPIECE", "BLUETOOTH", NONE)
"""Every name the Flutter plugin knows; only those in :data:`AVAILABLE` exist here."""

AVAILABLE: Final[tuple[str, ...]] = (NONE,)
DEFAULT: Final = NONE
