"""Media for the bot: what it publishes (synthetic video and tone, file playback, shared packet
streams encoded once for many bots) and what it does with what it receives (sinks).

Everything published is an aiortc ``MediaStreamTrack`` paced in real time, built only on aiortc,
av and numpy. :func:`open_media` turns the ``media`` section of the config into tracks. This
module is the package's face: other packages import from here, never from its modules.
"""

from .bitstream import codec_of, is_keyframe
from .errors import MediaError, MediaSourceError
from .quality import Picture, ProbeSink, Reading, audio_dbfs, luma_thumbnail
from .shared.encoded import EncodedFileSource
from .shared.encoders import SharedEncoder, SharedMedia, SyntheticVideoEncoder, ToneAudioEncoder
from .shared.fanout import Kind, Packet, PacketSink, PacketStream, PacketTrack, QueuedPacketTrack
from .sinks import DiscardSink, EncodedSink, FrameSink, RecordSink, make_sink
from .sources.file import FileSource, FileTrack
from .sources.synthetic import SyntheticVideoTrack, ToneAudioTrack, read_frame_counter
from .spec import MediaSpec, open_media

__all__ = [
    "DiscardSink",
    "EncodedFileSource",
    "EncodedSink",
    "FileSource",
    "FileTrack",
    "FrameSink",
    "Kind",
    "MediaError",
    "MediaSourceError",
    "MediaSpec",
    "Packet",
    "PacketSink",
    "PacketStream",
    "PacketTrack",
    "Picture",
    "ProbeSink",
    "QueuedPacketTrack",
    "Reading",
    "RecordSink",
    "SharedEncoder",
    "SharedMedia",
    "SyntheticVideoEncoder",
    "SyntheticVideoTrack",
    "ToneAudioEncoder",
    "ToneAudioTrack",
    "audio_dbfs",
    "codec_of",
    "is_keyframe",
    "luma_thumbnail",
    "make_sink",
    "open_media",
    "read_frame_counter",
]
