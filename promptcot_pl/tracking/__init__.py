"""MLflow tracking floor: the run tree and its outbox (`tracker.py`) and the Lightning logger that fits write
through (`lightning_logger.py`, imported only when a fit needs it, so the tracker does not import Lightning)."""

from promptcot_pl.tracking.tracker import FLUSH_S, RETRY_S, Tracker, TrackingUnavailable, tracking_uri

__all__ = ["FLUSH_S", "RETRY_S", "Tracker", "TrackingUnavailable", "tracking_uri"]
