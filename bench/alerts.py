"""Kill to page, and kill to finalizing again (MTTR), on a fresh local lab of 4 delegates at 1 s blocks,
with 1 s scrape and evaluation: the real Prometheus, Alertmanager, `iotex-ops alertd` and the lab's HTTPS
PagerDuty receiver, as `lab up` starts them.

    python bench/alerts.py [--trials 3]

Per trial (kill -9 or SIGSTOP one delegate, a different one each time) it prints, from the moment of the
signal: the page (the incident's creation at the receiver), its acknowledgement (the remediation started),
the node finalizing again with its peers (MTTR, target < 15 s), and the page resolved.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from iotex_ops.lab import lab as lab_mod
from iotex_ops.nodeapi import NodeClient
from iotex_ops.paging.receiver import LabClient

TARGET_MTTR_S = 15.0


def _ts(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() if iso else None


def _top(st: lab_mod.LabState) -> int:
    tops = []
    for n in st.nodes:
        with contextlib.suppress(Exception):  # a node down
            tops.append(NodeClient(n.api_url, name=n.name, timeout=1).chain().finalized_height)
    return max(tops)


def _endorsing(st: lab_mod.LabState, name: str, above: int) -> bool:
    """The node answers, is in step, and its signature is in the certificate of a block above `above`
    (finalized after the fault): it finalizes again, not only catches up."""
    node = next(n for n in st.nodes if n.name == name)
    client = NodeClient(node.api_url, name=node.name, timeout=1)
    try:
        c = client.chain()
        tip = c.finalized_height
        if tip <= above or not c.participating:
            return False
        return any(c.address in b.voters for b in client.blocks(max(above + 1, tip - 2), tip))
    except Exception:  # still starting
        return False


def _wait(probe: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.05)
    return None


def trial(st: lab_mod.LabState, pager: LabClient, name: str, sig: int) -> dict[str, Any]:
    _wait(lambda: all(i["status"] == "resolved" for i in pager.incidents()), 90)
    top = _top(st)
    _wait(lambda: all(_endorsing(st, n.name, top) for n in st.nodes), 60)
    pid = st.node_pid(name)
    assert pid is not None
    known = {i["id"] for i in pager.incidents()}
    above = _top(st)
    t0 = time.time()
    os.kill(pid, sig)
    back = _wait(lambda: time.time() if st.node_pid(name) not in (None, pid) and _endorsing(st, name, above) else None, 60)
    if sig == signal.SIGSTOP:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)

    def mine() -> dict[str, Any] | None:
        new = [i for i in pager.incidents() if i["id"] not in known and i["dedup_key"].endswith(f"/DelegateDown/{name}")]
        return new[0] if new and new[0]["status"] == "resolved" else None

    inc = _wait(mine, 60) or {}
    return {
        "delegate": name,
        "signal": signal.Signals(sig).name,
        "page_s": round((_ts(inc.get("created_at")) or float("nan")) - t0, 2),
        "ack_s": round((_ts(inc.get("acknowledged_at")) or float("nan")) - t0, 2),
        "mttr_s": round((back or float("nan")) - t0, 2),
        "resolved_s": round((_ts(inc.get("resolved_at")) or float("nan")) - t0, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=3, help="kill -9 trials (and as many SIGSTOP trials)")
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="bal", dir="/tmp"))
    root = d / "lab"
    try:
        st = lab_mod.up(delegates=4, hosts="local", root=root)
        pager = LabClient.for_dir(st.pager_dir)
        rows = []
        for i in range(args.trials):
            for sig in (signal.SIGKILL, signal.SIGSTOP):
                name = st.nodes[(2 * i + (sig == signal.SIGSTOP)) % len(st.nodes)].name
                rows.append(trial(st, pager, name, sig))
        print(f"{'delegate':10} {'signal':8} {'page':>7} {'ack':>7} {'MTTR':>7} {'resolved':>9}")
        for r in rows:
            figures = f"{r['page_s']:6.2f}s {r['ack_s']:6.2f}s {r['mttr_s']:6.2f}s {r['resolved_s']:8.2f}s"
            print(f"{r['delegate']:10} {r['signal']:8} {figures}")
        for sig in ("SIGKILL", "SIGSTOP"):
            m = [r["mttr_s"] for r in rows if r["signal"] == sig]
            p = [r["page_s"] for r in rows if r["signal"] == sig]
            print(
                f"{sig}: kill->page median {statistics.median(p):.2f} s; MTTR median {statistics.median(m):.2f} s, "
                f"max {max(m):.2f} s (target < {TARGET_MTTR_S:g} s)"
            )
        print(json.dumps(rows))
    finally:
        lab_mod.down(root)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
