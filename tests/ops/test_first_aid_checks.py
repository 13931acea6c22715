"""First aid's checks without a lab. Where the chain stopped: a block that was in flight when the pause
landed is finalized a moment later, and the height recorded must be that one, not the one read at once."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from iotex_ops.runbook import loader

NAMES = ("d1", "d2", "d3", "d4")


def _step_fn(step: str) -> Any:
    return loader.find("first-aid").step(step).action


class _Ctx:
    """The parts of a RunContext that note_stop and its check read: chains that follow a script of heights."""

    def __init__(self, script: list[int]) -> None:
        self.script = script  # one finalized height per read of the chains; the last one repeats
        self.reads = 0
        self.waits = 0
        self.memory: dict[str, Any] = {}
        self.params: dict[str, Any] = {}
        self.events: list[tuple[str, dict[str, Any]]] = []
        api = SimpleNamespace(block=lambda h, timeout=None: SimpleNamespace(timestamp=1_000.0 + h))
        self.delegates = [SimpleNamespace(name=n, api=api) for n in NAMES]
        self.network = SimpleNamespace(chains=self._chains)

    def _chains(self, delegates: Any = None) -> dict[str, dict[str, Any]]:
        h = self.script[min(self.reads, len(self.script) - 1)]
        self.reads += 1
        return {n: {"finalized_height": h, "finalized_hash": f"{h:064x}"} for n in NAMES}

    def recall(self, key: str, default: Any = None) -> Any:
        return self.memory.get(key, default)

    def remember(self, key: str, value: Any) -> None:
        self.memory[key] = value

    def event(self, kind: str, **fields: Any) -> None:
        self.events.append((kind, fields))

    def wait(self, seconds: float) -> None:
        self.waits += 1


@pytest.fixture(autouse=True)
def _no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    note_stop = _step_fn("verify-stopped")
    checks = note_stop.__globals__["checks"]
    monkeypatch.setattr(checks.time, "sleep", lambda s: None)


def test_a_block_in_flight_at_the_pause_is_counted_in_the_stopped_height() -> None:
    # read at once: 533; the block in flight lands; from then on the chain holds at 534
    ctx = _Ctx([533, 534, 534, 534])
    _step_fn("verify-stopped")(ctx)
    assert ctx.memory["stopped_height"] == 534 and ctx.waits == 1  # between the probes: the run's own wait
    assert ctx.memory["stopped_at"] == 1_534.0
    assert ctx.events == [("chain_paused", {"height": 534})]


def test_the_step_check_passes_while_every_delegate_holds_and_fails_naming_the_height_once_one_moves() -> None:
    rb = loader.find("first-aid")
    check = rb.step("verify-stopped").verify[0]
    ctx = _Ctx([534, 534, 534])
    _step_fn("verify-stopped")(ctx)
    assert check.probe(cast(Any, ctx)).ok
    ctx.script, ctx.reads = [535], 0
    r = check.probe(cast(Any, ctx))
    assert not r.ok and "not every delegate is still at 534" in r.detail


def test_a_chain_that_never_stops_fails_naming_what_did_not_happen(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = _step_fn("verify-stopped").__globals__["checks"]
    clock = iter(range(0, 10_000, 5))
    monkeypatch.setattr(checks.time, "monotonic", lambda: float(next(clock)))
    ctx = _Ctx(list(range(100, 200)))
    with pytest.raises(TimeoutError, match="the chain did not stop at one height within 30s: still finalizing"):
        _step_fn("verify-stopped")(ctx)
    assert "stopped_height" not in ctx.memory


# -- after the resume: production back at the normal rate ------------------------------------------------


def _back_ctx(monkeypatch: pytest.MonkeyPatch, gaps: list[float], stopped: int = 100) -> _Ctx:
    """A chain stopped at `stopped` whose blocks after the resume came `gaps` apart (block stopped+1 first)."""
    check = loader.find("first-aid").step("verify-normal").verify[0]
    g = check.probe.__globals__
    times = {stopped + 1: 2_000.0}
    for i, gap in enumerate(gaps):
        times[stopped + 2 + i] = times[stopped + 1 + i] + gap
    monkeypatch.setattr(g["act"], "all_at", lambda ctx, h, timeout: None)
    monkeypatch.setattr(g["act"], "block_time", lambda ctx, h: times[h])
    gaps_of = [(h, t - times[h - 1]) for h, t in times.items() if h - 1 in times]
    monkeypatch.setattr(g["checks"], "block_gaps", lambda ctx, start: gaps_of)
    ctx = _Ctx([stopped])
    ctx.memory.update(stopped_height=stopped, stopped_at=1_990.0)
    ctx.params = {"blocks": 5}
    for d in ctx.delegates:
        d.chain = lambda: {"block_interval_ms": 1000}
    return ctx


def test_normal_from_finds_the_first_run_of_blocks_at_the_normal_rate() -> None:
    normal_from = loader.find("first-aid").step("verify-normal").verify[0].probe.__globals__["normal_from"]
    assert normal_from([1.0] * 5, 5, 1.5) == 0
    assert normal_from([4.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0], 5, 1.5) == 1  # 3,1,1,1,1: 1.4s apart
    assert normal_from([4.0, 3.0, 1.0, 1.0, 1.0], 5, 1.5) is None  # not yet: the check retries
    assert normal_from([1.0, 1.0], 5, 1.5) is None


def test_blocks_at_the_normal_rate_pass_with_the_downtime(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _back_ctx(monkeypatch, [1.0, 1.0, 2.0, 1.0, 1.0])  # one missed slot is within x1.5
    r = loader.find("first-aid").step("verify-normal").verify[0].probe(cast(Any, ctx))
    assert r.ok and r.value["downtime_s"] == 10.0 and r.value["slow_blocks"] == 0 and r.value["mean_interval_s"] == 1.2
    assert ctx.memory["downtime_s"] == 10.0 and ctx.memory["slow_blocks"] == 0


def test_slow_blocks_right_after_the_resume_fail_until_a_run_at_the_normal_rate_follows(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = loader.find("first-aid").step("verify-normal").verify[0].probe
    ctx = _back_ctx(monkeypatch, [3.0, 3.0, 3.0, 1.0, 1.0])
    r = probe(cast(Any, ctx))
    assert not r.ok and "the last 5 after 101 came 2.20s apart, at most 1.5s expected" in r.detail
    ctx = _back_ctx(monkeypatch, [3.0, 3.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # the retry reads newer blocks
    r = probe(cast(Any, ctx))
    assert r.ok and r.value["slow_blocks"] == 2 and r.value["mean_interval_s"] == 1.4
    assert r.value["gaps_s"] == [3.0, 3.0, 3.0, 1.0, 1.0, 1.0, 1.0]
