"""Paying 200 voters survives kill -9: the distributor is killed three times at random moments and run
again, and every voter is paid exactly once, as the chain shows (transfers with the memo, balances) and as
the ledger agrees. The distributor runs as its own process (`iotex-ops rewards distribute`)."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from iotex_node.sdk import PrivateKey
from iotex_ops.client.ledger import Ledger
from iotex_ops.client.plan import HEADER, memo_for
from iotex_ops.lab import LocalNet
from iotex_ops.traffic import read_accounts

pytestmark = [pytest.mark.slow, pytest.mark.network]
VOTERS = 200


def _signed(ledger: Path) -> int:
    if not ledger.exists():
        return 0
    db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute("SELECT COUNT(*) FROM payouts").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the table is not made yet
    finally:
        db.close()


def _wait_signed(ledger: Path, n: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while _signed(ledger) < n and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)


def test_a_distributor_killed_three_times_pays_every_voter_exactly_once(tmp_path: Path) -> None:
    rnd = random.Random(int(os.environ.get("KILL9_SEED", "16")))
    net = LocalNet.generate(tmp_path / "net", 1, block_interval_ms=300, epoch_length=20, accounts=1, rate_limit=2000.0)
    with net:
        net.start()
        net.wait_height(1, timeout=60)
        home = tmp_path / "client"
        env = {**os.environ, "IOTEX_OPS_CLIENT_HOME": str(home), "IOTEX_OPS_ENDPOINT": net.nodes[0].api, "PAYPASS": "pw"}
        key = read_accounts(net.root)[0]
        (tmp_path / "k").write_text(key.secret().hex())
        cli = [sys.executable, "-m", "iotex_ops.cli"]
        subprocess.run([*cli, "account", "import", "--alias", "payer", "--private-key-file", str(tmp_path / "k"),
                        "--password-env", "PAYPASS"], env=env, check=True, capture_output=True)  # fmt: skip
        voters = sorted(PrivateKey().address for _ in range(VOTERS))
        amounts = {v: rnd.randint(1, 10**18) for v in voters}
        plan = tmp_path / "plan.csv"
        with plan.open("w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(HEADER)
            for v in voters:
                w.writerow(("delegate0", 1, 2, v, amounts[v], "x"))
        ledger = tmp_path / "ledger.sqlite"
        run = [*cli, "rewards", "distribute", str(plan), "--from", "payer", "--yes", "--password-env", "PAYPASS",
               "--batch", "3", "--ledger", str(ledger), "--json"]  # fmt: skip
        # Three kills at random moments of the run: each once a random number of payouts were signed (and a random
        # few milliseconds more), so that they land between signing, recording, sending and settling.
        k1 = rnd.randint(1, VOTERS // 3)
        k2 = rnd.randint(k1 + 1, 2 * VOTERS // 3)
        k3 = rnd.randint(k2 + 1, VOTERS - 1)
        kills = []
        for k in (k1, k2, k3):
            proc = subprocess.Popen(run, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            _wait_signed(ledger, k, proc)
            time.sleep(rnd.uniform(0, 0.02))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=60)
            kills.append((k, proc.returncode, _signed(ledger)))
        final = subprocess.run(run, env=env, capture_output=True, text=True, timeout=300)
        assert final.returncode == 0, (kills, final.stdout, final.stderr)
        report = json.loads(final.stdout)
        assert report["verified"] and not report["problems"], report
        assert [rc for _k, rc, _n in kills] == [-signal.SIGKILL] * 3, f"runs were not killed mid-way: {kills}"

        # the chain: each voter received exactly one transfer with the memo, of its amount, and holds just that
        memo = memo_for("delegate0", 1, 2)
        node = net.client(0)
        paid = Counter()
        for v in voters:
            got = [a for a in node.account_actions(v) if a.type == "transfer" and a.memo == memo and a.ok]
            paid[v] = len(got)
            assert [int(a.payload["amount"]) for a in got] == [amounts[v]], v
            assert node.account(v).balance == amounts[v]
        assert set(paid.values()) == {1}
        # the ledger agrees: one final payout per voter, and none left open
        led = Ledger(ledger)
        try:
            finals = led.entries(memo=memo, states=("final",))
            assert sorted(e.voter for e in finals) == voters
            assert led.entries(memo=memo, states=("signed", "sent")) == []
        finally:
            led.close()
        print(f"kill -9 (at payouts signed, exit status, payouts signed by then): {kills}")
