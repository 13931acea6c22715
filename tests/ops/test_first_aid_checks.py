"""First aid's record of where the chain stopped, without a lab: a block that was in flight when the pause
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
