"""kill -9 while blocks are being committed: the database always reopens consistent.

Two levels: a child process committing blocks through `Chain` as fast as it can, killed at random
instants (most kills land inside a SQLite transaction); and real delegate processes on loopback killed
while the network finalizes blocks under load, each restarted and compared with its peers.
"""

from __future__ import annotations

import importlib.util
import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import ModuleType

import pytest

from iotex_node import genesis as genesis_mod
from iotex_node.chain import Chain
from iotex_node.store import Store
from iotex_node.testing import OneDelegate
from iotex_ops.traffic import LocalNetLoad

BENCH = Path(__file__).resolve().parents[2] / "bench"

# The child: open the chain (as a restarted node would), then commit blocks of transfers forever,
# printing "committing h" before `commit` and "committed h" only after it returned, i.e. after SQLite's
# COMMIT with synchronous=FULL. About 40% of its time is spent inside `commit`.
_COMMITTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from iotex_node import genesis as genesis_mod
    from iotex_node.chain import Chain
    from iotex_node.crypto.keys import PrivateKey
    from iotex_node.store import Store
    from iotex_node.testing import certify, submit_transfers

    def say(line):  # one write per line: print() writes its pieces one by one, and a kill can split them
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()

    home = Path(sys.argv[1])
    genesis = genesis_mod.load(home / "genesis.json")
    delegate = PrivateKey.from_hex((home / "delegate.key").read_text())
    sender = PrivateKey.from_hex((home / "sender.key").read_text())
    chain = Chain(genesis, Store(home / "chain.db"))
    say(f"open {chain.height}")
    while True:
        submit_transfers(chain, sender, 40, to=delegate.address)
        block = chain.build_block(0, delegate.address, int(time.time() * 1000)).block
        say(f"committing {block.height}")
        chain.commit(block, certify(delegate, genesis.chain_id, block))
        say(f"committed {block.height}")
    """
)


def _one_delegate_chain(home: Path) -> genesis_mod.Genesis:
    # epoch ends (delegate election, epoch rewards) land in the kill windows too: epochs of 7 blocks
    solo = OneDelegate.new(epoch_length=7)
    genesis_mod.write(home / "genesis.json", solo.genesis)
    (home / "delegate.key").write_text(solo.delegate.secret().hex())
    (home / "sender.key").write_text(solo.sender.secret().hex())
    solo.init_db(home / "chain.db")
    return solo.genesis


def _reopen_and_check(genesis: genesis_mod.Genesis, db: Path, at_least: int) -> int:
    """Reopen the chain and check every table agrees with the tip; return the tip height."""
    store = Store(db)
    try:
        chain = Chain(genesis, store)  # raises StorageError when state and tip block's state root differ
        assert chain.height >= at_least, f"height {chain.height} after the kill, but block {at_least} had been committed"
        assert chain.tip_header is not None
        assert chain.state.root() == chain.tip_header.state_root
        tip = chain.block(chain.height)
        assert tip is not None
        assert chain.block(chain.height + 1) is None, "a block above the tip was stored"
        assert store.block_data(chain.height + 1) is None
        if chain.height > 1:
            parent = chain.block(chain.height - 1)
            assert parent is not None and tip.header.prev_hash == parent.hash
        # The tip block's receipts and undo record were written in the same transaction as the block.
        for i, a in enumerate(tip.actions):
            found = store.receipt(a.hash)
            assert found is not None and found[:2] == (chain.height, i), f"receipt of action {i} of the tip block"
        undo = store._db.execute("SELECT MAX(height) FROM undo").fetchone()[0]
        assert undo == chain.height, f"undo record is for height {undo}, tip is {chain.height}"
        return chain.height
    finally:
        store.close()


@pytest.mark.slow  # child processes killed at random
def test_kill9_while_committing_always_reopens_consistent(tmp_path: Path) -> None:
    genesis = _one_delegate_chain(tmp_path)
    rng = random.Random(20240611)
    committed = 0
    inside_commit = 0
    runs = 20
    for run in range(runs):
        errors = tmp_path / f"committer{run}.err"
        with (
            errors.open("w") as err,
            subprocess.Popen(
                [sys.executable, "-c", _COMMITTER, str(tmp_path)], stdout=subprocess.PIPE, stderr=err, text=True
            ) as child,
        ):
            assert child.stdout is not None
            lines: list[str] = []
            try:
                opened = child.stdout.readline().split()
                assert opened and opened[0] == "open", f"the committer did not open the chain: {errors.read_text()}"
                assert int(opened[1]) >= committed, f"reopened at {opened[1]}, below the {committed} committed before"
                # Kill at a random instant after its first commit (not after a fixed guess from the start,
                # which on a slow machine can come before anything was committed).
                while "committed" not in lines:
                    line = child.stdout.readline()
                    assert line, f"the committer stopped before its first commit: {errors.read_text()}"
                    lines += line.split()
                time.sleep(rng.uniform(0.02, 0.2))
            finally:
                child.send_signal(signal.SIGKILL)
            # Complete lines only: the kill may have cut the last one.
            lines += [w for line in child.stdout.read().split("\n")[:-1] for w in line.split()]
            code = child.wait(timeout=10)
        assert code == -signal.SIGKILL, f"the committer died on its own ({code}): {errors.read_text()}"
        events = list(zip(lines[::2], map(int, lines[1::2]), strict=True))
        done = [h for what, h in events if what == "committed"]
        assert done, f"the committer committed nothing before the kill: {errors.read_text()}"
        inside_commit += events[-1][0] == "committing"
        committed = _reopen_and_check(genesis, tmp_path / "chain.db", max(done))
        started = max(h for what, h in events if what == "committing")
        assert committed <= started, f"reopened at {committed}, but block {started} was the last one begun"
    # The point of the test is kills inside a commit; with ~40% of the time spent there, missing all
    # 20 would happen about once in 30,000 runs.
    print(f"{inside_commit} of {runs} kills landed inside Chain.commit; {committed} blocks committed")
    assert inside_commit > 0, f"none of the {runs} kills landed inside Chain.commit"
    assert committed >= runs, f"only {committed} blocks were committed across {runs} runs"


def _load_bench(name: str) -> ModuleType:
    """Import a bench script by path: the slow test runs the very checks the benchmark runs."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is being made
    sys.path.insert(0, str(BENCH))  # bench scripts import their helpers (`_speed`) as sibling modules
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(BENCH))
    return mod


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.timeout(240)
def test_delegate_killed_repeatedly_restarts_with_its_peers_state_root(localnet_factory) -> None:
    cc = _load_bench("crash_consistency")
    net = localnet_factory(4, accounts=6)
    net.start()
    net.wait_height(2, timeout=60)
    with LocalNetLoad(net, window=12, seed=7):
        net.wait_height(3, timeout=60)
        run = cc.run_crashes(net, 12, rng=random.Random(7), deadline=time.monotonic() + 170, say=print)
    report = json.dumps([k.__dict__ for k in run.kills], indent=1)
    assert run.ok, f"{run.problems} {report}"
    assert len(run.kills) == 12
    assert run.consistent == 12
    assert run.end_height > run.start_height
    assert run.actions > 0, "no block of the run carried an action"
