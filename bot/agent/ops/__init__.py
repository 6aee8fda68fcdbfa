"""Operations around a run: what bots report (``observe``), Prometheus metrics and the health
server, the terminal progress line and the end-of-run report, bundled by :class:`Ops`."""

from .health import HealthServer
from .merge import Merged, merge_reports, write_merged
from .metrics import Metrics, MetricsAddress, metrics_address
from .observe import BotObserver, BotState, NullObserver, Observers, listening
from .ops import Ops, progress_setting
from .progress import Progress
from .report import RunRecorder

__all__ = [
    "BotObserver",
    "BotState",
    "HealthServer",
    "Merged",
    "Metrics",
    "MetricsAddress",
    "NullObserver",
    "Observers",
    "Ops",
    "Progress",
    "RunRecorder",
    "listening",
    "merge_reports",
    "metrics_address",
    "progress_setting",
    "write_merged",
]
