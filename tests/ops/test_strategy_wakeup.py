"""The toolkit's strategies wait for results instead of polling (iotex_ops/ansible_plugins/strategy/_wakeup.py).

A stand-in for Ansible's strategy code, in a module of its own that imports `time` as Ansible's do: its run
loop processes pending results, then sleeps the poll interval, until the result it waits for has come (from
another thread, as Ansible's results thread appends them).
"""

from __future__ import annotations

import sys
import threading
import time
import types
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest

from iotex_ops.ansible_plugins.strategy import _wakeup

MODULE = "iotex_test_fake_strategy"
SOURCE = '''
import threading
import time
from collections import deque

POLL = 0.001


class FakeStrategy:
    """Ansible's StrategyBase in miniature: a result deque under a Condition, a loop that polls it."""

    def __init__(self):
        self._results_lock = threading.Condition(threading.Lock())
        self._results = deque()
        self.rounds = 0
        self.got = []

    def _process_pending_results(self):
        out = []
        with self._results_lock:
            while self._results:
                out.append(self._results.popleft())
        return out

    def _queue_task(self, task):
        self.queued = task

    def _execute_meta(self):
        pass

    def run(self, want, queue_first=False, fail=False):
        if queue_first:
            self._queue_task("t")
        while len(self.got) < want:
            self.rounds += 1
            if fail:
                raise RuntimeError("the play failed")
            self.got.extend(self._process_pending_results())
            if len(self.got) < want:
                time.sleep(POLL)
        return self.got
'''


@pytest.fixture
def fake_module() -> Iterator[types.ModuleType]:
    mod = types.ModuleType(MODULE)
    sys.modules[MODULE] = mod
    exec(compile(SOURCE, f"<{MODULE}>", "exec"), mod.__dict__)  # noqa: S102 - the test's own source
    try:
        yield mod
    finally:
        del sys.modules[MODULE]


def _classes(mod: types.ModuleType) -> tuple[type, type]:
    class Waking(_wakeup.WakeOnResults, mod.FakeStrategy):  # type: ignore[name-defined]
        _iotex_modules_prefix = MODULE

    return mod.FakeStrategy, Waking


def _append_later(strategy: Any, delay: float, item: str = "result") -> threading.Thread:
    def later() -> None:
        time.sleep(delay)
        with strategy._results_lock:
            strategy._results.append(item)

    t = threading.Thread(target=later)
    t.start()
    return t


def test_an_idle_round_waits_for_the_result_instead_of_polling(fake_module: types.ModuleType) -> None:
    plain_cls, waking_cls = _classes(fake_module)
    for cls in (plain_cls, waking_cls):
        s = cls()
        t = _append_later(s, 0.3)
        assert s.run(1) == ["result"]
        t.join()
        if cls is plain_cls:
            plain_rounds = s.rounds
        else:
            waking_rounds = s.rounds
    # 0.3 s of 1 ms polls against at most one round per IDLE_CAP_S (50 ms) and the one the result woke
    assert plain_rounds > 50
    assert waking_rounds <= 0.3 / _wakeup.IDLE_CAP_S + 3


def test_a_result_ends_the_wait_at_once_not_at_the_cap(fake_module: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wakeup, "IDLE_CAP_S", 30.0)
    _, waking_cls = _classes(fake_module)
    s = waking_cls()
    t = _append_later(s, 0.2)
    t0 = time.monotonic()
    assert s.run(1) == ["result"]
    t.join()
    assert time.monotonic() - t0 < 10  # woken by the append, not by the 30 s cap


def test_results_that_came_before_the_wait_are_not_missed(fake_module: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wakeup, "IDLE_CAP_S", 30.0)
    _, waking_cls = _classes(fake_module)
    s = waking_cls()
    with s._results_lock:
        s._results.append("early")  # before the run: the event is set, the first idle wait returns at once
    t = _append_later(s, 0.1, "late")
    t0 = time.monotonic()
    assert s.run(2) == ["early", "late"]
    t.join()
    assert time.monotonic() - t0 < 10


def test_a_round_that_queued_a_task_sleeps_the_poll_only(fake_module: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wakeup, "IDLE_CAP_S", 30.0)
    _, waking_cls = _classes(fake_module)
    s = waking_cls()
    slept: list[float] = []
    real_sleep = time.sleep
    t = _append_later(s, 0.3)  # its thread sleeps before the patch below
    main = threading.current_thread()

    def recording_sleep(x: float) -> None:
        if threading.current_thread() is main:
            slept.append(x)
        real_sleep(x)

    monkeypatch.setattr(time, "sleep", recording_sleep)
    s.run(1, queue_first=True)
    t.join()
    # the first sleep follows the round that queued a task: the strategy's own 1 ms poll, not a wait
    assert slept[0] == fake_module.POLL


def test_the_modules_time_is_restored_after_the_run_and_after_a_failure(fake_module: types.ModuleType) -> None:
    _, waking_cls = _classes(fake_module)
    s = waking_cls()
    with s._results_lock:
        s._results.append("r")
    s.run(1)
    assert fake_module.time is time
    with pytest.raises(RuntimeError, match="the play failed"):
        waking_cls().run(1, fail=True)
    assert fake_module.time is time


def test_the_results_deque_keeps_what_was_in_it_and_still_is_a_deque(fake_module: types.ModuleType) -> None:
    _, waking_cls = _classes(fake_module)
    s = waking_cls()
    assert isinstance(s._results, deque)
    s._results.append("x")
    assert s._iotex_wake.is_set() and list(s._results) == ["x"]


@pytest.mark.slow  # importing Ansible's strategies runs ldconfig
def test_the_toolkits_mitogen_strategies_wake_on_results() -> None:
    from iotex_ops.ansible_plugins.strategy._unpinned import strategy_module

    for base in ("free", "linear"):
        cls = strategy_module(base)
        assert issubclass(cls, _wakeup.WakeOnResults)
        mods = {c.__module__ for c in cls.__mro__ if c.__module__.startswith(_wakeup.WakeOnResults._iotex_modules_prefix)}
        # the base strategy's module and StrategyBase's: the two that sleep between rounds
        assert {f"ansible.plugins.strategy.{base}", "ansible.plugins.strategy"} <= mods
