"""The one exception type of ``bot.media``.

Media problems are almost always configuration problems (a wrong path, an odd frame size), so
the message is written for the person editing the config: one line saying what is wrong, where,
and what to do about it.
"""

from __future__ import annotations


class MediaSourceError(Exception):
    """A media source or sink cannot be built or has failed. ``str()`` is a single line.

    Named apart from ``bot.rtc.MediaError`` (the SDK's publish failure, code 1160).
    """

    def __init__(self, message: str) -> None:
        # Collapse whitespace so a multi-line reason from FFmpeg never breaks a log line.
        super().__init__(" ".join(message.split()))


MediaError = MediaSourceError
"""Old name of :class:`MediaSourceError`, kept for one release."""
