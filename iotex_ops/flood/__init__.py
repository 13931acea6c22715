"""The flood drill's library: a pure plan and verdict (plan.py), the attacks (attacks.py, the edge) and the
honest side's measurements (watch.py). runbooks/flood.py runs them against one delegate."""

from iotex_ops.flood.plan import ATTACKS, FloodError, FloodPlan, Limits, judge, loopback_sources, missed_slots, percentile

__all__ = ["ATTACKS", "FloodError", "FloodPlan", "Limits", "judge", "loopback_sources", "missed_slots", "percentile"]
