"""The release watcher inside the scheduler service (`iotex-ops scheduler serve --releases`): a thread that
ticks the watcher every `interval_s`, behind the scheduler's own gates for signals.

A release rollout is a drill (hotfix-compatible or hotfix-incompatible) through the engine, so the network's
lock, steady state and maintenance window already gate it, and a scheduled drill holding the lock defers it
(the watcher tries again on its next tick). What the engine cannot see is the rest of the scheduler's gates:
an open incident or a firing alert. A tick is skipped while there is one, and the skip is said once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from iotex_ops.releases.watcher import TickResult


class Ticks(Protocol):
    def tick(self) -> TickResult: ...


class Signals(Protocol):
    def firing_alerts(self) -> Sequence[object]: ...

    def open_incidents(self) -> Sequence[object]: ...


def blocked(signals: Signals | None) -> str | None:
    """Why no rollout may start now (an incident, a firing alert, signals that cannot be read), else None."""
    if signals is None:
        return None
    try:
        incidents = signals.open_incidents()
        if incidents:
            return f"{len(incidents)} open incident(s)"
        firing = signals.firing_alerts()
        if firing:
            return f"{len(firing)} firing alert(s)"
    except Exception as exc:  # fail closed, as the scheduler's gates do
        return f"signals unreadable: {exc}"
    return None


def loop(
    watcher: Ticks,
    stop: threading.Event,
    interval_s: float,
    signals: Signals | None = None,
    say: Callable[[str], None] = lambda s: None,
) -> None:
    last_block: str | None = None
    while not stop.is_set():
        why = blocked(signals)
        if why is not None:
            if why != last_block:
                say(f"releases: no rollout now: {why}")
            last_block = why
        else:
            last_block = None
            try:
                res = watcher.tick()
                if res.run_id:
                    say(f"releases: {res.decision.version if res.decision else '?'}: run {res.run_id} {res.result}")
            except Exception as exc:  # a channel down, a state dir gone: said, tried again next time
                say(f"releases: error: {exc}")
        stop.wait(interval_s)


def start(
    watcher: Ticks, stop: threading.Event, interval_s: float, signals: Signals | None, say: Callable[[str], None]
) -> threading.Thread:
    t = threading.Thread(target=loop, args=(watcher, stop, interval_s, signals, say), name="release-watcher", daemon=True)
    t.start()
    return t
