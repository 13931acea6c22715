"""The dashboard's figures on a local lab, in headless Chromium (Debian's `chromium`, driven by Playwright):

- first paint of the network view: from navigation to the first contentful paint, and to the delegates' rows
  being drawn (the page is rendered on the server, so both come with the first response);
- from a node's death (SIGKILL) to its row turning red on an open page, without a reload (live updates).

    python bench/dashboard.py [--loads 10] [--kills 3] [--lab-dir DIR]

Brings a lab up in a temp directory (and down after) unless --lab-dir names a running one. Between kills the
lab's alertd brings the node back (restart-node), as it does for any dead delegate.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._speed import reference_line
from iotex_ops.lab import lab as lab_mod

CHROMIUM = "/usr/bin/chromium"


def _fmt(xs: list[float]) -> str:
    each = ", ".join(f"{x:.3f}" for x in xs)
    return f"median {statistics.median(xs):.3f} s, worst {max(xs):.3f} s (n={len(xs)}: {each})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loads", type=int, default=10)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--lab-dir", type=Path)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = None
    if args.lab_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="dashb", dir="/tmp"))
        t0 = time.monotonic()
        state = lab_mod.up(4, "local", 1000, tmp / "lab")
        print(f"lab up in {time.monotonic() - t0:.1f} s (dashboard at {state.dashboard_url})")
    else:
        loaded = lab_mod.load_state(args.lab_dir)
        if loaded is None or not loaded.dashboard_url:
            print(f"no lab with a dashboard at {args.lab_dir}", file=sys.stderr)
            return 2
        state = loaded
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(state.dashboard_url + "/")  # warm: the first reading of the network after start
                fcp, rows = [], []
                for _ in range(args.loads):
                    t0 = time.monotonic()
                    page.goto(state.dashboard_url + "/")
                    page.wait_for_selector("#delegates tbody tr[data-delegate]")
                    rows.append(time.monotonic() - t0)
                    paint = page.evaluate(
                        "performance.getEntriesByName('first-contentful-paint').map(e => e.startTime)[0] || null"
                    )
                    if paint is not None:
                        fcp.append(paint / 1000)
                print(f"network view, first contentful paint: {_fmt(fcp)}" if fcp else "first contentful paint: not reported")
                print(f"network view, navigation to the delegates' rows drawn: {_fmt(rows)}")
                reds = []
                victim = state.nodes[-1].name
                row = f'#delegates tr[data-delegate="{victim}"]'
                for _ in range(args.kills):
                    page.goto(state.dashboard_url + "/")
                    page.wait_for_selector(f'{row}:not([data-level="bad"])', timeout=120_000)
                    page.wait_for_selector("#live.on")
                    deadline = time.monotonic() + 120
                    while (pid := state.node_pid(victim)) is None and time.monotonic() < deadline:
                        time.sleep(0.5)
                    if pid is None:
                        print(f"{victim} did not come back within 120 s", file=sys.stderr)
                        break
                    time.sleep(5)  # settled: its row green again, alertd's incident resolving
                    t0 = time.monotonic()
                    os.kill(pid, signal.SIGKILL)
                    page.wait_for_selector(f'{row}[data-level="bad"]', timeout=30_000)
                    reds.append(time.monotonic() - t0)
                    page.wait_for_selector(f'{row}:not([data-level="bad"])', timeout=120_000)  # alertd restarted it
                if reds:
                    print(f"a node's death (SIGKILL) to its row red, no reload: {_fmt(reds)}")
            finally:
                browser.close()
    finally:
        if tmp is not None:
            lab_mod.down(tmp / "lab")
            shutil.rmtree(tmp, ignore_errors=True)
    print(reference_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
