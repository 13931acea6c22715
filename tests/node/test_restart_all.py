"""Every delegate restarted one after another under load, 8 times: the chain never stalls.

Real node processes at 250 ms blocks with transfers flowing; the trial is bench/restarts.py's (the test
runs the very code the benchmark measures with). Before the sign log, the first or second such trial
stalled the chain for good: 8 trials catch that (the suite's budget); bench/restarts.py runs 20 and more.
"""

from __future__ import annotations

import time

import pytest

from iotex_ops.traffic import LocalNetLoad
from tests.node.test_crash import _load_bench

pytestmark = [pytest.mark.slow, pytest.mark.network]

TRIALS = 8


@pytest.mark.timeout(600)
def test_restarting_every_delegate_eight_times_under_load_never_stalls(localnet_factory) -> None:
    bench = _load_bench("restarts")
    net = localnet_factory(4, block_interval_ms=250, accounts=8)
    net.start()
    net.wait_height(5, timeout=90)
    with LocalNetLoad(net, window=6, interval=0.25, seed=3) as load:
        trials = bench.run_trials(net, TRIALS, settle=1.0, deadline=time.monotonic() + 480, say=print, seed=5)
    assert len(trials) == TRIALS, f"only {len(trials)} trials ran in the time allowed"
    stalled = [t for t in trials if t.stall_s < 0]
    assert not stalled, f"the chain stalled after a restart of every delegate: {stalled}"
    # No stall longer than a few rounds: the first block after the restart is decided by round 3, and
    # within 30 s of the last start on this slow shared machine (node start-up included).
    assert max(t.rounds for t in trials) <= 3, trials
    assert max(t.stall_s for t in trials) < 30, trials
    assert load.stats.accepted > 0, "no transfers flowed"
    # The chain agrees everywhere after all the restarts.
    top = min(h for h in net.heights() if h is not None)
    assert len({net.block_hash(i, top) for i in range(4)}) == 1
