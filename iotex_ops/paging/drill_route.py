"""The drill route: while a game day injects a fault, the pages alertd sends are drill pages, not the on-call's.

A fault drill writes a marker file, `<locks dir>/<network>.gameday.json` (the inventory's `iotex_ops_lock_dir`,
shared by every process running against the network), for the length of the fault and a little after:

    {"run_id": "...", "runbook": "fault-kill", "victims": ["node2"], "until": 1733300000.0, "route": "drill"}

alertd (iotex_ops/remediation/daemon.py, `PagerPages`) reads it before each trigger; while it is valid (not
past `until`), the page is marked: its summary starts with `[DRILL <run id>]` and its custom details carry
`drill: {run_id, runbook, victims, route}`. A PagerDuty service routes such pages with an event rule on
`custom_details.drill` (to a drill escalation policy, or suppressed); the lab's receiver keeps them as they
are, so the game-day report can say where each page went. A marker past `until` (a drill that died) is
ignored, so a dead drill cannot hide real pages for long.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROUTE = "drill"
PREFIX = "[DRILL"


def marker_path(locks_dir: Path, network: str) -> Path:
    return Path(locks_dir) / f"{network}.gameday.json"


def write(path: Path, run_id: str, runbook: str, victims: list[str], until: float) -> dict[str, Any]:
    doc = {"run_id": run_id, "runbook": runbook, "victims": list(victims), "until": until, "route": ROUTE}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc) + "\n")
    os.replace(tmp, path)
    return doc


def remove(path: Path, run_id: str) -> None:
    """Remove the marker if it is still this run's."""
    doc = read(path, now=0.0)
    if doc is not None and doc.get("run_id") == run_id:
        path.unlink(missing_ok=True)


def read(path: Path, now: float | None = None) -> dict[str, Any] | None:
    """The marker while it is valid (None: none, unreadable, or past its `until`)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("until"), int | float):
        return None
    if doc["until"] < (time.time() if now is None else now):
        return None
    return doc


def mark(summary: str, details: Mapping[str, Any], drill: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """A page's summary and details, marked for the drill route when a drill is on (pure)."""
    if not drill:
        return summary, dict(details)
    info = {k: drill.get(k) for k in ("run_id", "runbook", "victims", "route")}
    return f"{PREFIX} {drill.get('run_id', '')}] {summary}"[:1024], {**details, "drill": info}


def is_drill_page(summary: str, details: Mapping[str, Any] | None) -> bool:
    return summary.startswith(PREFIX) or bool((details or {}).get("drill"))
