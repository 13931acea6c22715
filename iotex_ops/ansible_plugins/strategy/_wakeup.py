"""Ansible's strategies wait for their workers by polling; this mixin makes them wait for the results instead.

The `free` strategy's loop peeks at every host's next task, then sleeps `internal_poll_interval` (1 ms) and
starts over; `linear` waits for a task's results the same way. While the hosts run their modules the
controller's main process therefore goes round that loop 300-500 times a second, each time with ansible-runner's
display wrapper around every `display.debug` call of the peek: measured on `lab up` (4 local hosts, 2 cores)
it used 2.2 s of CPU in a 6.4 s node.yml run, on the CPUs the hosts' installs and starts needed
(docs/performance.md). A longer interval would cost every result that much latency.

With this mixin an idle round -- one that queued no task, processed no result and ran no meta task -- ends
when a worker's result arrives (the results thread appends it to a deque that now also sets an event), or
after IDLE_CAP_S at the latest, so that whatever Ansible checks on its rounds (a dead worker, an interrupted
run) is still checked. A round that did something is followed by the strategy's own short sleep, as before.
Nothing else changes: the same tasks run in the same order, with the same results and callbacks. The run also
freezes the garbage collector's view of what the play loaded (gc.freeze), so that the workers it forks touch
fewer of the parent's pages.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections import deque
from typing import Any

# An idle round waits at most this long for a result (Ansible's own rounds are 1 ms apart).
IDLE_CAP_S = 0.05
# Sleeps shorter than this are not the poll between rounds (_queue_task spins 0.1 ms for a free worker slot).
_POLL_FLOOR_S = 0.0005


class _SignallingDeque(deque):
    """The strategy's result deque: append (by the results thread) also wakes an idle round."""

    def __init__(self, items: Any, wake: threading.Event) -> None:
        super().__init__(items)
        self._wake = wake

    def append(self, item: Any) -> None:
        super().append(item)
        self._wake.set()


class _Clock:
    """Stands in for the `time` module of Ansible's strategy code during a run: its poll sleeps wait for a result."""

    def __init__(self, strategy: WakeOnResults) -> None:
        self._strategy = strategy

    def sleep(self, seconds: float) -> None:
        s = self._strategy
        if seconds < _POLL_FLOOR_S or s._iotex_progress:
            s._iotex_progress = False
            time.sleep(seconds)
            return
        s._iotex_wake.wait(IDLE_CAP_S)
        s._iotex_wake.clear()  # before the round that processes what woke it: no result is missed

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class WakeOnResults:
    """Mix in before the strategy class (Ansible's StrategyBase subclass, or Mitogen's mixin over one)."""

    _iotex_wake: threading.Event
    _iotex_progress: bool
    # the modules of the strategy code whose rounds sleep (Ansible's free, linear and their base)
    _iotex_modules_prefix = "ansible.plugins.strategy"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._iotex_wake = threading.Event()
        self._iotex_progress = True
        super().__init__(*args, **kwargs)
        with self._results_lock:  # type: ignore[attr-defined]
            self._results = _SignallingDeque(self._results, self._iotex_wake)  # type: ignore[has-type]

    def _strategy_modules(self) -> list[Any]:
        """The modules whose `time` the rounds sleep with: each base class's that imports it (free, linear, base)."""
        mods = []
        for cls in type(self).__mro__:
            mod = sys.modules.get(cls.__module__)
            if (
                mod is not None
                and getattr(mod, "time", None) is time
                and mod not in mods
                and cls.__module__.startswith(self._iotex_modules_prefix)
            ):
                mods.append(mod)
        return mods

    def run(self, *args: Any, **kwargs: Any) -> Any:
        # What the play loaded so far is kept for the whole run: moved out of the collector's reach, a worker
        # forked from this process does not write to those pages when it collects (fewer copy-on-write faults;
        # 20 tasks on 4 hosts used about 5 % less CPU).
        gc.freeze()
        mods = self._strategy_modules()
        clock = _Clock(self)
        for mod in mods:
            mod.time = clock
        try:
            return super().run(*args, **kwargs)  # type: ignore[misc]
        finally:
            for mod in mods:
                mod.time = time

    def _queue_task(self, *args: Any, **kwargs: Any) -> Any:
        self._iotex_progress = True
        return super()._queue_task(*args, **kwargs)  # type: ignore[misc]

    def _execute_meta(self, *args: Any, **kwargs: Any) -> Any:
        self._iotex_progress = True
        return super()._execute_meta(*args, **kwargs)  # type: ignore[misc]

    def _process_pending_results(self, *args: Any, **kwargs: Any) -> Any:
        results = super()._process_pending_results(*args, **kwargs)  # type: ignore[misc]
        if results:
            self._iotex_progress = True
        return results
