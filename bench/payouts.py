"""Paying 1,000 voters on 4 local delegates: wall time and fees, with this machine's speed reference.

    python bench/payouts.py [--voters 1000] [--delegates 4] [--block-ms 1000]

Set-up (not timed): a LocalNet of N delegates with V funded accounts; each account stakes for one delegate
(round robin) and the chain passes an epoch's end; each delegate's owner bookkeeps its epoch
(`iotex-ops rewards bookkeep`, 90 %, block rewards included). Timed: the N owners' `iotex-ops rewards
distribute --claim` run at once, as N processes (each delegate pays its own voters), from the first process
started to the last one exited with every payout final and verified on chain. Fees: what the payers spent
on fees (payouts plus claims), from their receipts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _speed import reference_line

from iotex_node import sdk
from iotex_node.testnet import OWNERS_FILE
from iotex_ops.lab import LocalNet
from iotex_ops.traffic import read_accounts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voters", type=int, default=1000)
    ap.add_argument("--delegates", type=int, default=4)
    ap.add_argument("--block-ms", type=int, default=1000)
    ap.add_argument("--epoch-length", type=int, default=10)
    args = ap.parse_args()
    print(reference_line(), flush=True)
    base = Path(tempfile.mkdtemp(prefix="bench-payouts-", dir="/tmp"))
    net = LocalNet.generate(
        base / "net",
        args.delegates,
        block_interval_ms=args.block_ms,
        epoch_length=args.epoch_length,
        accounts=args.voters,
        rate_limit=5000.0,
    )
    cli = [sys.executable, "-m", "iotex_ops.cli"]
    with net:
        net.start()
        net.wait_height(1, timeout=120)
        node = net.client(0)
        chain = node.chain()
        params = sdk.ChainParams(chain.chain_id, chain.min_fee or 1)
        voters = read_accounts(net.root)
        stakes = [
            sdk.stake_create(
                k,
                chain_id=params.chain_id,
                nonce=1,
                fee=params.min_fee,
                candidate=f"delegate{i % args.delegates}",
                amount=(1 + i % 7) * 10**18,
                duration_days=7 * (i % 4),
            )
            for i, k in enumerate(voters)
        ]
        for i in range(0, len(stakes), 500):
            node.submit_batch(stakes[i : i + 500])
        net.wait_for("every stake final", lambda: all(node.account(k.address).nonce == 1 for k in voters[-5:]), 120)
        epoch = (node.chain().finalized_height - 1) // args.epoch_length + 1
        net.wait_height(epoch * args.epoch_length + 1, timeout=300)
        home = base / "client"
        env = {**os.environ, "IOTEX_OPS_CLIENT_HOME": str(home), "IOTEX_OPS_ENDPOINT": node.url, "BENCH_PW": "bench"}
        owners = read_accounts(net.root / OWNERS_FILE)
        plans = []
        for i, owner in enumerate(owners):
            kf = base / f"owner{i}.key"
            kf.write_text(owner.secret().hex())
            subprocess.run(
                [*cli, "account", "import", "--alias", f"owner{i}", "--private-key-file", str(kf), "--password-env", "BENCH_PW"],
                env=env,
                check=True,
                capture_output=True,
            )
            plan = base / f"plan{i}.csv"
            subprocess.run(
                [
                    *cli,
                    "rewards",
                    "bookkeep",
                    "--delegate",
                    f"delegate{i}",
                    "--from-epoch",
                    str(epoch),
                    "--to-epoch",
                    str(epoch),
                    "--percentage",
                    "90",
                    "--include-block-rewards",
                    "--out",
                    str(plan),
                ],
                env=env,
                check=True,
                capture_output=True,
            )
            plans.append(plan)
        before = [node.account(o.address) for o in owners]
        t0 = time.monotonic()
        procs = [
            subprocess.Popen(
                [
                    *cli,
                    "rewards",
                    "distribute",
                    str(p),
                    "--from",
                    f"owner{i}",
                    "--claim",
                    "--yes",
                    "--password-env",
                    "BENCH_PW",
                    "--batch",
                    "250",
                    "--json",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for i, p in enumerate(plans)
        ]
        reports = []
        for p in procs:
            out, err = p.communicate(timeout=600)
            if p.returncode != 0:
                print(err.decode(), file=sys.stderr)
                return 1
            reports.append(json.loads(out))
        wall = time.monotonic() - t0
        paid = sum(r["sent"] for r in reports)
        fees = 0
        for o, b in zip(owners, before, strict=True):
            a = node.account(o.address)
            fees += (a.nonce - b.nonce) * params.min_fee  # every action of theirs here paid the minimum fee
        print(
            json.dumps(
                {
                    "voters": args.voters,
                    "delegates": args.delegates,
                    "block_interval_ms": args.block_ms,
                    "payouts": paid,
                    "verified": all(r["verified"] for r in reports),
                    "wall_s": round(wall, 2),
                    "fees_rau": str(fees),
                    "fees_iotx": fees / 10**18,
                    "fee_per_payout_rau": str(params.min_fee),
                    "cpus": os.cpu_count(),
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
