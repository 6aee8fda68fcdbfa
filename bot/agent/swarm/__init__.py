"""Many bots: the runner of one process (:class:`Agent`), the rooms and token sources every
process agrees on (:class:`Swarm`, :class:`SwarmPlan`), worker processes and process tuning."""

from .plan import PLAN_ENV, EmbeddedTokens, Swarm, SwarmPlan
from .runner import Agent
from .workers import Supervisor, die_with_parent, resolve_workers

__all__ = [
    "PLAN_ENV",
    "Agent",
    "EmbeddedTokens",
    "Supervisor",
    "Swarm",
    "SwarmPlan",
    "die_with_parent",
    "resolve_workers",
]
