"""Maintenance timings: rollback of 100 blocks, snapshot and restore of a node with 10,000 blocks.

    python bench/maintenance.py [--blocks 10000] [--actions 10] [--rollback 100] [--keep DIR]

Builds the database in-process through iotex_node.chain.Chain (build_block + commit with a self-signed
certificate on a 1-delegate genesis; transfers in every block, some to new accounts), without fsync per
block to build it fast. Then, on that node home, with the real commands' code (iotex_node.maintenance):
rollback of --rollback blocks (backup included, then without), an offline snapshot, an online snapshot
while blocks are being committed through the node's own connection (and how long those commits took
meanwhile), and a restore into a new home. Prints every figure.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from iotex_node import config as config_mod
from iotex_node import maintenance as mt
from iotex_node.chain import Chain
from iotex_node.sdk import DEFAULT_MIN_FEE, PrivateKey
from iotex_node.store import Store
from iotex_node.testing import OneDelegate, init_home


class Committer:
    """Blocks of transfers through Chain.build_block / commit, certified by the only delegate."""

    def __init__(self, chain: Chain, solo: OneDelegate, per_block: int) -> None:
        self.chain, self.solo, self.per_block = chain, solo, per_block
        self.recipients = [PrivateKey().address for _ in range(64)]

    def _to(self, nonce: int) -> str:
        return self.recipients[nonce % len(self.recipients)] if nonce % 5 else PrivateKey().address

    def one(self) -> None:
        self.solo.grow(self.chain, 1, self.per_block, to=self._to)


def build(home: Path, blocks: int, per_block: int) -> OneDelegate:
    solo = OneDelegate.new(
        chain_id=4690,
        # Blocks get timestamps 1 ms apart at least: start far enough back for 10,000 of them.
        age_ms=10 * 24 * 3600 * 1000,
        epoch_length=20,
        min_fee=DEFAULT_MIN_FEE,
    )
    cfg = init_home(home, solo.genesis)
    store = Store(cfg.path(cfg.database), durable=False)  # no fsync per block: a throwaway database built fast
    try:
        committer = Committer(Chain(solo.genesis, store, undo_depth=cfg.undo_depth), solo, per_block)
        t0 = time.monotonic()
        for i in range(blocks):
            committer.one()
            if (i + 1) % 2000 == 0:
                print(f"  built {i + 1} blocks in {time.monotonic() - t0:.1f}s")
    finally:
        store.close()
    return solo


def online_snapshot(home: Path, solo: OneDelegate, per_block: int, out: Path) -> tuple[mt.SnapshotInfo, list[float], list[float]]:
    """Snapshot while another thread commits blocks through the node's connection; commit latencies
    before (baseline) and during the snapshot."""
    cfg = config_mod.load(home)
    store = Store(cfg.path(cfg.database))
    try:
        committer = Committer(Chain(solo.genesis, store, undo_depth=cfg.undo_depth), solo, per_block)
        baseline, during = [], []
        for _ in range(30):
            t = time.monotonic()
            committer.one()
            baseline.append(time.monotonic() - t)
        stop = threading.Event()

        def commit_loop() -> None:
            while not stop.is_set():
                t = time.monotonic()
                committer.one()
                during.append(time.monotonic() - t)

        writer = threading.Thread(target=commit_loop)
        writer.start()
        try:
            time.sleep(0.05)
            info = mt.snapshot(store, out, chain_id=solo.chain_id, online=True)
        finally:
            stop.set()
            writer.join()
        return info, baseline, during
    finally:
        store.close()


def ms(x: float) -> str:
    return f"{x * 1000:.0f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=10_000)
    ap.add_argument("--actions", type=int, default=10, help="transfers per block")
    ap.add_argument("--rollback", type=int, default=100, help="blocks to roll back")
    ap.add_argument("--keep", type=Path, help="work in this directory and keep it (default: a temporary one)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-maintenance-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        home = work / "node"
        print(f"building {args.blocks} blocks with {args.actions} transfers each in {home} ...")
        t0 = time.monotonic()
        solo = build(home, args.blocks, args.actions)
        built_s = time.monotonic() - t0
        db = home / "data" / "chain.db"
        pristine = work / "pristine.db"
        shutil.copyfile(db, pristine)
        size = db.stat().st_size
        print(f"built in {built_s:.1f}s: database {size / 2**20:.1f} MiB, {args.blocks * args.actions} actions")

        to = args.blocks - args.rollback
        r = mt.rollback(home, to)
        print(f"\nrollback of {r.removed_blocks} blocks ({r.removed_actions} actions), backup included: {ms(r.seconds)}")
        print("  phases: " + ", ".join(f"{k} {ms(v)}" for k, v in r.timings.items()))
        shutil.copyfile(pristine, db)
        shutil.rmtree(home / "backups")
        r2 = mt.rollback(home, to, backup=False)
        print(f"rollback of {r2.removed_blocks} blocks without the backup: {ms(r2.seconds)}")
        print("  phases: " + ", ".join(f"{k} {ms(v)}" for k, v in r2.timings.items()))
        shutil.copyfile(pristine, db)

        snap = work / "snap.db"
        t = time.monotonic()
        info = mt.snapshot_home(home, snap)
        snap_s = time.monotonic() - t
        print(f"\nsnapshot (offline) of {info.height} blocks: {ms(snap_s)}, {info.bytes / 2**20:.1f} MiB")

        online = work / "online.db"
        oinfo, baseline, during = online_snapshot(home, solo, args.actions, online)
        print(
            f"snapshot (online, while committing) at height {oinfo.height}: {ms(oinfo.seconds)}; "
            f"{len(during)} blocks committed meanwhile, commit time p50 {ms(statistics.median(during or [0]))} "
            f"max {ms(max(during or [0]))} (p50 {ms(statistics.median(baseline))} max {ms(max(baseline))} before)"
        )

        new = work / "new"
        init_home(new, solo.genesis)
        rr = mt.restore(new, snap)
        print(f"\nrestore of the {info.height}-block snapshot into a new home: {ms(rr.seconds)}")
        print("  phases: " + ", ".join(f"{k} {ms(v)}" for k, v in rr.timings.items()))
        rr2 = mt.restore(home, online)
        print(f"restore of the online snapshot over the node's own database (backup included): {ms(rr2.seconds)}")
        print("  phases: " + ", ".join(f"{k} {ms(v)}" for k, v in rr2.timings.items()))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
