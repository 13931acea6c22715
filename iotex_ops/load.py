"""The rehearsal's background load: now `iotex_ops.traffic.BackgroundLoad` (this module keeps the old
import path working)."""

from __future__ import annotations

from iotex_ops.traffic.background import FALLBACK_FEE, MAX_SECONDS, BackgroundLoad
from iotex_ops.traffic.stats import LoadStats

__all__ = ["FALLBACK_FEE", "MAX_SECONDS", "BackgroundLoad", "LoadStats"]
