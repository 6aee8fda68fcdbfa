"""Lecture mode's one rule for the client: a participant publishes only with the floor."""

from __future__ import annotations

from .state import RoomState


def lecture_listener(room: RoomState) -> bool:
    """A participant of a lecture room (``room.settings.mode == "lecture"``): it publishes only
    once granted the floor; moderators publish as in a group room."""
    settings = room.connected.room.get("settings")
    mode = settings.get("mode") if isinstance(settings, dict) else None
    return mode == "lecture" and room.me.role == "participant"
