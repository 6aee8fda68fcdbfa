"""The one package that touches aiortc/aioice internals, for the SDK's legs and the server's.

Every private name is in ``_internals``; every reach-in is a module of ``patches`` with a
``probe``; ``fast_paths()`` says which of them this aiortc/aioice allows (probed once per
process) and ``log_fast_paths``/``fast_path_gauges`` report it. The patch modules are
exported as modules (``from bot.webrtc import keyframes``; ``keyframes.install(...)``): each
has the same shape, so the module is the API.
"""

from . import reclaim
from .compat import TESTED, FastPaths, fast_path_gauges, fast_paths, log_fast_paths
from .leg import PeerLeg
from .patches import (
    direct_send,
    encoder_cap,
    fast_srtp,
    keyframes,
    lean_intake,
    receive_tap,
    rtcp_taps,
    setup_once,
)
from .patches.direct_send import DirectSender
from .patches.encoder_cap import FLOOR_BITRATE_BPS, CappedVp8Encoder
from .patches.lean_intake import Route, RtpIntake, codec_of, leanable
from .peer import IceEndpoint, IcePair, parse_candidate, parsed_description, selected_pair

__all__ = [
    "FLOOR_BITRATE_BPS",
    "TESTED",
    "CappedVp8Encoder",
    "DirectSender",
    "FastPaths",
    "IceEndpoint",
    "IcePair",
    "PeerLeg",
    "Route",
    "RtpIntake",
    "codec_of",
    "direct_send",
    "encoder_cap",
    "fast_path_gauges",
    "fast_paths",
    "fast_srtp",
    "keyframes",
    "lean_intake",
    "leanable",
    "log_fast_paths",
    "parse_candidate",
    "parsed_description",
    "receive_tap",
    "reclaim",
    "rtcp_taps",
    "selected_pair",
    "setup_once",
]
