"""Signed-transfer load against a lab network, from its own process.

    python bench/loadgen.py --net DIR --tps 1200 --seconds 60 --out submits.json

Signs transfers between the testnet's funded accounts (DIR/accounts.secret.json) on the fly, sends them
in batches to every node's POST /v1/actions/batch round-robin, and records each action's hash and
submit time (unix seconds) so that the caller can measure submit-to-finalized latency. The load itself is
iotex_ops.traffic.openloop's; this is its command line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from iotex_node.sdk import ChainParams
from iotex_ops.errors import OpsError
from iotex_ops.traffic import read_accounts
from iotex_ops.traffic.openloop import open_loop


async def run(net: Path, tps: float, seconds: float, out: Path, batch: int, fee: int | None) -> dict[str, object]:
    manifest = json.loads((net / "testnet.json").read_text())
    if fee is None:  # the genesis minimum: every node admits it (unless its mempool.min_fee is higher)
        fee = ChainParams.from_testnet(net).min_fee
    try:
        keys = read_accounts(net, at_least=2)
    except OpsError as exc:
        raise SystemExit(f"the network needs at least 2 funded accounts (testnet --accounts N): {exc}") from None
    apis = [n["api"] for n in manifest["nodes"]]
    r = await open_loop(apis, keys, chain_id=manifest["chain_id"], fee=fee, tps=tps, seconds=seconds, batch=batch)
    s = r.stats
    doc = {"submits": r.submits, "rejected": s.refused, "reasons": s.by_reason, "errors": s.unavailable, "elapsed": r.elapsed}
    out.write_text(json.dumps(doc))
    return {
        "sent": r.generated,
        "accepted": len(r.submits),
        "rejected": s.refused,
        "reasons": dict(s.by_reason),
        "errors": s.unavailable,
        "elapsed": r.elapsed,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", type=Path, required=True)
    p.add_argument("--tps", type=float, default=1000.0)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--fee", type=int, default=None, help="rau per transfer (default: the genesis min_fee)")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    if a.tps <= 0 or a.seconds <= 0 or not 1 <= a.batch <= 2000:
        raise SystemExit("--tps and --seconds must be positive and --batch 1..2000")
    stats = asyncio.run(run(a.net, a.tps, a.seconds, a.out, a.batch, a.fee))
    print(json.dumps(stats), file=sys.stderr)


if __name__ == "__main__":
    main()
