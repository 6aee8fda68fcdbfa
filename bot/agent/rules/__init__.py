"""Pure decisions of the agent, clock injected: bandwidth fallback, the ramp and backoff, retries."""

from .policy import Action, BandwidthFallback, FallbackSettings
from .ramp import Backoff, Pacer, RampSchedule, Stage, parse_duration
from .retry import PERMANENT, retryable

__all__ = [
    "PERMANENT",
    "Action",
    "Backoff",
    "BandwidthFallback",
    "FallbackSettings",
    "Pacer",
    "RampSchedule",
    "Stage",
    "parse_duration",
    "retryable",
]
