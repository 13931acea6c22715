"""`lab up` to the first finalized block, for N delegates in each host mode, in one run.

    python bench/lab_up.py [--delegates 4] [--modes local,netns]

Each mode: a fresh lab directory, `lab up` through the library (the same code as the CLI), the time to
the first block finalized on every node, the phases recorded by the lab, then `lab down`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from iotex_ops.lab import lab as lab_mod


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--delegates", type=int, default=4)
    ap.add_argument("--modes", default="local,netns" if os.geteuid() == 0 else "local")
    args = ap.parse_args()
    results = {}
    for mode in args.modes.split(","):
        base = Path(tempfile.mkdtemp(prefix="lab", dir="/tmp"))
        root = base / "lab"
        t0 = time.monotonic()
        try:
            state = lab_mod.up(args.delegates, mode, 1000, root)
            results[mode] = {"up_to_first_block_s": round(time.monotonic() - t0, 2), **state.timings}
        finally:
            t1 = time.monotonic()
            lab_mod.down(root)
            results.setdefault(mode, {})["down_s"] = round(time.monotonic() - t1, 2)
            shutil.rmtree(base, ignore_errors=True)
    print(json.dumps({"delegates": args.delegates, "cpus": os.cpu_count(), "modes": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
