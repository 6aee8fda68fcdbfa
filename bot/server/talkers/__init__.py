"""Active talkers: who is speaking (:mod:`.voice`, fed by the publish legs), the order and the
lists (:mod:`.ranking`), and the ticker that sends ``active-talkers-updated`` plus the talker
requests (:mod:`.service`, imported from there: it needs the media server, whose legs need
:mod:`.voice`)."""

from .ranking import Candidate, RoomTalkers, entry, list_for
from .voice import VoiceActivity

__all__ = ["Candidate", "RoomTalkers", "VoiceActivity", "entry", "list_for"]
