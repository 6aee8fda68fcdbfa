"""The one package that touches aiortc/aioice internals, for the SDK's legs and the server's.

Every private name is in ``_internals``; every reach-in is a module of ``patches`` with a
``probe``; ``fast_paths()`` says which of them this aiortc/aioice allows (probed once per
process) and ``log_fast_paths``/``fast_path_gauges`` report it.
"""

from .compat import TESTED, FastPaths, fast_path_gauges, fast_paths, log_fast_paths
from .peer import IceEndpoint, IcePair, parse_candidate, selected_pair

__all__ = [
    "TESTED",
    "FastPaths",
    "IceEndpoint",
    "IcePair",
    "fast_path_gauges",
    "fast_paths",
    "log_fast_paths",
    "parse_candidate",
    "selected_pair",
]
