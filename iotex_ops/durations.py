"""Durations as operators write them in inventories and policies: Prometheus's syntax ("90s", "1h30m",
"500ms", "7d") or a number of seconds."""

from __future__ import annotations

import math
import re
from typing import Any

_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def parse_duration(value: Any) -> float:
    """Seconds from a Prometheus duration ("90s", "1h30m", "500ms") or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            m = _DURATION.match(text)
            if not text or m is None:
                raise ValueError(f"{value!r} is not a duration (e.g. 30s, 5m, 1h30m, 500ms)") from None
            seconds = sum(int(n) * unit for n, unit in zip(m.groups(), _UNITS, strict=True) if n)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a duration")
    return seconds


def fmt_duration(seconds: float) -> str:
    """A Prometheus duration: "1m30s", "500ms", "0s" (Prometheus takes no fractions like "0.5s")."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit, name in ((3_600_000, "h"), (60_000, "m"), (1000, "s"), (1, "ms")):
        n, ms = divmod(ms, unit)
        if n:
            out.append(f"{n}{name}")
    return "".join(out)
