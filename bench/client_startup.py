"""The client's start-up to first output, as a whole process: `iotex-ops account balance ADDRESS` against a
local node, timed over several runs (minimum, median, maximum wall seconds), with the speed reference.

    python bench/client_startup.py [--runs 10]

What it times is what a person waits for: the interpreter starting, the command line loading, one API read,
the answer printed, the process gone. `account balance` loads no signing library (tests/ops/test_cli_startup.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _speed import reference_line

from iotex_ops.lab import LocalNet
from iotex_ops.traffic import read_accounts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    print(reference_line(), flush=True)
    base = Path(tempfile.mkdtemp(prefix="bench-client-", dir="/tmp"))
    net = LocalNet.generate(base / "net", 1, accounts=1)
    exe = Path(sys.executable).with_name("iotex-ops")
    cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "iotex_ops.cli"])]
    with net:
        net.start()
        net.wait_height(1, timeout=60)
        address = read_accounts(net.root)[0].address
        env = {**os.environ, "IOTEX_OPS_ENDPOINT": net.client(0).url, "IOTEX_OPS_CLIENT_HOME": str(base / "client")}
        run = [*cmd, "account", "balance", address]
        subprocess.run(run, env=env, check=True, capture_output=True)  # warm-up: the page cache, .pyc files
        walls = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            res = subprocess.run(run, env=env, capture_output=True, text=True, check=True)
            walls.append(time.perf_counter() - t0)
            assert "IOTX" in res.stdout
    print(
        json.dumps(
            {
                "command": "iotex-ops account balance ADDRESS",
                "runs": args.runs,
                "wall_s_min": round(min(walls), 3),
                "wall_s_median": round(statistics.median(walls), 3),
                "wall_s_max": round(max(walls), 3),
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
