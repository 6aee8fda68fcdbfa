"""Audio output devices, as Flutter's ``getDevices`` names them.

A headless bot has no speaker. Where received audio goes is its "output device": ``NONE``
(discarded, the default) or, when the app records what it receives, ``FILE`` (into the
recording). ``EnxRtc`` asks its ``sink_factory``: one that implements :class:`AudioOutput`
names the devices and keeps the selection; any other has ``NONE`` only.
"""

from __future__ import annotations

from typing import Final, Protocol, runtime_checkable

NONE: Final = "NONE"
FILE: Final = "FILE"
FLUTTER_DEVICES: Final = ("SPEAKER_PHONE", "WIRED_HEADSET", "EARPIECE", "BLUETOOTH", NONE)
"""Every name the Flutter plugin knows; only those in :data:`AVAILABLE` exist here (and
``FILE``, which is ours, when recording)."""

AVAILABLE: Final[tuple[str, ...]] = (NONE,)
DEFAULT: Final = NONE


@runtime_checkable
class AudioOutput(Protocol):
    """A ``sink_factory`` that decides where received audio goes."""

    @property
    def devices(self) -> tuple[str, ...]:
        """The devices there are (``NONE`` first)."""
        ...

    @property
    def selected(self) -> str:
        """The device received audio goes to now."""
        ...

    def select(self, device: str) -> bool:
        """Send received audio to ``device`` from now on; False (nothing changed) if unknown."""
        ...


def output_of(factory: object) -> AudioOutput | None:
    return factory if isinstance(factory, AudioOutput) else None
